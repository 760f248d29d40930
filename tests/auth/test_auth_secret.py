"""Where the JWT secret comes from: settings, the embedded dev file, or a startup error."""

from __future__ import annotations

import stat

import pytest

from sutazai.auth.secret import SecretConfigError, resolve_jwt_secret
from sutazai.settings import Settings


@pytest.fixture(autouse=True)
def _no_database_url_in_env(monkeypatch):
    """These tests build Settings from the environment, where CI exports DATABASE_URL."""
    monkeypatch.delenv("DATABASE_URL", raising=False)


def settings(tmp_path, **values) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)


def test_configured_secret_is_used(tmp_path):
    assert resolve_jwt_secret(settings(tmp_path, jwt_secret="a" * 40, DATABASE_URL="postgresql://db/x")) == "a" * 40


def test_short_configured_secret_is_refused(tmp_path):
    with pytest.raises(SecretConfigError, match="at least 32"):
        resolve_jwt_secret(settings(tmp_path, jwt_secret="short"))


def test_missing_secret_outside_embedded_mode_is_a_startup_error(tmp_path):
    with pytest.raises(SecretConfigError, match="SUTAZAI_JWT_SECRET"):
        resolve_jwt_secret(settings(tmp_path, DATABASE_URL="postgresql://db/x"))


def test_embedded_mode_generates_a_private_secret_and_keeps_it_across_restarts(tmp_path):
    first = resolve_jwt_secret(settings(tmp_path))
    second = resolve_jwt_secret(settings(tmp_path))
    path = tmp_path / "jwt_secret"
    assert first == second and len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
