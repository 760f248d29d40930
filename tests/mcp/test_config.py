"""The servers file: desktop-client shape, SutazAI defaults, placeholders; the shipped file's servers run here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from pydantic import ValidationError

from deployments.mcp_process import run_prepare
from sutazai.mcp.config import (
    GIT_READ_TOOLS,
    MCPConfig,
    ServerConfig,
    expand_server,
    load_config,
    local_placeholders,
    shared_placeholders,
    user_placeholders,
)
from sutazai.settings import PROJECT_ROOT, Settings

DEFAULT_FILE = PROJECT_ROOT / "cluster" / "mcp" / "servers.json"


def test_the_shipped_file_configures_time_git_and_filesystem():
    config = load_config(Settings().mcp_config)
    assert set(config.enabled()) == {"time", "git", "filesystem"}
    assert config.mcp_servers["git"].roles == ["admin"]


def test_the_shipped_git_server_serves_a_clone_in_the_data_folder_with_read_tools_only(tmp_path):
    config = load_config(DEFAULT_FILE)
    values = {**local_placeholders(), **shared_placeholders(tmp_path, config.config_dir)}
    git = expand_server(config.mcp_servers["git"], values)
    assert git.args[-2:] == ["--repository", str(tmp_path / "git-mirror")]
    assert git.prepare is not None and git.prepare.creates == str(tmp_path / "git-mirror")
    assert git.prepare.command[:4] == ["git", "clone", "--quiet", "--no-hardlinks"]
    assert git.tools_allowed == GIT_READ_TOOLS


def test_the_shipped_filesystem_server_gives_each_user_their_own_folder(tmp_path):
    config = load_config(DEFAULT_FILE)
    fs = config.mcp_servers["filesystem"]
    shared = shared_placeholders(tmp_path, config.config_dir)
    folders = {expand_server(fs, {**local_placeholders(), **user_placeholders(shared, u)}).args[0] for u in "ab"}
    assert fs.scope == "per_user"
    assert folders == {str(tmp_path / "users" / "a" / "files"), str(tmp_path / "users" / "b" / "files")}


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("npx", ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]),
        ("npx", ["-y", "@modelcontextprotocol/server-memory@2025.4.25"]),
        ("/opt/mcp/node_modules/.bin/mcp-server-filesystem", ["${USER_DIR}"]),
    ],
)
def test_a_pasted_stateful_server_runs_per_user_by_default(command, args):
    assert ServerConfig(command=command, args=args).scope == "per_user"


def test_a_pasted_memory_server_keeps_its_graph_in_the_users_folder():
    memory = ServerConfig(command="npx", args=["-y", "@modelcontextprotocol/server-memory"])
    assert memory.env == {"MEMORY_FILE_PATH": "${USER_DIR}/memory.jsonl"}


def test_an_explicit_scope_wins_over_the_package_default():
    assert (
        ServerConfig(command="npx", args=["@modelcontextprotocol/server-filesystem", "/srv"], scope="shared").scope
        == "shared"
    )


@pytest.mark.parametrize(("command", "args"), [("uvx", ["mcp-server-git"]), ("python", ["-m", "mcp_server_git"])])
def test_a_pasted_git_server_allows_only_read_tools_by_default(command, args):
    assert ServerConfig(command=command, args=args).tools_allowed == GIT_READ_TOOLS


def test_other_servers_stay_shared_with_every_tool():
    server = ServerConfig(command="uvx", args=["mcp-server-time"])
    assert (server.scope, server.tools_allowed) == ("shared", None)


def test_user_dir_in_a_shared_server_is_rejected_at_load():
    with pytest.raises(ValidationError, match="USER_DIR"):
        MCPConfig.model_validate({"mcpServers": {"t": {"command": "x", "args": ["${USER_DIR}"]}}})


def test_a_desktop_client_file_loads_with_sutazai_defaults(tmp_path):
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {"t": {"command": "uvx", "args": ["mcp-server-time"], "env": {"A": "1"}}},
                "globalShortcut": "",
            }
        )
    )
    server = load_config(path).mcp_servers["t"]
    assert (server.command, server.args, server.env) == ("uvx", ["mcp-server-time"], {"A": "1"})
    assert server.roles == ["admin", "user"] and server.enabled and server.max_concurrent_calls >= 1


def test_a_missing_file_means_no_servers(tmp_path):
    assert load_config(tmp_path / "absent.json").mcp_servers == {}


def test_a_misspelled_option_is_rejected():
    with pytest.raises(ValidationError, match="call_timeout"):
        MCPConfig.model_validate({"mcpServers": {"t": {"command": "x", "call_timeout": 3}}})


def test_an_unknown_placeholder_is_rejected_at_load():
    with pytest.raises(ValidationError, match="NOT_A_PLACEHOLDER_OR_ENV_VAR"):
        MCPConfig.model_validate({"mcpServers": {"t": {"command": "${NOT_A_PLACEHOLDER_OR_ENV_VAR}"}}})


def test_placeholders_scope_the_filesystem_server_to_the_users_folder(tmp_path):
    config = load_config(DEFAULT_FILE)
    values = {**local_placeholders(), **user_placeholders(shared_placeholders(tmp_path, config.config_dir), "u1")}
    fs = expand_server(config.mcp_servers["filesystem"], values)
    assert fs.args == [str(tmp_path / "users" / "u1" / "files")]
    assert fs.ensure_dirs == [str(tmp_path / "users" / "u1" / "files")]
    assert fs.cwd == str(tmp_path / "users" / "u1")
    assert fs.command == str(DEFAULT_FILE.parent / "node_modules" / ".bin" / "mcp-server-filesystem")


async def test_every_server_of_the_shipped_file_starts_and_lists_its_tools(tmp_path):
    """The default config is runnable on this machine: each server initializes over stdio."""
    config = load_config(DEFAULT_FILE)
    values = {**local_placeholders(), **user_placeholders(shared_placeholders(tmp_path, config.config_dir), "u1")}
    expected = {"time": "get_current_time", "git": "git_status", "filesystem": "write_file"}
    for name, server in config.enabled().items():
        server = expand_server(server, values)
        for folder in [server.cwd or tmp_path, *server.ensure_dirs]:
            Path(folder).mkdir(parents=True, exist_ok=True)
        if server.prepare is not None:
            await run_prepare(server.prepare)
        params = StdioServerParameters(command=server.command, args=server.args, env=server.env, cwd=server.cwd)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
        assert expected[name] in tools, name
