"""Which CPU runtime should serve the GGUF model: llama-cpp-python or transformers?

The project serves Gemma 3 270M (Q4_K_M GGUF) on 2-core CPU machines. This script
measures, for the same GGUF file and the same greedy prompt, each candidate runtime:

* llama-cpp-python   -- runs the Q4_K_M weights as they are (the project's engine)
* transformers fp32  -- AutoModelForCausalLM.from_pretrained(dir, gguf_file=name),
                        which de-quantizes the GGUF to float weights
* transformers bf16  -- the same, loaded with dtype=torch.bfloat16

and prints a markdown table: load time, RSS after load (and peak RSS), time to first
token, single-stream decode tokens/s (medians of --runs runs after one warm-up) and the
start of the greedy output, so the choice of runtime rests on numbers.

Each runtime runs in its own subprocess of this interpreter, so memory figures are
clean. A runtime whose packages are missing gets a "not installed: pip install ..." row
(the project's own .venv has no torch/transformers). Nothing is fetched from a model
hub: the workers run with HF_HUB_OFFLINE=1 and read only --model.

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install llama-cpp-python==0.3.36 psutil torch==2.13.0 \\
        transformers gguf accelerate
    /tmp/tfvenv/bin/python bench/cpu_runtimes.py --model .data/models/gemma3-270m.gguf

Options: --runs N (default 3), --max-new-tokens N (default 64), --threads N (default 2),
--only NAME[,NAME] (llama.cpp, transformers-fp32, transformers-bf16), --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = "Once upon a time, in a small village by the sea,"
WORKER_TIMEOUT_S = 1200  # one runtime's load + warm-up + runs; generous for 2 cores

RUNTIMES = {
    "llama.cpp": {
        "modules": ("llama_cpp",),
        "pip": "pip install llama-cpp-python psutil",
    },
    "transformers-fp32": {
        "modules": ("torch", "transformers", "gguf", "accelerate"),
        "pip": "pip install torch transformers gguf accelerate psutil",
    },
    "transformers-bf16": {
        "modules": ("torch", "transformers", "gguf", "accelerate"),
        "pip": "pip install torch transformers gguf accelerate psutil",
    },
}


# --------------------------------------------------------------------------- memory


def rss_mb() -> float:
    """Current resident set size of this process in MB (psutil, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return _proc_status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    return _proc_status_kb("VmHWM") / 1024


def _proc_status_kb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


# --------------------------------------------------------------------------- workers


def _summarise(runs: list[dict], load_s: float, load_rss: float, extra: dict) -> dict:
    return {
        "load_s": load_s,
        "rss_mb": load_rss,
        "peak_rss_mb": peak_rss_mb(),
        "ttft_ms": statistics.median(r["ttft_ms"] for r in runs),
        "tok_s": statistics.median(r["tok_s"] for r in runs),
        "new_tokens": runs[-1]["new_tokens"],
        "text": runs[-1]["text"],
        "runs": runs,
        **extra,
    }


def work_llama_cpp(model: str, args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    import llama_cpp
    from llama_cpp import Llama

    import_s = time.perf_counter() - started

    started = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=2048, n_threads=args.threads, verbose=False)
    load_s = time.perf_counter() - started
    load_rss = rss_mb()

    prompt_tokens = llm.tokenize(PROMPT.encode(), add_bos=True)

    def one() -> dict:
        llm.reset()  # n_tokens = 0: the next eval clears the KV cache, so the prompt is re-evaluated
        out: list[int] = []
        started = time.perf_counter()
        first = last = None
        for token in llm.generate(
            prompt_tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True
        ):
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            last = time.perf_counter()
            first = first or last
            out.append(token)
            if len(out) >= args.max_new_tokens:
                break
        return _timing(started, first, last, len(out), llm.detokenize(out).decode("utf-8", "replace"))

    one()  # warm-up
    runs = [one() for _ in range(args.runs)]
    return _summarise(runs, load_s, load_rss, {"import_s": import_s, "version": llama_cpp.__version__})


def work_transformers(model: str, args: argparse.Namespace, dtype_name: str) -> dict:
    started = time.perf_counter()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    import_s = time.perf_counter() - started
    torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]

    path = Path(model).resolve()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    lm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    lm.eval()
    load_s = time.perf_counter() - started
    load_rss = rss_mb()

    class Clock(BaseStreamer):
        """generate() calls put() once with the prompt, then once per new token."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    inputs = tokenizer(PROMPT, return_tensors="pt")
    n_prompt = inputs["input_ids"].shape[1]

    def one() -> dict:
        clock = Clock()
        started = time.perf_counter()
        with torch.inference_mode():
            out = lm.generate(
                **inputs,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                streamer=clock,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        new = out[0][n_prompt:]
        token_times = clock.times[1:]  # drop the prompt's put()
        first = token_times[0] if token_times else None
        last = token_times[-1] if token_times else None
        return _timing(started, first, last, len(new), tokenizer.decode(new, skip_special_tokens=True))

    one()  # warm-up
    runs = [one() for _ in range(args.runs)]
    return _summarise(
        runs,
        load_s,
        load_rss,
        {
            "import_s": import_s,
            "version": f"transformers {transformers.__version__}, torch {torch.__version__}",
            "dtype": str(next(lm.parameters()).dtype),
        },
    )


def _timing(started: float, first: float | None, last: float | None, n: int, text: str) -> dict:
    ttft_ms = (first - started) * 1000 if first else float("nan")
    # decode rate: tokens after the first over the time after the first
    tok_s = (n - 1) / (last - first) if first and last and n > 1 and last > first else float("nan")
    return {"ttft_ms": ttft_ms, "tok_s": tok_s, "new_tokens": n, "text": text}


def worker(name: str, args: argparse.Namespace) -> None:
    if name == "llama.cpp":
        result = work_llama_cpp(args.model, args)
    elif name.startswith("transformers-"):
        result = work_transformers(args.model, args, name.split("-", 1)[1])
    else:
        raise SystemExit(f"unknown runtime {name}")
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def run_runtime(name: str, args: argparse.Namespace) -> dict:
    spec = RUNTIMES[name]
    missing = missing_modules(spec["modules"])
    if missing:
        return {"error": f"not installed: {spec['pip']}", "missing": missing}
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        TQDM_DISABLE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(args.threads),
    )
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--model",
        args.model,
        "--runs",
        str(args.runs),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--threads",
        str(args.threads),
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S}s"}
    wall = time.perf_counter() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return {**json.loads(line[len("RESULT ") :]), "wall_s": wall}
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return {
        "error": f"failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}",
        "stderr_tail": "\n".join(lines[-20:]),
    }


def fmt(value, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)  # value != value: NaN


def table(results: dict[str, dict]) -> str:
    rows = [
        "| runtime | load s | RSS MB | peak RSS MB | TTFT ms | tokens/s | sample output (first 60 chars) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"| {name} | - | - | - | - | - | {r['error']} |")
            continue
        sample = r["text"].replace("\n", "\\n").replace("|", "\\|")[:60]
        rows.append(
            f"| {name} | {fmt(r['load_s'], '.2f')} | {fmt(r['rss_mb'], '.0f')} | "
            f"{fmt(r['peak_rss_mb'], '.0f')} | {fmt(r['ttft_ms'], '.0f')} | {fmt(r['tok_s'], '.1f')} | "
            f"{sample} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path to the GGUF file")
    parser.add_argument("--runs", type=int, default=3, help="measured runs after one warm-up (median)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=",".join(RUNTIMES), help="comma-separated runtimes")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.runs = max(1, min(args.runs, 20))
    args.max_new_tokens = max(2, min(args.max_new_tokens, 512))
    args.model = str(Path(args.model).resolve())

    if args.worker:
        worker(args.worker, args)
        return
    if not Path(args.model).is_file():
        raise SystemExit(f"no such model file: {args.model}")

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise SystemExit(f"unknown runtime(s) {unknown}; choose from {list(RUNTIMES)}")

    results: dict[str, dict] = {}
    for name in names:
        print(f"# {name} ...", file=sys.stderr, flush=True)
        results[name] = run_runtime(name, args)

    print(
        f"Prompt: {PROMPT!r}; greedy, {args.max_new_tokens} new tokens, {args.threads} threads; "
        f"TTFT and tokens/s are medians of {args.runs} runs after a warm-up.\n"
    )
    print(table(results))
    print()
    for name, r in results.items():
        if "error" in r:
            if r.get("stderr_tail"):
                print(f"{name} error:\n{r['stderr_tail']}\n")
            continue
        print(
            f"- {name}: {r['version']}; import {r['import_s']:.1f}s; {r['new_tokens']} new tokens"
            + (f"; weights {r['dtype']}" if "dtype" in r else "")
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
