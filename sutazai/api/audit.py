"""The audit log (admin), newest first."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from sutazai.api.deps import AdminDep, PageDep, ServicesDep
from sutazai.schemas.common import Page, Text
from sutazai.storage.audit import AuditEntry

router = APIRouter(prefix="/api/v1/audit", tags=["admin"])


@router.get("", response_model=Page[AuditEntry], summary="The audit log, newest first")
async def list_audit(
    caller: AdminDep,
    services: ServicesDep,
    page: PageDep,
    action: Annotated[
        Text | None, Query(max_length=100, description="only this action, e.g. auth.login_failed")
    ] = None,
    actor_id: uuid.UUID | None = None,
) -> Page[AuditEntry]:
    items, total = await services.audit.page(limit=page.limit, offset=page.offset, action=action, actor_id=actor_id)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
