"""Real MCP servers behind real Ray actors, started once for the tests in this folder.

Ray is started here (package scope) unless the session already runs one, and
stopped when this folder is done, so the app tests can start their own. The
servers are the real ones: the PyPI time and git servers, the npm filesystem
server (one process per user), and the npm "everything" reference server for a
tool that runs long enough to be killed mid-call.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import pytest_asyncio

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray

from sutazai.settings import PROJECT_ROOT, Settings

NAMESPACE = "sutazai-mcp-tests"
NODE_BIN = PROJECT_ROOT / "cluster" / "mcp" / "node_modules" / ".bin"


def servers_file(data_dir: Path) -> dict:
    """The config the tests run: real servers, small timeouts and backoffs so failures show fast."""
    return {
        "mcpServers": {
            "time": {"command": "${PYTHON}", "args": ["-m", "mcp_server_time"], "call_timeout_s": 10},
            "filesystem": {
                "command": str(NODE_BIN / "mcp-server-filesystem"),
                "args": ["${USER_DIR}/files"],
                "ensure_dirs": ["${USER_DIR}/files"],
                "scope": "per_user",
                "max_result_bytes": 64 * 1024,
            },
            # Per user too, idle after a second: for watching one stop and come back.
            "scratch": {
                "command": str(NODE_BIN / "mcp-server-filesystem"),
                "args": ["${USER_DIR}"],
                "idle_timeout_s": 1,
            },
            # Like the shipped file: a clone of this project, read tools only.
            "git": {
                "command": "${PYTHON}",
                "args": ["-m", "mcp_server_git", "--repository", "${DATA_DIR}/git-mirror"],
                "prepare": {
                    "creates": "${DATA_DIR}/git-mirror",
                    "command": [
                        "git",
                        "clone",
                        "--quiet",
                        "--no-hardlinks",
                        "${PROJECT_ROOT}",
                        "${DATA_DIR}/git-mirror",
                    ],
                },
                "tools_allowed": ["git_status", "git_log"],
            },
            "everything": {
                "command": str(NODE_BIN / "mcp-server-everything"),
                "args": ["stdio"],
                "roles": ["admin"],
                "restart": {"backoff_initial_s": 0.2},
            },
            # A server whose process exits at once: it must end up "failed", not loop.
            "broken": {
                "command": "${PYTHON}",
                "args": ["-c", "import sys; print('broken on purpose', file=sys.stderr); sys.exit(3)"],
                "restart": {"max_restarts": 1, "backoff_initial_s": 0.1},
            },
            # A command this machine does not have: failed at once, saying so.
            "missing": {"command": "uvx-is-not-installed-here", "args": ["mcp-server-time"]},
            "off": {"command": "${PYTHON}", "args": ["-m", "mcp_server_time"], "enabled": False},
        }
    }


@pytest.fixture(scope="package")
def ray_cluster():
    if ray.is_initialized():  # the session already runs a cluster: share it, leave it running
        yield None
        return
    context = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace=NAMESPACE,
        logging_level="WARNING",
        log_to_driver=False,
    )
    gcs_port = int(context.address_info["gcs_address"].rsplit(":", 1)[1])
    assert gcs_port != 6379, "Ray must not take Redis's port"
    yield context
    ray.shutdown()


@pytest.fixture(scope="package")
def mcp_settings(tmp_path_factory) -> Settings:
    if not (NODE_BIN / "mcp-server-filesystem").exists():
        pytest.fail("the npm MCP servers are not installed: run `npm ci --prefix cluster/mcp`")
    data_dir = tmp_path_factory.mktemp("mcp-data")
    config = data_dir / "servers.json"
    config.write_text(json.dumps(servers_file(data_dir)))
    return Settings(data_dir=data_dir, mcp_config=config)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def gateway(ray_cluster, mcp_settings):
    from deployments.mcp_process import connect_gateway

    gateway = await connect_gateway(mcp_settings, namespace=NAMESPACE)
    statuses = await gateway.wait_ready(timeout=60)
    expected = {"time": "ready", "git": "ready", "everything": "ready", "broken": "failed", "missing": "failed"}
    assert statuses == expected, statuses
    yield gateway
    await gateway.shutdown()


@pytest.fixture
def status(gateway):
    """`await status("time")`: one server's status dict as GET /servers shows it
    (`status("filesystem", user)`: that user's own process of a per_user server)."""

    async def one(name: str, user: str | None = None) -> dict:
        return next(s for s in await gateway.servers(user=user) if s["name"] == name)

    return one


@pytest.fixture
def user() -> str:
    """A new user id, as the routes pass it (the user's UUID in hex)."""
    return uuid.uuid4().hex
