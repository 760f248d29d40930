"""Schemathesis against the app's own OpenAPI schema: no input may cause a 5xx, and every
error answers in the JSON error shape. Authenticated as a user and anonymously, then the
stateful phase (calls chained through the links Schemathesis infers).

The app runs under uvicorn in a thread with real Postgres and Redis and no model
deployment (model routes validate, then answer 404 model_not_found): fuzzing a real
model would spend minutes decoding; tests/api/test_bad_input.py sends the inputs that
once broke the model path to the real model."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode

from sutazai.auth import accounts
from sutazai.settings import Settings
from tests.helpers import REDIS_URL, app_for, free_port, fresh_database

FUZZ = hypothesis.settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,  # the same cases every run: CI failures reproduce
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: bounded time, first failure shown
    database=None,
)
PASSWORD = secrets.token_urlsafe(16)


HOSTILE = ("\x00", "\ud800")  # NUL and a lone surrogate: what Postgres, JSON and tokenizers choke on


def _strings(value: object) -> int:
    if isinstance(value, str):
        return 1
    if isinstance(value, dict):
        return sum(_strings(v) for v in value.values())
    if isinstance(value, list):
        return sum(_strings(v) for v in value)
    return 0


def _poisoned(value: object, char: str, target: int) -> object:
    """`value` with `char` appended to its `target`-th string (depth first)."""
    seen = -1

    def walk(item: object) -> object:
        nonlocal seen
        if isinstance(item, str):
            seen += 1
            return item + char if seen == target else item
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def _one_poisoned(value: object, chars: tuple[str, ...]) -> st.SearchStrategy[object]:
    """Half the cases unchanged, half with one hostile character in one string: one field at a
    time, so the others stay valid and the request reaches the code behind validation."""
    count = _strings(value)
    if count == 0:
        return st.just(value)
    poisoned = st.builds(lambda c, i: _poisoned(value, c, i), st.sampled_from(chars), st.integers(0, count - 1))
    return st.one_of(st.just(value), poisoned)


@schemathesis.hook
def flatmap_body(ctx: schemathesis.HookContext, body: object) -> st.SearchStrategy[object]:
    """Plain generation produces NUL and lone surrogates too rarely for a bounded run."""
    return _one_poisoned(body, HOSTILE)


@schemathesis.hook
def flatmap_query(ctx: schemathesis.HookContext, query: object) -> st.SearchStrategy[object]:
    return _one_poisoned(query, ("\x00",))  # a URL cannot carry a lone surrogate


@schemathesis.check
def json_error_shape(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx/5xx is {"error": {"code", "message", "request_id"}}."""
    if response.status_code < 400:
        return None
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict) and {"code", "message", "request_id"} <= set(error), response.text[:300]
    return None


class Server:
    """The app under uvicorn on its own event loop (where its pools live), with a signed-in user."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.settings = Settings(
            _env_file=None,
            database_url=database_url,
            redis_url=REDIS_URL,
            jwt_secret=SecretStr(secrets.token_urlsafe(48)),
            mcp_enabled=False,
            docs_enabled=True,
            app_name=f"fuzz-{secrets.token_hex(4)}",
            rate_limit_requests_per_minute={"admin": 10**6, "user": 10**6, "viewer": 10**6},
            auth_failures_per_minute=10**6,
            login_attempts_per_minute=10**6,
        )
        self.ready = threading.Event()
        self.server: uvicorn.Server | None = None
        self.token = ""
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        async with app_for(self.settings) as (app, services):
            user = await accounts.create_user(services.users, "fuzzer", PASSWORD, "user")
            pair = services.signer.issue(user_id=user.id, role="user", token_type="refresh", family_id=user.id)
            await services.sessions.record(
                jti=pair.claims.jti, family_id=user.id, user_id=user.id, expires_at=pair.claims.expires_at
            )
            self.token = services.signer.issue(
                user_id=user.id, role="user", token_type="access", family_id=user.id
            ).token
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
            self.server = uvicorn.Server(config)
            self.server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
            serving = asyncio.create_task(self.server.serve())
            while not self.server.started:  # uvicorn offers no event for this
                await asyncio.sleep(0.05)
            self.ready.set()
            await serving

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.ready.wait(60), "the app did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from running_server()


def running_server() -> Iterator[Server]:
    """The app under uvicorn on a database of its own."""
    database = fresh_database("sutazai_fuzz")
    loop = asyncio.new_event_loop()
    database_url = loop.run_until_complete(database.__aenter__())
    try:
        with Server(database_url) as running:
            yield running
    finally:
        loop.run_until_complete(database.__aexit__(None, None, None))
        loop.close()


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json")


@schemathesis.check
def no_server_error(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """No 5xx, except the one the API promises for a dependency this app runs without (MCP, the
    embedder, the vector store): 503 with Retry-After and the `unavailable` error code."""
    if response.status_code < 500:
        return None
    if response.status_code == 503 and "retry-after" in {k.lower() for k in response.headers}:
        error = response.json().get("error", {})
        assert error.get("code") == "unavailable", response.text[:300]
        return None
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


CHECKS = [no_server_error, json_error_shape]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def fuzz_every_operation(api_schema: schemathesis.BaseSchema, headers: dict[str, str]) -> list[str]:
    """Valid and invalid inputs for every operation; the failures, one line each."""
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in MODES:

            @FUZZ
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                try:
                    response = case.call(headers=headers)
                except UnicodeEncodeError:  # a lone surrogate in a URL: no HTTP client can send it
                    hypothesis.reject()
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing invalid can be sent to an operation without inputs
            except Exception as exc:  # collect every operation's failure, not just the first
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}"[:600])
    return failures


def test_no_input_from_a_signed_in_user_is_a_server_error(api_schema: schemathesis.BaseSchema, server: Server) -> None:
    failures = fuzz_every_operation(api_schema, {"Authorization": f"Bearer {server.token}"})
    assert not failures, "\n".join(failures)


def test_no_anonymous_input_is_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    failures = fuzz_every_operation(api_schema, {})
    assert not failures, "\n".join(failures)
