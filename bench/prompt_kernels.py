"""The batched engine's two ways of feeding prompts (`cpu.prompt_kernels`), on fresh prompts.

`plain` (the shipped default): prompts in pieces on the decode context's plain kernels, many
sequences per call, any cached prefix reused. `repacked`: a second context on llama.cpp's
repacked kernels, each prompt's chunks alone, whole 256-token chunks reused (not on CPUs that
report AMX). Both keep the seed promise. Measured in process, one thread, prompts the engine has
never seen (so no reuse): TTFT of one ~500-token prompt, and TTFT p50 of 8 ~80-word prompts
arriving together; each configuration in a process of its own (ggml reads its kernel switches
once per process), taking turns.

    .venv/bin/python bench/prompt_kernels.py [--repeats 3] [--turns 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

from sutazai.catalog import CPUOptions, ModelCatalog, ModelSource
from sutazai.engines.cpu_kernels import cpu_reports_amx
from sutazai.engines.llama_batch import LlamaBatchEngine
from sutazai.engines.model_files import resolve_model_path
from sutazai.schemas.engine import GenerationRequest
from sutazai.settings import PROJECT_ROOT

WORDS = [
    "the",
    "river",
    "bends",
    "past",
    "old",
    "mills",
    "and",
    "quiet",
    "fields",
    "where",
    "farmers",
    "tell",
    "stories",
    "of",
    "winters",
    "long",
    "gone",
]


def text(i: int, n: int) -> str:
    """n words no other call of this bench uses in that order (numbers keep the prompts apart)."""
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] + str((i * 131 + j) % 97) for j in range(n))


def measure(kernels: str, repeats: int, salt: int) -> dict[str, list[float]]:
    """In this process: the engine with `kernels`, then the TTFTs."""
    if kernels == "repacked" and cpu_reports_amx():
        raise SystemExit("this CPU reports AMX: no repacked prompt context here")
    spec = ModelCatalog.load(PROJECT_ROOT / "models").get("gemma3-270m")
    gguf = resolve_model_path(spec, PROJECT_ROOT / ".data")
    cpu = CPUOptions(engine="batched", max_sequences=8, threads=1)
    engine = LlamaBatchEngine(
        spec.model_copy(update={"source": ModelSource(path=str(gguf)), "cpu": cpu}),
        gguf,
        repacked_prompts=kernels == "repacked",
    )

    async def ttft(prompt: str, seed: int) -> float:
        started = time.perf_counter()
        request = GenerationRequest(prompt=prompt, max_tokens=2, temperature=0.7, top_p=0.95, seed=seed)
        async for _ in engine.stream(request):
            break
        return time.perf_counter() - started

    async def run() -> dict[str, list[float]]:
        await ttft("warm up", 1)
        long = [await ttft(text(salt + r, 250), r) for r in range(repeats)]
        eight = []
        for r in range(repeats):
            prompts = [text(salt + 1000 + 10 * r + i, 40) for i in range(8)]
            eight.append(statistics.median(await asyncio.gather(*(ttft(p, i) for i, p in enumerate(prompts)))))
        return {"long_s": long, "eight_p50_s": eight}

    try:
        return asyncio.run(run())
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="prompts of each kind per process")
    parser.add_argument("--turns", type=int, default=2, help="processes per configuration, alternating")
    parser.add_argument("--only", choices=["plain", "repacked"], help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--salt", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.repeats, args.salt)))
        return
    figures: dict[str, dict[str, list[float]]] = {"plain": {}, "repacked": {}}
    for turn in range(args.turns):
        for kernels in figures:
            cmd = [sys.executable, __file__, "--only", kernels, "--repeats", str(args.repeats), "--salt", str(turn)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
            for key, values in json.loads(out.stdout.splitlines()[-1]).items():
                figures[kernels].setdefault(key, []).extend(values)
    print("\n| prompt_kernels | TTFT, a fresh ~500-token prompt (s) | TTFT p50, 8 fresh ~80-word prompts at once (s) |")
    print("|---|---|---|")
    for kernels, got in figures.items():
        print(f"| {kernels} | {statistics.median(got['long_s']):.3f} | {statistics.median(got['eight_p50_s']):.3f} |")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
