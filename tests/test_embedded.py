"""The embedded servers stop when asked, even after a launcher was killed, and fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from sutazai.embedded import (
    HANDLE_PIDS,
    POSTGRES_FOLDER,
    REDIS_FOLDER,
    postgres_process,
    redis_process,
    start_missing,
    stop_leftovers,
)

UNUSED_REDIS = "redis://127.0.0.1:1/0"  # a given URL: no embedded Redis is started
UNUSED_DATABASE = "postgresql://postgres@127.0.0.1:1/postgres"


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _dead_pid() -> int:
    """The pid of a process that has exited (as a killed launcher's is)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_postgres_stops_although_a_dead_launcher_is_still_recorded(tmp_path):
    servers = start_missing(tmp_path, None, UNUSED_REDIS)
    handles = tmp_path / POSTGRES_FOLDER / HANDLE_PIDS
    handles.write_text(json.dumps([_dead_pid(), *json.loads(handles.read_text())]))
    postgres = postgres_process(tmp_path / POSTGRES_FOLDER)
    assert postgres is not None

    servers.stop()

    assert _gone(postgres)


def test_stop_ends_both_servers_within_a_second(tmp_path):
    servers = start_missing(tmp_path, None, None)
    processes = [postgres_process(tmp_path / POSTGRES_FOLDER), redis_process(tmp_path / REDIS_FOLDER)]
    assert None not in processes

    started = time.perf_counter()
    servers.stop()

    assert time.perf_counter() - started < 1.0
    assert all(_gone(p) for p in processes if p is not None)


def test_stop_leftovers_ends_the_servers_of_a_killed_launcher(tmp_path):
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sutazai.embedded import start_missing;"
            "start_missing(Path(sys.argv[1]), None, None); print('up', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None and launcher.stdout.readline().strip() == "up"
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    processes = [postgres_process(tmp_path / POSTGRES_FOLDER), redis_process(tmp_path / REDIS_FOLDER)]
    assert None not in processes

    stopped = stop_leftovers(tmp_path)

    assert len(stopped) == 2
    assert all(_gone(p) for p in processes if p is not None)


def test_stop_leftovers_with_nothing_running_stops_nothing(tmp_path):
    assert stop_leftovers(Path(tmp_path)) == []
