"""JSON Web Tokens: short-lived access tokens and rotating refresh tokens.

The algorithm is pinned: decoding passes `algorithms=[settings.jwt_algorithm]`,
so `alg: none`, a different algorithm, a wrong key, a missing claim, an expired
or not-yet-valid token, or a token of the other type all end in the same 401.
Only HMAC algorithms are supported (one shared secret from settings).

Claims: sub (user id), role, type ("access" | "refresh"), jti (token id),
fam (refresh-token family = login session), iss, aud, iat, nbf, exp.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from sutazai.auth.roles import ROLES
from sutazai.auth.secret import SecretConfigError
from sutazai.errors import InvalidToken
from sutazai.settings import Settings

ACCESS = "access"
REFRESH = "refresh"
ISSUER = "sutazai"
AUDIENCE = "sutazai-api"  # a token of another service with the same secret is not ours
SUPPORTED_ALGORITHMS = ("HS256", "HS384", "HS512")
REQUIRED_CLAIMS = ["sub", "role", "type", "jti", "fam", "iss", "aud", "iat", "nbf", "exp"]


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    role: str
    type: str
    jti: uuid.UUID
    family_id: uuid.UUID
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: TokenClaims


class TokenSigner:
    """Signs and verifies this deployment's tokens with one secret and one algorithm."""

    def __init__(
        self,
        secret: str,
        *,
        algorithm: str = "HS256",
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 14 * 24 * 3600,
        leeway_s: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise SecretConfigError(
                f"SUTAZAI_JWT_ALGORITHM must be one of {', '.join(SUPPORTED_ALGORITHMS)}, not {algorithm!r}"
            )
        self._secret = secret
        self.algorithm = algorithm
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.leeway_s = leeway_s  # tolerated clock skew between replicas
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, secret: str) -> TokenSigner:
        return cls(
            secret,
            algorithm=settings.jwt_algorithm,
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
        )

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        role: str,
        token_type: str,
        family_id: uuid.UUID,
        jti: uuid.UUID | None = None,
    ) -> IssuedToken:
        now = int(self._clock())
        ttl = self.access_ttl_s if token_type == ACCESS else self.refresh_ttl_s
        claims = TokenClaims(
            user_id=user_id,
            role=role,
            type=token_type,
            jti=jti or uuid.uuid4(),
            family_id=family_id,
            issued_at=now,
            expires_at=now + ttl,
        )
        payload = {
            "sub": str(claims.user_id),
            "role": role,
            "type": token_type,
            "jti": str(claims.jti),
            "fam": str(family_id),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
        }
        return IssuedToken(jwt.encode(payload, self._secret, algorithm=self.algorithm), claims)

    def decode(self, token: str, expected_type: str) -> TokenClaims:
        """Verify signature, algorithm, time claims and type; any failure is `InvalidToken`."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                issuer=ISSUER,
                audience=AUDIENCE,
                leeway=self.leeway_s,
                options={"require": REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("token not yet valid") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        if payload.get("type") != expected_type:
            raise InvalidToken(
                f"not an {expected_type} token" if expected_type == ACCESS else f"not a {expected_type} token"
            )
        if payload.get("role") not in ROLES:
            raise InvalidToken("invalid token")
        try:
            return TokenClaims(
                user_id=uuid.UUID(payload["sub"]),
                role=payload["role"],
                type=payload["type"],
                jti=uuid.UUID(payload["jti"]),
                family_id=uuid.UUID(payload["fam"]),
                issued_at=int(payload["iat"]),
                expires_at=int(payload["exp"]),
            )
        except (ValueError, TypeError, AttributeError):
            raise InvalidToken("invalid token") from None
