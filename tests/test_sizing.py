"""Model deployments sized from the machine: what `auto` becomes for a given cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sutazai.catalog import ModelCatalog
from sutazai.sizing import Machine, size_model_files

GIB = 1024**3
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cpu_model(**overrides: object) -> dict:
    data: dict = {
        "name": "m",
        "engine": "cpu",
        "source": {"path": "/m.gguf"},
        "cpu": {"engine": "batched", "max_sequences": "auto"},
        "resources": {"num_cpus": 1},
        "deployment": {"max_ongoing_requests": "auto", "max_queued_requests": "auto"},
        "autoscaling": {"min_replicas": 1, "max_replicas": "auto"},
    }
    for key, value in overrides.items():
        data[key] = data.get(key, {}) | value if isinstance(value, dict) else value
    return data


def sized(data: dict, machine: Machine, *others: dict) -> dict:
    return size_model_files([data, *others], machine)[0]


def test_a_two_core_laptop_gets_one_replica_of_a_one_cpu_model():
    out = sized(cpu_model(), Machine(cpus=2, memory_bytes=24 * GIB, reserved_cpus=0.55))
    assert out["autoscaling"]["max_replicas"] == 1


def test_replicas_grow_with_the_cluster_cpus_left_to_models():
    out = sized(cpu_model(), Machine(cpus=16, memory_bytes=64 * GIB, reserved_cpus=0.55))
    assert out["autoscaling"]["max_replicas"] == 15


def test_other_models_minimum_replicas_are_left_their_cpus():
    embedder = {"name": "e", "kind": "embedding", "resources": {"num_cpus": 2}, "autoscaling": {"min_replicas": 2}}
    out = sized(cpu_model(), Machine(cpus=8, memory_bytes=64 * GIB), embedder)
    assert out["autoscaling"]["max_replicas"] == 4


def test_declared_memory_caps_the_replicas():
    model = cpu_model(resources={"num_cpus": 1, "memory_bytes": 4 * GIB})
    out = sized(model, Machine(cpus=32, memory_bytes=10 * GIB))
    assert out["autoscaling"]["max_replicas"] == 2


def test_gpus_cap_the_replicas_of_a_gpu_model():
    model = {
        "name": "g",
        "engine": "vllm",
        "source": {"path": "x"},
        "resources": {"num_cpus": 1, "num_gpus": 1},
        "autoscaling": {"max_replicas": "auto"},
    }
    out = sized(model, Machine(cpus=64, memory_bytes=512 * GIB, gpus=4))
    assert out["autoscaling"]["max_replicas"] == 4


def test_never_fewer_than_one_replica_or_the_declared_minimum():
    out = sized(cpu_model(autoscaling={"min_replicas": 2}), Machine(cpus=1, memory_bytes=GIB))
    assert out["autoscaling"]["max_replicas"] == 2


def test_sequences_are_eight_per_engine_thread():
    one = sized(cpu_model(), Machine(cpus=2, memory_bytes=GIB))
    four = sized(cpu_model(resources={"num_cpus": 4}), Machine(cpus=8, memory_bytes=GIB))
    assert (one["cpu"]["max_sequences"], four["cpu"]["max_sequences"]) == (8, 32)


def test_ongoing_requests_are_the_sequences_and_a_quarter_more():
    out = sized(cpu_model(), Machine(cpus=2, memory_bytes=GIB))
    assert out["deployment"]["max_ongoing_requests"] == 10


def test_the_queue_is_half_the_sequences_per_replica():
    out = sized(cpu_model(), Machine(cpus=4, memory_bytes=64 * GIB))
    assert out["autoscaling"]["max_replicas"] == 4
    assert out["deployment"]["max_queued_requests"] == 4 * 4


def test_the_slots_engine_is_sized_by_its_slots():
    model = cpu_model(cpu={"engine": "slots", "slots": 2, "max_sequences": 8})
    out = sized(model, Machine(cpus=2, memory_bytes=GIB))
    assert out["deployment"]["max_ongoing_requests"] == 3


def test_explicit_numbers_are_kept():
    model = cpu_model(deployment={"max_ongoing_requests": 5, "max_queued_requests": 0}, autoscaling={"max_replicas": 7})
    out = sized(model, Machine(cpus=2, memory_bytes=GIB))
    assert out["deployment"] == {"max_ongoing_requests": 5, "max_queued_requests": 0}
    assert out["autoscaling"]["max_replicas"] == 7


def test_the_catalog_sizes_auto_files_for_the_machine_it_is_given(tmp_path):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cpu_model()))
    spec = ModelCatalog.load(tmp_path, machine=Machine(cpus=3, memory_bytes=8 * GIB)).specs["m"]
    assert spec.autoscaling.max_replicas == 3
    assert (spec.deployment.max_ongoing_requests, spec.deployment.max_queued_requests) == (10, 12)


def test_the_shipped_cpu_model_is_sized_from_the_machine():
    raw = yaml.safe_load((PROJECT_ROOT / "models" / "gemma3-270m.yaml").read_text())
    assert raw["autoscaling"]["max_replicas"] == "auto"
    assert raw["deployment"] == {"max_ongoing_requests": "auto", "max_queued_requests": "auto"}
    spec = ModelCatalog.load(PROJECT_ROOT / "models", machine=Machine(cpus=2, memory_bytes=24 * GIB)).specs[
        "gemma3-270m"
    ]
    assert spec.autoscaling.max_replicas == 1


def test_auto_outside_a_catalog_file_is_refused():
    from sutazai.catalog import ModelSpec

    with pytest.raises(ValueError):
        ModelSpec.model_validate(cpu_model())


def test_a_model_that_cannot_be_placed_is_named_in_a_warning(caplog):
    with caplog.at_level("WARNING", logger="sutazai.sizing"):
        sized(cpu_model(), Machine(cpus=1, memory_bytes=GIB, reserved_cpus=0.5))
    assert "m asks 1 CPUs a replica but only 0.5 are left" in caplog.text


def test_the_default_app_leaves_the_cpu_model_its_core_on_a_two_core_laptop():
    from sutazai.settings import Settings
    from sutazai.sizing import app_reserved_cpus

    defaults = {name: Settings.model_fields[name].default for name in ("ingress_min_replicas", "ingress_num_cpus")}
    reserved = app_reserved_cpus(Settings(_env_file=None, **defaults))  # the defaults, not the test session's
    embedder = yaml.safe_load((PROJECT_ROOT / "models" / "minilm-l6.yaml").read_text())["resources"]["num_cpus"]
    assert 2 - reserved - embedder >= 1
