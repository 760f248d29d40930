"""Model files: validation and what they turn into (pure logic)."""

from pathlib import Path

import pytest

from sutazai.catalog import EmbedderSpec, ModelCatalog, ModelSpec, TokenizerSource
from sutazai.engines.vllm import llm_config_dict
from sutazai.settings import PROJECT_ROOT

MODELS = PROJECT_ROOT / "models"


def test_shipped_catalog_serves_the_cpu_model_by_default():
    catalog = ModelCatalog.load(MODELS)
    assert catalog.default_name() == "gemma3-270m"
    assert catalog.get("gemma3-270m").deployment.max_queued_requests > 0


def test_disabled_model_files_are_loaded_only_on_request():
    assert "qwen2.5-0.5b-instruct" not in ModelCatalog.load(MODELS).names()
    assert "qwen2.5-0.5b-instruct" in ModelCatalog.load(MODELS, include_disabled=True).names()


def test_an_invalid_model_file_names_the_file(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("name: x\nengine: tpu\nsource: {path: /m}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml"):
        ModelCatalog.load(tmp_path)


def test_source_needs_exactly_one_of_path_or_package():
    with pytest.raises(ValueError):
        ModelSpec.model_validate({"name": "x", "engine": "cpu", "source": {"path": "/a", "package": "b"}})


def test_autoscaling_bounds_are_checked():
    with pytest.raises(ValueError):
        ModelSpec.model_validate(
            {
                "name": "x",
                "engine": "cpu",
                "source": {"path": "/a"},
                "autoscaling": {"min_replicas": 3, "max_replicas": 1},
            }
        )


def test_vllm_model_file_becomes_an_llm_config():
    spec = ModelCatalog.load(MODELS, include_disabled=True).get("qwen2.5-0.5b-instruct")
    config = llm_config_dict(spec, {"DATABASE_URL": "postgresql://db"})
    assert config["model_loading_config"] == {
        "model_id": "qwen2.5-0.5b-instruct",
        "model_source": "Qwen/Qwen2.5-0.5B-Instruct",
    }
    assert config["engine_kwargs"]["max_model_len"] == 4096
    assert config["engine_kwargs"]["tensor_parallel_size"] == 1
    assert config["engine_kwargs"]["enable_prefix_caching"] is True
    assert config["deployment_config"]["autoscaling_config"]["max_replicas"] == 4
    assert config["deployment_config"]["max_queued_requests"] == 256
    assert config["runtime_env"] == {"env_vars": {"DATABASE_URL": "postgresql://db"}}
    assert "accelerator_type" not in config


def test_accelerator_type_is_passed_through_when_set():
    spec = ModelSpec.model_validate(
        {
            "name": "g",
            "engine": "vllm",
            "source": {"path": "/ckpt"},
            "vllm": {"accelerator_type": "H100", "tensor_parallel_size": 2},
        }
    )
    config = llm_config_dict(spec)
    assert config["accelerator_type"] == "H100" and config["engine_kwargs"]["tensor_parallel_size"] == 2


def test_embedding_model_files_load_as_embedders_not_as_generation_models():
    catalog = ModelCatalog.load(MODELS)
    assert "minilm-l6" not in catalog.specs and "minilm-l6" not in catalog.names()
    spec = catalog.embedders["minilm-l6"]
    assert isinstance(spec, EmbedderSpec) and catalog.default_embedder() == "minilm-l6"
    assert (spec.dimensions, spec.max_input_tokens) == (384, 256)
    assert (spec.batching.max_batch_size, spec.batching.batch_wait_timeout_s) == (32, 0.01)
    assert spec.deployment_name == "embedder-minilm-l6" and spec.ray_actor_options()["num_cpus"] == 0.25


def test_a_catalog_without_embedding_files_has_no_default_embedder():
    assert ModelCatalog([]).default_embedder() is None


def test_an_embedding_and_a_generation_model_may_not_share_a_name(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("name: x\nengine: cpu\nsource: {path: /m}\n")
    (tmp_path / "b.yaml").write_text(
        "name: x\nkind: embedding\nsource: {path: /m.onnx}\ntokenizer: {path: /t}\ndimensions: 8\n"
    )
    with pytest.raises(ValueError, match="duplicate"):
        ModelCatalog.load(tmp_path)


def test_an_embedding_file_with_an_unknown_field_names_the_file(tmp_path: Path):
    (tmp_path / "e.yaml").write_text(
        "name: e\nkind: embedding\nsource: {path: /m.onnx}\ntokenizer: {path: /t}\ndimensions: 8\nvllm: {}\n"
    )
    with pytest.raises(ValueError, match=r"e\.yaml"):
        ModelCatalog.load(tmp_path)


def test_disabled_embedding_files_are_loaded_only_on_request(tmp_path: Path):
    (tmp_path / "e.yaml").write_text(
        "name: e\nkind: embedding\nenabled: false\nsource: {path: /m.onnx}\ntokenizer: {path: /t}\ndimensions: 8\n"
    )
    assert ModelCatalog.load(tmp_path).embedders == {}
    assert "e" in ModelCatalog.load(tmp_path, include_disabled=True).embedders


def test_a_tokenizer_needs_exactly_one_of_path_or_package():
    with pytest.raises(ValueError):
        TokenizerSource.model_validate({"path": "/t", "package": "p"})


def test_cpu_model_files_choose_their_engine_and_declare_their_sampling():
    spec = ModelCatalog.load(MODELS).get("gemma3-270m")
    assert (spec.sampling.top_k, spec.sampling.min_p) == (64, 0.0)
    assert spec.cpu.engine in ("batched", "slots") and spec.cpu.max_sequences >= 1
    base = {"name": "x", "engine": "cpu", "source": {"path": "/a"}}
    plain = ModelSpec.model_validate(base)
    assert (plain.cpu.engine, plain.cpu.threads) == ("slots", None)
    batched = ModelSpec.model_validate(base | {"cpu": {"engine": "batched", "max_sequences": 4, "threads": 2}})
    assert (batched.cpu.engine, batched.cpu.max_sequences, batched.cpu.threads) == ("batched", 4, 2)
    assert not batched.cpu.kv_unified  # seeds reproduce their text unless a file says otherwise
    assert ModelSpec.model_validate(base | {"cpu": {"engine": "batched", "kv_unified": True}}).cpu.kv_unified
    assert batched.cpu.kernels == "plain"  # the same kernels for every batch size unless a file says otherwise
    assert ModelSpec.model_validate(base | {"cpu": {"kernels": "repacked"}}).cpu.kernels == "repacked"
    assert batched.cpu.prompt_kernels == "plain"  # prompts in pieces, every cached prefix reusable
    assert ModelSpec.model_validate(base | {"cpu": {"prompt_kernels": "repacked"}}).cpu.prompt_kernels == "repacked"
    with pytest.raises(ValueError):
        ModelSpec.model_validate(base | {"cpu": {"kernels": "fast"}})
    with pytest.raises(ValueError):
        ModelSpec.model_validate(base | {"cpu": {"engine": "turbo"}})
