"""User administration (admin): create, list, change role, disable, reset a password."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from sutazai.api.deps import AdminDep, AuditDep, PageDep, ServicesDep
from sutazai.auth import accounts, passwords
from sutazai.errors import InvalidInput, NotFound
from sutazai.schemas.auth import CreateUserRequest, UpdateUserRequest
from sutazai.schemas.common import Page
from sutazai.storage.users import User

router = APIRouter(prefix="/api/v1/users", tags=["admin"])


@router.post("", response_model=User, status_code=201, summary="Create a user")
async def create_user(body: CreateUserRequest, caller: AdminDep, services: ServicesDep, audit: AuditDep) -> User:
    user = await accounts.create_user(services.users, body.username, body.password.get_secret_value(), body.role)
    await audit.record("user.create", target=str(user.id), details={"username": user.username, "role": user.role})
    return user


@router.get("", response_model=Page[User], summary="List users")
async def list_users(caller: AdminDep, services: ServicesDep, page: PageDep) -> Page[User]:
    items, total = await services.users.page(limit=page.limit, offset=page.offset)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.patch("/{user_id}", response_model=User, summary="Change role, disable/enable, reset password")
async def update_user(
    user_id: uuid.UUID, body: UpdateUserRequest, caller: AdminDep, services: ServicesDep, audit: AuditDep
) -> User:
    if body.role is None and body.disabled is None and body.password is None:
        raise InvalidInput("nothing to change: give role, disabled and/or password")
    password_hash = None
    if body.password is not None:
        password = body.password.get_secret_value()
        passwords.check_policy(password)
        password_hash = await passwords.hash_password_async(password)
    changed = await services.users.update(user_id, role=body.role, disabled=body.disabled, password_hash=password_hash)
    if changed is None:
        raise NotFound.of("user")
    before, after = changed
    if after.disabled or password_hash is not None:
        await services.sessions.revoke_user(user_id)  # end their sessions now
    target = str(user_id)
    if before.role != after.role:
        details = {"username": after.username, "from": before.role, "to": after.role}
        await audit.record("user.role_change", target=target, details=details)
    if before.disabled != after.disabled:
        action = "user.disable" if after.disabled else "user.enable"
        await audit.record(action, target=target, details={"username": after.username})
    if password_hash is not None:
        await audit.record("user.password_reset", target=target, details={"username": after.username})
    return after
