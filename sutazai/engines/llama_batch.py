"""CPU engine: llama.cpp with continuous batching (one context, many sequences).

One llama.cpp context per replica holds up to `cpu.max_sequences` sequences, each in its
own KV stream of `context_length` cells (n_ctx = sequences x context). A scheduler thread owns
the context: between two decode steps it frees the sequences that ended or were abandoned,
admits queued requests into free sequence ids, and decodes the next token of EVERY running
sequence in one `llama_batch` (one llama_decode, one output row per sequence); new sequences'
prompts are fed in the same step, in a llama_decode of their own: pieces of fewer than 64
tokens, one of every feeding prompt per call, whose numbers are those of a prompt fed alone
(PIECE_TOKENS), so a seed gives the same text alone or batched and cached cells are reused
whatever their length (mixed into the token batch, llama.cpp would cut a prompt into one-token
pieces, a pass over the weights each; `kv_unified=True` mixes them in one batch, one KV buffer,
as llama-server does, and drops the seed promise). The scheduler is a thread of its
own that steps back to back, as llama-server's loop does: it never waits for the event loop
(ctypes drops the GIL in the decode), takes new requests from an inbox between steps and
hands each step's text to the streams' loops in one call. With the steps driven from the
event loop (decode in an executor, the rest on the loop), the decode thread sat idle ~6% of
a single stream's time in a Serve replica, waiting for the loop to come round between steps.
Each sequence samples with llama.cpp's native sampler chain (grammar for a json_schema,
top-k, top-p, min-p, temperature, dist(seed)) from its own output row.

Prompt preparation (chat templating, history cutting, context check), the grammar cache
and stop-string hold-back are the slots engine's (`LlamaCppEngine`): this class inherits
them, so both engines render, cut and count the same way.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import _internals, _logger

from sutazai import metrics
from sutazai.catalog import ModelSpec
from sutazai.engines.cpu_kernels import cpu_reports_amx, plain_model_params
from sutazai.engines.llama_cpp import LlamaCppEngine, _held_back
from sutazai.engines.top_k import TopKSampling
from sutazai.schemas.engine import EngineError, GenerationChunk, GenerationRequest, PromptTokensDetails, Usage

logger = logging.getLogger("sutazai.engine.llama_batch")

_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's "pick a random seed"


class _Vocab:
    """What the inherited prompt code needs from a `Llama` (tokenize, detokenize, metadata,
    BOS/EOS), served by the model alone: no second context."""

    def __init__(self, model: _internals.LlamaModel) -> None:
        self._model = model
        self.metadata = model.metadata()

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._model.tokenize(text, add_bos, special)

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        return self._model.detokenize(tokens, special=special)

    def token_bos(self) -> int:
        return self._model.token_bos()

    def token_eos(self) -> int:
        return self._model.token_eos()


class _Sequence:
    """One request's life in the batch: prompt feeding, sampling state, text hold-back."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt: list[int],
        max_tokens: int,
        stops: list[str],
        grammar: llama_cpp.LlamaGrammar | None,
    ) -> None:
        self.request = request
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.stops = stops
        self.grammar = grammar
        self.chat = request.messages is not None
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()  # where `out` is read: the scheduler thread posts to it
        self.seq_id = -1
        self.sampler: Any = None
        self.constrained: Any = None  # json_schema: the chain with the grammar first
        self.fed = 0  # prompt tokens decoded so far (or found in the sequence id's cache)
        self.reused = 0  # prompt tokens found in the sequence id's cache
        self.generated: list[int] = []  # sampled tokens decoded into the KV (after the prompt)
        self.pos = 0  # next KV position
        self.next_token: int | None = None  # sampled, to be decoded in the next step
        self.count = 0  # completion tokens
        self.held = ""
        self.started = not self.chat  # a chat answer starts at its first non-blank character
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.cancelled = False
        self.done = False


# Prompt calls per step in batch-invariant mode (each is a pass over the weights). Every sampled
# token waits for its whole step: with a prompt context, where each chunk is a call of its own,
# 8 prompts arriving at once in one step gave 7 of them their first token together after all 7
# calls (TTFT p50 at 8 streams over HTTP 0.71 s); 2 per step let the first ones decode meanwhile
# (0.52 s; 1: 0.55 s). On the plain kernels one call holds a piece of every feeding prompt.
PROMPT_CALLS_PER_STEP = 2

# On llama.cpp's plain kernels (tiled matmul off) a token's numbers do not depend on what shares
# its llama_decode or on how its prompt is cut, as long as no sequence has GGML_FA_TILE_Q (64) or
# more rows in one ubatch: from 64 on, ggml's flash attention takes its tiled path, which rounds
# otherwise. Measured on the shipped GGUF, one thread: a 38-token prompt fed whole, in pieces of
# 1, 7, 20 or 63, or in one call with another prompt gives the same logits to the last bit, and so
# do the following steps; a token at position 559 decoded alone equals it inside a prompt piece;
# a sequence decoding beside a 600-token one equals it decoding alone. So prompts are fed in
# pieces of at most PIECE_TOKENS tokens, many sequences' pieces in one call, and a sequence id's
# cached cells (prompt and answer) are reused whatever their length.
PIECE_TOKENS = 63

# In pieces, a cached prefix in another sequence id is copied when it saves at least this many tokens.
COPY_MIN_TOKENS = 8


class _Call:
    """One llama_decode's tokens (filled into the shared llama_batch in the worker thread)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.pos: list[int] = []
        self.seq: list[int] = []
        self.logits: list[bool] = []
        self.outputs: list[tuple[_Sequence, int]] = []  # sequences sampled from this call, by row
        self.prompt = False  # one sequence's prompt chunk: decoded in the prompt context, if any

    def put(self, token: int, pos: int, seq_id: int, sampled_for: _Sequence | None) -> None:
        if sampled_for is not None:
            self.outputs.append((sampled_for, len(self.tokens)))
        self.tokens.append(token)
        self.pos.append(pos)
        self.seq.append(seq_id)
        self.logits.append(sampled_for is not None)


class LlamaBatchEngine(LlamaCppEngine):
    """Same methods as `LlamaCppEngine` (stream, generate, tokenize, prepare, slots, free_slots,
    close); `slots` is the number of sequences decoded together."""

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        batch_invariant: bool = True,
        kv_unified: bool = False,
        repacked_prompts: bool = False,
    ) -> None:
        """`batch_invariant` runs llama.cpp's plain CPU kernels (`cpu_kernels`): with its repacked
        or tiled ones, a step of 4+ (repacked) or 8+ (tiled) sequences runs another matmul than a
        step of one, so a sequence's logits (hence its sampled text for a seed) would depend on
        what else is in the batch. With the plain ones the same request gives the same tokens
        alone or batched with any others (10 copies of one request together: all equal alone).

        `kv_unified` puts every sequence in one KV buffer and prompt chunks in the same batch as
        the decode tokens: faster at 8 streams, but a sequence's numbers then depend on where its
        cells landed and what shared its batch, so a seed no longer reproduces its text.

        `repacked_prompts` (batch-invariant, a KV stream per sequence) feeds prompts in a second
        context on the same GGUF loaded with llama.cpp's repacked kernels, then copies the
        sequence's KV cells into the decode context, which decodes every later token with the
        plain kernels. Repacked kernels round a row by its place in the call, so a prompt chunk
        is decoded alone and cut at multiples of n_batch, and only whole chunks are reused: no
        batching of prompts, no reuse of a prompt shorter than n_batch. Measured on a 2-core
        AVX-512 EPYC, 20-token prompt: 65 vs 94 ms; the cells' copy 0.4 ms. Costs a second KV
        cache and the repacked weights (RSS 1.30 vs 0.70 GB for the shipped model). Off where
        the CPU reports AMX (`cpu_kernels`: such a VM may kill the process)."""
        # no super().__init__: it would build the slot contexts; the prompt methods need only what is set here
        self.spec = spec
        opts = spec.cpu
        self.n_ctx = spec.context_length  # per sequence, as in the slots engine
        self.max_sequences = min(opts.max_sequences, llama_cpp.llama_max_parallel_sequences())
        self.threads = opts.threads or max(1, math.ceil(spec.resources.num_cpus))
        sampling = spec.sampling
        self.top_k, self.min_p = sampling.top_k, sampling.min_p
        _logger.set_verbose(False)
        llama_cpp.llama_backend_init()
        # batch-invariant: llama.cpp's plain kernels (see cpu_kernels); else its defaults, repacked
        # and AMX kernels included (bench/cpu_engine.py compares; a VM without working AMX dies of SIGILL)
        model_params = plain_model_params() if batch_invariant else llama_cpp.llama_model_default_params()
        self._model = _internals.LlamaModel(path_model=str(model_path), params=model_params, verbose=False)
        self.n_batch = max(opts.batch_size, self.max_sequences)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx * self.max_sequences
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = self.max_sequences
        params.n_threads = params.n_threads_batch = self.threads
        self.kv_unified = kv_unified
        self.batch_invariant = batch_invariant
        params.kv_unified = kv_unified
        params.no_perf = True
        self._context = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self._ctx = self._context.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        # the prompt context: the same shape (a KV stream per sequence id), repacked weights
        self._prompt_model: _internals.LlamaModel | None = None
        self._prompt_context: _internals.LlamaContext | None = None
        self._prompt_ctx: Any = None
        self._prompt_memory: Any = None
        self._state = (ctypes.c_uint8 * 0)()  # a sequence's KV cells on their way between the two
        if repacked_prompts and batch_invariant and not kv_unified:
            if cpu_reports_amx():
                logger.info("model %s: prompts on the plain kernels (the CPU reports AMX)", spec.name)
            else:
                self._prompt_model = _internals.LlamaModel(
                    path_model=str(model_path), params=llama_cpp.llama_model_default_params(), verbose=False
                )
                self._prompt_context = _internals.LlamaContext(model=self._prompt_model, params=params, verbose=False)
                self._prompt_ctx = self._prompt_context.ctx
                self._prompt_memory = llama_cpp.llama_get_memory(self._prompt_ctx)
        # plain kernels, one context: prompts fed in pieces, many per call, every cell reusable
        self._pieces = batch_invariant and not kv_unified and self._prompt_ctx is None
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._probe = (llama_cpp.llama_token_data * 1)()  # one candidate, for grammar checks
        self._vocab = self._model.vocab
        self._top_k = TopKSampling(llama_cpp.llama_vocab_n_tokens(self._vocab), self.top_k)
        self._vocab_owner = _Vocab(self._model)  # type: ignore[assignment]
        self._use_template(spec)
        self._special_template = self._template_uses_special_tokens()
        self._grammars = {}
        self._grammar_lock = threading.Lock()
        self._free_ids = list(range(self.max_sequences - 1, -1, -1))
        # prompt reuse (llama-server's cache_prompt): the tokens each free id's KV cells still hold
        self._cached: dict[int, list[int]] = {}
        self._last_used: dict[int, int] = {}
        self._uses = 0
        self.tokens_fed = 0  # prompt tokens decoded since start (reused ones are not)
        self.tokens_reused = 0  # prompt tokens found in a cache since start
        self.cells_copied = 0  # prefixes copied from another sequence id's cells since start
        # The scheduler thread owns everything below but the inbox (deque appends and pops are
        # atomic), the signal and the `cancelled` flags the streams set.
        self._inbox: deque[_Sequence] = deque()
        self._signal = threading.Event()  # something arrived or was cancelled, or close()
        self._queue: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._outbox: list[tuple[_Sequence, Any]] = []  # this step's items for the streams
        self._load: tuple[int, int] | None = None  # last recorded (running, waiting)
        self._worker_running = False
        self._worker_lock = threading.Lock()  # starting and ending the thread; freeing the batch
        self._closed = False

    # -- what the deployment and the status pages read ------------------------------------

    @property
    def slots(self) -> int:
        return self.max_sequences

    @property
    def free_slots(self) -> int:
        return self.max_sequences - len(self._running)

    @property
    def active(self) -> int:
        """Sequences holding a sequence id (decoding or feeding their prompt)."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._queue) + len(self._inbox)

    def _record_load(self) -> None:
        load = (len(self._running), len(self._queue))
        if load != self._load:  # two gauge sets cost more than a step's other bookkeeping
            self._load = load
            metrics.REQUESTS_RUNNING.record(load[0], model=self.spec.name)
            metrics.REQUESTS_WAITING.record(load[1], model=self.spec.name)

    # -- sampling ---------------------------------------------------------------------------

    def _chain(self, request: GenerationRequest, grammar: llama_cpp.LlamaGrammar | None) -> Any:
        """A native sampler chain: [grammar], then greedy, or top-k, top-p, min-p, temperature, dist(seed)."""
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(params)

        def add(sampler: Any) -> None:
            llama_cpp.llama_sampler_chain_add(chain, sampler)

        if grammar is not None:
            constraint = llama_cpp.llama_sampler_init_grammar(
                self._vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
            )
            if not constraint:
                llama_cpp.llama_sampler_free(chain)
                raise EngineError("invalid_schema", "the JSON schema's grammar was refused by llama.cpp")
            add(constraint)
        if request.temperature <= 0.0:
            add(llama_cpp.llama_sampler_init_greedy())
            return chain
        if self.top_k > 0:
            add(llama_cpp.llama_sampler_init_top_k(self.top_k))
        if request.top_p < 1.0:
            add(llama_cpp.llama_sampler_init_top_p(request.top_p, 1))
        if self.min_p > 0.0:
            add(llama_cpp.llama_sampler_init_min_p(self.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(request.temperature))
        seed = request.seed if request.seed is not None else random.getrandbits(31)
        seed &= 0xFFFFFFFF
        add(llama_cpp.llama_sampler_init_dist(seed if seed != _DEFAULT_SEED else seed - 1))
        return chain

    def _make_sampler(self, seq: _Sequence) -> None:
        """The sequence's chain; a json_schema request gets two: free (sampled first) and
        constrained (grammar first, over the whole vocabulary: used only when the free token
        breaks the grammar; its grammar follows every accepted token)."""
        seq.sampler = self._chain(seq.request, None)
        if seq.grammar is not None:
            seq.constrained = self._chain(seq.request, seq.grammar)

    def _sample(self, seq: _Sequence, row: int, ctx: Any) -> int:
        """Worker thread. Grammar checking one token costs nothing; applying it to 262k candidates
        costs more than the decode (llama.cpp's common sampler does the same)."""
        token = self._top_k.sample(seq.sampler, ctx, row)  # the free chain: top-k first, or greedy
        if seq.constrained is None:
            return token
        grammar = llama_cpp.llama_sampler_chain_get(seq.constrained, 0)
        self._probe[0].id, self._probe[0].logit, self._probe[0].p = token, 1.0, 0.0  # type: ignore[assignment]
        probe = llama_cpp.llama_token_data_array(data=self._probe, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(probe))
        if math.isfinite(self._probe[0].logit):
            llama_cpp.llama_sampler_accept(seq.constrained, token)
            return token
        return llama_cpp.llama_sampler_sample(seq.constrained, ctx, row)

    # -- the scheduler ------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if not self._worker_running:
                self._worker_running = True
                name = f"llama-batch-{self.spec.name}"
                threading.Thread(target=self._work, name=name, daemon=True).start()

    def _post(self, seq: _Sequence, item: Any) -> None:
        """Scheduler thread: `item` for `seq`'s stream, sent at the end of the step."""
        self._outbox.append((seq, item))

    def _flush(self) -> None:
        """Scheduler thread: this step's items, one call per event loop (one wake-up each)."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Sequence, Any]]] = {}
        for seq, item in self._outbox:
            by_loop.setdefault(seq.loop, []).append((seq, item))
        self._outbox = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads those streams any more
                loop.call_soon_threadsafe(_deliver, items)

    def _release(self, seq: _Sequence, *, keep: bool = True) -> None:
        """Frees a running sequence's id and sampler (only between decode steps). Its KV cells stay,
        remembered as the tokens decoded into them, for a later prompt sharing their prefix;
        `keep=False` (a failed step: the cells' state is unknown) clears them."""
        if seq.seq_id >= 0:
            if keep:
                # In pieces (see PIECE_TOKENS) every cell is what a cold feed would compute, the
                # answer's too, as measured with one thread: with more, a one-row decode over 512+
                # cells splits its attention between the threads (ggml's split-KV path), so only
                # the prompt's cells are kept. With a prompt context the cached prefix lives there
                # and a chunk's numbers depend on its rows (a 2-row vs a 90-row chunk changed a
                # greedy text): only whole n_batch chunks, as a cold feed cuts them, are kept.
                if not self.batch_invariant:
                    kept = seq.prompt[: seq.fed] + seq.generated
                elif self._pieces:
                    kept = self._exact_cells(seq)
                else:
                    kept = seq.prompt[: seq.fed // self.n_batch * self.n_batch]
                self._cached[seq.seq_id] = kept
            else:
                self._forget(seq.seq_id)
            self._free_ids.append(seq.seq_id)
            seq.seq_id = -1
        for chain in (seq.sampler, seq.constrained):
            if chain is not None:
                llama_cpp.llama_sampler_free(chain)
        seq.sampler = seq.constrained = None
        with contextlib.suppress(ValueError):
            self._running.remove(seq)

    def _exact_cells(self, seq: _Sequence) -> list[int]:
        """In pieces: the tokens of a running sequence's cells that a cold feed would compute
        the same (see _release)."""
        return seq.prompt[: seq.fed] + (seq.generated if self.threads == 1 else [])

    def _forget(self, seq_id: int) -> None:
        """Clears a sequence id's cells in both contexts."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        if self._prompt_memory is not None:
            llama_cpp.llama_memory_seq_rm(self._prompt_memory, seq_id, -1, -1)
        self._cached.pop(seq_id, None)

    def _end(self, seq: _Sequence, finish: str, *, flush: bool = True) -> None:
        if seq.done:
            return
        seq.done = True
        if flush and finish != "cancelled":
            held = seq.held + seq.utf8.decode(b"", final=True)
            if seq.chat:
                held = held.rstrip()
            if held:
                self._post(seq, held)
        seq.held = ""
        self._post(seq, (finish, seq.count))
        self._release(seq)

    def _fail(self, seq: _Sequence, exc: BaseException) -> None:
        if not seq.done:
            seq.done = True
            self._post(seq, exc)
        self._release(seq, keep=False)

    def _admit(self) -> None:
        while self._queue and self._free_ids:
            seq = self._queue.popleft()
            if seq.cancelled:
                seq.done = True
                continue
            try:
                self._make_sampler(seq)
            except EngineError as exc:
                self._fail(seq, exc)
                continue
            self._assign(seq)
            self._running.append(seq)

    def _assign(self, seq: _Sequence) -> None:
        """A free sequence id for `seq`, chosen first to keep the running ids contiguous, then
        for the longest cached prefix (beyond BOS) shared with the prompt, then one with no
        cache, then the least recently used. Only the cells after that prefix are removed and
        only the rest of the prompt is fed; the last prompt token is always decoded again, for
        a fresh logits row to sample from. In pieces, where every cell is exact, a longer prefix
        held by another id (free, or running: a shared system prompt, the same prompt arriving
        8 times at once) is copied into the chosen one first (llama_state_seq_get/set_data:
        ~1 ms for a few hundred cells, against ~4 ms per token fed on one thread here).

        Contiguity first: with a KV stream per sequence, llama.cpp puts in one ubatch only
        sequences whose ids follow each other (`split_equal`, sequential), and every further
        ubatch reads all the weights again. 8 streams with ids in 8 runs decoded at a third of
        the speed of the same 8 in one run (bench/cpu_engine.py); a reused prefix saves its
        tokens once, a gap costs a pass over the weights at every step."""
        limit = len(seq.prompt) - 1
        whole_chunks = self.batch_invariant and not self._pieces  # a prompt context: see _release
        if whole_chunks:  # the last one always decoded as a cold feed would
            limit = (len(seq.prompt) - 1) // self.n_batch * self.n_batch
        running = {s.seq_id for s in self._running}
        streams = not self.kv_unified  # one KV buffer: any id decodes with any other

        def shared(cells: list[int]) -> int:
            n, top = 0, min(len(cells), limit)
            while n < top and cells[n] == seq.prompt[n]:
                n += 1
            if whole_chunks:
                n = n // self.n_batch * self.n_batch
            return n if n > 1 else 0  # a shared BOS alone is not worth another cache

        reuse = {seq_id: shared(self._cached.get(seq_id) or []) for seq_id in self._free_ids}

        def rank(seq_id: int) -> tuple[int, int, bool, int]:
            return (
                _runs(running | {seq_id}) if streams else 0,
                -reuse[seq_id],
                bool(self._cached.get(seq_id)),
                self._last_used.get(seq_id, -1),
            )

        best = min(self._free_ids, key=rank)
        best_len = reuse[best]
        self._free_ids.remove(best)
        self._uses += 1
        self._last_used[best] = self._uses
        self._cached.pop(best, None)
        # with a prompt context the prefix is kept there; the decode context's cells are
        # replaced whole when the prompt is done
        memory = self._prompt_memory if self._prompt_memory is not None else self._memory
        if best_len == 0 or not llama_cpp.llama_memory_seq_rm(memory, best, best_len, -1):
            best_len = 0
            self._forget(best)
        elif self._prompt_memory is not None:
            llama_cpp.llama_memory_seq_rm(self._memory, best, -1, -1)
        if self._pieces:
            donors = {i: self._cached[i] for i in self._free_ids if self._cached.get(i)}
            donors |= {s.seq_id: self._exact_cells(s) for s in self._running}
            donor, n = max(((i, shared(cells)) for i, cells in donors.items()), key=lambda d: d[1], default=(-1, 0))
            # worth a copy: 8+ more tokens, and the donor's cells (all copied) not far more than those
            if n >= best_len + COPY_MIN_TOKENS and 4 * n >= len(donors[donor]):
                best_len = n if self._copy_cells(donor, best, n) else 0
        seq.seq_id = best
        seq.fed = seq.pos = seq.reused = best_len
        self.tokens_reused += best_len

    def _compose(self) -> list[_Call]:
        """The next step's decode calls. Mixed (kv_unified): ONE batch with the next token of
        every decoding sequence, then prompt chunks of the feeding ones in arrival order, up to
        n_batch. Batch-invariant (the default): the decode tokens in one batch, then the prompts:
        on the plain kernels the last token of a prompt that has only that one left joins the
        decode call, the rest go in up to PROMPT_CALLS_PER_STEP calls, each with the next piece of
        every feeding sequence (`_piece_calls`); with a prompt context, the next chunk (boundaries at
        multiples of n_batch) of at most PROMPT_CALLS_PER_STEP sequences, each in a call of its
        own. Either way every sequence computes exactly as it would alone."""
        calls: list[_Call] = []
        call = _Call()
        for seq in sorted(self._running, key=lambda s: s.seq_id):  # increasing ids: one ubatch per run of them
            if seq.next_token is not None:
                call.put(seq.next_token, seq.pos, seq.seq_id, seq)
                seq.generated.append(seq.next_token)
                seq.pos += 1
                seq.next_token = None
            elif self._pieces and seq.fed == len(seq.prompt) - 1:
                # one prompt token left (a reused prefix's last token, decoded again for its logits):
                # one row like a decode token's, so in the same call (same numbers, one pass fewer)
                self._feed(call, seq, 1)
        if self._pieces:
            return ([call] if call.tokens else []) + self._piece_calls()
        feeds = 0
        for seq in self._running:
            left = len(seq.prompt) - seq.fed
            if left <= 0:
                continue
            if not self.kv_unified:  # each chunk a call of its own, at most PROMPT_CALLS_PER_STEP of them
                if feeds == PROMPT_CALLS_PER_STEP:
                    break
                feeds += 1
                if call.tokens:
                    calls.append(call)
                    call = _Call()
                call.prompt = True
            # batch-invariant: chunk boundaries at multiples of n_batch, as a cold feed would cut them
            room = self.n_batch - len(call.tokens) if self.kv_unified else self.n_batch - seq.fed % self.n_batch
            take = min(left, room)
            if take <= 0:
                break
            self._feed(call, seq, take)
        if call.tokens:
            calls.append(call)
        return calls

    def _feed(self, call: _Call, seq: _Sequence, take: int) -> None:
        """The next `take` prompt tokens of `seq` into `call`; the last prompt token asks for logits."""
        for j in range(seq.fed, seq.fed + take):
            call.put(seq.prompt[j], j, seq.seq_id, seq if j == len(seq.prompt) - 1 else None)
        seq.fed += take
        seq.pos = seq.fed
        self.tokens_fed += take

    def _piece_calls(self) -> list[_Call]:
        """Prompt calls on the plain kernels: each takes the next piece (at most PIECE_TOKENS) of
        every feeding sequence in arrival order while the call has room (n_batch tokens), and puts
        them in increasing sequence ids, so that llama.cpp decodes a run of ids in one ubatch: a
        pass over the weights for all of them (8 20-token prompts: 547 ms in one call, 720 in 8)."""
        calls: list[_Call] = []
        feeding = [s for s in self._running if s.fed < len(s.prompt)]
        while feeding and len(calls) < PROMPT_CALLS_PER_STEP:
            pieces: list[tuple[_Sequence, int]] = []
            room = self.n_batch
            for seq in feeding:
                take = min(len(seq.prompt) - seq.fed, PIECE_TOKENS, room)
                if take <= 0:
                    break
                pieces.append((seq, take))
                room -= take
            call = _Call()
            for seq, take in sorted(pieces, key=lambda piece: piece[0].seq_id):
                self._feed(call, seq, take)
            calls.append(call)
            feeding = [s for s in feeding if s.fed < len(s.prompt)]
        return calls

    def _step(self, calls: list[_Call]) -> None:
        """Worker thread: the step's calls in order, each decoded and sampled; its text reaches the
        streams as the next call starts (`_run_call`), so the decode call's tokens do not wait for
        the prompt calls after it, nor the first tokens of one prompt call for the next."""
        for call in calls:
            ctx = self._prompt_ctx if call.prompt and self._prompt_ctx is not None else self._ctx
            for (seq, _), token in zip(call.outputs, self._run_call(call, ctx), strict=True):
                self._advance(seq, token)

    def _run_call(self, call: _Call, ctx: Any) -> list[int]:
        """Worker thread: one call's llama_decode, then one sample per output row of it."""
        batch = self._batch
        rows = zip(call.tokens, call.pos, call.seq, call.logits, strict=True)
        for i, (token, pos, seq_id, logits) in enumerate(rows):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits
        batch.n_tokens = len(call.tokens)
        # the text of the calls before goes to the streams now, just before llama_decode lets go
        # of the GIL: their event loop's work on it overlaps the decode. Handed over before
        # composing this call, that work held the GIL while this thread wanted it (8 streams:
        # 0.49 ms a step before the decode against 0.23, TTFT p50 0.161 s against 0.135)
        self._flush()
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        sampled = [self._sample(seq, row, ctx) for seq, row in call.outputs]
        if ctx is not self._ctx:
            for seq, _ in call.outputs:  # its prompt is done: its cells go to the decode context
                self._move_cells(seq.seq_id)
        return sampled

    def _save_cells(self, ctx: Any, seq_id: int) -> int:
        """Worker thread: a sequence's KV cells in `ctx` into the state buffer; the bytes written."""
        size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
        if len(self._state) < size:
            self._state = (ctypes.c_uint8 * size)()
        return int(llama_cpp.llama_state_seq_get_data(ctx, self._state, size, seq_id))

    def _copy_cells(self, source: int, target: int, n: int) -> bool:
        """Worker thread: the target id's cells replaced by the source's first `n` (same context)."""
        llama_cpp.llama_memory_seq_rm(self._memory, target, -1, -1)
        written = self._save_cells(self._ctx, source)
        if (
            written
            and llama_cpp.llama_state_seq_set_data(self._ctx, self._state, written, target) == written
            and llama_cpp.llama_memory_seq_rm(self._memory, target, n, -1)
        ):
            self.cells_copied += 1
            return True
        llama_cpp.llama_memory_seq_rm(self._memory, target, -1, -1)
        return False

    def _move_cells(self, seq_id: int) -> None:
        """Worker thread: copies a sequence's KV cells from the prompt context into the decode
        context (replacing what it held there); the prompt context keeps them for reuse."""
        written = self._save_cells(self._prompt_ctx, seq_id)
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        if not written or llama_cpp.llama_state_seq_set_data(self._ctx, self._state, written, seq_id) != written:
            raise RuntimeError(f"the KV cells of sequence {seq_id} could not be moved to the decode context")

    @property
    def repacked_prompts(self) -> bool:
        """Whether prompts are fed in the repacked prompt context."""
        return self._prompt_ctx is not None

    def _advance(self, seq: _Sequence, token: int) -> None:
        """A sampled token: end of generation, text (stop strings held back), or the next step's input."""
        if seq.cancelled:
            self._end(seq, "cancelled")
            return
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._end(seq, "stop")
            return
        seq.count += 1
        seq.held += seq.utf8.decode(self._vocab_owner.detokenize([token]))
        if not seq.started:
            seq.held = seq.held.lstrip()
            seq.started = bool(seq.held)
        hits = [i for i in (seq.held.find(s) for s in seq.stops) if i >= 0]
        if hits:
            if min(hits) > 0:
                self._post(seq, seq.held[: min(hits)])
            self._end(seq, "stop", flush=False)
            return
        safe = len(seq.held) - _held_back(seq.held, seq.stops)
        if safe > 0:
            self._post(seq, seq.held[:safe])
            seq.held = seq.held[safe:]
        if seq.count >= seq.max_tokens:
            self._end(seq, "length")
            return
        seq.next_token = token

    def _work(self) -> None:
        """The scheduler thread: steps while anything runs, sleeps on the signal otherwise."""
        try:
            while not self._closed:
                while self._inbox:
                    self._queue.append(self._inbox.popleft())
                for seq in [s for s in self._running if s.cancelled]:
                    self._end(seq, "cancelled")
                self._admit()
                self._record_load()
                if not self._running:
                    self._flush()
                    if not self._inbox and not self._queue:
                        self._signal.wait()
                    self._signal.clear()  # what set it is looked at by the next turn
                    continue
                try:
                    self._step(self._compose())
                except RuntimeError as exc:
                    logger.error("decode step failed: %s", exc)
                    for seq in list(self._running):
                        self._fail(seq, exc)
                    self._flush()
            error: BaseException = RuntimeError("the engine was closed")
        except BaseException as exc:  # a bug of ours: every stream gets it rather than waiting forever
            logger.exception("the scheduler of %s stopped", self.spec.name)
            error = exc
        while self._inbox:
            self._queue.append(self._inbox.popleft())
        for seq in list(self._running) + list(self._queue):
            self._fail(seq, error)
        self._queue.clear()
        self._flush()
        with self._worker_lock:
            self._worker_running = False
            if self._closed:
                self._free_batch()

    # -- the protocol -------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Yields text chunks as they decode, then a final chunk with finish_reason and usage."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        arrived = time.perf_counter()
        prompt, max_tokens, stops = await asyncio.to_thread(self.prepare, request)
        grammar = await asyncio.to_thread(self.grammar, request.json_schema) if request.json_schema else None
        seq = _Sequence(request, prompt, max_tokens, stops, grammar)
        self._ensure_worker()
        self._inbox.append(seq)
        self._signal.set()
        model, last = self.spec.name, None
        try:
            while True:
                item = await seq.out.get()
                if isinstance(item, str):
                    now = time.perf_counter()
                    if last is None:
                        metrics.TIME_TO_FIRST_TOKEN.record(now - arrived, model=model)
                    else:
                        metrics.INTER_TOKEN_LATENCY.record(now - last, model=model)
                    last = now
                    yield GenerationChunk(text=item)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    finish, completion_tokens = item
                    metrics.PROMPT_TOKENS.record(len(prompt), model=model)
                    metrics.PROMPT_TOKENS_CACHED.record(seq.reused, model=model)
                    metrics.GENERATION_TOKENS.record(completion_tokens, model=model)
                    yield GenerationChunk(
                        finish_reason=finish,
                        usage=Usage(
                            prompt_tokens=len(prompt),
                            completion_tokens=completion_tokens,
                            prompt_tokens_details=PromptTokensDetails(cached_tokens=seq.reused),
                        ),
                    )
                    return
        finally:
            if not seq.done:  # abandoned or cancelled: freed before the next step
                seq.cancelled = True
                self._signal.set()

    def close(self) -> None:
        """Ends the scheduler after its current step (its streams get an error); the batch is
        freed by whichever of the two comes last."""
        with self._worker_lock:
            self._closed = True
            self._signal.set()
            if not self._worker_running:
                self._free_batch()

    def _free_batch(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None


def _deliver(items: list[tuple[_Sequence, Any]]) -> None:
    """On a stream's event loop: a step's items, in order."""
    for seq, item in items:
        seq.out.put_nowait(item)


def _runs(ids: set[int]) -> int:
    """How many runs of consecutive numbers `ids` holds ({0, 1, 3}: 2)."""
    return sum(1 for i in ids if i - 1 not in ids)
