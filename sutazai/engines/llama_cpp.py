"""CPU engine: llama.cpp (llama-cpp-python) with parallel slots.

One `Llama` object serves one request at a time and is not thread-safe, so a
replica holds `slots` of them: the GGUF is mmap-ed, so weights are shared and
each slot costs only its KV cache. Decoding runs in worker threads (ctypes drops
the GIL), so slots really run in parallel. The decode loop is our own (on
`Llama.generate`) so that token counts are exact, stop strings never leak into
the output, seeds apply per request and a client that goes away frees its slot
after the current token. A request with a `json_schema` decodes under the llama.cpp grammar
made from it (compiled once per schema); one without decodes free, at full speed.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llama_cpp
from jinja2.exceptions import TemplateError

from sutazai import metrics
from sutazai.catalog import ModelSpec
from sutazai.engines.cpu_kernels import plain_kernels_for_llama
from sutazai.engines.prompts import ChatTemplate
from sutazai.schemas.engine import (
    EngineError,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    Usage,
)

logger = logging.getLogger("sutazai.engine.llama_cpp")

MAX_CHARS_PER_TOKEN = 8  # no tokenizer packs more characters into one token of ordinary text
_MARK = re.compile("\x00(\\d+)\x00")


def _drop_oldest(messages: list[dict[str, Any]], sizes: list[int], budget: int) -> list[dict[str, Any]]:
    """The messages without their oldest droppable turns, until the sizes fit `budget`
    (the system prompt and the last message always stay)."""
    total = sum(sizes)
    keep = [True] * len(messages)
    for i, message in enumerate(messages[:-1]):
        if total <= budget:
            break
        if message["role"] != "system":
            keep[i] = False
            total -= sizes[i]
    return [m for m, k in zip(messages, keep, strict=True) if k]


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
        with plain_kernels_for_llama():  # see cpu_kernels: no repacked or AMX kernels
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
        self._use_template(spec)
        self.n_ctx = spec.context_length
        self._special_template = self._template_uses_special_tokens()
        self._grammars: dict[str, llama_cpp.LlamaGrammar] = {}
        self._grammar_lock = threading.Lock()
        self._waiting = 0

    @property
    def slots(self) -> int:
        return self.spec.cpu.slots

    @property
    def free_slots(self) -> int:
        return self._slots.qsize()

    def _piece(self, token: int) -> str:
        return self._vocab_owner.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, bos: bool = True, special: bool = False) -> list[int]:
        """User text is tokenized with `special=False`: typing "<start_of_turn>" must not forge a turn."""
        return self._vocab_owner.tokenize(text.encode("utf-8"), add_bos=bos, special=special)

    def _use_template(self, spec: ModelSpec) -> None:
        """The chat template (the model file's, else the GGUF's) and its stops, read through
        `_vocab_owner`: both engines set them up this way."""
        template = spec.chat_template or self._vocab_owner.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"model {spec.name} has no chat template: set `chat_template` in its model file")
        self.template = ChatTemplate(
            template,
            bos_token=self._piece(self._vocab_owner.token_bos()),
            eos_token=self._piece(self._vocab_owner.token_eos()),
        )
        self.chat_stop = list(spec.chat_stop)

    def _template_uses_special_tokens(self) -> bool:
        try:
            skeleton = self.template.render([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}])
        except TemplateError:
            return True  # a template with rules: take the path that never lets text become special tokens
        return self.tokenize(skeleton, special=True) != self.tokenize(skeleton)

    def render_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        """The chat prompt's tokens: the template's own markers as special tokens, the messages' text never."""
        if not self._special_template:
            return self.tokenize(self.template.render(messages))
        marks = [f"\x00{i}\x00" for i in range(len(messages))]  # NUL never occurs in validated text
        rendered = self.template.render([m | {"content": mark} for m, mark in zip(messages, marks, strict=True)])
        pieces = _MARK.split(rendered)  # template, index, template, index, ..., template
        if sorted(int(i) for i in pieces[1::2]) != list(range(len(messages))):
            # The template changed the text it was given: neutralise special tokens in the whole prompt.
            return self.tokenize(self.template.render(messages))
        tokens = self.tokenize(pieces[0], special=True)
        for index, text in zip(pieces[1::2], pieces[2::2], strict=True):
            tokens += self.tokenize(messages[int(index)]["content"], bos=False)
            tokens += self.tokenize(text, bos=False, special=True)
        return tokens

    def prepare(self, request: GenerationRequest) -> tuple[list[int], int, list[str]]:
        """Prompt tokens, the max_tokens that fit, and stop strings for a request.

        Runs in a worker thread (it tokenizes up to a whole request body). A history too
        long for the context loses its oldest turns (never the system prompt or the last
        message): first by characters (cheap, bounds the work), then by each message's
        token count, measured once; the prompt is rendered again only after dropping.
        """
        try:
            return self._prepare(request)
        except TemplateError as exc:  # e.g. a chat template that refuses the order of roles
            raise EngineError("invalid_messages", f"the model's chat template refused the messages: {exc}") from None

    def grammar(self, schema: dict[str, Any] | None) -> llama_cpp.LlamaGrammar | None:
        """The grammar for a JSON schema, compiled once per schema (the tool set of an agent repeats).
        A schema the converter refuses is the caller's error."""
        if schema is None:
            return None
        key = json.dumps(schema)  # property order is output order: not sorted
        with self._grammar_lock:
            grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as exc:  # the converter raises plain exceptions of several kinds
                raise EngineError("invalid_schema", f"the JSON schema cannot be used for decoding: {exc}") from None
            with self._grammar_lock:
                if len(self._grammars) >= 256:
                    self._grammars.pop(next(iter(self._grammars)))
                self._grammars[key] = grammar
        return grammar

    def _prepare(self, request: GenerationRequest) -> tuple[list[int], int, list[str]]:
        stops = list(request.stop)
        if request.messages is None:
            tokens = self.tokenize(request.prompt or "")
        else:
            if request.json_schema is None:  # constrained JSON ends at the grammar's end, not at a blank line
                stops += [s for s in self.chat_stop if s not in stops]
            messages = [m.model_dump() for m in request.messages]
            budget = self.n_ctx - request.max_tokens
            messages = _drop_oldest(messages, [len(m["content"]) for m in messages], budget * MAX_CHARS_PER_TOKEN)
            tokens = self.render_tokens(messages)
            for _ in range(3):  # the per-message estimate is close; a second pass is rare
                if len(tokens) <= budget:
                    break
                counts = [len(self.tokenize(m["content"], bos=False)) for m in messages]
                overhead = max(0, len(tokens) - sum(counts)) // max(1, len(messages))
                kept = _drop_oldest(messages, [c + overhead for c in counts], budget)
                if len(kept) == len(messages):
                    break
                messages = kept
                tokens = self.render_tokens(messages)
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
        grammar: llama_cpp.LlamaGrammar | None = None,
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
            prompt,
            temp=request.temperature,
            top_p=request.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            grammar=grammar,
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

    def _record_load(self) -> None:
        model = self.spec.name
        metrics.REQUESTS_RUNNING.record(self.slots - self._slots.qsize(), model=model)
        metrics.REQUESTS_WAITING.record(self._waiting, model=model)

    def _give_back(self, llama: llama_cpp.Llama) -> None:
        self._slots.put_nowait(llama)
        self._record_load()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yields text chunks as they decode, then a final chunk with finish_reason and usage."""
        arrived = time.perf_counter()
        prompt, max_tokens, stops = await asyncio.to_thread(self.prepare, request)
        grammar = await asyncio.to_thread(self.grammar, request.json_schema) if request.json_schema else None
        self._waiting += 1
        self._record_load()
        try:
            llama = await self._slots.get()
        finally:
            self._waiting -= 1
        self._record_load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def emit(text: str) -> None:
            if text:
                loop.call_soon_threadsafe(queue.put_nowait, text)

        def run() -> tuple[str, int]:
            try:
                return self._decode(
                    llama, prompt, max_tokens, stops, request, emit, cancelled, request.messages is not None, grammar
                )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        future = loop.run_in_executor(self._executor, run)
        # The slot goes back when the thread is done, whatever happens to this generator.
        future.add_done_callback(lambda _: self._give_back(llama))
        model, last = self.spec.name, None
        try:
            while (item := await queue.get()) is not _END:
                now = time.perf_counter()
                if last is None:
                    metrics.TIME_TO_FIRST_TOKEN.record(now - arrived, model=model)
                else:
                    metrics.INTER_TOKEN_LATENCY.record(now - last, model=model)
                last = now
                yield GenerationChunk(text=item)
            finish, completion_tokens = await future
            metrics.PROMPT_TOKENS.record(len(prompt), model=model)
            metrics.GENERATION_TOKENS.record(completion_tokens, model=model)
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
