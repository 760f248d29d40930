"""CPU engines side by side: the slots engine, the batched engine, and optionally llama-server.

In-process (niceness 0, unlike Ray workers at 15), the same GGUF, the same request:
a 64-token completion with temperature 0.7, top_p 0.95, top_k 64 (the model file's),
a seed per stream. Columns: tok/s of one stream, aggregate tok/s of 8 concurrent
streams, TTFT p50 at 8 streams (time to the first streamed text).

    .venv/bin/python bench/cpu_engine.py [--streams 8] [--tokens 64] [--rounds 2]
        [--llama-server /path/to/llama-server]

The slots engine samples as it is deployed (top_k=0: top-p over the whole vocabulary).
`--llama-server` starts the binary (`-t <--server-threads, 2> -np 8 -c 8192`) and streams `/v1/completions`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from sutazai.catalog import CPUOptions, ModelCatalog, ModelSpec
from sutazai.engines.model_files import resolve_model_path
from sutazai.schemas.engine import GenerationRequest
from sutazai.settings import PROJECT_ROOT

PROMPTS = [
    "Once upon a time",
    "The history of the city begins",
    "Here is a recipe for bread:",
    "The best way to learn a language is",
    "In the year 2050,",
    "The old lighthouse keeper",
    "Scientists have discovered",
    "My favourite book is",
]

Streamer = Callable[[str, int, int], AsyncIterator[tuple[str, int | None]]]  # (text, completion tokens at end)


async def timed(streamer: Streamer, prompt: str, tokens: int, seed: int) -> tuple[float, float, int]:
    """(ttft, total seconds, completion tokens) of one stream."""
    start = time.perf_counter()
    ttft, count = None, 0
    async for text, usage in streamer(prompt, tokens, seed):
        if text and ttft is None:
            ttft = time.perf_counter() - start
        if usage is not None:
            count = usage
    total = time.perf_counter() - start
    return (ttft if ttft is not None else total), total, count


async def measure(streamer: Streamer, streams: int, tokens: int, rounds: int) -> dict[str, float]:
    await timed(streamer, PROMPTS[0], 8, 0)  # warm-up
    single = []
    for r in range(rounds):
        _, total, count = await timed(streamer, PROMPTS[r % len(PROMPTS)], tokens, 100 + r)
        single.append(count / total)
    aggregate, ttfts = [], []
    for r in range(rounds):
        start = time.perf_counter()
        results = await asyncio.gather(
            *(timed(streamer, PROMPTS[i % len(PROMPTS)], tokens, 1000 * r + i) for i in range(streams))
        )
        wall = time.perf_counter() - start
        aggregate.append(sum(c for _, _, c in results) / wall)
        ttfts += [t for t, _, _ in results]
    return {
        "single tok/s": statistics.mean(single),
        f"{streams} streams tok/s": statistics.mean(aggregate),
        f"TTFT p50 @{streams} (s)": statistics.median(ttfts),
    }


def engine_streamer(engine, top_p: float, temperature: float) -> Streamer:
    async def stream(prompt: str, tokens: int, seed: int) -> AsyncIterator[tuple[str, int | None]]:
        request = GenerationRequest(prompt=prompt, max_tokens=tokens, temperature=temperature, top_p=top_p, seed=seed)
        async for chunk in engine.stream(request):
            yield chunk.text, (chunk.usage.completion_tokens if chunk.usage else None)

    return stream


def server_streamer(client: httpx.AsyncClient, top_k: int, top_p: float, temperature: float) -> Streamer:
    async def stream(prompt: str, tokens: int, seed: int) -> AsyncIterator[tuple[str, int | None]]:
        body = {
            "prompt": prompt,
            "max_tokens": tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "seed": seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        count = 0
        async with client.stream("POST", "/v1/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    count = event["usage"]["completion_tokens"]
                for choice in event.get("choices") or []:
                    if choice.get("text"):
                        yield choice["text"], None
        yield "", count

    return stream


async def run_server(binary: str, gguf: Path, spec: ModelSpec, args) -> dict[str, float]:
    port = 8089
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115
    command = [binary, "-m", str(gguf), "-t", str(args.server_threads), "-np", "8", "-c", "8192", "--port", str(port)]
    process = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            for _ in range(600):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"llama-server did not start: see {log.name}")
            streamer = server_streamer(client, spec.sampling.top_k, args.top_p, args.temperature)
            return await measure(streamer, args.streams, args.tokens, args.rounds)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, help="batched engine threads (default: the model file's)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--server-threads", type=int, default=2, help="llama-server's -t")
    parser.add_argument("--llama-server", help="path of a llama-server binary to measure as the peer")
    parser.add_argument(
        "--engines",
        default="slots,batched,batched-mixed",
        help="batched-mixed: one KV buffer, prompts in the token batch (kv_unified, llama-server's way); "
        "batched-repack: llama.cpp's repacked kernels on (both: a seed's text depends on the batch)",
    )
    args = parser.parse_args()

    from sutazai.engines.llama_batch import LlamaBatchEngine
    from sutazai.engines.llama_cpp import LlamaCppEngine

    base = ModelCatalog.load(PROJECT_ROOT / "models", include_disabled=True).get(args.model)
    assert base is not None, f"no model {args.model}"
    gguf = resolve_model_path(base, Path(tempfile.gettempdir()) / "sutazai-bench")
    cpu = base.cpu.model_dump()
    slots = base.model_copy(update={"cpu": CPUOptions(**cpu | {"engine": "slots"})})
    batched = base.model_copy(
        update={
            "cpu": CPUOptions(
                **cpu | {"engine": "batched", "threads": args.threads or cpu["threads"], "max_sequences": args.streams}
            )
        }
    )
    builds = {
        "slots": lambda: LlamaCppEngine(slots, gguf),
        "batched": lambda: LlamaBatchEngine(batched, gguf),
        "batched-mixed": lambda: LlamaBatchEngine(batched, gguf, kv_unified=True),
        "batched-repack": lambda: LlamaBatchEngine(batched, gguf, batch_invariant=False),
    }
    table: dict[str, dict[str, float]] = {}
    for name in args.engines.split(","):
        engine = builds[name]()
        try:
            table[name] = await measure(
                engine_streamer(engine, args.top_p, args.temperature), args.streams, args.tokens, args.rounds
            )
        finally:
            engine.close()
        print(name, table[name], flush=True)
    if args.llama_server:
        table["llama-server"] = await run_server(args.llama_server, gguf, base, args)
    columns = list(next(iter(table.values())))
    print(
        f"\n{args.model}, {args.tokens} tokens, temperature {args.temperature}, top_p {args.top_p}, "
        f"top_k {base.sampling.top_k} (slots: 0); slots {base.cpu.slots} x {base.cpu.threads_per_slot} thread, "
        f"batched {batched.cpu.threads or base.resources.num_cpus} thread(s), {args.streams} sequences"
    )
    print("| engine | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")


if __name__ == "__main__":
    asyncio.run(main())
