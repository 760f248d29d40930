"""Prompt reuse in the batched engine: TTFT of turns 2..N of a growing chat, cold vs warm.

One `LlamaBatchEngine` with the model file's settings; each turn appends the model's answer
and a new user message to the history (~300 tokens at turn 2). "cold" clears every sequence
id's cache before the request (what the engine did before prompt reuse); "warm" keeps it.
Both answer the same request (same seed), so they run the same prompt. Prints a Markdown
table, and as the last line one JSON object.

    .venv/bin/python bench/prefix_reuse.py [--turns 6] [--tokens 32] [--kv-unified]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import llama_cpp

from sutazai.catalog import CPUOptions, ModelCatalog, ModelSource
from sutazai.engines.llama_batch import LlamaBatchEngine
from sutazai.engines.model_files import resolve_model_path
from sutazai.schemas.engine import ChatMessage, GenerationRequest
from sutazai.settings import PROJECT_ROOT

SYSTEM = "You are a patient tutor. " + "Answer clearly, with one example, in short paragraphs. " * 25
QUESTIONS = [
    "What is a prime number?",
    "Why are there infinitely many primes?",
    "What is a composite number?",
    "How do I test if 91 is prime?",
    "What is the sieve of Eratosthenes?",
    "What are twin primes?",
    "What is a Mersenne prime?",
]


def clear(engine: LlamaBatchEngine) -> None:
    for seq_id in list(engine._cached):
        llama_cpp.llama_memory_seq_rm(engine._memory, seq_id, -1, -1)
    engine._cached.clear()


async def ttft(engine: LlamaBatchEngine, request: GenerationRequest) -> tuple[float, str]:
    start, first, texts = time.perf_counter(), None, []
    async for chunk in engine.stream(request):
        if chunk.text and first is None:
            first = time.perf_counter() - start
        texts.append(chunk.text)
    return (first if first is not None else time.perf_counter() - start), "".join(texts)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--kv-unified", action="store_true")
    args = parser.parse_args()
    spec = ModelCatalog.load(PROJECT_ROOT / "models").get("gemma3-270m")
    gguf = resolve_model_path(spec, Path(tempfile.gettempdir()) / "sutazai-models")
    cpu = CPUOptions(engine="batched", max_sequences=8, threads=spec.cpu.threads or 1)
    spec = spec.model_copy(update={"source": ModelSource(path=str(gguf)), "cpu": cpu})
    engine = LlamaBatchEngine(spec, gguf, batch_invariant=not args.kv_unified, kv_unified=args.kv_unified)
    messages = [ChatMessage(role="system", content=SYSTEM)]
    rows = []
    previous: GenerationRequest | None = None
    try:
        for turn in range(1, args.turns + 1):
            messages.append(ChatMessage(role="user", content=QUESTIONS[(turn - 1) % len(QUESTIONS)]))
            request = GenerationRequest(
                messages=list(messages), max_tokens=args.tokens, temperature=0.7, top_p=0.95, seed=turn
            )
            prompt_len = len(engine.prepare(request)[0])
            clear(engine)
            cold, cold_text = await ttft(engine, request)
            clear(engine)
            # warm: the cache as the previous turn left it (the previous turn's request run again)
            if previous is not None:
                await ttft(engine, previous)
            reused = engine.tokens_reused
            warm, warm_text = await ttft(engine, request)
            reused = engine.tokens_reused - reused
            if turn > 1:
                rows.append(
                    dict(
                        turn=turn,
                        prompt_tokens=prompt_len,
                        reused=reused,
                        cold_ms=cold * 1e3,
                        warm_ms=warm * 1e3,
                        same_text=cold_text == warm_text,
                    )
                )
            messages.append(ChatMessage(role="assistant", content=warm_text))
            previous = request
    finally:
        engine.close()
    mode = "kv_unified" if args.kv_unified else "batch_invariant"
    print(f"prompt reuse, {mode}, n_batch {engine.n_batch}, threads {engine.threads}\n")
    print("| turn | prompt tokens | reused | TTFT cold ms | TTFT warm ms | ratio | same text |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['turn']} | {r['prompt_tokens']} | {r['reused']} | {r['cold_ms']:.0f} | {r['warm_ms']:.0f} "
            f"| {r['cold_ms'] / r['warm_ms']:.2f}x | {r['same_text']} |"
        )
    print(json.dumps({"bench": "prefix_reuse", "mode": mode, "n_batch": engine.n_batch, "rows": rows}))


if __name__ == "__main__":
    asyncio.run(main())
