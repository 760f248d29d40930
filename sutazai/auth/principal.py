"""Who is calling, what they may do, and which rate limits apply to them.

A principal comes from an access JWT or an API key (`sutazai.auth.authenticate`).
admin > user > viewer; an API key must also carry the scope of the level it acts
at, so a key can only narrow what its owner's role allows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from sutazai.auth.rate_limit import Limit
from sutazai.auth.roles import ROLE_FOR_SCOPE, SCOPE_FOR_ROLE, VIEWER, Role, at_least, rank
from sutazai.settings import Settings

AuthMethod = Literal["jwt", "api_key"]
JWT: AuthMethod = "jwt"
API_KEY: AuthMethod = "api_key"


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    username: str
    role: Role
    auth_method: AuthMethod
    scopes: tuple[str, ...]
    key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None  # the refresh-token family of a JWT
    key_requests_per_minute: int | None = field(default=None, repr=False)
    key_tokens_per_minute: int | None = field(default=None, repr=False)

    def denial(self, required: str) -> str | None:
        """Why this principal may not act at the `required` role level, or None if it may."""
        if at_least(self.effective_role, required):
            return None
        if not at_least(self.role, required):
            return f"requires role {required} (you are {self.role})"
        return f"this API key lacks the {SCOPE_FOR_ROLE[required]!r} scope"

    @property
    def effective_role(self) -> Role:
        """The role this credential acts with: the user's role, lowered to the highest scope
        of an API key (an admin's read/write key acts as a user)."""
        granted = [ROLE_FOR_SCOPE[s] for s in self.scopes if s in ROLE_FOR_SCOPE]
        best = max(granted, key=rank, default=VIEWER)
        return self.role if rank(self.role) <= rank(best) else best

    def owns(self, owner_id: uuid.UUID | None) -> bool:
        """Resource ownership: only the owner sees its conversations, tasks, documents, keys."""
        return owner_id is not None and owner_id == self.user_id

    def request_limits(self, settings: Settings) -> list[Limit]:
        """Requests per minute: the role's limit on the user, and a key's own limit on the key."""
        return self._limits(settings.rate_limit_requests_per_minute, self.key_requests_per_minute)

    def token_limits(self, settings: Settings) -> list[Limit]:
        """LLM tokens per minute, bucketed like requests."""
        return self._limits(settings.rate_limit_tokens_per_minute, self.key_tokens_per_minute)

    def _limits(self, per_role: dict[str, int], per_key: int | None) -> list[Limit]:
        # Every key of a user shares the user's bucket, so several keys never multiply the allowance.
        limits = []
        role_limit = per_role.get(self.role)  # a role missing from the settings is not limited
        if role_limit is not None:
            limits.append(Limit(f"user:{self.user_id}", role_limit))
        if self.key_id is not None and per_key is not None:
            limits.append(Limit(f"key:{self.key_id}", per_key))
        return limits
