"""Request and response models of the auth routes: sessions, API keys, users, audit log.

Passwords arrive as `SecretStr` so they never show up in a repr, a log line or an error.
Responses reuse the stored records (`sutazai.storage`): a user, a key, an audit entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sutazai.auth import passwords
from sutazai.auth.accounts import USERNAME_PATTERN
from sutazai.auth.roles import Role, Scope
from sutazai.schemas.common import INT32_MAX, SecretText, Text
from sutazai.storage.api_keys import ApiKey


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- sessions ----------------------------------------------------------------------------


class LoginRequest(_In):
    username: Text = Field(min_length=1, max_length=64)
    password: SecretText = Field(max_length=passwords.MAX_LENGTH)


class RefreshRequest(_In):
    refresh_token: Text = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_expires_in: int


class Me(BaseModel):
    id: uuid.UUID
    username: str
    role: Role
    auth_method: Literal["jwt", "api_key"]
    scopes: list[str]
    key_id: uuid.UUID | None = None


# -- API keys ----------------------------------------------------------------------------


class CreateKeyRequest(_In):
    name: Text = Field(min_length=1, max_length=100)
    scopes: list[Scope] | None = Field(default=None, description='default ["read", "write"] within your role')
    expires_at: datetime | None = None
    requests_per_minute: int | None = Field(
        default=None, gt=0, le=INT32_MAX, description="narrows your role's limit for this key"
    )
    tokens_per_minute: int | None = Field(default=None, gt=0, le=INT32_MAX)


class CreatedKey(ApiKey):
    key: str = Field(description="the API key itself: shown this once, store it now")


# -- users -------------------------------------------------------------------------------


class CreateUserRequest(_In):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: SecretText = Field(max_length=passwords.MAX_LENGTH)
    role: Role = "user"


class UpdateUserRequest(_In):
    role: Role | None = None
    disabled: bool | None = None
    password: SecretText | None = Field(default=None, max_length=passwords.MAX_LENGTH)
