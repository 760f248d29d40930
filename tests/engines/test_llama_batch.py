"""The batched CPU engine (continuous batching on one llama.cpp context) on the real GGUF."""

import asyncio
import json
from collections import Counter
from pathlib import Path

import llama_cpp
import pytest

from sutazai.catalog import CPUOptions, ModelCatalog, ModelSource
from sutazai.engines.cpu_kernels import cpu_reports_amx
from sutazai.engines.llama_batch import PIECE_TOKENS, PROMPT_CALLS_PER_STEP, LlamaBatchEngine, _runs
from sutazai.engines.model_files import resolve_model_path
from sutazai.schemas.engine import ChatMessage, EngineError, GenerationRequest
from sutazai.settings import PROJECT_ROOT

PROMPTS = ["Once upon a time", "The history of the city", "Here is a recipe for bread:", "In the year 2050,"]


def batched_engine(tmp_path_factory, sequences: int, **options) -> LlamaBatchEngine:
    """The shipped model on the batched engine with `sequences` sequences and one thread, its
    prompts fed as deployed (`cpu.prompt_kernels`: plain, in pieces)."""
    spec = ModelCatalog.load(PROJECT_ROOT / "models").get("gemma3-270m")
    gguf: Path = resolve_model_path(spec, tmp_path_factory.mktemp("models"))
    cpu = CPUOptions(engine="batched", max_sequences=sequences, threads=1)
    options.setdefault("repacked_prompts", spec.cpu.prompt_kernels == "repacked")
    return LlamaBatchEngine(
        spec.model_copy(update={"source": ModelSource(path=str(gguf)), "cpu": cpu}), gguf, **options
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = batched_engine(tmp_path_factory, 4)
    yield engine
    engine.close()


def req(prompt: str = PROMPTS[0], **kw) -> GenerationRequest:
    return GenerationRequest(**(dict(prompt=prompt, max_tokens=24, temperature=0.7, top_p=0.95, seed=7) | kw))


async def streamed(engine, request):
    texts, final = [], None
    async for chunk in engine.stream(request):
        if chunk.usage is not None:
            final = chunk
        else:
            texts.append(chunk.text)
    return "".join(texts), final


async def idle(engine):
    for _ in range(200):
        if engine.active == 0 and engine.waiting == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"engine still holds {engine.active} sequences")


async def test_a_batched_run_equals_a_run_alone_for_the_same_seed(engine):
    for settings in (dict(temperature=0.7, seed=11), dict(temperature=0.0, seed=None)):
        together = await asyncio.gather(*(engine.generate(req(p, **settings)) for p in PROMPTS))
        alone = [await engine.generate(req(p, **settings)) for p in (PROMPTS[0], PROMPTS[2])]
        assert [r.text for r in alone] == [together[0].text, together[2].text]
        assert all(r.text for r in together)


def test_the_shipped_engine_feeds_prompts_on_the_plain_kernels(engine):
    assert not engine.repacked_prompts


@pytest.fixture(scope="module")
def repacked(tmp_path_factory):
    engine = batched_engine(tmp_path_factory, 4, repacked_prompts=True)
    yield engine
    engine.close()


def test_a_repacked_prompt_context_is_used_unless_the_cpu_reports_amx(repacked):
    assert repacked.repacked_prompts == (not cpu_reports_amx())


async def test_with_a_repacked_prompt_context_a_batched_run_equals_a_run_alone(repacked):
    together = await asyncio.gather(*(repacked.generate(req(p)) for p in PROMPTS))
    alone = await repacked.generate(req(PROMPTS[1]))
    assert alone.text and alone.text == together[1].text


async def test_ten_copies_of_a_request_together_each_equal_its_run_alone(tmp_path_factory):
    # 8+ rows in a step is where llama.cpp's tiled K-quant matmul would take over (cpu_kernels)
    engine = batched_engine(tmp_path_factory, 10)
    try:
        alone = (await engine.generate(req(max_tokens=32))).text
        together = await asyncio.gather(*(engine.generate(req(max_tokens=32)) for _ in range(10)))
        assert alone and [r.text for r in together] == [alone] * 10
    finally:
        engine.close()


async def test_stop_strings_never_reach_the_stream(engine):
    free, _ = await streamed(engine, req(max_tokens=48))
    words = free.split()
    assert len(words) >= 4, free
    stop = " " + words[3]  # occurs in the free text: the stopped run must end just before it
    text, final = await streamed(engine, req(max_tokens=48, stop=[stop, "zzz-never"]))
    assert text == free[: free.index(stop)]
    assert stop not in text and final.finish_reason == "stop"


async def test_usage_counts_every_token_streamed(engine, monkeypatch):
    tokens: list[int] = []
    advance = engine._advance

    def spy(seq, token):
        if seq.request.request_id == "counted":
            tokens.append(token)
        advance(seq, token)

    monkeypatch.setattr(engine, "_advance", spy)
    text, final = await streamed(engine, req(max_tokens=40, request_id="counted"))
    produced = [t for t in tokens if not llama_cpp.llama_vocab_is_eog(engine._vocab, t)]
    assert final.usage.completion_tokens == len(produced)
    assert final.usage.prompt_tokens == len(engine.tokenize(PROMPTS[0]))
    assert text == engine._vocab_owner.detokenize(produced).decode("utf-8", errors="replace")


async def test_a_json_schema_request_returns_json_valid_for_the_schema(engine):
    schema = {
        "type": "object",
        "properties": {"tool": {"type": "string", "enum": ["get_time", "get_weather"]}, "city": {"type": "string"}},
        "required": ["tool", "city"],
    }
    request = GenerationRequest(
        messages=[ChatMessage(role="user", content="What is the weather in Paris?")],
        max_tokens=64,
        temperature=0.0,
        top_p=1.0,
        json_schema=schema,
    )
    result = await engine.generate(request)
    value = json.loads(result.text)
    assert value["tool"] in ("get_time", "get_weather") and isinstance(value["city"], str)
    assert result.finish_reason == "stop"


async def test_a_cancelled_stream_frees_its_sequence(engine):
    streams = [engine.stream(req(p, max_tokens=200)) for p in PROMPTS]
    for stream in streams:
        await anext(stream)  # every sequence is running
    assert engine.active == len(PROMPTS)
    for stream in streams:
        await stream.aclose()
    await idle(engine)
    after = await asyncio.gather(*(engine.generate(req(p, max_tokens=8)) for p in PROMPTS))
    assert all(r.usage.completion_tokens >= 1 for r in after)
    await idle(engine)


async def test_a_prompt_longer_than_the_context_is_refused(engine):
    with pytest.raises(EngineError) as info:
        await engine.generate(req("word " * (engine.n_ctx + 10)))
    assert info.value.code == "context_length_exceeded"


async def test_max_tokens_is_honoured(engine):
    result = await engine.generate(req(max_tokens=5))
    assert result.usage.completion_tokens == 5 and result.finish_reason == "length"


async def test_requests_beyond_the_sequences_wait_their_turn(engine):
    results = await asyncio.gather(*(engine.generate(req(p, max_tokens=6)) for p in PROMPTS * 2))
    assert [r.usage.completion_tokens for r in results] == [6] * 8
    assert results[0].text == results[4].text  # same prompt, same seed, whether admitted first or queued
    await idle(engine)


def record_steps(monkeypatch) -> list[list[int]]:
    """The sequence ids of every decode step (a token per sequence) of more than one sequence."""
    steps: list[list[int]] = []
    decode = llama_cpp.llama_decode

    def recording(ctx, batch):
        ids = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
        if len(set(ids)) == len(ids) > 1:
            steps.append(ids)
        return decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", recording)
    return steps


# llama.cpp puts in one ubatch only sequences whose ids follow each other, in increasing order
# (a KV stream per sequence: `split_equal`, sequential); each further ubatch of a step reads all
# the weights again. The next two tests pin what keeps a step in one ubatch.


async def test_each_step_lists_its_sequences_in_increasing_id_order(engine, monkeypatch):
    steps = record_steps(monkeypatch)
    for wave in range(3):  # lengths that finish in a different order each wave, so ids free up in every order
        lengths = [3 + 5 * ((i + wave) % 4) for i in range(4)]
        pairs = zip(PROMPTS, lengths, strict=True)
        await asyncio.gather(*(engine.generate(req(p, max_tokens=n, seed=wave)) for p, n in pairs))
        await asyncio.gather(*(engine.generate(req(p, max_tokens=2 + i)) for i, p in enumerate(reversed(PROMPTS))))
    await idle(engine)
    assert steps, "no step decoded two sequences together"
    assert all(ids == sorted(ids) for ids in steps), steps


async def test_a_new_sequence_takes_the_id_a_finished_one_left_between_running_ones(engine, monkeypatch):
    steps = record_steps(monkeypatch)
    first = asyncio.create_task(engine.generate(req(PROMPTS[0], max_tokens=40)))
    short = asyncio.create_task(engine.generate(req(PROMPTS[1], max_tokens=3)))
    last = asyncio.create_task(engine.generate(req(PROMPTS[2], max_tokens=40)))
    await short
    assert not first.done() and not last.done()
    late = await engine.generate(req(PROMPTS[3], max_tokens=8))
    await asyncio.gather(first, last)
    await idle(engine)
    assert late.usage.completion_tokens == 8
    threes = [ids for ids in steps if len(ids) == 3]  # the short one's steps, then the late one's
    assert len(threes) >= 8, steps
    assert all(ids == list(range(ids[0], ids[0] + 3)) for ids in threes), threes


async def test_prompts_waiting_together_are_fed_in_one_call_in_pieces_below_64_tokens(engine, monkeypatch):
    calls: list[Counter[int]] = []  # tokens per sequence id, call by call
    step = engine._step

    def recording(step_calls):
        calls.extend(Counter(call.seq) for call in step_calls)
        return step(step_calls)

    monkeypatch.setattr(engine, "_step", recording)
    long = "Rivers carry sand down to the sea, year after year. " * 40  # ~480 tokens: several steps
    first = asyncio.create_task(engine.generate(req(long, max_tokens=4)))
    await asyncio.sleep(0.05)  # the long prompt is being fed when the others arrive
    fresh = [f"Piece test {i}: {p}" for i, p in enumerate(PROMPTS[1:])]  # nothing cached for these
    results = await asyncio.gather(first, *(engine.generate(req(p, max_tokens=4)) for p in fresh))
    await idle(engine)
    assert [r.usage.completion_tokens for r in results] == [4] * 4
    assert all(max(call.values()) <= PIECE_TOKENS for call in calls), calls
    assert any(len(call) >= 3 and min(call.values()) > 1 for call in calls), calls  # prompts shared a call


async def test_with_a_prompt_context_a_step_feeds_at_most_two_prompts_so_the_first_ones_decode_meanwhile(
    repacked, monkeypatch
):
    if not repacked.repacked_prompts:
        pytest.skip("the CPU reports AMX: prompts are fed on the plain kernels, in pieces")
    engine = repacked
    steps: list[list[tuple[set[int], int]]] = []  # per step, each call's sequence ids and token count
    step = engine._step

    def recording(calls):
        steps.append([(set(call.seq), len(call.tokens)) for call in calls])
        return step(calls)

    monkeypatch.setattr(engine, "_step", recording)
    results = await asyncio.gather(*(engine.generate(req(p, max_tokens=6)) for p in PROMPTS))
    await idle(engine)
    assert [r.usage.completion_tokens for r in results] == [6] * 4
    feeds = [[c for c in calls if c[1] > 1 and len(c[0]) == 1] for calls in steps]  # prompt chunks
    assert all(len(f) <= PROMPT_CALLS_PER_STEP for f in feeds), steps
    fed = [i for i, f in enumerate(feeds) if f]
    assert len(fed) >= 2, steps  # four prompts took more than one step, and decoding went on meanwhile:
    assert any(len(calls) > len(feeds[i]) for i, calls in enumerate(steps) if i in fed[1:]), steps


def test_runs_counts_the_stretches_of_consecutive_ids():
    assert [_runs(ids) for ids in (set(), {3}, {0, 1, 2}, {0, 1, 3}, {7, 5, 3, 1})] == [0, 1, 1, 2, 4]


async def test_a_prompt_longer_than_a_batch_is_fed_in_chunks(engine):
    long = "The quick brown fox jumps over the lazy dog. " * 60  # ~600 tokens > n_batch (256)
    assert len(engine.tokenize(long)) > engine.n_batch
    alone = await engine.generate(req(long, temperature=0.0, max_tokens=8))
    together = await asyncio.gather(
        engine.generate(req(long, temperature=0.0, max_tokens=8)), engine.generate(req(max_tokens=8))
    )
    assert alone.text == together[0].text and alone.usage.prompt_tokens == len(engine.tokenize(long))


def chat(*turns: str, **kw) -> GenerationRequest:
    roles = ["user", "assistant"]
    messages = [ChatMessage(role=roles[i % 2], content=t) for i, t in enumerate(turns)]
    return GenerationRequest(**(dict(messages=messages, max_tokens=16, temperature=0.7, top_p=0.95, seed=5) | kw))


async def test_a_chat_answer_ends_where_the_transcript_would_give_the_next_turn(engine):
    # The shipped base model continues a transcript: left alone (the same prompt, seed and
    # sampling as raw text, no stops) it writes the next "User:"/"Assistant:" lines. The chat
    # answer is exactly that continuation cut before the first of the model's chat stops (and
    # trimmed of the space after "Assistant:").
    transcript = "User: Count to five.\nAssistant:"
    seeds = range(8)
    chats = [chat("Count to five.", max_tokens=40, seed=seed) for seed in seeds]
    raws = [req(transcript, max_tokens=40, seed=seed) for seed in seeds]
    results = await asyncio.gather(*(engine.generate(r) for r in chats + raws))
    answers, continuations = results[: len(chats)], [r.text for r in results[len(chats) :]]
    cut_short = 0
    for answer, raw in zip(answers, continuations, strict=True):
        cut = min((i for i in (raw.find(stop) for stop in engine.chat_stop) if i >= 0), default=None)
        assert "User:" not in answer.text and "Assistant:" not in answer.text, answer.text
        if cut is None:
            assert (answer.text, answer.finish_reason) == (raw.strip(), "length")
        else:
            assert (answer.text, answer.finish_reason) == (raw[:cut].strip(), "stop"), raw
            cut_short += 1
    assert cut_short >= len(seeds) // 2, continuations  # the model does write the next turn


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    engine = batched_engine(tmp_path_factory, 2)
    yield engine
    engine.close()


async def test_a_second_turn_feeds_only_its_new_tokens_and_says_what_a_cold_engine_says(engine, cold):
    history = "Tell me about the sea. " + "The sea is wide and deep and blue. " * 4
    first = chat(history)
    answer = (await engine.generate(first)).text
    await idle(engine)
    second = chat(history, answer, "And about mountains?")
    prompt, _, _ = engine.prepare(second)
    fed, reused = engine.tokens_fed, engine.tokens_reused
    warm = await engine.generate(second)
    warm_text = warm.text
    new_fed, new_reused = engine.tokens_fed - fed, engine.tokens_reused - reused
    assert new_reused >= len(engine.prepare(first)[0])  # the first turn's prompt, and its answer's tokens
    assert warm.usage.prompt_tokens_details is not None
    assert warm.usage.prompt_tokens_details.cached_tokens == new_reused  # as OpenAI's usage reports it
    assert new_fed + new_reused == len(prompt)
    cold_fed = cold.tokens_fed
    cold_text = (await cold.generate(second)).text
    assert cold.tokens_fed - cold_fed == len(prompt)
    assert warm_text == cold_text


async def test_a_prefix_held_by_a_running_sequence_is_copied_and_says_what_a_cold_engine_says(engine, cold):
    system = "You are a terse assistant for the harbour office; answer in one line. " * 3
    running = engine.stream(req(system + "Who runs the ferry?", max_tokens=200))
    await anext(running)  # its prompt is in its cells, and it keeps its id while the next one arrives
    asked = req(system + "When does the tide turn?", max_tokens=12)
    prompt, _, _ = engine.prepare(asked)
    fed, copied = engine.tokens_fed, engine.cells_copied
    warm = await engine.generate(asked)
    await running.aclose()
    assert engine.cells_copied == copied + 1
    assert engine.tokens_fed - fed < len(prompt) - len(engine.tokenize(system)) + 4  # the system prompt was not fed
    assert warm.usage.prompt_tokens_details.cached_tokens == len(prompt) - (engine.tokens_fed - fed)
    assert warm.text == (await cold.generate(asked)).text


async def test_a_cached_prompts_last_token_is_decoded_in_the_running_sequences_call(engine, monkeypatch):
    asked = req("Lighthouse keepers write down the weather every hour of the night.", max_tokens=3)
    prompt, _, _ = engine.prepare(asked)
    alone = await engine.generate(asked)  # now cached: only its last token is left to decode
    running = engine.stream(req("Piece test: " + PROMPTS[2], max_tokens=200))
    await anext(running)
    calls: list[list[tuple[int, int, int]]] = []  # (sequence id, position, token) of each call's rows
    step = engine._step

    def recording(step_calls):
        calls.extend(list(zip(call.seq, call.pos, call.tokens, strict=True)) for call in step_calls)
        return step(step_calls)

    monkeypatch.setattr(engine, "_step", recording)
    fed = engine.tokens_fed
    again = await engine.generate(asked)
    await running.aclose()
    assert engine.tokens_fed - fed == 1 and again.text == alone.text
    last = [rows for rows in calls if (len(prompt) - 1, prompt[-1]) in {(pos, t) for _, pos, t in rows}]
    assert len(last) == 1 and len({seq_id for seq_id, _, _ in last[0]}) == len(last[0]) == 2, last


async def test_an_unrelated_prompt_reuses_nothing(engine):
    await engine.generate(req("Zebras graze quietly near the river bank at dawn"))
    reused = engine.tokens_reused
    await engine.generate(req("1234 5678 9012"))
    assert engine.tokens_reused == reused


async def test_a_prompt_that_is_a_prefix_of_the_cache_decodes_its_last_token(engine):
    long = req("The quick brown fox jumps over the lazy dog. " * 60)
    await engine.generate(long)
    short = req("The quick brown fox jumps over the lazy dog. " * 30)
    prompt, _, _ = engine.prepare(short)
    fed = engine.tokens_fed
    again = await engine.generate(short)
    # every cell is reused but the last prompt token's, decoded again for its logits
    assert engine.tokens_fed - fed == 1 and engine.tokens_reused >= len(prompt) - 1
    assert again.text == (await engine.generate(short)).text


async def test_a_cancel_mid_prompt_leaves_the_engine_usable(engine):
    long = req(" ".join(f"word{i}" for i in range(300)), max_tokens=4)
    task = asyncio.create_task(engine.generate(long))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await idle(engine)
    result = await engine.generate(long)
    assert result.usage.completion_tokens == 4
    assert result.text == (await engine.generate(long)).text


async def test_the_unified_kv_engine_serves_concurrent_requests_with_exact_counts(tmp_path_factory):
    # cpu.kv_unified: prompt chunks share the decode tokens' batch; no seed promise, the rest holds
    unified = batched_engine(tmp_path_factory, 4, kv_unified=True)
    try:
        requests = [req(p, max_tokens=12, seed=i) for i, p in enumerate(PROMPTS[:4])]
        results = await asyncio.gather(*(streamed(unified, r) for r in requests))
        for text, final in results:
            assert final.finish_reason in ("length", "stop") and final.usage is not None
            if final.finish_reason == "length":
                assert final.usage.completion_tokens == 12
            assert text
        await idle(unified)
    finally:
        unified.close()
