"""The batch entrypoint's pipeline (Ray Data LLM -> the running Serve app's CPU model),
run in this process against the session's cluster: input order, bad lines, resume."""

from __future__ import annotations

import json

import pytest

from cluster.jobs import batch

MODEL = "gemma3-270m"


def write_jsonl(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    write_jsonl(
        path,
        [
            json.dumps({"id": "a", "prompt": "Once upon a time"}),
            "{not json",
            json.dumps({"id": 7, "messages": [{"role": "user", "content": "What is 2+2?"}]}),
            json.dumps({"id": "no-input"}),
            "",
            json.dumps({"id": "b", "prompt": "The sky is", "max_tokens": 2}),
            json.dumps({"id": "a", "prompt": "a repeated id"}),
        ],
    )
    return path


def test_results_in_input_order_with_bad_lines_as_error_records(serve_app, prompts, tmp_path):
    output = tmp_path / "results.jsonl"
    counts = batch.run_batch(prompts, output, MODEL, defaults={"max_tokens": 4, "temperature": 0}, concurrency=2)
    records = read_jsonl(output)
    assert [r["id"] for r in records] == ["a", "line-2", "7", "no-input", "b", "line-7"]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 6, 7]
    assert counts == {"total": 6, "skipped": 0, "written": 6, "errors": 3}
    for record in (records[0], records[2], records[4]):
        assert record["error"] is None, record
        assert isinstance(record["text"], str)
        assert record["usage"]["prompt_tokens"] > 0 and 0 < record["usage"]["completion_tokens"] <= 4
    assert records[4]["usage"]["completion_tokens"] <= 2  # the line's own max_tokens wins
    assert records[1]["error"]["code"] == "invalid_json"
    assert records[3]["error"]["code"] == "invalid_line"
    assert records[5]["error"]["code"] == "duplicate_id"
    assert all(r["text"] is None for r in (records[1], records[3], records[5]))


def test_a_rerun_resumes_without_redoing_done_lines(serve_app, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [json.dumps({"id": f"p{i}", "prompt": f"Count to {i}:"}) for i in range(4)])
    output = tmp_path / "results.jsonl"
    done = {"id": "p0", "line": 1, "text": "kept", "finish_reason": "stop", "usage": None, "error": None}
    # a first run wrote p0 and was killed half-way through p1's line
    output.write_text(json.dumps(done) + "\n" + '{"id": "p1", "te')
    counts = batch.run_batch(prompts, output, MODEL, defaults={"max_tokens": 3})
    assert counts == {"total": 4, "skipped": 1, "written": 3, "errors": 0}
    records = read_jsonl(output)
    assert [r["id"] for r in records] == ["p0", "p1", "p2", "p3"]
    assert records[0]["text"] == "kept"  # not run again
    again = batch.run_batch(prompts, output, MODEL, defaults={"max_tokens": 3})
    assert again == {"total": 4, "skipped": 4, "written": 0, "errors": 0}
    assert read_jsonl(output) == records


def test_a_request_the_model_refuses_is_an_error_record(serve_app, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(
        prompts,
        [
            json.dumps({"id": "huge", "prompt": "word " * 5000}),  # longer than the 2048-token context
            json.dumps({"id": "ok", "prompt": "Hello", "max_tokens": 2}),
        ],
    )
    output = tmp_path / "results.jsonl"
    batch.run_batch(prompts, output, MODEL)
    huge, ok = read_jsonl(output)
    assert huge["id"] == "huge" and huge["error"] is not None and huge["text"] is None
    assert ok["error"] is None


def test_the_command_line_checks_its_arguments(tmp_path):
    with pytest.raises(SystemExit):
        batch.parse_args(["--input", "x", "--output", "y", "--model", MODEL, "--concurrency", "0"])
    assert batch.main(["--input", str(tmp_path / "missing.jsonl"), "--output", "o", "--model", MODEL]) == 2
