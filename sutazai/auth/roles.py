"""Roles, their order, and the API-key scopes that mirror them.

admin > user > viewer. A route declares the least role it needs; a higher role
passes too. Viewers are read-only: routes that change anything need "user".
API keys carry scopes that can only narrow what the owner's role allows:
"read" acts like viewer, "write" like user, "admin" like admin; like roles,
a higher scope includes the lower ones ("write" can also read).
"""

from __future__ import annotations

from typing import Literal

Role = Literal["admin", "user", "viewer"]
Scope = Literal["read", "write", "admin"]

ADMIN: Role = "admin"
USER: Role = "user"
VIEWER: Role = "viewer"
ROLES = (ADMIN, USER, VIEWER)
_RANK: dict[str, int] = {VIEWER: 0, USER: 1, ADMIN: 2}

# The scope an API key needs to act at a given role level.
SCOPE_FOR_ROLE: dict[str, str] = {VIEWER: "read", USER: "write", ADMIN: "admin"}
ROLE_FOR_SCOPE: dict[str, Role] = {"read": VIEWER, "write": USER, "admin": ADMIN}
SCOPES = ("read", "write", "admin")
DEFAULT_KEY_SCOPES = ("read", "write")  # "admin" must be asked for explicitly


def rank(role: str) -> int:
    return _RANK[role]


def at_least(role: str, required: str) -> bool:
    return _RANK[role] >= _RANK[required]


def scopes_allowed_for(role: str) -> tuple[str, ...]:
    """The scopes a user of this role may put on their own keys."""
    return tuple(SCOPE_FOR_ROLE[r] for r in ROLES if at_least(role, r))
