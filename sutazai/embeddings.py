"""Embeddings as the ingress (and the documents pipeline) sees them: one client per
embedding model deployment, reached through its handle, with Serve's failures turned
into domain errors as `sutazai.inference` does for chat (back-pressure -> `Unavailable`
with a retry delay).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sutazai.catalog import EmbedderSpec
from sutazai.errors import BadRequest, NotFound, SutazaiError, Unavailable
from sutazai.inference import serve_failure
from sutazai.schemas.embeddings import EmbedderInfo, EmbeddingResult


class EmbeddingClient:
    """One embedder deployment (`deployments/embedder.py`). `embed` returns one vector per text
    (inputs past the model's limit are truncated by the model: check `too_long` first when
    that must be refused) and each text's token count."""

    def __init__(self, spec: EmbedderSpec, handle: Any, *, retry_after_s: int = 1, timeout_s: float = 30.0) -> None:
        """`timeout_s`: how long a call may wait for the deployment. A query embeds in
        milliseconds and a batch of chunks in well under a second, but with no replica running
        (one restarting, or none placed) Serve holds the call until the request timeout (120 s):
        past `timeout_s` it is a 503 with Retry-After instead."""
        self.spec = spec
        self.handle = handle
        self.retry_after_s = retry_after_s
        self.timeout_s = timeout_s

    @property
    def name(self) -> str:
        return self.spec.name

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult(vectors=[], tokens=[])
        result: EmbeddingResult = await self._call("embed", list(texts))
        return result

    async def count_tokens(self, texts: list[str]) -> list[int]:
        counts: list[int] = await self._call("count_tokens", list(texts))
        return counts

    async def info(self) -> EmbedderInfo:
        return EmbedderInfo.model_validate(await self._call("info"))

    async def _call(self, method: str, *args: Any) -> Any:
        response = getattr(self.handle, method).remote(*args)
        try:
            return await asyncio.wait_for(_result(response), self.timeout_s)
        except TimeoutError:
            response.cancel()
            raise Unavailable(
                f"embedding model {self.name} did not answer within {self.timeout_s:g} s", self.retry_after_s
            ) from None
        except Exception as exc:
            raise self._error(exc) from None

    def too_long(self, tokens: list[int]) -> BadRequest | None:
        """A 400 naming the first input over the model's limit, as OpenAI refuses one (None when all fit)."""
        limit = self.spec.max_input_tokens
        for index, count in enumerate(tokens):
            if count > limit:
                return BadRequest(
                    f"input[{index}] has {count} tokens; {self.name} takes at most {limit} tokens per input",
                    code="input_too_long",
                )
        return None

    def _error(self, exc: BaseException) -> SutazaiError:
        return serve_failure(exc, f"embedding model {self.name}", self.retry_after_s)


async def _result(response: Any) -> Any:
    return await response


def resolve_embedder(clients: dict[str, EmbeddingClient], name: str | None) -> EmbeddingClient:
    """The named embedding model, or the first one when no name is given; 404 otherwise."""
    client = clients.get(name) if name else next(iter(clients.values()), None)
    if client is None:
        what = f"embedding model {name!r} is not served" if name else "no embedding model is served"
        raise NotFound(f"{what}; see GET /v1/models", code="model_not_found")
    return client
