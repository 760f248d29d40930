"""CPU engine: llama.cpp (llama-cpp-python) with parallel slots.

One `Llama` object serves one request at a time and is not thread-safe, so a
replica holds `slots` of them: the GGUF is mmap-ed, so weights are shared and
each slot costs only its KV cache. Decoding runs in worker threads (ctypes drops
the GIL), so slots really run in parallel. The decode loop is our own (on
`Llama.generate`) so that token counts are exact, stop strings never leak into
the output, seeds apply per request and a client that goes away frees its slot
after the current token.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import llama_cpp

from sutazai.catalog import ModelSpec
from sutazai.engines.prompts import ChatTemplate
from sutazai.schemas.engine import (
    EngineError,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    Usage,
)

logger = logging.getLogger("sutazai.engine.llama_cpp")

_END = object()


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class LlamaCppEngine:
    def __init__(self, spec: ModelSpec, model_path: Path) -> None:
        self.spec = spec
        opts = spec.cpu
        contexts = [
            llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=spec.context_length,
                n_batch=opts.batch_size,
                n_threads=opts.threads_per_slot,
                n_threads_batch=opts.threads_per_slot,
                use_mmap=True,
                verbose=False,
            )
            for _ in range(opts.slots)
        ]
        self._slots: asyncio.Queue[llama_cpp.Llama] = asyncio.Queue()
        for context in contexts:
            self._slots.put_nowait(context)
        # Tokenizing reads only the vocabulary, which is safe beside a decoding slot.
        self._vocab_owner = contexts[0]
        self._executor = ThreadPoolExecutor(max_workers=opts.slots, thread_name_prefix=f"llama-{spec.name}")
        template = spec.chat_template or self._vocab_owner.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"model {spec.name} has no chat template: set `chat_template` in its model file")
        self.template = ChatTemplate(
            template,
            bos_token=self._piece(self._vocab_owner.token_bos()),
            eos_token=self._piece(self._vocab_owner.token_eos()),
        )
        self.chat_stop = list(spec.chat_stop)
        self.n_ctx = spec.context_length

    @property
    def slots(self) -> int:
        return self.spec.cpu.slots

    @property
    def free_slots(self) -> int:
        return self._slots.qsize()

    def _piece(self, token: int) -> str:
        return self._vocab_owner.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        return self._vocab_owner.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def prepare(self, request: GenerationRequest) -> tuple[list[int], int, list[str]]:
        """Prompt tokens, the max_tokens that fit, and stop strings for a request."""
        stops = list(request.stop)
        if request.messages is not None:
            stops += [s for s in self.chat_stop if s not in stops]
            messages = [m.model_dump() for m in request.messages]
            tokens = self.tokenize(self.template.render(messages))
            # Drop the oldest turns (never the system prompt or the last message) until it fits.
            while len(tokens) + request.max_tokens > self.n_ctx:
                droppable = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
                if not droppable:
                    break
                del messages[droppable[0]]
                tokens = self.tokenize(self.template.render(messages))
        else:
            tokens = self.tokenize(request.prompt or "")
        room = self.n_ctx - len(tokens)
        if room < 1:
            raise EngineError(
                "context_length_exceeded",
                f"the prompt has {len(tokens)} tokens; model {self.spec.name} has a context of {self.n_ctx}",
            )
        return tokens, min(request.max_tokens, room), stops

    def _decode(
        self,
        llama: llama_cpp.Llama,
        prompt: list[int],
        max_tokens: int,
        stops: list[str],
        request: GenerationRequest,
        emit: Callable[[str], None],
        cancelled: threading.Event,
        chat: bool,
    ) -> tuple[str, int]:
        """Runs in a worker thread; returns (finish_reason, completion_tokens)."""
        llama.set_seed(request.seed if request.seed is not None else random.getrandbits(31))
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llama._model.vocab
        held = ""
        started = not chat  # a chat answer starts at its first non-blank character
        count = 0
        finish = "length"
        for token in llama.generate(
            prompt, temp=request.temperature, top_p=request.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0
        ):
            if cancelled.is_set():
                finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            held += utf8.decode(llama.detokenize([token]))
            if not started:
                held = held.lstrip()
                started = bool(held)
            hits = [i for i in (held.find(s) for s in stops) if i >= 0]
            if hits:
                emit(held[: min(hits)])
                return "stop", count
            safe = len(held) - _held_back(held, stops)
            if safe > 0:
                emit(held[:safe])
                held = held[safe:]
            if count >= max_tokens:
                break
        held += utf8.decode(b"", final=True)
        if chat:
            held = held.rstrip()
        if held and finish != "cancelled":
            emit(held)
        return finish, count

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yields text chunks as they decode, then a final chunk with finish_reason and usage."""
        prompt, max_tokens, stops = self.prepare(request)
        llama = await self._slots.get()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def emit(text: str) -> None:
            if text:
                loop.call_soon_threadsafe(queue.put_nowait, text)

        def run() -> tuple[str, int]:
            try:
                return self._decode(
                    llama, prompt, max_tokens, stops, request, emit, cancelled, request.messages is not None
                )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        future = loop.run_in_executor(self._executor, run)
        # The slot goes back when the thread is done, whatever happens to this generator.
        future.add_done_callback(lambda _: self._slots.put_nowait(llama))
        try:
            while (item := await queue.get()) is not _END:
                yield GenerationChunk(text=item)
            finish, completion_tokens = await future
            yield GenerationChunk(
                finish_reason=finish, usage=Usage(prompt_tokens=len(prompt), completion_tokens=completion_tokens)
            )
        finally:
            cancelled.set()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        parts: list[str] = []
        async for chunk in self.stream(request):
            if chunk.usage is not None:
                return GenerationResult(text="".join(parts), finish_reason=chunk.finish_reason, usage=chunk.usage)
            parts.append(chunk.text)
        raise RuntimeError("engine stream ended without a final chunk")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
