"""The model catalog: one YAML file per served model in `models/`.

Adding a model is adding a file; deployments are built from these specs. A file is a
generation (chat/completion) model, a `ModelSpec` in `ModelCatalog.specs`, unless it says
`kind: embedding`: then it is an `EmbedderSpec` in `ModelCatalog.embedders`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sutazai.sizing import AUTO, Machine, app_reserved_cpus, size_model_files


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(_Strict):
    """Where the weights are: a file path (or HF id for vLLM), or an installed package that ships them."""

    path: str | None = None
    package: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ModelSource:
        if (self.path is None) == (self.package is None):
            raise ValueError("source needs exactly one of `path` or `package`")
        return self


class SamplingDefaults(_Strict):
    max_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)  # the model's recommended top-k; 0 = the whole vocabulary
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)


class CPUOptions(_Strict):
    # `batched`: one llama.cpp context decoding up to `max_sequences` sequences per step
    # (continuous batching, `threads` threads); `slots`: `slots` contexts of `threads_per_slot`.
    engine: Literal["batched", "slots"] = "slots"
    max_sequences: int = Field(default=8, ge=1, le=256)
    threads: int | None = Field(default=None, ge=1)  # None: the replica's CPUs (resources.num_cpus)
    slots: int = Field(default=1, ge=1, le=64)
    threads_per_slot: int = Field(default=1, ge=1)
    batch_size: int = Field(default=256, ge=8)
    # batched engine: one KV buffer for all sequences, prompt chunks batched with the decode
    # tokens. Measured (bench/cpu_engine.py): 8-stream TTFT 0.29 vs 0.53 s, aggregate 1.03x; but
    # a seed no longer reproduces its text (a sequence's numbers depend on its batch-mates).
    kv_unified: bool = False
    # batched engine: llama.cpp's matmul kernels. `plain` (the default) are the same for every
    # batch size, so a seed gives the same text alone or batched. `repacked` are llama.cpp's
    # defaults (what llama-server runs): measured on a 2-core AVX-512 EPYC (bench/cpu_engine.py),
    # 20-token prompt 38 vs 100 ms and one stream ~4% faster, but a step of 4+ sequences runs
    # another GEMM than one of 1-3 (logits differ by up to 0.6), so a seed's text depends on its
    # company; and where the CPU reports AMX the VM does not run, the replica dies of SIGILL.
    kernels: Literal["plain", "repacked"] = "plain"
    # batched engine on plain kernels: how prompts are fed. `plain` (the default): in pieces of
    # fewer than 64 tokens, every feeding prompt's piece in one call, each token computed exactly
    # as alone, so any cached prefix is reused (a repeated 20-token prompt: first token 38-41 ms
    # vs 88-92 fed cold, in process on a 2-core Xeon). `repacked`: in a second context with
    # llama.cpp's repacked kernels whose KV cells move to the decode context (a 20-token prompt
    # 65 vs 94 ms fed cold on a 2-core EPYC) for a second KV cache and the repacked weights in
    # memory; a chunk is decoded alone and only whole n_batch chunks are reused. Plain where the
    # CPU reports AMX.
    prompt_kernels: Literal["plain", "repacked"] = "plain"


class VLLMOptions(_Strict):
    accelerator_type: str | None = None
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    engine_kwargs: dict = Field(default_factory=dict)


class Resources(_Strict):
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory_bytes: int | None = None
    custom: dict[str, float] = Field(default_factory=dict)


class DeploymentOptions(_Strict):
    max_ongoing_requests: int = Field(default=4, ge=1)
    max_queued_requests: int = Field(default=16, ge=-1)


class Autoscaling(_Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2, gt=0)
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 30.0
    look_back_period_s: float = 15.0  # must exceed Serve's 10 s metrics interval

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self

    def to_serve(self) -> dict:
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    engine: Literal["cpu", "vllm"]
    enabled: bool = True
    source: ModelSource
    context_length: int = Field(default=2048, ge=128)
    chat_template: str | None = None  # None: use the template inside the model file
    chat_stop: list[str] = Field(default_factory=list)
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    cpu: CPUOptions = Field(default_factory=CPUOptions)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    resources: Resources = Field(default_factory=Resources)
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    @property
    def deployment_name(self) -> str:
        return f"llm-{self.name}"

    def ray_actor_options(self) -> dict:
        return _actor_options(self.resources)


def _actor_options(resources: Resources) -> dict:
    options: dict = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.memory_bytes:
        options["memory"] = resources.memory_bytes
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


class TokenizerSource(_Strict):
    """The folder holding `tokenizer.json`: a path, or a folder inside an installed package."""

    path: str | None = None
    package: str | None = None
    subdir: str = ""  # inside the package

    @model_validator(mode="after")
    def _one_of(self) -> TokenizerSource:
        if (self.path is None) == (self.package is None):
            raise ValueError("tokenizer needs exactly one of `path` or `package`")
        if self.path is not None and self.subdir:
            raise ValueError("tokenizer `subdir` goes with `package`")
        return self


class Batching(_Strict):
    """Serve's request batching (`@serve.batch`): requests from many callers run as one batch."""

    max_batch_size: int = Field(default=32, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0.0, le=10.0)


class EmbedderSpec(_Strict):
    """A sentence embedding model: an ONNX file (`source`: a path, or a package shipping
    `model.onnx`) and its tokenizer, run by fastembed from local files."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    kind: Literal["embedding"] = "embedding"
    engine: Literal["fastembed"] = "fastembed"
    enabled: bool = True
    source: ModelSource
    tokenizer: TokenizerSource
    dimensions: int = Field(ge=1, le=65536)
    max_input_tokens: int = Field(default=256, ge=8)  # special tokens included; longer inputs are refused
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    threads: int = Field(default=1, ge=1, le=64)  # onnxruntime threads per replica
    batching: Batching = Field(default_factory=Batching)
    resources: Resources = Field(default_factory=Resources)
    deployment: DeploymentOptions = Field(default_factory=lambda: DeploymentOptions(max_ongoing_requests=64))
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    @property
    def deployment_name(self) -> str:
        return f"embedder-{self.name}"

    def ray_actor_options(self) -> dict:
        return _actor_options(self.resources)


def _says_auto(data: object) -> bool:
    return isinstance(data, dict) and any(
        isinstance(part, dict) and AUTO in part.values()
        for part in (data.get("cpu"), data.get("deployment"), data.get("autoscaling"))
    )


def parse_model_file(data: object) -> ModelSpec | EmbedderSpec:
    """A model file's content as a spec: an embedder when it says `kind: embedding`."""
    if isinstance(data, dict) and (data.get("kind") == "embedding" or data.get("engine") == "fastembed"):
        return EmbedderSpec.model_validate(data)
    if isinstance(data, dict) and data.get("kind") == "generation":
        data = {k: v for k, v in data.items() if k != "kind"}
    return ModelSpec.model_validate(data)


class ModelCatalog:
    """The enabled models, by name, in file order: generation models in `specs`,
    embedding models in `embedders` (one name space for both)."""

    def __init__(self, specs: list[ModelSpec], embedders: list[EmbedderSpec] | None = None) -> None:
        names = [s.name for s in specs] + [e.name for e in embedders or []]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate model names: {sorted(duplicates)}")
        self.specs = {s.name: s for s in specs}
        self.embedders: dict[str, EmbedderSpec] = {e.name: e for e in embedders or []}

    @classmethod
    def load(cls, directory: Path, *, include_disabled: bool = False, machine: Machine | None = None) -> ModelCatalog:
        """The files in `directory`; their `auto` values sized for `machine` (default: the
        connected Ray cluster, else this machine, less what the app itself reserves)."""
        paths = sorted(directory.glob("*.yaml"))
        files = []
        for path in paths:
            try:
                files.append(yaml.safe_load(path.read_text()))
            except yaml.YAMLError as exc:
                raise ValueError(f"invalid model file {path}: {exc}") from exc
        if any(_says_auto(data) for data in files):
            if machine is None:
                from sutazai.settings import get_settings

                machine = Machine.detect(reserved_cpus=app_reserved_cpus(get_settings()))
            files = size_model_files(files, machine)
        specs, embedders = [], []
        for path, data in zip(paths, files, strict=True):
            try:
                spec = parse_model_file(data)
            except Exception as exc:  # name the file: a catalog error is a config error
                raise ValueError(f"invalid model file {path}: {exc}") from exc
            if not (spec.enabled or include_disabled):
                continue
            if isinstance(spec, EmbedderSpec):
                embedders.append(spec)
            else:
                specs.append(spec)
        return cls(specs, embedders)

    def names(self) -> list[str]:
        return list(self.specs)

    def get(self, name: str) -> ModelSpec | None:
        return self.specs.get(name)

    def default_name(self, preferred: str | None = None) -> str:
        if preferred:
            if preferred not in self.specs:
                raise ValueError(f"default model {preferred!r} is not in the catalog")
            return preferred
        if not self.specs:
            raise ValueError("the model catalog has no enabled model")
        return next(iter(self.specs))

    def embedder_names(self) -> list[str]:
        return list(self.embedders)

    def default_embedder(self) -> str | None:
        """The first enabled embedding model, or None when there is none."""
        return next(iter(self.embedders), None)
