"""`sutazai run`: the whole app on one machine, `serve run`-style.

Starts what is missing (embedded Postgres and Redis when their URLs are unset,
a local Ray head when RAY_ADDRESS is unset), deploys the Serve application and
stays in the foreground; Ctrl-C tears everything down again.
`sutazai stop` cleans up after a run that was killed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sutazai.settings import Settings, get_settings

logger = logging.getLogger("sutazai.cli")


def _ray_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def start_ray_head(settings: Settings, env: dict[str, str]) -> str:
    """A local head on a port that is not Redis's; workers inherit `env`."""
    address = f"127.0.0.1:{settings.ray_port}"
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--port",
        str(settings.ray_port),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(settings.dashboard_port),
        "--metrics-export-port",
        str(settings.metrics_export_port),
        "--disable-usage-stats",
    ]
    subprocess.run(cmd, check=True, env={**os.environ, **env, "RAY_USAGE_STATS_ENABLED": "0"})
    return address


def stop_ray() -> None:
    subprocess.run([_ray_bin(), "stop", "--force"], check=False)


def deploy(settings: Settings, env: dict[str, str]) -> None:
    """Deploy the application named by `settings.app_import_path`, as `serve run` would."""
    from ray import serve

    module_name, _, attribute = settings.app_import_path.partition(":")
    build_app = getattr(importlib.import_module(module_name), attribute)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app({"env": env}), name=settings.app_name, route_prefix="/", blocking=False)


def embedded_admin_password(settings: Settings) -> Path:
    """The embedded default's first admin password: random, made once, kept in a 0600 file
    (no default password anywhere; the operator reads it from the file)."""
    import secrets

    path = settings.data_dir / "admin_password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(18) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    # Ray 2.60 starts heads with token auth; a driver presents ~/.ray/auth_token only
    # in this mode, and Ray reads it when imported.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    from sutazai.auth.secret import jwt_secret_env
    from sutazai.embedded import start_missing

    settings = get_settings()
    if args.port:
        settings.port = args.port
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    servers = start_missing(settings.data_dir, settings.database_url, settings.redis_url)
    database_url, redis_url = servers.urls()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SUTAZAI_DATA_DIR": str(settings.data_dir),
    }
    # Replicas see real URLs and so cannot tell they are embedded: hand them the
    # launcher's embedded JWT secret ({} outside the embedded default).
    env.update(jwt_secret_env(settings))
    admin_note = ""
    if settings.admin_password is None and settings.embedded:
        password_file = embedded_admin_password(settings)
        env["SUTAZAI_ADMIN_PASSWORD"] = password_file.read_text().strip()
        admin_note = f"  Admin      user {settings.admin_username!r}, password in {password_file}\n"
    own_ray = not settings.ray_address
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        address = start_ray_head(settings, env) if own_ray else settings.ray_address
        ray.init(address=address, namespace="sutazai", logging_level=logging.WARNING)
        started = time.perf_counter()
        deploy(settings, env)
        print(
            f"\nSutazAI is up in {time.perf_counter() - started:.1f}s\n"
            f"  API        http://{settings.host}:{settings.port}  (docs: /docs)\n"
            f"  Dashboard  http://127.0.0.1:{settings.dashboard_port}\n"
            f"  Postgres   {servers.database_url}\n  Redis      {servers.redis_url}\n{admin_note}"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stop.wait()
    finally:
        print("stopping...", flush=True)
        try:
            from ray import serve

            serve.shutdown()
        except Exception as exc:
            logger.warning("serve shutdown: %s", exc)
        ray.shutdown()
        if own_ray:
            stop_ray()
        servers.stop()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    from sutazai.auth.cli import prompt_password

    return sys.stdin.readline().rstrip("\n") if args.password_stdin else prompt_password()


def _account_command(action: Callable[[], object], done: str) -> int:
    from sutazai.auth.cli import CLIError

    try:
        action()
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(done)
    return 0


def create_user(args: argparse.Namespace) -> int:
    """Create a user (e.g. the first admin) in the configured database."""
    from sutazai.auth import cli

    return _account_command(
        lambda: cli.create_user(get_settings(), args.username, _read_password(args), args.role),
        f"created {args.role} {args.username}",
    )


def set_password(args: argparse.Namespace) -> int:
    """Reset a user's password (and end their sessions): the way back in when it is lost."""
    from sutazai.auth import cli

    return _account_command(
        lambda: cli.set_password(get_settings(), args.username, _read_password(args)),
        f"password of {args.username} changed; their sessions are ended",
    )


def stop(_: argparse.Namespace) -> int:
    stop_ray()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="sutazai")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start the whole app locally (embedded default)")
    run_parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    run_parser.set_defaults(func=run)
    user_parser = sub.add_parser("create-user", help="create a user in DATABASE_URL (password prompted)")
    user_parser.add_argument("username")
    user_parser.add_argument("--role", choices=["admin", "user", "viewer"], default="user")
    user_parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user_parser.set_defaults(func=create_user)
    password_parser = sub.add_parser("set-password", help="reset a user's password in DATABASE_URL (prompted)")
    password_parser.add_argument("username")
    password_parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    password_parser.set_defaults(func=set_password)
    stop_parser = sub.add_parser("stop", help="stop a local Ray head left running")
    stop_parser.set_defaults(func=stop)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
