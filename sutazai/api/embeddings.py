"""OpenAI-compatible `POST /v1/embeddings`: the official `openai` client works against it unchanged.

The caller is a user with token budget left (`ModelCallerDep`), as for chat: the request
reserves an estimate of its tokens and a concurrency slot, and settles with the tokens the
embedder counted, so embeddings count against tokens-per-minute like completions. An input
longer than the model's limit is a 400 (OpenAI's behaviour), never a silently truncated vector.
"""

from __future__ import annotations

from fastapi import APIRouter

from sutazai.api.deps import ModelCallerDep, ServicesDep
from sutazai.embeddings import resolve_embedder
from sutazai.schemas.embeddings import EmbeddingRequest, EmbeddingResponse
from sutazai.schemas.engine import GenerationRequest, Usage

router = APIRouter(prefix="/v1", tags=["openai"])


def _estimates(texts: list[str]) -> list[GenerationRequest]:
    """What `ModelCaller.reserve` holds: each text's estimated tokens (+1 for the special tokens)."""
    return [GenerationRequest(prompt=text, max_tokens=1, temperature=0.0, top_p=1.0) for text in texts]


@router.post("/embeddings", response_model=EmbeddingResponse)
async def create_embeddings(body: EmbeddingRequest, caller: ModelCallerDep, services: ServicesDep) -> EmbeddingResponse:
    client = resolve_embedder(services.embeddings, body.model)
    body.check_dimensions(client.name, client.spec.dimensions)
    texts = body.texts()
    async with await caller.reserve(_estimates(texts)) as reservation:
        result = await client.embed(texts)
        too_long = client.too_long(result.tokens)
        if too_long is not None:
            raise too_long  # nothing is charged: `used` is still empty
        reservation.used = Usage(prompt_tokens=sum(result.tokens))
    return EmbeddingResponse.of(client.name, result, body.encoding_format)
