"""Password hashing with argon2id (argon2-cffi defaults, RFC 9106 low-memory profile).

Hashing is deliberately slow (~0.1 s of CPU), so the async helpers run it in a
worker thread instead of blocking the event loop. `verify_dummy` spends the same
time on unknown usernames so response timing does not reveal which names exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from sutazai.errors import InvalidInput, WeakPassword

MIN_LENGTH = 8
MAX_LENGTH = 1024

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def check_policy(password: str) -> None:
    """Reject passwords that are too short or absurdly long."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password must be at most {MAX_LENGTH} characters", code="invalid_password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def verify_dummy(password: str) -> None:
    """Burn the time of one verification (for unknown or disabled users)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("dummy password for timing equalisation")
    verify_password(_dummy_hash, password)


# Each argon2 hash takes 64 MiB and a core for ~0.1 s: a burst of logins must queue, not
# run all at once and exhaust the replica's memory. One gate per replica process.
MAX_CONCURRENT_HASHES = 2
_gate: asyncio.Semaphore | None = None


def _hashing_gate() -> asyncio.Semaphore:
    global _gate
    if _gate is None:
        _gate = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
    return _gate


async def hash_password_async(password: str) -> str:
    async with _hashing_gate():
        return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    async with _hashing_gate():
        if password_hash is None:
            await asyncio.to_thread(verify_dummy, password)
            return False
        return await asyncio.to_thread(verify_password, password_hash, password)
