"""From a bearer credential to a `Principal`: an access JWT or an API key (`sk-...`)."""

from __future__ import annotations

import asyncio

from sutazai.auth import api_keys
from sutazai.auth.principal import API_KEY, JWT, Principal
from sutazai.auth.principal_cache import PrincipalCache, credential_hash
from sutazai.auth.roles import scopes_allowed_for
from sutazai.auth.tokens import ACCESS, TokenSigner
from sutazai.errors import InvalidToken, Unauthenticated
from sutazai.storage.api_keys import ApiKeyStore
from sutazai.storage.refresh_tokens import RefreshTokenStore


class Authenticator:
    """Checks a credential against the signer and the database, so a revoked key, a
    logged-out session, a disabled user or a role change applies at once. A replica
    remembers resolved principals for a few seconds (`PrincipalCache`); every such change
    announces itself and drops them, so the cache never outlives a revocation.

    Concurrent requests with one unknown credential share one lookup (a burst from one key on a
    replica that has not seen it yet costs one query, not one per request, and does not drain
    the pool): only while the cache is on, and only a lookup begun since the last revocation
    this replica heard of, so a request never gets an answer read before a revocation it follows."""

    def __init__(
        self,
        signer: TokenSigner,
        sessions: RefreshTokenStore,
        keys: ApiKeyStore,
        cache: PrincipalCache | None = None,
    ) -> None:
        self.signer = signer
        self.sessions = sessions
        self.keys = keys
        self.cache = cache
        self._lookups: dict[tuple[str, int], asyncio.Future[Principal]] = {}  # (hash, generation) -> lookup

    def cached(self, credential: str | None) -> Principal | None:
        """The principal this credential resolved to recently, without I/O; None when unknown.
        A JWT's signature and expiry are still checked on every request."""
        if self.cache is None or not self.cache.enabled or not credential:
            return None
        token = credential.strip()
        principal = self.cache.get(credential_hash(token))
        if principal is None:
            return None
        if not api_keys.looks_like_key(token):
            try:
                self.signer.decode(token, ACCESS)
            except InvalidToken:
                return None
        return principal

    async def principal(self, credential: str | None) -> Principal:
        if not credential or not credential.strip():
            raise Unauthenticated("authentication required: send Authorization: Bearer <token or API key>")
        token = credential.strip()
        found = self.cached(token)
        if found is not None:
            return found
        if self.cache is None or not self.cache.enabled:
            return await self._look_up(token)
        key = (credential_hash(token), self.cache.generation())
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(token))
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda done: self._lookup_done(key, done))
        # One caller leaving (a client gone) must not cancel the lookup the others wait for.
        return await asyncio.shield(lookup)

    def _lookup_done(self, key: tuple[str, int], lookup: asyncio.Future[Principal]) -> None:
        if self._lookups.get(key) is lookup:
            del self._lookups[key]
        if not lookup.cancelled():
            lookup.exception()  # retrieved here, so one nobody awaited any more is not logged as lost

    async def _look_up(self, token: str) -> Principal:
        if api_keys.looks_like_key(token):
            return await self._from_api_key(token)
        return await self._from_jwt(token)

    async def _from_jwt(self, token: str) -> Principal:
        claims = self.signer.decode(token, ACCESS)
        generation = self.cache.generation() if self.cache is not None else 0
        user, revoked = await self.sessions.session_user(claims.user_id, claims.family_id)
        if user is None or user.disabled:
            raise InvalidToken("account disabled or removed")
        if revoked:
            raise InvalidToken("session ended; log in again")
        # The role comes from the database, not the token: a role change applies at once.
        principal = Principal(
            user.id, user.username, user.role, JWT, scopes_allowed_for(user.role), session_id=claims.family_id
        )
        if self.cache is not None:
            self.cache.put(credential_hash(token), principal, generation, not_after=claims.expires_at)
        return principal

    async def _from_api_key(self, token: str) -> Principal:
        key_hash = api_keys.hash_key(token)
        generation = self.cache.generation() if self.cache is not None else 0
        found = await self.keys.lookup(key_hash)
        if found is None:
            raise InvalidToken("invalid API key")
        reason = found.key.unusable_reason()
        if reason:
            raise InvalidToken(reason)
        if found.disabled:
            raise InvalidToken("account disabled")
        await self.keys.touch(found.key)
        # A key never exceeds its owner's current role, whatever scopes it was given.
        scopes = tuple(s for s in found.key.scopes if s in scopes_allowed_for(found.role))
        principal = Principal(
            found.key.user_id,
            found.username,
            found.role,
            API_KEY,
            scopes,
            key_id=found.key.id,
            key_requests_per_minute=found.key.requests_per_minute,
            key_tokens_per_minute=found.key.tokens_per_minute,
        )
        if self.cache is not None:
            expires = found.key.expires_at.timestamp() if found.key.expires_at is not None else None
            self.cache.put(key_hash, principal, generation, not_after=expires)
        return principal
