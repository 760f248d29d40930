"""Stateful fuzzing: sequences of calls (Schemathesis's state machine, following the links
between operations) never get a server error. Its own app and database: the single-call fuzzing
leaves data behind, and a state machine whose choices meet other tests' data draws differently
from one example to the next, which Hypothesis refuses as flaky."""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis

from tests.api.test_fuzz import CHECKS, FUZZ, Server, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from running_server()


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/openapi.json")


def test_no_sequence_of_calls_is_a_server_error(api_schema: schemathesis.BaseSchema, server: Server) -> None:
    machine = api_schema.as_state_machine()
    headers = {"Authorization": f"Bearer {server.token}"}

    class Signed(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": headers}

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object) -> None:
            case.validate_response(response, checks=CHECKS)

    Signed.run(settings=hypothesis.settings(FUZZ, max_examples=15, stateful_step_count=6))
