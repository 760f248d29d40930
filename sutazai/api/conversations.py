"""Stored conversations: list, read, delete."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Response

from sutazai.api.deps import get_services
from sutazai.auth.principal import Principal, require_user, require_viewer
from sutazai.errors import not_found
from sutazai.schemas.api import ConversationDetail, ConversationList, ConversationSummary, StoredMessageOut
from sutazai.services import Services

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


def _summary(c) -> dict:
    return dict(id=c.id, title=c.title, model=c.model, message_count=c.message_count,
                created_at=c.created_at, updated_at=c.updated_at)


@router.get("", response_model=ConversationList)
async def list_conversations(limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
                             services: Services = Depends(get_services), caller: Principal = Depends(require_viewer)):
    items, total = await services.conversations.list(caller.user_id, limit=limit, offset=offset)
    return ConversationList(conversations=[ConversationSummary(**_summary(c)) for c in items],
                            total=total, limit=limit, offset=offset)


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(conversation_id: uuid.UUID, services: Services = Depends(get_services),
                           caller: Principal = Depends(require_viewer)):
    conversation = await services.conversations.get(conversation_id, caller.user_id)
    if conversation is None:
        raise not_found("conversation")
    messages = await services.conversations.messages(conversation_id)
    return ConversationDetail(**_summary(conversation),
                              messages=[StoredMessageOut(role=m.role, content=m.content, tokens=m.tokens,
                                                         created_at=m.created_at) for m in messages])


@router.delete("/{conversation_id}", status_code=204, response_class=Response)
async def delete_conversation(conversation_id: uuid.UUID, services: Services = Depends(get_services),
                              caller: Principal = Depends(require_user)):
    if not await services.conversations.delete(conversation_id, caller.user_id):
        raise not_found("conversation")
    return Response(status_code=204)
