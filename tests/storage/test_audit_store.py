"""The audit log through AuditStore, on the real Postgres."""

from __future__ import annotations

import uuid

import pytest

from sutazai.storage.audit import AuditStore
from sutazai.storage.db import create_pool
from tests.helpers import fresh_database


@pytest.fixture
async def audit():
    async with fresh_database("sutazai_audit_test") as url:
        pool = await create_pool(url, min_size=1, max_size=1)  # one connection: the next query reuses it
        try:
            yield AuditStore(pool)
        finally:
            await pool.close()


async def test_an_entry_is_stored_scrubbed_and_readable_at_once(audit):
    request_id = uuid.uuid4().hex
    await audit.record("mcp.execute", target="time/now", details={"password": "x", "n": 1}, request_id=request_id)
    items, total = await audit.page(limit=10, offset=0, action="mcp.execute")
    assert total == 1 and items[0].request_id == request_id and items[0].details == {"n": 1}


async def test_the_asynchronous_commit_is_for_the_entry_alone(audit):
    await audit.record("auth.login")
    # the connection goes back to the pool with the server's own setting: other writes stay durable
    assert await audit.pool.fetchval("SHOW synchronous_commit") == "on"


async def test_entries_recorded_soon_are_all_written_in_order_once_drained(audit):
    for i in range(25):
        audit.record_soon("mcp.execute", target=f"time/{i}", details={"secret": "x", "i": i})
    await audit.drain()
    items, total = await audit.page(limit=50, offset=0, action="mcp.execute")
    assert total == 25
    assert [e.target for e in reversed(items)] == [f"time/{i}" for i in range(25)]
    assert all("secret" not in e.details for e in items)


async def test_an_entry_that_cannot_be_written_does_not_take_the_others_with_it(audit):
    audit.record_soon("auth.login", target="first")
    audit.record_soon("auth.login", target="ghost", actor_id=uuid.uuid4())  # no such user: the FK refuses it
    audit.record_soon("auth.login", target="last")
    await audit.drain()
    items, _ = await audit.page(limit=10, offset=0, action="auth.login")
    assert sorted(e.target for e in items) == ["first", "last"]
