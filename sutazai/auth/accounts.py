"""Accounts: the rules for creating users and changing passwords, and the first admin.

No default password exists anywhere: the first admin comes from
`SUTAZAI_ADMIN_PASSWORD` (`ensure_admin`) or from the CLI (`sutazai create-user`).
"""

from __future__ import annotations

import logging
import re

from sutazai.auth import passwords
from sutazai.auth.roles import ADMIN, ROLES
from sutazai.errors import InvalidRole, InvalidUsername, UsernameTaken
from sutazai.settings import Settings
from sutazai.storage.refresh_tokens import RefreshTokenStore
from sutazai.storage.users import User, UserStore

logger = logging.getLogger("sutazai.auth.accounts")

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)


def check_username(username: str) -> None:
    if not _USERNAME.match(username):
        raise InvalidUsername(
            "username must be 1-64 characters: letters, digits and _ . @ - (starting with a letter or digit)"
        )


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRole(f"role must be one of {', '.join(ROLES)}")


async def create_user(users: UserStore, username: str, password: str, role: str) -> User:
    """Validate, hash and store a new user; `UsernameTaken` when the name exists."""
    check_username(username)
    check_role(role)
    passwords.check_policy(password)
    return await users.create(username, await passwords.hash_password_async(password), role)


async def set_password(users: UserStore, sessions: RefreshTokenStore, user: User, password: str) -> None:
    """A new password ends every session of the user."""
    passwords.check_policy(password)
    await users.set_password_hash(user.id, await passwords.hash_password_async(password))
    await sessions.revoke_user(user.id)


async def ensure_admin(users: UserStore, settings: Settings) -> str:
    """Create the first admin from SUTAZAI_ADMIN_USERNAME / SUTAZAI_ADMIN_PASSWORD.

    Returns "created", "exists" (an account of that name is already there; its
    password is left alone so later changes are not overwritten at each start),
    or "no_password" (nothing to do; a warning says how to create an admin).
    Safe to call from several replicas at once.
    """
    username = settings.admin_username
    if settings.admin_password is None:
        if not await users.any_admin():
            logger.warning(
                "no admin user exists: set SUTAZAI_ADMIN_PASSWORD (and optionally SUTAZAI_ADMIN_USERNAME) "
                "or run `sutazai create-user --role admin`"
            )
        return "no_password"
    if await users.get_by_username(username) is not None:
        return "exists"
    try:
        await create_user(users, username, settings.admin_password.get_secret_value(), ADMIN)
    except UsernameTaken:  # another replica won the race
        return "exists"
    logger.info("created admin user %r from SUTAZAI_ADMIN_PASSWORD", username)
    return "created"
