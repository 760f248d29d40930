"""The `agents` table through AgentStore, on the real Postgres (a fresh database per test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sutazai.agents.definitions import LoadedAgent
from sutazai.errors import Conflict, NotFound
from sutazai.schemas.agents import AgentDefinition
from sutazai.storage.agents import AgentStore
from sutazai.storage.db import create_pool
from tests.helpers import fresh_database


@pytest.fixture
async def store():
    async with fresh_database("sutazai_agents_test") as url:
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            yield AgentStore(pool)
        finally:
            await pool.close()


def definition(name: str, description: str = "does things", **values) -> AgentDefinition:
    return AgentDefinition(name=name, description=description, system_prompt=f"You are {name}.", **values)


def from_file(name: str, **values) -> LoadedAgent:
    return LoadedAgent(definition(name, **values), Path(f"/agents/{name}.md"))


async def test_sync_inserts_file_agents_with_their_definition_and_path(store):
    sampled = from_file("a", tools=["time/*"], model="m", sampling={"temperature": 0.5}, max_steps=3)
    report = await store.sync_files([sampled, from_file("b")])
    assert report.created == ["a", "b"]
    stored = await store.get("a")
    assert stored is not None and stored.source == "file" and stored.path == "/agents/a.md"
    assert stored.definition() == sampled.definition


async def test_sync_updates_changed_agents_and_leaves_unchanged_ones(store):
    await store.sync_files([from_file("a"), from_file("b")])
    report = await store.sync_files([from_file("a", description="new"), from_file("b")])
    assert report.updated == ["a"] and report.unchanged == ["b"] and report.created == []
    stored = await store.get("a")
    assert stored is not None and stored.description == "new"


async def test_sync_deletes_file_agents_whose_file_is_gone_but_not_api_agents(store):
    await store.sync_files([from_file("a"), from_file("b")])
    await store.create(definition("made"))
    report = await store.sync_files([from_file("a")])
    assert report.deleted == ["b"]
    assert await store.get("b") is None and await store.get("made") is not None


async def test_sync_never_overwrites_an_api_agent_and_reports_a_conflict(store):
    await store.create(definition("same", description="from the API"))
    report = await store.sync_files([from_file("same", description="from a file")])
    assert report.conflicts == ["same"] and report.created == report.updated == []
    stored = await store.get("same")
    assert stored is not None and stored.source == "api" and stored.description == "from the API"


async def test_concurrent_syncs_of_the_same_files_both_succeed(store):
    files = [from_file(n) for n in ("a", "b", "c")]
    reports = await asyncio.gather(store.sync_files(files), store.sync_files(files))
    assert sorted(len(r.created) for r in reports) == [0, 3]
    assert (await store.page(limit=10, offset=0))[1] == 3


async def test_page_filters_by_a_case_insensitive_part_of_name_or_description_and_by_source(store):
    await store.sync_files([from_file("alpha", description="Reads FILES"), from_file("beta")])
    await store.create(definition("gamma", description="made here"))
    assert [a.name for a in (await store.page(limit=10, offset=0))[0]] == ["alpha", "beta", "gamma"]
    items, total = await store.page(limit=10, offset=0, q="files")
    assert [a.name for a in items] == ["alpha"] and total == 1
    items, total = await store.page(limit=10, offset=0, q="ET")
    assert [a.name for a in items] == ["beta"] and total == 1
    items, total = await store.page(limit=10, offset=0, source="api")
    assert [a.name for a in items] == ["gamma"] and total == 1
    items, total = await store.page(limit=1, offset=1)
    assert [a.name for a in items] == ["beta"] and total == 3


async def test_page_treats_like_wildcards_in_q_as_text(store):
    await store.create(definition("plain", description="nothing special"))
    assert await store.page(limit=10, offset=0, q="%") == ([], 0)


async def test_create_of_a_taken_name_is_a_conflict(store):
    await store.sync_files([from_file("taken")])
    with pytest.raises(Conflict):
        await store.create(definition("taken"))


async def test_replace_changes_an_api_agent(store):
    created = await store.create(definition("made"))
    replaced = await store.replace("made", definition("made", description="changed", tools=["git/*"]))
    assert replaced.description == "changed" and replaced.tools == ["git/*"] and replaced.source == "api"
    assert replaced.created_at == created.created_at and replaced.updated_at >= created.updated_at


async def test_replace_or_delete_of_a_missing_agent_is_not_found(store):
    with pytest.raises(NotFound):
        await store.replace("ghost", definition("ghost"))
    with pytest.raises(NotFound):
        await store.delete("ghost")


async def test_replace_of_a_file_agent_is_a_conflict_naming_the_file(store):
    await store.sync_files([from_file("filed")])
    with pytest.raises(Conflict, match=r"defined in /agents/filed.md; edit the file"):
        await store.replace("filed", definition("filed", description="changed"))


async def test_delete_of_a_file_agent_is_a_conflict(store):
    await store.sync_files([from_file("filed")])
    with pytest.raises(Conflict, match="edit the file"):
        await store.delete("filed")
    assert await store.get("filed") is not None


async def test_delete_removes_an_api_agent(store):
    await store.create(definition("made"))
    await store.delete("made")
    assert await store.get("made") is None


async def test_sync_keeps_a_file_agent_whose_file_exists_but_failed_to_load(store, tmp_path):
    path = tmp_path / "flaky.md"
    path.write_text("---\nname: flaky\n---\n")
    await store.sync_files([LoadedAgent(definition("flaky"), path)])
    report = await store.sync_files([])  # this time its file did not load (MCP down, a typo)
    assert report.deleted == [] and await store.get("flaky") is not None
