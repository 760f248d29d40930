"""The project's declared dependencies resolve together."""

import importlib.metadata
import tomllib

from packaging.requirements import Requirement

from sutazai.settings import PROJECT_ROOT


def test_the_vllm_extra_agrees_with_the_vllm_that_ray_llm_pins():
    extras = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ours = [Requirement(r) for r in extras["vllm"]]
    assert any(r.name == "ray" and "llm" in r.extras for r in ours)
    rays = [Requirement(r) for r in importlib.metadata.requires("ray") or []]
    pinned = next(r for r in rays if r.name == "vllm" and r.marker and r.marker.evaluate({"extra": "llm"}))
    version = next(iter(pinned.specifier)).version
    for requirement in ours:
        if requirement.name == "vllm":
            assert requirement.specifier.contains(version), f"{requirement} contradicts ray[llm]'s {pinned}"
