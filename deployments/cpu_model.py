"""The CPU model deployment: one llama.cpp engine per replica, built from a model file.

It answers the protocol every model deployment shares (`sutazai.schemas.engine`):
`generate`, `generate_stream` (through a streaming handle), `info`. Replica
count, concurrency and queue bounds come from the model file (`deployments/app.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from ray import serve

from sutazai.catalog import ModelSpec
from sutazai.engines.llama_batch import LlamaBatchEngine
from sutazai.engines.llama_cpp import LlamaCppEngine
from sutazai.engines.model_files import resolve_model_path
from sutazai.schemas.engine import (
    EngineError,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ModelServerInfo,
)
from sutazai.settings import get_settings

logger = logging.getLogger("ray.serve")


@serve.deployment
class CPUModelServer:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = ModelSpec.model_validate(spec)
        started = time.perf_counter()
        path = resolve_model_path(self.spec, get_settings().data_dir)
        # The model file picks the engine (`cpu.engine`); both answer the same methods.
        if self.spec.cpu.engine == "batched":
            self.engine: LlamaBatchEngine | LlamaCppEngine = LlamaBatchEngine(
                self.spec,
                path,
                batch_invariant=self.spec.cpu.kernels == "plain",
                kv_unified=self.spec.cpu.kv_unified,
                repacked_prompts=self.spec.cpu.prompt_kernels == "repacked",
            )
        else:
            self.engine = LlamaCppEngine(self.spec, path)
        logger.info(
            "model %s (%s engine) loaded from %s in %.2fs",
            self.spec.name,
            self.spec.cpu.engine,
            path,
            time.perf_counter() - started,
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.engine.generate(request)

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.engine.stream(request):
            yield chunk

    async def generate_once(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One result, yielded once: the shape Ray Data LLM's `ServeDeploymentProcessorConfig`
        calls (`handle.options(stream=True).generate_once.remote(row)`, first value kept).

        `request` is a plain dict (GenerationRequest's fields; what it leaves unset comes from
        the model file); the processor adds `request_id` and `idx_in_batch`, which are dropped.
        A request the model cannot serve is answered with an `error`, not raised: the processor
        treats unknown exceptions as fatal for the whole job."""
        fields = {k: v for k, v in request.items() if k not in ("request_id", "idx_in_batch") and v is not None}
        sampling = self.spec.sampling
        fields.setdefault("max_tokens", sampling.max_tokens)
        fields.setdefault("temperature", sampling.temperature)
        fields.setdefault("top_p", sampling.top_p)
        try:
            result = await self.engine.generate(GenerationRequest.model_validate(fields))
        except ValidationError as exc:
            yield {"error": {"code": "invalid_request", "message": str(exc.errors(include_url=False))[:500]}}
        except EngineError as exc:
            yield {"error": {"code": exc.code, "message": exc.message}}
        else:
            yield {**result.model_dump(mode="json"), "error": None}

    async def info(self) -> ModelServerInfo:
        return ModelServerInfo(
            name=self.spec.name,
            engine="cpu",
            context_length=self.spec.context_length,
            slots=self.engine.slots,
            free_slots=self.engine.free_slots,
        )

    async def check_health(self) -> None:
        """Serve's replica health check: the loaded model must still tokenize (cheap, no slot needed)."""
        if not self.engine.tokenize("health"):
            raise RuntimeError(f"model {self.spec.name} returned no tokens")

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)  # absent when __init__ failed
        if engine is not None:
            engine.close()
