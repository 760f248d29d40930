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

from ray import serve

from sutazai.catalog import ModelSpec
from sutazai.engines.llama_cpp import LlamaCppEngine
from sutazai.engines.model_files import resolve_model_path
from sutazai.schemas.engine import GenerationChunk, GenerationRequest, GenerationResult, ModelServerInfo
from sutazai.settings import get_settings

logger = logging.getLogger("ray.serve")


@serve.deployment
class CPUModelServer:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = ModelSpec.model_validate(spec)
        started = time.perf_counter()
        path = resolve_model_path(self.spec, get_settings().data_dir)
        self.engine = LlamaCppEngine(self.spec, path)
        logger.info("model %s loaded from %s in %.2fs", self.spec.name, path, time.perf_counter() - started)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.engine.generate(request)

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.engine.stream(request):
            yield chunk

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
