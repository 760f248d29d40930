"""The vLLM path without vLLM: the pure conversions of `sutazai.engines.vllm`, and the deployment's
methods over scripted stand-ins for vLLM's engine client, `RequestOutput`s and modules."""

from __future__ import annotations

import enum
import pickle
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateError

from sutazai.catalog import ModelSpec
from sutazai.engines.vllm import (
    chunks_from_output,
    collect,
    completion_budget,
    finish_reason,
    prompt_token_ids,
    sampling_params_kwargs,
    stream_chunks,
    structured_output_kwargs,
    vllm_request_id,
)
from sutazai.schemas.engine import EngineError, GenerationChunk, GenerationRequest, Usage

# --- stand-ins ------------------------------------------------------------------------------------


@dataclass
class Completion:
    """vLLM's `CompletionOutput`, the attributes we read (DELTA mode: only the new text and tokens)."""

    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class Output:
    """vLLM's `RequestOutput`, the attributes we read."""

    outputs: list[Completion]
    finished: bool = False


def delta(text: str, tokens: int = 1, finish: str | None = None) -> Output:
    return Output([Completion(text, list(range(tokens)), finish)], finished=finish is not None)


class WordTokenizer:
    """One token per word; special tokens add one `<s>`; the chat template is `<role> content` turns."""

    def __init__(self) -> None:
        self.templates: list[str | None] = []

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        words = (["<s>"] if add_special_tokens else []) + text.split()
        return list(range(len(words)))

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        assert kwargs["add_generation_prompt"] is True and kwargs["tokenize"] is False
        self.templates.append(kwargs["chat_template"])
        if any(m["content"] == "refused" for m in messages):
            raise TemplateError("Conversation roles must alternate")
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"


async def engine_stream(outputs: list[Output], events: list[str]) -> Any:
    """vLLM's `generate()`: yields outputs; being closed early is what aborts the request there."""
    try:
        for output in outputs:
            yield output
        events.append("exhausted")
    except GeneratorExit:
        events.append("aborted")
        raise


async def refusal() -> Any:
    """vLLM's `generate()` on a request its validation refuses: the error comes with the first output."""
    raise FakeVLLMClientError("max_tokens must be at least 1")
    yield


async def take_all(chunks: Any) -> list[GenerationChunk]:
    return [chunk async for chunk in chunks]


def req(**kw: Any) -> GenerationRequest:
    base: dict[str, Any] = {"prompt": "one two three", "max_tokens": 8, "temperature": 0.5, "top_p": 0.9}
    return GenerationRequest(**(base | kw))


def chat(*contents: str, system: bool = False, **kw: Any) -> GenerationRequest:
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    if system:
        messages.insert(0, {"role": "system", "content": "be brief"})
    return req(prompt=None, messages=messages, **kw)


# --- sampling parameters --------------------------------------------------------------------------


def test_sampling_params_carry_the_request_under_vllms_field_names():
    kwargs = sampling_params_kwargs(req(stop=["\n"], seed=7), max_tokens=5)
    assert kwargs == {"max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"], "seed": 7}


def test_chat_requests_also_stop_at_the_model_files_chat_stops():
    kwargs = sampling_params_kwargs(chat("hi", stop=["<end>"]), 5, chat_stop=["<end>", "User:"])
    assert kwargs["stop"] == ["<end>", "User:"]


def test_raw_prompts_do_not_get_the_chat_stops():
    assert sampling_params_kwargs(req(), 5, chat_stop=["User:"])["stop"] == []


@dataclass
class FakeStructuredOutputsParams:
    json: Any


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def test_a_json_schema_becomes_vllms_structured_outputs_parameter():
    module = types.SimpleNamespace(StructuredOutputsParams=FakeStructuredOutputsParams)
    kwargs = sampling_params_kwargs(req(json_schema=SCHEMA), 5, sampling_module=module)
    assert kwargs["structured_outputs"] == FakeStructuredOutputsParams(json=SCHEMA)


def test_a_vllm_without_structured_outputs_gets_guided_decoding():
    module = types.SimpleNamespace(GuidedDecodingParams=FakeStructuredOutputsParams)
    assert structured_output_kwargs(SCHEMA, module) == {"guided_decoding": FakeStructuredOutputsParams(json=SCHEMA)}


def test_free_requests_carry_no_structured_output_parameter():
    assert "structured_outputs" not in sampling_params_kwargs(req(), 5) and structured_output_kwargs(None, None) == {}


def test_constrained_chats_do_not_get_the_chat_stops():
    kwargs = sampling_params_kwargs(
        chat("hi", json_schema=SCHEMA),
        5,
        chat_stop=["\n\n"],
        sampling_module=types.SimpleNamespace(StructuredOutputsParams=FakeStructuredOutputsParams),
    )
    assert kwargs["stop"] == []


# --- prompts and the context ----------------------------------------------------------------------


def test_raw_prompts_are_encoded_with_special_tokens():
    assert len(prompt_token_ids(req(), WordTokenizer(), chat_template=None, context_length=100)) == 4


def test_chats_are_rendered_with_the_model_files_template_and_no_extra_special_tokens():
    tokenizer = WordTokenizer()
    tokens = prompt_token_ids(chat("hello there"), tokenizer, chat_template="{{ custom }}", context_length=100)
    assert len(tokens) == 4  # <user> hello there <assistant>
    assert tokenizer.templates == ["{{ custom }}"]


def test_a_long_chat_drops_its_oldest_turns_but_keeps_the_system_prompt_and_the_last_message():
    tokenizer = WordTokenizer()
    long_chat = chat("a b c d", "e f g h", "last question", system=True, max_tokens=4)
    tokens = prompt_token_ids(long_chat, tokenizer, chat_template=None, context_length=14)
    # "<system> be brief <user> last question <assistant>" is 7 tokens; with the 4 to generate it fits in 14.
    assert len(tokens) == 7


def test_a_template_that_refuses_the_messages_refuses_the_request():
    with pytest.raises(EngineError) as error:
        prompt_token_ids(chat("refused"), WordTokenizer(), chat_template=None, context_length=100)
    assert error.value.code == "invalid_messages"


def test_max_tokens_is_cut_to_the_room_the_prompt_leaves():
    assert completion_budget(prompt_tokens=90, requested=50, context_length=100, model="m") == 10
    assert completion_budget(prompt_tokens=10, requested=50, context_length=100, model="m") == 50


def test_a_prompt_that_fills_the_context_is_a_context_length_error():
    with pytest.raises(EngineError) as error:
        completion_budget(prompt_tokens=100, requested=1, context_length=100, model="m")
    assert error.value.code == "context_length_exceeded"


def test_engine_request_ids_are_unique_and_keep_the_callers_id():
    first, second = vllm_request_id(req(request_id="abc")), vllm_request_id(req(request_id="abc"))
    assert first != second and first.startswith("abc-")
    assert vllm_request_id(req()) != vllm_request_id(req())


# --- RequestOutput -> GenerationChunk -------------------------------------------------------------


def test_vllm_finish_reasons_map_to_ours():
    assert [finish_reason(r) for r in ("stop", "length", "abort", "repetition")] == [
        "stop",
        "length",
        "cancelled",
        "stop",
    ]


def test_a_vllm_error_finish_is_a_failure_not_a_finish():
    with pytest.raises(RuntimeError):
        finish_reason("error")


def test_a_delta_becomes_a_text_chunk_and_counts_its_tokens():
    chunks, completion_tokens = chunks_from_output(delta("Hello", tokens=2), prompt_tokens=3, completion_tokens=1)
    assert chunks == [GenerationChunk(text="Hello")] and completion_tokens == 3


def test_a_delta_without_text_makes_no_chunk_but_still_counts_its_tokens():
    chunks, completion_tokens = chunks_from_output(delta("", tokens=1), prompt_tokens=3, completion_tokens=0)
    assert chunks == [] and completion_tokens == 1


def test_the_finished_delta_gives_its_text_then_the_final_chunk_with_usage():
    chunks, _ = chunks_from_output(delta(" world", tokens=1, finish="length"), prompt_tokens=3, completion_tokens=4)
    assert chunks == [
        GenerationChunk(text=" world"),
        GenerationChunk(finish_reason="length", usage=Usage(prompt_tokens=3, completion_tokens=5)),
    ]


async def test_a_stream_ends_with_one_final_chunk_counting_every_token():
    events: list[str] = []
    outputs = [delta("Hel", 1), delta("lo", 2), delta("", 1, finish="stop")]
    chunks = await take_all(stream_chunks(engine_stream(outputs, events), prompt_tokens=6))
    assert [c.text for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1] == GenerationChunk(finish_reason="stop", usage=Usage(prompt_tokens=6, completion_tokens=4))


async def test_nothing_follows_the_final_chunk():
    events: list[str] = []
    outputs = [delta("a", 1, finish="stop"), delta("late", 1)]
    chunks = await take_all(stream_chunks(engine_stream(outputs, events), prompt_tokens=1))
    assert [c.finish_reason for c in chunks] == [None, "stop"]


async def test_a_consumer_that_stops_early_closes_the_engine_stream():
    events: list[str] = []
    chunks = stream_chunks(engine_stream([delta("a"), delta("b"), delta("c", finish="stop")], events), 1)
    assert (await anext(chunks)).text == "a"
    await chunks.aclose()
    assert events == ["aborted"]


async def test_an_engine_stream_that_ends_unfinished_is_an_error():
    with pytest.raises(RuntimeError):
        await take_all(stream_chunks(engine_stream([delta("a")], []), prompt_tokens=1))


async def test_collect_joins_the_text_and_keeps_the_final_usage():
    async def chunks() -> Any:
        yield GenerationChunk(text="Hel")
        yield GenerationChunk(text="lo")
        yield GenerationChunk(finish_reason="stop", usage=Usage(prompt_tokens=2, completion_tokens=2))

    result = await collect(chunks())
    assert (result.text, result.finish_reason, result.usage.completion_tokens) == ("Hello", "stop", 2)


# --- the deployment, over stand-ins for vLLM ------------------------------------------------------


def test_the_deployment_module_imports_without_vllm_or_ray_serve_llm():
    code = (
        "import sys, deployments.vllm_model as m; "
        "assert callable(m.build_vllm_deployment); "
        "assert not [n for n in sys.modules if n == 'vllm' or n.startswith(('vllm.', 'ray.serve.llm'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


class FakeVLLMClientError(Exception):
    pass


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1


@dataclass
class FakeEngineClient:
    """vLLM's `AsyncLLM`: `generate()` and the configuration `info()` reads."""

    outputs: list[Output] = field(default_factory=list)
    refuse: bool = False
    calls: list[tuple[Any, Any, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    vllm_config: Any = field(
        default_factory=lambda: types.SimpleNamespace(scheduler_config=types.SimpleNamespace(max_num_seqs=64))
    )

    def generate(self, prompt: Any, params: Any, request_id: str) -> Any:
        self.calls.append((prompt, params, request_id))
        return refusal() if self.refuse else engine_stream(self.outputs, self.events)

    def get_tokenizer(self) -> WordTokenizer:
        return WordTokenizer()


@pytest.fixture
def fake_vllm(monkeypatch):
    """`vllm.exceptions` and `vllm.sampling_params` as the deployment imports them."""
    exceptions = types.ModuleType("vllm.exceptions")
    exceptions.VLLMClientError = FakeVLLMClientError  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    sampling.RequestOutputKind = FakeOutputKind  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setitem(sys.modules, "vllm.exceptions", exceptions)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)


SPEC = {"name": "g", "engine": "vllm", "source": {"path": "/ckpt"}, "context_length": 128, "chat_stop": ["User:"]}


def server(client: FakeEngineClient) -> Any:
    from deployments.vllm_model import VLLMModelMethods

    methods = VLLMModelMethods()
    methods.spec = ModelSpec.model_validate(SPEC)
    methods.engine = types.SimpleNamespace(_engine_client=client)
    methods.tokenizer = WordTokenizer()
    return methods


async def test_generate_stream_sends_prompt_tokens_and_delta_sampling_params_to_the_engine(fake_vllm):
    client = FakeEngineClient(outputs=[delta("Hi", 1), delta("!", 1, finish="stop")])
    chunks = await take_all(server(client).generate_stream(chat("hello", max_tokens=16, seed=3)))
    prompt, params, _ = client.calls[0]
    assert len(prompt["prompt_token_ids"]) == 3  # <user> hello <assistant>
    assert params.kwargs == {
        "max_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["User:"],
        "seed": 3,
        "output_kind": FakeOutputKind.DELTA,
    }
    assert chunks[-1] == GenerationChunk(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=2))


async def test_generate_returns_the_whole_result(fake_vllm):
    client = FakeEngineClient(outputs=[delta("Hi", 1), delta(" there", 1, finish="length")])
    result = await server(client).generate(req())
    assert (result.text, result.finish_reason, result.usage.prompt_tokens) == ("Hi there", "length", 4)


async def test_the_engine_request_is_aborted_when_the_consumer_stops(fake_vllm):
    client = FakeEngineClient(outputs=[delta("a"), delta("b"), delta("c", finish="stop")])
    stream = server(client).generate_stream(req())
    assert (await anext(stream)).text == "a"
    await stream.aclose()
    assert client.events == ["aborted"]


async def test_a_request_vllm_refuses_is_an_engine_error(fake_vllm):
    with pytest.raises(EngineError) as error:
        await server(FakeEngineClient(refuse=True)).generate(req())
    assert error.value.code == "invalid_request"


async def test_a_prompt_longer_than_the_context_never_reaches_the_engine(fake_vllm):
    client = FakeEngineClient()
    with pytest.raises(EngineError) as error:
        await server(client).generate(req(prompt="word " * 200))
    assert error.value.code == "context_length_exceeded" and client.calls == []


async def test_info_reports_the_engine_and_its_sequence_slots():
    info = await server(FakeEngineClient()).info()
    assert (info.name, info.engine, info.context_length, info.slots, info.free_slots) == ("g", "vllm", 128, 64, None)


@pytest.fixture
def stub_llm_server(monkeypatch):
    """Ray's `LLMServer` as a stub whose async constructor 'starts' a fake engine; the made class is
    dropped afterwards so no other test sees it."""
    import deployments.vllm_model as module

    class LLMServer:
        async def __init__(self, llm_config: Any, **kwargs: Any) -> None:
            self.llm_config = llm_config
            self.engine = types.SimpleNamespace(_engine_client=FakeEngineClient())

    stub = types.ModuleType("ray.serve.llm.deployment")
    stub.LLMServer = LLMServer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray.serve.llm.deployment", stub)
    vars(module).pop("VLLMModelServer", None)
    yield LLMServer
    vars(module).pop("VLLMModelServer", None)


def test_the_server_class_extends_rays_llm_server_and_pickles_by_name(stub_llm_server):
    import ray.cloudpickle

    from deployments.vllm_model import VLLMModelServer

    assert issubclass(VLLMModelServer, stub_llm_server)
    assert (VLLMModelServer.__module__, VLLMModelServer.__qualname__) == ("deployments.vllm_model", "VLLMModelServer")
    assert pickle.loads(pickle.dumps(VLLMModelServer)) is VLLMModelServer
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(VLLMModelServer)) is VLLMModelServer


async def test_the_server_starts_rays_server_then_takes_the_engines_tokenizer(stub_llm_server):
    from deployments.vllm_model import server_class

    cls = server_class()
    instance = cls.__new__(cls)  # as Serve builds a replica with an async constructor
    await instance.__init__("llm-config", spec=SPEC)
    assert instance.llm_config == "llm-config" and instance.spec.name == "g"
    assert isinstance(instance.tokenizer, WordTokenizer)
