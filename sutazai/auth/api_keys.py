"""API keys for programs: `Authorization: Bearer sk-...` (the OpenAI client's api_key).

A key is `sk-` + 32 random bytes (url-safe base64). It is shown once at creation;
only its SHA-256 is stored (a salt adds nothing for 256 random bits) plus a short
display prefix (`sutazai.storage.api_keys`). A request looks the key up by hash
(a replica caches the answer a few seconds, never past a revocation: see
`sutazai.auth.principal_cache`), so a revoked or expired key, or one whose owner
was disabled, is refused at once on every replica.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sutazai.auth.roles import DEFAULT_KEY_SCOPES, SCOPES, scopes_allowed_for
from sutazai.errors import Forbidden, InvalidScope

KEY_PREFIX = "sk-"
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8


def generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def check_scopes(role: str, scopes: Sequence[str] | None) -> tuple[str, ...]:
    """Scopes for a new key: default read+write (within the role); never beyond the role."""
    allowed = scopes_allowed_for(role)
    if scopes is None:
        return tuple(s for s in DEFAULT_KEY_SCOPES if s in allowed)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidScope(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
    beyond = [s for s in scopes if s not in allowed]
    if beyond:
        raise Forbidden(f"a {role} cannot create a key with scopes {beyond}")
    if not scopes:
        raise InvalidScope("a key needs at least one scope")
    return tuple(dict.fromkeys(scopes))
