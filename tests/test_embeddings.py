"""Embeddings without Serve: the wire shapes, and the engine on the shipped model file."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pydantic
import pytest

from sutazai.catalog import ModelCatalog
from sutazai.errors import BadRequest
from sutazai.schemas.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingResult,
    decode_base64,
    encode_base64,
)
from sutazai.settings import PROJECT_ROOT

SPEC = ModelCatalog.load(PROJECT_ROOT / "models").embedders["minilm-l6"]


def test_base64_is_little_endian_float32_and_round_trips():
    vector = np.asarray([0.5, -1.25, 3.0e-7, 1.0], dtype=np.float32).tolist()
    encoded = encode_base64(vector)
    assert base64.b64decode(encoded) == struct.pack("<4f", *vector)
    assert decode_base64(encoded) == vector


def test_response_in_base64_decodes_to_the_float_response():
    result = EmbeddingResult(vectors=[[0.1, 0.2], [0.3, -0.4]], tokens=[3, 4])
    floats = EmbeddingResponse.of("m", result, "float")
    packed = EmbeddingResponse.of("m", result, "base64")
    assert [d.index for d in packed.data] == [0, 1]
    for f, b in zip(floats.data, packed.data, strict=True):
        assert isinstance(b.embedding, str)
        assert decode_base64(b.embedding) == np.asarray(f.embedding, dtype=np.float32).tolist()


def test_usage_counts_every_inputs_tokens():
    response = EmbeddingResponse.of("m", EmbeddingResult(vectors=[[0.0], [0.0]], tokens=[3, 4]), "float")
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (7, 7)
    assert response.object == "list" and response.data[0].object == "embedding"


def test_a_single_string_input_is_one_text():
    assert EmbeddingRequest(input="hello", model="m").texts() == ["hello"]


def test_token_arrays_are_refused():
    for tokens in ([1, 2, 3], [[1, 2], [3]]):
        with pytest.raises(pydantic.ValidationError, match="token arrays are not supported"):
            EmbeddingRequest.model_validate({"input": tokens, "model": "m"})


def test_an_empty_input_list_is_refused():
    with pytest.raises(pydantic.ValidationError, match="must not be empty"):
        EmbeddingRequest.model_validate({"input": [], "model": "m"})


def test_other_dimensions_than_the_models_own_are_refused():
    with pytest.raises(BadRequest, match="dimensions is not supported by minilm-l6"):
        EmbeddingRequest(input="x", dimensions=128).check_dimensions("minilm-l6", 384)


def test_the_models_own_dimensions_are_accepted():
    EmbeddingRequest(input="x", dimensions=384).check_dimensions("minilm-l6", 384)
    EmbeddingRequest(input="x").check_dimensions("minilm-l6", 384)


def test_unknown_encoding_formats_are_refused():
    with pytest.raises(pydantic.ValidationError):
        EmbeddingRequest.model_validate({"input": "x", "encoding_format": "int8"})


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from sutazai.engines.fastembed_engine import FastEmbedEngine

    return FastEmbedEngine(SPEC, tmp_path_factory.mktemp("embedders"))


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_engine_vectors_have_the_model_files_dimension_and_unit_length(engine):
    result = engine.embed(["hello world", "another sentence"])
    assert [len(v) for v in result.vectors] == [384, 384]
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-4)


def test_engine_scores_similar_sentences_above_unrelated_ones(engine):
    food, bread, market = engine.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    ).vectors
    assert _cosine(food, bread) > _cosine(food, market) + 0.3


def test_engine_vectors_do_not_depend_on_the_batch(engine):
    texts = ["short", "a much longer sentence about embeddings and batches", "mid length text"]
    together = np.asarray(engine.embed(texts).vectors)
    alone = np.asarray([engine.embed([t]).vectors[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_engine_counts_tokens_without_truncating(engine):
    assert engine.count_tokens(["hello world"]) == [4]  # [CLS] hello world [SEP]
    assert engine.count_tokens(["word " * 400]) == [402]
    assert engine.embed(["word " * 400]).tokens == [402]  # embedded truncated, counted in full


def test_engine_embeds_an_empty_list_as_nothing(engine):
    assert engine.embed([]).vectors == []
