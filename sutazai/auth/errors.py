"""The auth-specific client errors, in the project's one error shape.

401 always carries `WWW-Authenticate: Bearer` (RFC 6750) so clients know to
(re)authenticate; 403 means authenticated but not allowed.
"""

from __future__ import annotations

from sutazai.errors import APIError


def unauthorized(message: str = "authentication required", *, code: str = "unauthorized", error: str | None = None) -> APIError:
    challenge = 'Bearer realm="sutazai"'
    if error:
        challenge += f', error="{error}"'
    return APIError(401, code, message, headers={"WWW-Authenticate": challenge})


def invalid_token(message: str = "invalid token") -> APIError:
    return unauthorized(message, code="invalid_token", error="invalid_token")


def forbidden(message: str) -> APIError:
    return APIError(403, "forbidden", message)
