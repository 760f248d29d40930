"""`sutazai run` serves HTTP through Serve's HAProxy ingress, bound where the settings say,
SSE included; `sutazai stop` ends HAProxy too (it outlives the Ray head) and frees the port."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from sutazai import cli
from sutazai.settings import Settings
from tests.test_cli import Run, _assert_all_stopped

MAXCONN = 3000  # not the default: the config must carry what the settings say
NICENESS = 5  # likewise (the default is 0, Ray's own 15)


@pytest.fixture
def run() -> Iterator[Run]:
    run = Run(extra_env={"SUTAZAI_HAPROXY_MAXCONN": str(MAXCONN), "SUTAZAI_WORKER_NICENESS": str(NICENESS)})
    try:
        yield run
    finally:
        run.cleanup()


def _listening(processes) -> set[tuple[str, int]]:
    """The TCP addresses the processes listen on; one that ended meanwhile counts for none
    (HAProxy reloads when replicas change: a new process takes over and the old one exits)."""
    found = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == "LISTEN"}
    return found


def _haproxy_listening_on(folder, address: tuple[str, int]) -> list[psutil.Process]:
    """The run's HAProxy processes, once one of them listens on `address` (within a few seconds,
    as a reload may be under way); the last list seen if none does."""
    deadline = time.monotonic() + 10
    while True:
        haproxy = cli.haproxy_processes(folder)
        if address in _listening(haproxy) or time.monotonic() > deadline:
            return haproxy
        time.sleep(0.2)


def test_haproxy_serves_the_run_on_its_host_and_port_and_stop_ends_it(run):
    run.start()
    run.wait_until_up()
    folder = cli.haproxy_dir(Settings(_env_file=None, data_dir=run.data_dir))
    haproxy = _haproxy_listening_on(folder, ("127.0.0.1", run.port))
    assert haproxy, run.tail()
    assert ("127.0.0.1", run.port) in _listening(haproxy)
    configs = list(folder.glob("*/haproxy.cfg"))
    assert configs
    config = configs[0].read_text()
    assert f"maxconn {MAXCONN}\n" in config  # fits any hard limit over ~10,500 descriptors
    assert "log-format-sd" not in config  # no per-request metrics line for Python to parse: the replicas count
    replicas = [p for p in run.its_processes() if "ServeReplica" in _cmdline(p)]
    nices = {n for p in replicas + haproxy if (n := _nice(p)) is not None}
    assert replicas and nices == {NICENESS}, nices
    launcher = psutil.Process(run.process.pid)
    soft, hard = launcher.rlimit(psutil.RLIMIT_NOFILE)
    assert soft == hard  # raised, and inherited by the head, HAProxy and the replicas

    url = f"http://127.0.0.1:{run.port}"
    password = (run.data_dir / "admin_password").read_text().strip()
    token = httpx.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    started = time.perf_counter()
    events = []
    with httpx.stream(
        "POST",
        f"{url}/api/v1/chat/stream",
        headers=headers,
        json={"message": "Say hi", "max_tokens": 8, "temperature": 0},
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append((time.perf_counter() - started, line))
    assert len(events) >= 2, events  # SSE passes through HAProxy event by event

    processes = run.its_processes()
    stop = run.sutazai("stop")

    assert stop.returncode == 0, stop.stdout + stop.stderr
    _assert_all_stopped(run, processes + haproxy)
    assert not cli.haproxy_processes(folder) and not folder.exists()


def _cmdline(process: psutil.Process) -> str:
    """A process's command line, or "" for one that ended meanwhile (Ray starts and ends idle workers)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _nice(process: psutil.Process) -> int | None:
    try:
        return int(process.nice())
    except psutil.Error:
        return None
