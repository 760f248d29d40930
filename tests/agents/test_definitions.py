"""Agent definitions from Markdown files with YAML front matter (pure: no database, no Ray)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sutazai.agents.definitions import check_tools, load_agent_files
from sutazai.errors import InvalidInput
from sutazai.mcp.config import MCPConfig, load_config
from sutazai.schemas.agents import AgentDefinition
from sutazai.settings import PROJECT_ROOT

MCP = MCPConfig.model_validate(
    {
        "mcpServers": {
            "time": {"command": "python", "args": ["-m", "mcp_server_time"]},
            "git": {"command": "python", "args": ["-m", "mcp_server_git"]},  # read-only tools_allowed by default
            "off": {"command": "python", "args": ["-m", "off"], "enabled": False},
        }
    }
)
MODELS = {"gemma3-270m"}


def write(folder: Path, name: str, front: str, body: str = "Answer briefly.") -> Path:
    path = folder / name
    path.write_text(f"---\n{front.strip()}\n---\n{body}\n")
    return path


def load_one(folder: Path, front: str, body: str = "Answer briefly.", mcp: MCPConfig | None = MCP):
    write(folder, "agent.md", front, body)
    loaded, errors = load_agent_files(folder, mcp, MODELS)
    return (loaded[0].definition if loaded else None), [e.message for e in errors]


def test_a_claude_code_subagent_file_with_unknown_keys_loads(tmp_path):
    front = """
name: timekeeper
description: Tells the time. Use PROACTIVELY when asked about time.
tools: time/get_current_time
model: inherit
color: blue
permissionMode: default
max_steps: 3
timeout_s: 30
temperature: 0.3
max_tokens: 100
"""
    definition, errors = load_one(tmp_path, front, "You tell the time.\n\nCall the tool.")
    assert errors == []
    assert definition == AgentDefinition(
        name="timekeeper",
        description="Tells the time. Use PROACTIVELY when asked about time.",
        system_prompt="You tell the time.\n\nCall the tool.",
        model=None,
        tools=["time/get_current_time"],
        max_steps=3,
        timeout_s=30,
        sampling={"temperature": 0.3, "max_tokens": 100},
    )


def test_tools_as_a_comma_separated_string_and_as_a_list_are_the_same(tmp_path):
    a, _ = load_one(tmp_path, "description: d\ntools: time/get_current_time, time/convert_time")
    b, _ = load_one(tmp_path, "description: d\ntools:\n  - time/get_current_time\n  - time/convert_time")
    assert a is not None and b is not None
    assert a.tools == b.tools == ["time/get_current_time", "time/convert_time"]


def test_no_tools_key_means_no_tools(tmp_path):
    definition, errors = load_one(tmp_path, "description: d", mcp=None)
    assert errors == [] and definition is not None and definition.tools == []


def test_claude_tool_names_are_a_load_error_naming_them(tmp_path):
    definition, errors = load_one(tmp_path, "description: d\ntools: Read, Grep, time/*")
    assert definition is None
    assert errors == ["tools name no MCP tool: Read, Grep (use server/tool or server/*, servers: time, git)"]


def test_a_disabled_or_unknown_server_is_a_load_error(tmp_path):
    _, errors = load_one(tmp_path, "description: d\ntools: off/anything, nowhere/*")
    assert len(errors) == 1 and "off/anything, nowhere/*" in errors[0]


def test_tools_when_mcp_is_disabled_are_a_load_error(tmp_path):
    _, errors = load_one(tmp_path, "description: d\ntools: time/*", mcp=None)
    assert errors == ["tools need MCP, but MCP is disabled: time/*"]


def test_tools_allowed_of_the_server_is_honoured(tmp_path):
    ok, _ = load_one(tmp_path, "description: d\ntools: git/git_log, git/*")
    _, errors = load_one(tmp_path, "description: d\ntools: git/git_log, git/git_commit")
    assert ok is not None and ok.tools == ["git/git_log", "git/*"]
    assert len(errors) == 1 and "git/git_commit" in errors[0] and "git/git_log," not in errors[0]


def test_a_model_the_catalog_does_not_serve_means_the_default_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sutazai.agents"):
        definition, errors = load_one(tmp_path, "description: d\nmodel: sonnet")
    assert errors == [] and definition is not None and definition.model is None
    assert "sonnet" in caplog.text


def test_a_served_model_is_kept(tmp_path):
    definition, _ = load_one(tmp_path, "description: d\nmodel: gemma3-270m")
    assert definition is not None and definition.model == "gemma3-270m"


def test_a_missing_name_is_the_file_stem(tmp_path):
    write(tmp_path, "code-reviewer.md", "description: d")
    loaded, errors = load_agent_files(tmp_path, MCP, MODELS)
    assert errors == [] and loaded[0].definition.name == "code-reviewer"
    assert loaded[0].path == tmp_path / "code-reviewer.md"


def test_a_sampling_mapping_is_read(tmp_path):
    definition, _ = load_one(tmp_path, "description: d\nsampling:\n  top_p: 0.9\n  temperature: 0.5")
    assert definition is not None and definition.sampling.top_p == 0.9 and definition.sampling.temperature == 0.5


def test_invalid_yaml_is_a_load_error_for_that_file_only(tmp_path):
    bad = write(tmp_path, "bad.md", "description: [unclosed")
    write(tmp_path, "good.md", "description: fine")
    loaded, errors = load_agent_files(tmp_path, MCP, MODELS)
    assert [a.definition.name for a in loaded] == ["good"]
    assert len(errors) == 1 and errors[0].path == bad and "invalid YAML" in errors[0].message
    assert str(bad) in str(errors[0])


def test_a_bad_value_is_a_load_error_naming_the_field(tmp_path):
    _, errors = load_one(tmp_path, "description: d\nmax_steps: 1000")
    assert len(errors) == 1 and errors[0].startswith("max_steps:")


def test_a_missing_description_is_a_load_error_naming_the_field(tmp_path):
    _, errors = load_one(tmp_path, "name: x")
    assert len(errors) == 1 and errors[0].startswith("description:")


def test_a_file_without_front_matter_is_a_load_error(tmp_path):
    (tmp_path / "plain.md").write_text("# Just Markdown\n")
    _, errors = load_agent_files(tmp_path, MCP, MODELS)
    assert len(errors) == 1 and "front matter" in errors[0].message


def test_a_duplicate_name_is_a_load_error_for_the_later_file(tmp_path):
    write(tmp_path, "a.md", "name: same\ndescription: first")
    later = write(tmp_path, "b.md", "name: same\ndescription: second")
    loaded, errors = load_agent_files(tmp_path, MCP, MODELS)
    assert [a.definition.description for a in loaded] == ["first"]
    assert [e.path for e in errors] == [later] and "a.md" in errors[0].message


def test_a_missing_folder_has_no_agents(tmp_path):
    assert load_agent_files(tmp_path / "none", MCP, MODELS) == ([], [])


def test_check_tools_raises_invalid_input_with_the_same_message():
    definition = AgentDefinition(name="x", description="d", system_prompt="p", tools=["time/*", "files/read"])
    with pytest.raises(InvalidInput, match=r"tools name no MCP tool: files/read \(use server/tool or server/\*"):
        check_tools(definition, MCP)
    check_tools(definition.model_copy(update={"tools": ["time/*"]}), MCP)


def test_the_shipped_agents_all_load_against_the_shipped_mcp_servers():
    mcp = load_config(PROJECT_ROOT / "cluster" / "mcp" / "servers.json")
    loaded, errors = load_agent_files(PROJECT_ROOT / "cluster" / "agents", mcp, MODELS)
    assert [str(e) for e in errors] == []
    by_name = {a.definition.name: a.definition for a in loaded}
    assert set(by_name) == {"assistant", "files-researcher", "repo-inspector", "documents-researcher"}
    assert by_name["documents-researcher"].tools == ["documents/search"]
    assert by_name["assistant"].tools == ["time/*"]
    assert by_name["repo-inspector"].tools == ["git/*"]
    assert all(t.startswith("filesystem/") and "write" not in t for t in by_name["files-researcher"].tools)
