"""SQL for the `conversations` and `messages` tables. Every conversation has an owner;
queries take the caller's user id, so one user never reads another's history."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from sutazai.errors import NotFound
from sutazai.schemas.engine import Role
from sutazai.storage.records import Record


class StoredMessage(Record):
    role: Role
    content: str
    tokens: int
    created_at: datetime


class Conversation(Record):
    id: uuid.UUID
    title: str
    model: str
    created_at: datetime
    updated_at: datetime
    message_count: int = 0


def _title_from(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_CONVERSATION_COLUMNS = """c.id, c.title, c.model, c.created_at, c.updated_at,
    (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"""


class ConversationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> Conversation | None:
        """The conversation if it belongs to `user_id` (someone else's is as good as missing)."""
        row = await self.pool.fetchrow(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1 AND c.user_id = $2",
            conversation_id,
            user_id,
        )
        return Conversation.from_row(row) if row else None

    async def page(self, user_id: uuid.UUID, *, limit: int, offset: int) -> tuple[list[Conversation], int]:
        rows = await self.pool.fetch(
            f"""SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE c.user_id = $1
                ORDER BY c.updated_at DESC, c.id LIMIT $2 OFFSET $3""",
            user_id,
            limit,
            offset,
        )
        total = await self.pool.fetchval("SELECT count(*) FROM conversations WHERE user_id = $1", user_id)
        return [Conversation.from_row(r) for r in rows], total

    async def recent_messages(self, conversation_id: uuid.UUID, limit: int) -> list[StoredMessage]:
        """The last `limit` messages, oldest first."""
        rows = await self.pool.fetch(
            """SELECT role, content, tokens, created_at FROM (
                   SELECT * FROM messages WHERE conversation_id = $1 ORDER BY id DESC LIMIT $2
               ) recent ORDER BY id""",
            conversation_id,
            limit,
        )
        return [StoredMessage.from_row(r) for r in rows]

    async def messages(self, conversation_id: uuid.UUID, *, limit: int, offset: int) -> list[StoredMessage]:
        """One page of the messages, oldest first."""
        rows = await self.pool.fetch(
            "SELECT role, content, tokens, created_at FROM messages WHERE conversation_id = $1 "
            "ORDER BY id LIMIT $2 OFFSET $3",
            conversation_id,
            limit,
            offset,
        )
        return [StoredMessage.from_row(r) for r in rows]

    async def append_turn(
        self,
        conversation_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        model: str,
        user_text: str,
        user_tokens: int,
        assistant_text: str,
        assistant_tokens: int,
        create: bool,
    ) -> None:
        """Store one user message and its answer atomically (creating the conversation if asked);
        `NotFound` when the conversation is gone or someone else's."""
        async with self.pool.acquire() as conn, conn.transaction():
            if create:
                await conn.execute(
                    "INSERT INTO conversations (id, title, model, user_id) VALUES ($1, $2, $3, $4)",
                    conversation_id,
                    _title_from(user_text),
                    model,
                    user_id,
                )
            else:
                updated = await conn.execute(
                    "UPDATE conversations SET updated_at = now(), model = $2 WHERE id = $1 AND user_id = $3",
                    conversation_id,
                    model,
                    user_id,
                )
                if updated == "UPDATE 0":
                    raise NotFound.of("conversation")
            await conn.executemany(
                "INSERT INTO messages (conversation_id, role, content, tokens) VALUES ($1, $2, $3, $4)",
                [
                    (conversation_id, "user", user_text, user_tokens),
                    (conversation_id, "assistant", assistant_text, assistant_tokens),
                ],
            )

    async def delete(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        result = await self.pool.execute(
            "DELETE FROM conversations WHERE id = $1 AND user_id = $2", conversation_id, user_id
        )
        return result != "DELETE 0"
