"""The embedder deployment: one sentence embedding model per replica, built from a model file
(`kind: embedding` in `models/`), run by fastembed from local files (`sutazai.engines.fastembed_engine`).

`embed` is batched across callers with `@serve.batch`: concurrent requests (each a list of
texts) are flattened, embedded in one call, and split back. The batch size and wait come from
the model file's `batching`. The model runs in a thread, so the replica keeps answering
health checks and queueing requests while it computes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ray import serve

from sutazai.catalog import EmbedderSpec
from sutazai.engines.fastembed_engine import FastEmbedEngine
from sutazai.schemas.embeddings import EmbedderInfo, EmbeddingResult
from sutazai.settings import get_settings

logger = logging.getLogger("ray.serve")


@serve.deployment
class EmbedderServer:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = EmbedderSpec.model_validate(spec)
        started = time.perf_counter()
        self.engine = FastEmbedEngine(self.spec, get_settings().data_dir / "embedders")
        batched: Any = self.embed  # Serve's batch wrapper, with its setters
        batched.set_max_batch_size(self.spec.batching.max_batch_size)
        batched.set_batch_wait_timeout_s(self.spec.batching.batch_wait_timeout_s)
        logger.info("embedding model %s loaded in %.2fs", self.spec.name, time.perf_counter() - started)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)  # replaced by the model file's in __init__
    async def embed(self, requests: list[list[str]]) -> list[EmbeddingResult]:
        """One call per request with its texts; Serve hands them over as a batch."""
        flat = [text for texts in requests for text in texts]
        result = await asyncio.to_thread(self.engine.embed, flat)
        out, start = [], 0
        for texts in requests:
            end = start + len(texts)
            out.append(
                EmbeddingResult.model_construct(vectors=result.vectors[start:end], tokens=result.tokens[start:end])
            )
            start = end
        return out

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return await asyncio.to_thread(self.engine.count_tokens, texts)

    async def info(self) -> dict[str, Any]:
        return EmbedderInfo(
            name=self.spec.name, dimension=self.spec.dimensions, max_input_tokens=self.spec.max_input_tokens
        ).model_dump()

    async def check_health(self) -> None:
        """Serve's replica health check: the loaded tokenizer must still tokenize."""
        if not self.engine.count_tokens(["health"])[0]:
            raise RuntimeError(f"embedding model {self.spec.name} returned no tokens")
