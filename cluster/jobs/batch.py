"""Batch inference over a JSONL file, as a Ray job:

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m cluster.jobs.batch --input prompts.jsonl --output results.jsonl --model gemma3-270m

Input: one JSON object a line, `{"id": ..., "prompt": "..."}` or `{"id": ..., "messages": [...]}`,
optionally with `max_tokens`, `temperature`, `top_p`, `stop`, `seed`. Output: one JSON object per
input line, in input order: `{"id", "line", "text", "finish_reason", "usage", "error"}`.

- A line that is not such an object (bad JSON, no id, neither prompt nor messages, a repeated id)
  becomes an error record; the job goes on. So does a request the model refuses.
- Resume: ids already in the output are skipped, so running again with the same output finishes
  what a stopped or failed run left (a half-written last line is dropped first).
- Progress: Ray Data's progress bars in the job's logs, and a `progress: done/total` line as
  records are written (the API reads progress as lines in the output over lines in the input).

The pipeline is Ray Data LLM (`ray.data.llm.build_processor`): on a CPU model,
`ServeDeploymentProcessorConfig` against the running Serve app's model deployment (its
one-shot generator method `generate_once`), so the batch shares the replicas, and their
autoscaling, with interactive chat; on a vLLM model, `vLLMEngineProcessorConfig`, an engine of
the batch's own on the GPU nodes. The number of requests the batch has in flight is bounded
(`--concurrency`, default 1 per replica's worth of slots), so chat keeps a free slot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Ray Data runs up to 4 batches of an async UDF at once per task by default: with the Serve
# stage sending every row of a batch at once, that is 4 x batch_size requests. One batch at a
# time makes `--concurrency` (the batch size) the bound. Read when ray.data is first imported.
os.environ.setdefault("RAY_DATA_DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY", "1")

SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "seed")
METHOD = "generate_once"  # the model deployment's one-shot generator (deployments/cpu_model.py)
MAX_ID_CHARS = 200
LIGHT_CPUS = 0.05  # JSON in and out, and waiting on the model: the pipeline's own tasks and actor


@dataclass
class Item:
    """One input line: a request for the model, or (bad line) its error record already."""

    line: int
    id: str
    request: dict[str, Any] | None = None
    record: dict[str, Any] | None = None


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)  # every non-blank input line, in order
    done: set[str] = field(default_factory=set)  # ids the output already has

    @property
    def todo(self) -> list[Item]:
        return [i for i in self.items if i.id not in self.done]


def error_record(item_id: str, line: int, code: str, message: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "line": line,
        "text": None,
        "finish_reason": None,
        "usage": None,
        "error": {"code": code, "message": message},
    }


def parse_line(raw: str, line: int, defaults: dict[str, Any]) -> Item:
    """An input line as a request, or as an error record (never raises)."""
    fallback_id = f"line-{line}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Item(line, fallback_id, record=error_record(fallback_id, line, "invalid_json", str(exc)))
    if not isinstance(obj, dict):
        return Item(line, fallback_id, record=error_record(fallback_id, line, "invalid_line", "not a JSON object"))
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        message = "`id` (a string or an integer) is required"
        return Item(line, fallback_id, record=error_record(fallback_id, line, "invalid_line", message))
    item_id = str(raw_id)[:MAX_ID_CHARS]
    request: dict[str, Any] = {**defaults, **{k: obj[k] for k in SAMPLING_FIELDS if obj.get(k) is not None}}
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if isinstance(prompt, str) and prompt and messages is None:
        request["prompt"] = prompt
    elif prompt is None and _valid_messages(messages):
        request["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    else:
        message = "give exactly one of `prompt` (a non-empty string) or `messages` (a list of {role, content})"
        return Item(line, item_id, record=error_record(item_id, line, "invalid_line", message))
    return Item(line, item_id, request=request)


def _valid_messages(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant", "tool")
            and isinstance(m.get("content"), str)
            for m in messages
        )
    )


def read_done(output: Path) -> set[str]:
    """Ids already in the output; a torn last line (a killed run) is cut off first."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with output.open("r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    done = set()
    for raw in data.decode("utf-8", errors="replace").splitlines():
        try:
            done.add(str(json.loads(raw)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def plan(input_path: Path, output: Path, defaults: dict[str, Any]) -> Plan:
    result = Plan(done=read_done(output))
    seen: set[str] = set()
    with input_path.open(encoding="utf-8", errors="replace") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            item = parse_line(raw, number, defaults)
            if item.id in seen:
                dup = f"line-{number}"
                message = f"id {item.id!r} repeats an earlier line's"
                item = Item(number, dup, record=error_record(dup, number, "duplicate_id", message))
            seen.add(item.id)
            result.items.append(item)
    return result


def count_lines(path: Path) -> int:
    """Non-blank lines: the items of an input, or the records of an output."""
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip())


# -- the Ray Data pipeline --------------------------------------------------------------


def _serve_processor(deployment: str, app_name: str, concurrency: int, timeout_s: float | None) -> Any:
    from ray.data.llm import ServeDeploymentProcessorConfig, build_processor

    config = ServeDeploymentProcessorConfig(
        deployment_name=deployment,
        app_name=app_name,
        batch_size=concurrency,  # every row of a batch is sent at once: the in-flight bound
        concurrency=1,  # one stage actor; it only waits on the deployment
        should_continue_on_error=True,
        request_timeout_s=timeout_s,
    )
    processor = build_processor(
        config,
        preprocess=lambda row: {"method": METHOD, "request_kwargs": json.loads(row["request"])},
        postprocess=lambda row: {"pos": row["pos"], "result": json.dumps(_serve_result(row))},
        preprocess_map_kwargs={"num_cpus": LIGHT_CPUS},
        postprocess_map_kwargs={"num_cpus": LIGHT_CPUS},
    )
    # The stage actor only awaits the deployment: Ray Data's default (a whole CPU) would leave
    # the job pending on a small head whose CPUs the model replicas already hold.
    for stage in processor.stages.values():
        stage.map_batches_kwargs["num_cpus"] = LIGHT_CPUS
    return processor


def _serve_result(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("error"):
        return {"text": None, "finish_reason": None, "usage": None, "error": row["error"]}
    return {"text": row["text"], "finish_reason": row["finish_reason"], "usage": row["usage"], "error": None}


def _vllm_processor(spec: Any, concurrency: int) -> Any:  # pragma: no cover - needs a GPU node and vLLM
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(
        model_source=spec.source.path,
        engine_kwargs={
            "tensor_parallel_size": spec.vllm.tensor_parallel_size,
            "pipeline_parallel_size": spec.vllm.pipeline_parallel_size,
            "max_model_len": spec.context_length,
            **spec.vllm.engine_kwargs,
        },
        accelerator_type=spec.vllm.accelerator_type,
        concurrency=concurrency,  # engine replicas of the batch's own
        batch_size=32,
        should_continue_on_error=True,
    )

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        request = json.loads(row["request"])
        sampling = {k: request[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed") if k in request}
        key = "messages" if "messages" in request else "prompt"
        return {key: request[key], "sampling_params": sampling}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        usage = {"prompt_tokens": row["num_input_tokens"], "completion_tokens": row["num_generated_tokens"]}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        result = {"text": row["generated_text"], "finish_reason": None, "usage": usage, "error": None}
        return {"pos": row["pos"], "result": json.dumps(result)}

    return build_processor(config, preprocess=pre, postprocess=post)


def _results(processor: Any, todo: list[Item]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position in `todo`, result) as Ray Data produces them (any order)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # blocks in input order: the reorder buffer stays small
    rows = [{"pos": pos, "request": json.dumps(item.request)} for pos, item in enumerate(todo)]
    dataset = processor(ray.data.from_items(rows))
    for row in dataset.iter_rows():
        error = row.get("__inference_error__")
        if error:
            yield int(row["pos"]), {"text": None, "finish_reason": None, "usage": None, "error": _stage_error(error)}
        else:
            yield int(row["pos"]), json.loads(row["result"])


def _stage_error(message: str) -> dict[str, str]:
    code = "timeout" if message.startswith("TimeoutError") else "inference_failed"
    return {"code": code, "message": str(message)[:500]}


def run_batch(
    input_path: Path,
    output: Path,
    model: str,
    *,
    app_name: str = "sutazai",
    models_dir: Path | None = None,
    defaults: dict[str, Any] | None = None,
    concurrency: int = 1,
    request_timeout_s: float | None = None,
    log: Any = None,
) -> dict[str, int]:
    """Run the batch (Ray must be initialised); returns counts. Writes results in input order,
    appending to `output`, skipping ids it already has."""
    from sutazai.catalog import ModelCatalog
    from sutazai.settings import get_settings

    log = log or (lambda message: print(message, flush=True))  # the job's log

    catalog = ModelCatalog.load(models_dir or get_settings().models_dir)
    if model not in catalog.specs:
        raise SystemExit(f"unknown model {model!r}; one of {sorted(catalog.specs)}")
    spec = catalog.specs[model]
    work = plan(input_path, output, defaults or {})
    todo = work.todo
    total, already = len(work.items), len(work.items) - len(todo)
    log(f"batch: {total} lines, {already} already in {output}, {len(todo)} to run on {model}")
    counts = {"total": total, "skipped": already, "written": 0, "errors": 0}
    requests = [item for item in todo if item.request is not None]
    positions = {id(item): pos for pos, item in enumerate(requests)}
    results: Iterator[tuple[int, dict[str, Any]]] = iter(())
    if requests:
        if spec.engine == "vllm":
            processor = _vllm_processor(spec, concurrency)
        else:
            processor = _serve_processor(spec.deployment_name, app_name, concurrency, request_timeout_s)
        results = _results(processor, requests)
    waiting: dict[int, dict[str, Any]] = {}  # results that came before their turn
    output.parent.mkdir(parents=True, exist_ok=True)
    started, last_log = time.monotonic(), 0.0
    with output.open("a", encoding="utf-8") as out:
        for item in todo:
            if item.record is not None:
                record = item.record
            else:
                pos = positions[id(item)]
                while pos not in waiting:
                    got, result = next(results)
                    waiting[got] = result
                record = {"id": item.id, "line": item.line, **waiting.pop(pos)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            counts["written"] += 1
            counts["errors"] += record["error"] is not None
            now = time.monotonic()
            if now - last_log >= 2 or counts["written"] == len(todo):
                last_log = now
                written, errors = already + counts["written"], counts["errors"]
                log(f"progress: {written}/{total} ({errors} errors, {now - started:.1f}s)")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster.jobs.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="JSONL: {id, prompt | messages} a line")
    parser.add_argument("--output", type=Path, required=True, help="JSONL results; appended to (resume)")
    parser.add_argument("--model", required=True, help="a model name from models/")
    parser.add_argument("--max-tokens", type=int, default=None, help="default for lines that do not say")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--app-name", default=os.environ.get("SUTAZAI_APP_NAME", "sutazai"))
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (CPU: keep below the model's slots)"
    )
    parser.add_argument("--request-timeout-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.concurrency < 1 or (args.max_tokens is not None and args.max_tokens < 1):
        parser.error("--concurrency and --max-tokens must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.input.exists():
        print(f"error: no input file {args.input}", file=sys.stderr)
        return 2
    import ray

    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=True)  # a job's driver attaches
    given = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    defaults = {k: v for k, v in given.items() if v is not None}
    counts = run_batch(
        args.input,
        args.output,
        args.model,
        app_name=args.app_name,
        defaults=defaults,
        concurrency=args.concurrency,
        request_timeout_s=args.request_timeout_s,
    )
    print("batch done: " + json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
