"""What can go wrong for a caller, as exceptions of the domain (no HTTP here).

Stores, auth, inference and the MCP gateway raise these; `sutazai.api.errors`
maps each class to an HTTP status and the one JSON error shape in one place.
Each class has a stable `code` that clients can match on; an instance may narrow
it (e.g. `InvalidInput(..., code="invalid_scope")`).
"""

from __future__ import annotations

from typing import Any


class SutazaiError(Exception):
    """Base of every error meant for the caller."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.details = details


class BadRequest(SutazaiError):
    """The request cannot be served as asked (e.g. a prompt longer than the model's context)."""


class InvalidInput(SutazaiError):
    code = "validation_error"


class WeakPassword(InvalidInput):
    code = "weak_password"


class InvalidUsername(InvalidInput):
    code = "invalid_username"


class InvalidRole(InvalidInput):
    code = "invalid_role"


class InvalidScope(InvalidInput):
    code = "invalid_scope"


class UnsupportedMedia(SutazaiError):
    """A file of a type the server cannot read (415)."""

    code = "unsupported_media_type"


class PayloadTooLarge(SutazaiError):
    """A body or file over its size limit (413)."""

    code = "payload_too_large"


class NotFound(SutazaiError):
    code = "not_found"

    @classmethod
    def of(cls, what: str) -> NotFound:
        return cls(f"{what} not found")


class Conflict(SutazaiError):
    code = "conflict"


class UsernameTaken(Conflict):
    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} is taken")


class LastAdmin(Conflict):
    code = "last_admin"

    def __init__(self) -> None:
        super().__init__("cannot demote or disable the last enabled admin")


class Unauthenticated(SutazaiError):
    """No usable credentials; `challenge_error` goes into the WWW-Authenticate header (RFC 6750)."""

    code = "unauthorized"
    challenge_error: str | None = None


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    challenge_error = "invalid_token"


class Forbidden(SutazaiError):
    code = "forbidden"


class RateLimited(SutazaiError):
    """Over a limit; `limit_headers` are the X-RateLimit-* (and Retry-After) values of the decision."""

    code = "rate_limited"

    def __init__(self, message: str, limit_headers: dict[str, str], *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.limit_headers = limit_headers


class Unavailable(SutazaiError):
    """A dependency is down, busy or restarting: try again after `retry_after_s`."""

    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
