"""`sutazai run` / `sutazai stop` on a fresh machine: the real app, started and stopped as a user would.

Each run gets an empty HOME (no ~/.ray/auth_token), its own data folder and free ports, so it
neither needs nor touches anything else on the machine (Redis on 6379, other Ray clusters).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from sutazai import cli
from sutazai.embedded import POSTGRES_FOLDER, REDIS_FOLDER, postgres_process, redis_process
from sutazai.settings import Settings
from tests.helpers import free_port

STARTUP_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 15.0


def _short_tempdir() -> Path:
    """Ray's unix sockets live under its temp folder: keep the path short (pytest's tmp_path is long)."""
    return Path(tempfile.mkdtemp(prefix="sz-"))


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # exited; PID 1 has not collected it yet
    except psutil.NoSuchProcess:
        return True


def _name(process: psutil.Process) -> str | None:
    """A process's name, or None for one that has ended meanwhile."""
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return None


def _processes_naming(text: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `text`."""
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(text in arg for arg in process.info["cmdline"] or []) and not _gone(process)
    ]


def _port_is_free(port: int) -> bool:
    """Nothing listens on it (SO_REUSEADDR: connections HAProxy closed may sit in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Run:
    """A `sutazai run` in a process group of its own (as in a terminal), with its own HOME and ports."""

    root: Path = field(default_factory=_short_tempdir)
    port: int = field(default_factory=free_port)
    ray_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)  # SUTAZAI_* settings of this run
    process: subprocess.Popen | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SUTAZAI_"))}
        for name in ("DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        (self.root / "home").mkdir(exist_ok=True)
        return (
            env
            | {
                "HOME": str(self.root / "home"),
                "SUTAZAI_DATA_DIR": str(self.data_dir),
                "SUTAZAI_PORT": str(self.port),
                "SUTAZAI_RAY_PORT": str(self.ray_port),
                "SUTAZAI_DASHBOARD_PORT": str(free_port()),
                "SUTAZAI_METRICS_EXPORT_PORT": str(free_port()),
                "RAY_USAGE_STATS_ENABLED": "0",
            }
            | self.extra_env
        )

    def sutazai(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sutazai.cli", *args], env=self.env(), capture_output=True, text=True, timeout=60
        )

    def start(self) -> None:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sutazai.cli", "run"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_up(self) -> None:
        """/health answers 200, and the admin signs in with the password from its file."""
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = f"http://127.0.0.1:{self.port}"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"sutazai run exited:\n{self.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"no /health within {STARTUP_TIMEOUT_S:.0f} s:\n{self.tail()}")
        password = (self.data_dir / "admin_password").read_text().strip()
        login = httpx.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}, timeout=30)
        assert login.status_code == 200, login.text

    def its_processes(self) -> list[psutil.Process]:
        """Everything the run started that is running now: the head (and so the app and MCP
        servers), Postgres and Redis."""
        processes = cli.ray_head_processes(self.data_dir / cli.RAY_FOLDER)
        processes.append(postgres_process(self.data_dir / POSTGRES_FOLDER))
        processes.append(redis_process(self.data_dir / REDIS_FOLDER))
        assert None not in processes and len(processes) > 10, processes
        return [p for p in processes if p is not None]

    def left_behind(self) -> list[str]:
        """Live processes of this run: naming its folder or its ports, or Ray daemons of its head."""
        found = _processes_naming(str(self.root)) + _processes_naming(f":{self.ray_port}")
        return [f"{p.pid} {' '.join(p.info['cmdline'])[:200]}" for p in found]

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def cleanup(self) -> None:
        """Whatever a failed test left: the launcher, then everything under the data folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.sutazai("stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def run() -> Iterator[Run]:
    run = Run()
    try:
        yield run
    finally:
        run.cleanup()


def _assert_all_stopped(run: Run, processes: list[psutil.Process]) -> None:
    still = [f"{p.pid} {name}" for p in processes if not _gone(p) and (name := _name(p)) is not None]
    assert not still, f"still running: {still}\n{run.tail()}"
    assert not run.left_behind(), run.left_behind()
    assert _port_is_free(run.port)
    assert _port_is_free(run.ray_port)


def _stop_with(run: Run, sig: signal.Signals, *, group: bool) -> float:
    """Send `sig` to the launcher (or its whole process group, as Ctrl-C in a terminal does);
    returns how long it took to exit, after asserting it exited cleanly."""
    assert run.process is not None
    started = time.perf_counter()
    if group:
        os.killpg(run.process.pid, sig)
    else:
        run.process.send_signal(sig)
    returncode = run.process.wait(STOP_TIMEOUT_S)
    took = time.perf_counter() - started
    assert returncode == 0, run.tail()
    assert "stopped in" in run.log.read_text(), run.tail()
    return took


def test_token_file_is_made_once_and_private(tmp_path):
    path = cli.ensure_ray_token(tmp_path / "token")
    token = path.read_text()

    assert cli.ensure_ray_token(path).read_text() == token
    assert len(token) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_ray_head_starts_on_a_fresh_machine(monkeypatch):
    root = _short_tempdir()
    monkeypatch.setenv("HOME", str(root / "home"))
    settings = Settings(_env_file=None, data_dir=root / "data", ray_port=free_port())
    settings.dashboard_port, settings.metrics_export_port = free_port(), free_port()
    env = cli.head_env(settings)
    try:
        address = cli.start_ray_head(settings, env)
        status = subprocess.run(
            [cli._ray_bin(), "status", "--address", address],
            env=os.environ | env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert not (root / "home" / ".ray" / "auth_token").exists()
    finally:
        cli.stop_ray_head(cli.ray_dir(settings))
    assert not cli.ray_head_processes(cli.ray_dir(settings))
    shutil.rmtree(root, ignore_errors=True)


def test_sigterm_stops_everything_the_run_started(run):
    run.start()
    run.wait_until_up()
    processes = run.its_processes()

    took = _stop_with(run, signal.SIGTERM, group=False)

    print(f"SIGTERM to exit: {took:.1f} s", *[line for line in run.tail().splitlines() if "sutazai.cli" in line])
    _assert_all_stopped(run, processes)


def test_ctrl_c_stops_everything_the_run_started(run):
    run.start()
    run.wait_until_up()
    processes = run.its_processes()

    took = _stop_with(run, signal.SIGINT, group=True)

    print(f"Ctrl-C to exit: {took:.1f} s")
    _assert_all_stopped(run, processes)


def test_stop_cleans_up_after_a_killed_run(run):
    run.start()
    run.wait_until_up()
    processes = run.its_processes()
    assert run.process is not None
    run.process.kill()
    run.process.wait()

    stop = run.sutazai("stop")

    assert stop.returncode == 0, stop.stdout + stop.stderr
    _assert_all_stopped(run, processes)


def test_deploy_gives_serve_the_request_timeout(monkeypatch):
    from ray import serve

    started: dict = {}
    monkeypatch.setattr(serve, "start", lambda http_options: started.update(http_options))
    monkeypatch.setattr(serve, "run", lambda *args, **kwargs: None)
    settings = Settings(_env_file=None, request_timeout_s=42.0, app_import_path="tests.test_cli:_no_app")

    cli.deploy(settings, {})

    assert started["request_timeout_s"] == 42.0


def _no_app(args: dict) -> None:
    """An application builder that builds nothing (for `deploy` without Ray)."""


def test_an_embedded_run_hands_replicas_secrets_by_path_and_turns_docs_on(tmp_path, monkeypatch):
    from sutazai.cli import replica_env

    monkeypatch.delenv("DATABASE_URL", raising=False)  # CI exports one; this is the embedded default
    env = replica_env(Settings(_env_file=None, data_dir=tmp_path), "postgresql://db/x", "redis://r")
    assert Path(env["SUTAZAI_JWT_SECRET_FILE"]).read_text().strip() and "SUTAZAI_JWT_SECRET" not in env
    assert Path(env["SUTAZAI_ADMIN_PASSWORD_FILE"]).stat().st_mode & 0o077 == 0
    assert env["SUTAZAI_DOCS_ENABLED"] == "true"


def test_run_raises_the_open_files_limit_to_the_hard_one():
    """A launcher started under a low soft limit (a login shell's 1024) raises it, so HAProxy,
    the head and the replicas it starts can hold 1,000 clients; HAProxy's maxconn follows it."""
    code = (
        "import resource\n"
        "from sutazai import cli\n"
        "from sutazai.settings import Settings\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "low = cli.haproxy_maxconn(Settings(_env_file=None, haproxy_maxconn=100000))\n"
        "raised = cli.raise_open_files_limit()\n"
        "print(hard, low, *raised, cli.haproxy_maxconn(Settings(_env_file=None, haproxy_maxconn=100000)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    hard, low, soft_after, hard_after, maxconn_after = (int(v) for v in out.stdout.split())
    assert (soft_after, hard_after) == (hard, hard)
    assert low == 256  # the floor: a 256-descriptor process cannot hold more
    assert maxconn_after == min(100000, (hard - cli.HAPROXY_OWN_FDS) // 2)


def test_haproxy_takes_half_the_cores_unless_told(tmp_path, monkeypatch):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    for cores, threads in ((1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)):
        monkeypatch.setattr(cli.os, "cpu_count", lambda cores=cores: cores)
        assert cli.haproxy_threads(settings) == threads, cores
    settings.haproxy_threads = 3
    assert cli.haproxy_threads(settings) == 3


def test_head_env_carries_the_worker_niceness_and_haproxy_settings(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, worker_niceness=7, haproxy_maxconn=3000, haproxy_threads=2)
    assert cli.head_env(settings)["RAY_worker_niceness"] == "7"
    assert cli.head_env(settings)["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"  # the default
    settings.serve_throughput_optimized = False
    assert "RAY_SERVE_THROUGHPUT_OPTIMIZED" not in cli.head_env(settings)
    env = cli.haproxy_env(settings)
    assert env["RAY_SERVE_HAPROXY_MAXCONN"] == str(cli.haproxy_maxconn(settings))
    assert env["RAY_SERVE_HAPROXY_NBTHREAD"] == "2"
    shutil.rmtree(cli.haproxy_dir(settings), ignore_errors=True)
