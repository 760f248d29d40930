"""The vLLM model deployment: Ray's `LLMServer` (`ray.serve.llm`) answering our protocol.

Ray keeps doing for it what it does for any `LLMServer`: `build_llm_deployment`
derives the Serve options from the `LLMConfig` (autoscaling, and a placement group
with one GPU bundle per tensor/pipeline-parallel worker, the replica's own resources
merged into the first), the replica starts vLLM's `AsyncLLM` through Ray's
`VLLMEngine`, and Serve's `check_health` asks that engine. On top, `VLLMModelMethods`
adds the methods every model deployment answers (`sutazai.schemas.engine`):
`generate`, `generate_stream`, `info`. They drive vLLM's engine client directly,
`generate(prompt tokens, SamplingParams(output_kind=DELTA), request_id)`, not vLLM's
OpenAI serving layer, so nothing on this path makes or parses SSE text.

Ray 2.60's `ray.serve.llm` cannot be imported without vLLM installed (its OpenAI
protocol models raise ImportError), and this module must import on CPU machines (the
app builder, tests). So the methods live in a plain mixin, and the `LLMServer`
subclass, `VLLMModelServer`, is made on first access to that module attribute
(PEP 562 `__getattr__`). Pickle finds the class by that name, so a GPU replica
unpickling the deployment makes it there, where vLLM is installed.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ray.serve import Application

from sutazai.catalog import ModelSpec
from sutazai.engines.vllm import (
    collect,
    completion_budget,
    llm_config_dict,
    prompt_token_ids,
    sampling_params_kwargs,
    stream_chunks,
    vllm_request_id,
)
from sutazai.schemas.engine import EngineError, GenerationChunk, GenerationRequest, GenerationResult, ModelServerInfo


class VLLMModelMethods:
    """Our protocol on an `LLMServer` whose engine is Ray's `VLLMEngine` (`check_health` is LLMServer's)."""

    spec: ModelSpec
    engine: Any  # set and started by LLMServer
    tokenizer: Any  # vLLM's tokenizer for the served model

    def _engine_client(self) -> Any:
        """vLLM's `AsyncLLM`. Ray's `VLLMEngine` keeps it in `_engine_client`; Ray 2.60 has no public accessor."""
        client = getattr(self.engine, "_engine_client", None)
        if client is None:
            raise RuntimeError(f"the vLLM engine of model {self.spec.name} is not running")
        return client

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await collect(self.generate_stream(request))

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Text deltas, then the final chunk. When the consumer stops iterating (the client went away),
        the streams are closed in turn, and closing vLLM's `generate()` generator aborts the request."""
        from vllm import sampling_params as sampling_module
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        client = self._engine_client()
        context_length = self.spec.context_length
        prompt = prompt_token_ids(
            request, self.tokenizer, chat_template=self.spec.chat_template, context_length=context_length
        )
        max_tokens = completion_budget(len(prompt), request.max_tokens, context_length, self.spec.name)
        params = SamplingParams(
            **sampling_params_kwargs(request, max_tokens, self.spec.chat_stop, sampling_module),
            output_kind=RequestOutputKind.DELTA,
        )
        try:
            outputs = client.generate({"prompt_token_ids": prompt}, params, vllm_request_id(request))
            async with aclosing(stream_chunks(outputs, len(prompt))) as chunks:
                async for chunk in chunks:
                    yield chunk
        except VLLMClientError as exc:  # vLLM refused the request itself (validation)
            raise EngineError("invalid_request", str(exc)) from None

    async def info(self) -> ModelServerInfo:
        scheduler = self._engine_client().vllm_config.scheduler_config
        return ModelServerInfo(
            name=self.spec.name,
            engine="vllm",
            context_length=self.spec.context_length,
            slots=scheduler.max_num_seqs,
        )


async def _resolved(value: Any) -> Any:
    """vLLM's `get_tokenizer()` is a coroutine in some releases and a plain method in others."""
    return await value if inspect.isawaitable(value) else value


def _define_server_class() -> type:
    from ray.serve.llm.deployment import LLMServer

    class VLLMModelServer(VLLMModelMethods, LLMServer):
        """One vLLM model: Ray's LLMServer (engine start, placement, health) with our protocol."""

        async def __init__(self, llm_config: Any, *, spec: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[misc]
            self.spec = ModelSpec.model_validate(spec)
            await super().__init__(llm_config, **kwargs)  # starts the engine
            self.tokenizer = await _resolved(self._engine_client().get_tokenizer())

    VLLMModelServer.__module__ = __name__
    VLLMModelServer.__qualname__ = "VLLMModelServer"
    return VLLMModelServer


def server_class() -> type:
    """`VLLMModelServer`, made once per process (needs `ray.serve.llm`, hence vLLM)."""
    cls = globals().get("VLLMModelServer")
    if cls is None:
        cls = globals()["VLLMModelServer"] = _define_server_class()
    return cls


def __getattr__(name: str) -> Any:
    if name == "VLLMModelServer":
        return server_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_vllm_deployment(spec: ModelSpec, env: dict[str, str] | None = None) -> Application:
    """Ray's `build_llm_deployment` with our server class. Ray derives the options from the `LLMConfig`
    (which imports vLLM: the app must be built where vLLM is installed); the deployment is named like
    the CPU ones (`llm-<name>`) instead of Ray's `<class>:<name>`, so it is found the same way."""
    from ray.serve.llm import LLMConfig, build_llm_deployment

    return build_llm_deployment(
        LLMConfig(**llm_config_dict(spec, env)),
        deployment_cls=server_class(),
        bind_kwargs={"spec": spec.model_dump()},
        override_serve_options={"name": spec.deployment_name},
    )
