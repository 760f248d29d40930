"""The servers file: desktop-client shape, SutazAI defaults, placeholders; the shipped file's servers run here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from pydantic import ValidationError

from sutazai.mcp.config import MCPConfig, expand_server, load_config, local_placeholders, shared_placeholders
from sutazai.settings import PROJECT_ROOT, Settings

DEFAULT_FILE = PROJECT_ROOT / "cluster" / "mcp" / "servers.json"


def test_the_shipped_file_configures_time_git_and_filesystem():
    config = load_config(Settings().mcp_config)
    assert set(config.enabled()) == {"time", "git", "filesystem"}
    assert config.mcp_servers["git"].roles == ["admin"]


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


def test_placeholders_scope_the_filesystem_server_to_the_data_folder(tmp_path):
    config = load_config(DEFAULT_FILE)
    values = {**local_placeholders(), **shared_placeholders(tmp_path, config.config_dir)}
    fs = expand_server(config.mcp_servers["filesystem"], values)
    assert fs.args == [str(tmp_path / "files")]
    assert fs.ensure_dirs == [str(tmp_path / "files")]
    assert fs.command == str(DEFAULT_FILE.parent / "node_modules" / ".bin" / "mcp-server-filesystem")


async def test_every_server_of_the_shipped_file_starts_and_lists_its_tools(tmp_path):
    """The default config is runnable on this machine: each server initializes over stdio."""
    config = load_config(DEFAULT_FILE)
    values = {**local_placeholders(), **shared_placeholders(tmp_path, config.config_dir)}
    expected = {"time": "get_current_time", "git": "git_status", "filesystem": "write_file"}
    for name, server in config.enabled().items():
        server = expand_server(server, values)
        for folder in server.ensure_dirs:
            Path(folder).mkdir(parents=True, exist_ok=True)
        params = StdioServerParameters(command=server.command, args=server.args, env=server.env, cwd=server.cwd)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
        assert expected[name] in tools, name
