"""Inference as the ingress sees it: resolve a model, apply its defaults, use the
cache, call the model deployment through its handle, and turn Serve's failures
into domain errors (back-pressure -> `Unavailable` with a retry delay; a request
the engine refuses -> `BadRequest`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from sutazai.admission import Admission
from sutazai.cache import ResponseCache
from sutazai.catalog import ModelCatalog, ModelSpec
from sutazai.errors import BadRequest, NotFound, SutazaiError, Unavailable
from sutazai.schemas.engine import (
    ChatMessage,
    EngineError,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ModelServerInfo,
)

logger = logging.getLogger("sutazai.inference")


class BatchOutcome(NamedTuple):
    """One prompt of a batch: its result (and whether cached), or the error it met."""

    result: GenerationResult | None
    cached: bool
    error: SutazaiError | None


def serve_failure(exc: BaseException, what: str, retry_after_s: int) -> SutazaiError:
    """A deployment call's failure as the caller's error: ours pass through, an engine's refusal
    is a 400, back-pressure and an unavailable deployment are 503s with a retry delay. `what`
    names the deployment in the message ("model gemma3-270m", "embedding model minilm-l6")."""
    if isinstance(exc, SutazaiError):
        return exc
    if isinstance(exc, EngineError):
        return BadRequest(exc.message, code=exc.code)
    if isinstance(exc, BackPressureError):
        return Unavailable(f"{what} is at capacity; retry later", retry_after_s)
    if isinstance(exc, DeploymentUnavailableError):
        return Unavailable(f"{what} is unavailable", retry_after_s)
    logger.error("%s failed: %r", what, exc)
    return Unavailable(f"{what} failed to answer", retry_after_s)


class ModelClient:
    """One model deployment, reached through its handle. Every engine's deployment answers
    the same methods with the same types (`sutazai.schemas.engine`), so one client fits all."""

    def __init__(self, spec: ModelSpec, handle: Any, *, share: int | None = None, retry_after_s: int = 1) -> None:
        """`share`: the calls this replica may have in flight (`sutazai.admission`); None: no bound."""
        self.spec = spec
        self.handle = handle
        self.admission = Admission(spec.name, share, retry_after_s)
        self.stream_handle = handle.options(stream=True)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.handle.generate.remote(request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self.stream_handle.generate_stream.remote(request)

    async def info(self) -> ModelServerInfo:
        return await self.handle.info.remote()


class InferenceService:
    def __init__(
        self,
        catalog: ModelCatalog,
        clients: dict[str, ModelClient],
        cache: ResponseCache,
        *,
        default_model: str | None,
        retry_after_s: int,
    ) -> None:
        self.catalog = catalog
        self.clients = clients
        self.cache = cache
        self.default_model = catalog.default_name(default_model) if catalog.specs else None
        self.retry_after_s = retry_after_s

    def at_capacity(self) -> bool:
        """Whether no served model can take another call in this replica (`sutazai.admission`)."""
        return bool(self.clients) and all(client.admission.full for client in self.clients.values())

    def resolve(self, name: str | None) -> ModelClient:
        name = name or self.default_model
        client = self.clients.get(name) if name else None
        if client is None:
            raise NotFound(f"model {name!r} is not served; see GET /api/v1/models", code="model_not_found")
        return client

    @staticmethod
    def build_request(
        spec: ModelSpec,
        sampling: Any,
        *,
        request_id: str | None,
        messages: list[ChatMessage] | None = None,
        prompt: str | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> GenerationRequest:
        """`sampling` is any request body with max_tokens, temperature, top_p, stop and seed;
        what it leaves unset comes from the model file."""
        defaults = spec.sampling
        return GenerationRequest(
            messages=messages,
            prompt=prompt,
            max_tokens=sampling.max_tokens if sampling.max_tokens is not None else defaults.max_tokens,
            temperature=sampling.temperature if sampling.temperature is not None else defaults.temperature,
            top_p=sampling.top_p if sampling.top_p is not None else defaults.top_p,
            stop=sampling.stop,
            seed=sampling.seed,
            request_id=request_id,
            json_schema=json_schema,
        )

    def _error(self, exc: BaseException, model: str) -> SutazaiError:
        return serve_failure(exc, f"model {model}", self.retry_after_s)

    async def complete(
        self, client: ModelClient, request: GenerationRequest, *, cache_scope: str
    ) -> tuple[GenerationResult, bool]:
        """The result and whether it came from the cache (of `cache_scope`: a user, or shared)."""
        cached = await self.cached(client, request, cache_scope=cache_scope)
        if cached is not None:
            return cached, True
        return await self.generate(client, request, cache_scope=cache_scope), False

    async def cached(
        self, client: ModelClient, request: GenerationRequest, *, cache_scope: str
    ) -> GenerationResult | None:
        """The cache's answer (no I/O for a request that cannot have one: not deterministic, cache off)."""
        return await self.cache.get(client.spec.name, request, cache_scope)

    async def generate(self, client: ModelClient, request: GenerationRequest, *, cache_scope: str) -> GenerationResult:
        """The model's answer (not looked up in the cache; stored there for the next caller)."""
        name = client.spec.name
        try:
            result = await client.generate(request)
        except Exception as exc:
            raise self._error(exc, name) from None
        await self.cache.put(name, request, result, cache_scope)
        return result

    async def open_stream(
        self, client: ModelClient, request: GenerationRequest, *, cache_scope: str
    ) -> tuple[AsyncIterator[GenerationChunk], bool]:
        """Starts a stream and waits for its first chunk, so that a refusal
        (capacity, bad request) is an HTTP status, not an error inside the stream."""
        name = client.spec.name
        cached = await self.cache.get(name, request, cache_scope)
        if cached is not None:
            return _replay(cached), True
        stream = client.stream(request)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            raise Unavailable(f"model {name} ended the stream early", self.retry_after_s) from None
        except Exception as exc:
            raise self._error(exc, name) from None
        return self._continue(client, request, first, stream, cache_scope), False

    async def _continue(
        self,
        client: ModelClient,
        request: GenerationRequest,
        first: GenerationChunk,
        rest: AsyncIterator[GenerationChunk],
        cache_scope: str,
    ) -> AsyncIterator[GenerationChunk]:
        parts: list[str] = []
        chunk = first
        try:
            while True:
                parts.append(chunk.text)
                yield chunk
                if chunk.usage is not None:
                    result = GenerationResult(text="".join(parts), finish_reason=chunk.finish_reason, usage=chunk.usage)
                    await self.cache.put(client.spec.name, request, result, cache_scope)
                    return
                try:
                    chunk = await rest.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise self._error(exc, client.spec.name) from None
        finally:
            cancel = getattr(rest, "cancel", None)
            if cancel is not None and chunk.usage is None:
                cancel()  # the client went away: free the model's slot

    async def batch(
        self, client: ModelClient, requests: list[GenerationRequest], concurrency: int, *, cache_scope: str
    ) -> list[BatchOutcome]:
        """Runs requests concurrently (at most `concurrency` at once); one failure does not fail the rest."""
        gate = asyncio.Semaphore(concurrency)

        async def one(request: GenerationRequest) -> BatchOutcome:
            async with gate:
                try:
                    result, cached = await self.complete(client, request, cache_scope=cache_scope)
                    return BatchOutcome(result, cached, None)
                except SutazaiError as exc:
                    return BatchOutcome(None, False, exc)

        return await asyncio.gather(*(one(r) for r in requests))


async def _replay(result: GenerationResult) -> AsyncIterator[GenerationChunk]:
    if result.text:
        yield GenerationChunk(text=result.text)
    yield GenerationChunk(finish_reason=result.finish_reason, usage=result.usage)
