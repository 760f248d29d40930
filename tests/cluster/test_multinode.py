"""Multi-node placement, proven on a real (local) two-node Ray cluster: a model file's custom
resource sends its replica to the node that has it, and losing that node leaves the deployment
without a running replica and reported as not healthy, since no other node can host it.

The scenario runs in a subprocess (multinode_scenario.py) with a cluster of its own: the driver
of this test session may already be connected to the Serve app fixture's Ray, and a process
can hold only one Ray connection."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("multinode_scenario.py")
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("multinode")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rmn-"))  # short: Ray's socket paths must fit in 107 bytes
    token = tmp / "ray_auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "token",  # as Ray 2.60's default, with a token of this run's own
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
        "SUTAZAI_DATA_DIR": str(tmp / "data"),
    }
    # a session of its own: on a timeout the whole group goes, the cluster's daemons included
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=SCRIPT.parents[2],
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the scenario ran past {TIMEOUT_S} s\n{stderr[-5000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the cluster left behind
        except ProcessLookupError:
            pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
    run = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"rc={run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


def test_the_replica_runs_on_the_node_with_the_custom_resource(scenario):
    assert len(scenario["nodes"]) == 2
    assert scenario["nodes"][scenario["gpu_node_id"]]["fake_gpu"] == 1
    assert scenario["required_resources"].get("fake_gpu") == 1
    assert scenario["replica_nodes"] == [scenario["gpu_node_id"]]
    assert scenario["answered"]


def test_losing_that_node_leaves_the_deployment_without_a_running_replica(scenario):
    last = scenario["after_removal"][-1]
    assert last["node_alive"] is False
    assert last["replica_states"].get("RUNNING", 0) == 0
    assert last["status"] != "HEALTHY", scenario["after_removal"]
