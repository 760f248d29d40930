"""Stored conversations: list, read, delete (only the owner's)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from sutazai.api.deps import PageDep, ServicesDep, UserDep, ViewerDep
from sutazai.errors import NotFound
from sutazai.schemas.api import ConversationDetail
from sutazai.schemas.common import Page
from sutazai.storage.conversations import Conversation

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


@router.get("", response_model=Page[Conversation])
async def list_conversations(caller: ViewerDep, services: ServicesDep, page: PageDep) -> Page[Conversation]:
    items, total = await services.conversations.page(caller.user_id, limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(
    conversation_id: uuid.UUID, caller: ViewerDep, services: ServicesDep, page: PageDep
) -> ConversationDetail:
    """The conversation with one page of its messages (oldest first; `message_count` has them all)."""
    conversation = await services.conversations.get(conversation_id, caller.user_id)
    if conversation is None:
        raise NotFound.of("conversation")
    messages = await services.conversations.messages(conversation_id, limit=page.limit, offset=page.offset)
    return ConversationDetail(**conversation.model_dump(), messages=messages)


@router.delete("/{conversation_id}", status_code=204, response_class=Response)
async def delete_conversation(conversation_id: uuid.UUID, caller: UserDep, services: ServicesDep) -> Response:
    if not await services.conversations.delete(conversation_id, caller.user_id):
        raise NotFound.of("conversation")
    return Response(status_code=204)
