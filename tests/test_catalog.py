"""Model files: validation and what they turn into (pure logic)."""

from pathlib import Path

import pytest

from sutazai.catalog import ModelCatalog, ModelSpec
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
