"""JWT handling in isolation: every attack ends in a 401, never in a principal."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest

from sutazai.auth.secret import SecretConfigError
from sutazai.auth.tokens import ACCESS, REFRESH, TokenSigner
from sutazai.errors import InvalidToken

SECRET = "s" * 64
USER = uuid.uuid4()
FAMILY = uuid.uuid4()


def signer(**kwargs) -> TokenSigner:
    return TokenSigner(SECRET, **kwargs)


def claims(**overrides) -> dict:
    now = int(time.time())
    payload = {
        "sub": str(USER),
        "role": "user",
        "type": ACCESS,
        "jti": str(uuid.uuid4()),
        "fam": str(FAMILY),
        "iss": "sutazai",
        "aud": "sutazai-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def assert_rejected(token: str, expected_type: str = ACCESS) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        signer().decode(token, expected_type)
    return info.value


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_issued_access_token_decodes_to_its_claims():
    issued = signer().issue(user_id=USER, role="admin", token_type=ACCESS, family_id=FAMILY)
    decoded = signer().decode(issued.token, ACCESS)
    assert (decoded.user_id, decoded.role, decoded.family_id, decoded.jti) == (USER, "admin", FAMILY, issued.claims.jti)


def test_forged_signature_is_rejected():
    header, _payload, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged_payload = b64(claims(role="admin"))
    assert_rejected(f"{header}.{forged_payload}.{signature}")


def test_alg_none_is_rejected():
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    assert_rejected(token)


def test_wrong_algorithm_with_the_right_key_is_rejected():
    assert_rejected(jwt.encode(claims(), SECRET, algorithm="HS512"))


def test_wrong_key_is_rejected():
    assert_rejected(jwt.encode(claims(), "k" * 48, algorithm="HS256"))


def test_expired_token_is_rejected():
    past = int(time.time()) - 3600
    error = assert_rejected(jwt.encode(claims(iat=past - 600, nbf=past - 600, exp=past), SECRET, algorithm="HS256"))
    assert "expired" in error.message


def test_not_yet_valid_token_is_rejected():
    future = int(time.time()) + 3600
    assert_rejected(jwt.encode(claims(nbf=future, exp=future + 600), SECRET, algorithm="HS256"))


def test_refresh_token_is_rejected_as_access_token():
    issued = signer().issue(user_id=USER, role="user", token_type=REFRESH, family_id=FAMILY)
    assert_rejected(issued.token, ACCESS)


def test_access_token_is_rejected_as_refresh_token():
    issued = signer().issue(user_id=USER, role="user", token_type=ACCESS, family_id=FAMILY)
    assert_rejected(issued.token, REFRESH)


@pytest.mark.parametrize("missing", ["exp", "iat", "nbf", "sub", "jti", "fam", "type", "iss", "aud"])
def test_token_missing_a_required_claim_is_rejected(missing):
    assert_rejected(jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256"))


def test_token_with_unknown_role_is_rejected():
    assert_rejected(jwt.encode(claims(role="root"), SECRET, algorithm="HS256"))


def test_token_from_another_issuer_is_rejected():
    assert_rejected(jwt.encode(claims(iss="someone-else"), SECRET, algorithm="HS256"))


def test_token_for_another_audience_is_rejected():
    assert_rejected(jwt.encode(claims(aud="another-service"), SECRET, algorithm="HS256"))


def test_garbage_is_rejected():
    assert_rejected("not.a.jwt")


def test_non_hmac_algorithm_setting_is_refused_at_startup():
    with pytest.raises(SecretConfigError):
        TokenSigner(SECRET, algorithm="RS256")
    with pytest.raises(SecretConfigError):
        TokenSigner(SECRET, algorithm="none")
