"""POST /v1/embeddings through the real Serve app, with the official `openai` client."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

MODEL = "minilm-l6"


@pytest.fixture(scope="module")
def api_key(api) -> str:
    r = api.post("/api/v1/auth/keys", json={"name": "embeddings-client"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.fixture(scope="module")
def client(serve_app, api_key):
    return openai.OpenAI(base_url=f"{serve_app}/v1", api_key=api_key, max_retries=0, timeout=120)


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_have_the_models_dimension(client):
    r = client.embeddings.create(model=MODEL, input=["hello world", "a second text"])
    assert r.model == MODEL and [d.index for d in r.data] == [0, 1]
    assert [len(d.embedding) for d in r.data] == [384, 384]
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0


def test_similar_sentences_score_higher_than_unrelated_ones(client):
    food, bread, market = (
        d.embedding
        for d in client.embeddings.create(
            model=MODEL,
            input=["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell today."],
            encoding_format="float",
        ).data
    )
    assert _cosine(food, bread) > _cosine(food, market) + 0.3


def test_base64_decodes_to_the_same_floats(api):
    texts = ["the same text twice", "and another one"]
    floats = api.post("/v1/embeddings", json={"model": MODEL, "input": texts, "encoding_format": "float"})
    packed = api.post("/v1/embeddings", json={"model": MODEL, "input": texts, "encoding_format": "base64"})
    assert floats.status_code == packed.status_code == 200, (floats.text, packed.text)
    for f, b in zip(floats.json()["data"], packed.json()["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.tolist() == np.asarray(f["embedding"], dtype=np.float32).tolist()


def test_the_openai_clients_default_base64_arrives_as_floats(client):
    r = client.embeddings.create(model=MODEL, input="decoded by the client")  # the client asks for base64
    assert len(r.data[0].embedding) == 384 and abs(np.linalg.norm(r.data[0].embedding) - 1.0) < 1e-3


def test_the_model_defaults_to_the_first_embedding_model(api):
    r = api.post("/v1/embeddings", json={"input": "no model named"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == MODEL


def test_an_input_over_the_models_token_limit_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="at most 256 tokens"):
        client.embeddings.create(model=MODEL, input=["short", "word " * 300])


def test_dimensions_other_than_the_models_own_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="dimensions is not supported by minilm-l6"):
        client.embeddings.create(model=MODEL, input="x", dimensions=128)


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="x")


def test_a_chat_model_is_not_an_embedding_model(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gemma3-270m", input="x")


def test_token_arrays_are_a_422(api):
    r = api.post("/v1/embeddings", json={"model": MODEL, "input": [[101, 102]]})
    assert r.status_code == 422 and "token arrays are not supported" in r.json()["error"]["message"]


def test_a_viewer_may_not_embed(api, new_user_headers):
    r = api.post("/v1/embeddings", headers=new_user_headers("viewer"), json={"model": MODEL, "input": "x"})
    assert r.status_code == 403


def test_an_anonymous_caller_may_not_embed(serve_app):
    r = httpx.post(f"{serve_app}/v1/embeddings", json={"model": MODEL, "input": "x"}, timeout=30)
    assert r.status_code == 401


def test_embedding_models_are_listed_with_the_chat_models(client):
    ids = [m.id for m in client.models.list().data]
    assert MODEL in ids and "gemma3-270m" in ids


def test_concurrent_requests_each_get_their_own_vectors(client):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"sentence number {i} about topic {i % 3}" for i in range(12)]
    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(lambda t: client.embeddings.create(model=MODEL, input=t).data[0].embedding, texts))
    alone = client.embeddings.create(model=MODEL, input=texts, encoding_format="float").data
    for got, expected in zip(vectors, alone, strict=True):
        assert np.allclose(got, expected.embedding, atol=1e-5)


async def test_embeddings_spend_the_callers_token_budget(serve_app, replica_settings, new_user_headers):
    """An ingress built here on the served embedder, with a budget of 30 tokens a minute (frozen clock)."""
    from ray import serve

    from sutazai.api.app import create_app
    from sutazai.catalog import ModelCatalog
    from sutazai.services import build_services
    from tests.helpers import client_for

    settings = replica_settings(rate_limit_tokens_per_minute={"admin": 10**6, "user": 30, "viewer": 30})
    spec = ModelCatalog.load(settings.models_dir).embedders[MODEL]
    handle = serve.get_deployment_handle(spec.deployment_name, app_name="sutazai")
    services = await build_services(
        settings, ModelCatalog([], [spec]), {}, embedders={MODEL: handle}, clock=lambda: 1_800_000_030.0
    )
    headers = new_user_headers("user")
    body = {"model": MODEL, "input": ["hello world"] * 5, "encoding_format": "float"}  # 4 tokens each
    try:
        async with client_for(create_app(services)) as client:
            first = await client.post("/v1/embeddings", headers=headers, json=body)
            second = await client.post("/v1/embeddings", headers=headers, json=body)
    finally:
        await services.close()
    assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] == 20
    assert second.status_code == 429 and second.json()["error"]["code"] == "token_rate_limited"  # 20 spent + 25 held
