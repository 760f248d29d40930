"""The effective role: what a credential may do, whatever the user may do."""

import uuid

from sutazai.auth.principal import API_KEY, JWT, Principal


def principal(role: str, scopes: tuple[str, ...], method=API_KEY) -> Principal:
    return Principal(uuid.uuid4(), "someone", role, method, scopes)


def test_an_admins_read_write_key_acts_as_a_user():
    key = principal("admin", ("read", "write"))
    assert key.effective_role == "user" and key.denial("admin") is not None and key.denial("user") is None


def test_a_read_key_acts_as_a_viewer():
    assert principal("user", ("read",)).effective_role == "viewer"


def test_a_key_never_lifts_its_owner_above_the_owners_role():
    assert principal("viewer", ("read", "write", "admin")).effective_role == "viewer"


def test_a_login_acts_with_the_users_role():
    assert principal("admin", ("read", "write", "admin"), method=JWT).effective_role == "admin"
