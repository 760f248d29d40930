"""Where the JWT signing secret comes from.

`SUTAZAI_JWT_SECRET` when set. Unset is only allowed in the embedded dev default
(no `DATABASE_URL`): then a random secret is generated once and kept in
`<data_dir>/jwt_secret` (mode 0600) so restarts and every local replica share it
and issued tokens stay valid. Anywhere else, starting without one is an error:
replicas on different nodes would each invent their own and reject each other's
tokens.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from sutazai.settings import Settings

MIN_SECRET_LENGTH = 32  # HS256 wants a key of at least 256 bits (RFC 7518 §3.2)
SECRET_FILE_NAME = "jwt_secret"


class SecretConfigError(RuntimeError):
    """The deployment is misconfigured: refuse to start rather than run insecurely."""


def resolve_jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            raise SecretConfigError(
                f"SUTAZAI_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters; "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        return secret
    if settings.embedded:
        return _embedded_secret(Path(settings.data_dir) / SECRET_FILE_NAME)
    raise SecretConfigError(
        "SUTAZAI_JWT_SECRET is not set. It is required when DATABASE_URL points at a real "
        "database (only the embedded dev default may generate its own). Set it to the same "
        'random value on every node, e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
    )


def _embedded_secret(path: Path) -> str:
    """Read the persisted dev secret, creating it atomically (O_EXCL) on first start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def _read_secret(path: Path) -> str:
    # Another process may have created the file an instant ago and not written it yet.
    for _ in range(50):
        secret = path.read_text().strip()
        if secret:
            if len(secret) < MIN_SECRET_LENGTH:
                raise SecretConfigError(f"{path} holds a secret shorter than {MIN_SECRET_LENGTH} characters")
            return secret
        time.sleep(0.02)
    raise SecretConfigError(f"{path} exists but is empty; delete it to generate a new secret")
