"""The CPU engine against llama.cpp's own `llama-server`, on the same GGUF and sampling.

    .venv/bin/python bench/llama_server_peer.py --base-url http://127.0.0.1:8000 --token sk-... \
        [--llama-server PATH] [--threads 1] [--repeats 3]

Both servers get the same requests from the same async httpx client: `/v1/completions`,
streamed, 64 tokens, the model file's sampling (Gemma: temperature 0.7, top-k 64, top-p 0.95,
min-p 0), a seed per request; tokens counted from the usage each server reports (else one per
streamed chunk). Measured: one stream (tok/s, TTFT), then 8 at once (aggregate tok/s, TTFT p50),
the two servers taking turns request by request (round by round for 8 streams), so that a noisy
spell of the machine falls on both; each figure is the median over the repeats.
llama-server runs with the threads our replica's engine uses (`--threads`, default: the model
file's, i.e. its CPUs) and `-np 8` (8 sequences, as our engine), so both have the same cores.
The binary: --llama-server, else .data/peers/llama-server-*, else a row says it is not built
(bench/peers/build_llama_server.sh builds it). Prints a table, then a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from serving import wait_healthy  # bench/serving.py: scripts here run from bench/

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPT = "Once upon a time, in a small village at the edge of a great forest, there lived"
TOKENS = 64
STREAMS = 8


def find_binary(given: str | None) -> Path | None:
    if given:
        return Path(given)
    found = sorted((ROOT / ".data" / "peers").glob("llama-server-*"))
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def one_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, float, int]:
    """(seconds to the first token, seconds in all, completion tokens) of one streamed completion."""
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    usage_tokens: int | None = None
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage_tokens = event["usage"].get("completion_tokens")
            if any(c.get("text") for c in event.get("choices") or []):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
    took = time.perf_counter() - started
    return (first if first is not None else took), took, usage_tokens if usage_tokens is not None else chunks


class Server:
    """One server under test: where it is, how to call it, and its figures so far."""

    def __init__(self, base: str, headers: dict[str, str], extra: dict[str, Any]) -> None:
        self.base, self.headers, self.extra = base, headers, extra
        self.singles: list[tuple[float, float, int]] = []  # (TTFT, seconds, tokens) per single stream
        self.batches: list[tuple[list[tuple[float, float, int]], float]] = []  # (streams, wall) per round

    def body(self, seed: int) -> dict[str, Any]:
        return {
            "prompt": PROMPT,
            "max_tokens": TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
            "seed": seed,
        } | self.extra

    def client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
        return httpx.AsyncClient(base_url=self.base, headers=self.headers, limits=limits, timeout=300)

    def figures(self) -> dict[str, float]:
        return {
            "single_tok_s": statistics.median(tokens / took for _, took, tokens in self.singles),
            "single_ttft_s": statistics.median(ttft for ttft, _, _ in self.singles),
            "single_tokens": statistics.median(tokens for _, _, tokens in self.singles),
            "multi_tok_s": statistics.median(sum(t for _, _, t in many) / wall for many, wall in self.batches),
            "multi_ttft_p50_s": statistics.median(
                statistics.median(ttft for ttft, _, _ in many) for many, _ in self.batches
            ),
            "multi_tokens": statistics.median(sum(t for _, _, t in many) for many, _ in self.batches),
        }


async def measure(servers: list[Server], repeats: int, rounds: int) -> None:
    """Turn about, so that both see the same machine: a warm-up each (one stream, then one
    round of 8: every sequence id / slot has served once, as in steady serving), then `repeats`
    single streams alternating between the servers, then `rounds` rounds of 8 streams alternating."""
    clients = [server.client() for server in servers]
    try:
        # seeds new to this run: a seeded request is deterministic, so a seed used before (an
        # earlier run on the same data) would be answered from SutazAI's response cache
        seed = random.randrange(1 << 30)
        for server, client in zip(servers, clients, strict=True):
            await one_stream(client, server.body(seed))
            await asyncio.gather(*(one_stream(client, server.body(seed + 1000 + i)) for i in range(STREAMS)))
        for i in range(repeats):
            for server, client in zip(servers, clients, strict=True):
                server.singles.append(await one_stream(client, server.body(seed + 1 + i)))
        for r in range(rounds):
            for server, client in zip(servers, clients, strict=True):
                started = time.perf_counter()
                bodies = [server.body(seed + 100 + STREAMS * r + i) for i in range(STREAMS)]
                many = await asyncio.gather(*(one_stream(client, body) for body in bodies))
                server.batches.append((list(many), time.perf_counter() - started))
    finally:
        for client in clients:
            await client.aclose()


def gguf_path(data_dir: Path) -> tuple[Path, Any]:
    from sutazai.catalog import ModelCatalog
    from sutazai.engines.model_files import resolve_model_path
    from sutazai.sizing import Machine

    catalog = ModelCatalog.load(ROOT / "models", machine=Machine(cpus=os.cpu_count() or 1, memory_bytes=1 << 34))
    spec = catalog.specs[catalog.default_name()]
    return resolve_model_path(spec, data_dir), spec


def start_llama_server(binary: Path, gguf: Path, threads: int, context: int) -> tuple[subprocess.Popen, str, str]:
    """llama-server with its defaults; where its repacked kernels kill it (SIGILL, or SIGSEGV on
    another VM of the same kind: a CPU that reports AMX the VM does not run, see
    sutazai/engines/cpu_kernels.py), again with `--no-repack`, the plain kernels our engine
    runs. Returns (process, base URL, note)."""
    for extra, note in (
        ([], ""),
        (["--no-repack"], "llama-server --no-repack (its repacked/AMX kernels die here)"),
    ):
        port = free_port()
        cmd = [str(binary), "-m", str(gguf), "-t", str(threads), "-tb", str(threads), "-np", str(STREAMS)]
        cmd += ["-c", str(context * STREAMS), "--host", "127.0.0.1", "--port", str(port), "--no-webui", *extra]
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(process, base, 120, f"llama-server ({' '.join(cmd)})")
        except SystemExit:
            if process.returncode not in (-signal.SIGILL, -signal.SIGSEGV):
                raise
            continue
        return process, base, note
    raise SystemExit("llama-server died even with --no-repack")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the running SutazAI app")
    parser.add_argument("--token", required=True, help="an API key of it")
    parser.add_argument("--llama-server", help="the llama-server binary")
    parser.add_argument("--data-dir", default=str(ROOT / ".data"), help="where the packaged GGUF is assembled")
    parser.add_argument("--threads", type=int, help="llama-server threads (default: our engine's)")
    parser.add_argument("--repeats", type=int, default=9, help="single streams per server")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of 8 streams per server")
    args = parser.parse_args()

    gguf, spec = gguf_path(Path(args.data_dir))
    threads = args.threads or spec.cpu.threads or max(1, math.ceil(spec.resources.num_cpus))
    sampling = spec.sampling
    common = {"temperature": sampling.temperature, "top_p": sampling.top_p, "model": spec.name}
    load = os.getloadavg()[0]
    ours = Server(args.base_url, {"Authorization": f"Bearer {args.token}"}, common)
    binary = find_binary(args.llama_server)
    theirs: Server | None = None
    note = ""
    if binary is None or not binary.exists():
        note = "llama-server not built: bench/peers/build_llama_server.sh (or --llama-server PATH)"
        asyncio.run(measure([ours], args.repeats, args.rounds))
    else:
        process, base, note = start_llama_server(binary, gguf, threads, spec.context_length)
        try:
            peer_sampling = common | {"top_k": sampling.top_k, "min_p": sampling.min_p, "ignore_eos": True}
            theirs = Server(base, {}, peer_sampling)
            asyncio.run(measure([ours, theirs], args.repeats, args.rounds))
        finally:
            process.terminate()
            process.wait(30)
    mine_figures, peer_figures = ours.figures(), (theirs.figures() if theirs else None)

    print(f"\n{spec.name}, {TOKENS} tokens, {threads} thread(s) each, load {load:.2f} at the start; {note}\n")
    print("| measure | SutazAI (HTTP, Serve) | llama-server | ratio |")
    print("|---|---|---|---|")
    for key, label in (
        ("single_tok_s", "1 stream tok/s"),
        ("single_ttft_s", "1 stream TTFT s"),
        ("multi_tok_s", f"{STREAMS} streams aggregate tok/s"),
        ("multi_ttft_p50_s", f"{STREAMS} streams TTFT p50 s"),
        ("single_tokens", "tokens per single run"),
    ):
        mine, peer = mine_figures[key], (peer_figures or {}).get(key)
        ratio = f"{mine / peer:.2f}x" if peer else "-"
        print(f"| {label} | {mine:.2f} | {'-' if peer is None else f'{peer:.2f}'} | {ratio} |")
    print(json.dumps({"threads": threads, "sutazai": mine_figures, "llama_server": peer_figures, "note": note}))


if __name__ == "__main__":
    main()
