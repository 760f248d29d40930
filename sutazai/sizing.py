"""Model deployments sized from the machine: replicas, sequences and request bounds.

A model file may say `auto` for `cpu.max_sequences`, `autoscaling.max_replicas`,
`deployment.max_ongoing_requests` and `deployment.max_queued_requests`; they are worked out
here from the cluster the app is deployed on (Ray's CPU, memory and GPU totals, or this
machine's when Ray is not connected), when the catalog is loaded, so a redeploy after nodes
join sizes again. Explicit numbers in a file are kept as they are.

Why these rules: overload must turn into a 503 + Retry-After in milliseconds rather than a
queue of requests each waiting many seconds for its first token.
- Replicas: as many as fit beside what the app itself holds (the ingress, the dispatcher,
  the agent runners, the other models' and embedders' minimum replicas), by CPUs and, when
  the file declares `resources.memory_bytes`, by memory (a replica that cannot be placed
  would sit pending forever and its capacity would be counted for nothing).
- Sequences (batched CPU engine): 8 per engine thread (a 270M model decodes 8 sequences in
  one step at ~1.5x the aggregate throughput of one, measured in bench/cpu_engine.py; more
  make every stream slower without adding much); bounded by memory when declared.
- max_ongoing_requests: the sequences plus a quarter more, so a finished sequence's place
  is taken at the engine's next step without a round trip through the router.
- max_queued_requests: half the sequences per replica. A queued request waits for a running
  one to end (seconds each on a CPU), so a long queue only turns load into slow answers;
  past it callers get a 503 with Retry-After at once and can go to another replica or retry.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from sutazai.settings import Settings

logger = logging.getLogger("sutazai.sizing")

AUTO = "auto"
SEQUENCES_PER_THREAD = 8
VLLM_SEQUENCES = 64  # requests a vLLM replica is given at once when its file says `auto`
DISPATCHER_NUM_CPUS = 0.1  # the task dispatcher's replica (deployments/app.py)


@dataclass(frozen=True)
class Machine:
    """What the models may use: the cluster's totals less what the app itself reserves."""

    cpus: float
    memory_bytes: int
    gpus: float = 0.0
    reserved_cpus: float = 0.0
    reserved_memory_bytes: int = 0

    @classmethod
    def detect(cls, *, reserved_cpus: float = 0.0) -> Machine:
        """Ray's totals when this process is connected to a cluster, else this machine's."""
        import ray

        if ray.is_initialized():
            total = ray.cluster_resources()
            return cls(
                cpus=float(total.get("CPU", 0.0)),
                memory_bytes=int(total.get("memory", 0)),
                gpus=float(total.get("GPU", 0.0)),
                reserved_cpus=reserved_cpus,
            )
        return cls(
            cpus=float(os.cpu_count() or 1), memory_bytes=psutil.virtual_memory().total, reserved_cpus=reserved_cpus
        )


def app_reserved_cpus(settings: Settings) -> float:
    """CPUs the app's own replicas and actors hold whatever the load."""
    ingress = settings.ingress_min_replicas * settings.ingress_num_cpus
    return ingress + DISPATCHER_NUM_CPUS + settings.task_runners * settings.task_runner_num_cpus


def _minimum_hold(data: dict[str, Any]) -> tuple[float, int]:
    """CPUs and memory a model file's minimum replicas hold."""
    resources = data.get("resources") or {}
    scaling = data.get("autoscaling") or {}
    replicas = scaling.get("min_replicas", 1)
    replicas = replicas if isinstance(replicas, int) else 1
    return replicas * float(resources.get("num_cpus", 1.0)), replicas * int(resources.get("memory_bytes") or 0)


def size_model_files(files: list[Any], machine: Machine) -> list[Any]:
    """The files with every `auto` replaced by a number for `machine` (what is not a mapping
    is passed through, for the catalog to refuse)."""
    holds = [_minimum_hold(f) if isinstance(f, dict) and f.get("enabled", True) else (0.0, 0) for f in files]
    sized: list[Any] = []
    for index, data in enumerate(files):
        if not isinstance(data, dict):
            sized.append(data)
            continue
        others_cpus = sum(c for i, (c, _) in enumerate(holds) if i != index)
        others_memory = sum(m for i, (_, m) in enumerate(holds) if i != index)
        free_cpus = machine.cpus - machine.reserved_cpus - others_cpus
        free_memory = machine.memory_bytes - machine.reserved_memory_bytes - others_memory
        sized.append(size_model_file(data, free_cpus, free_memory, machine.gpus))
        if sized[-1] != data:
            logger.info(
                "%s sized for %s: %s",
                data.get("name"),
                machine,
                {k: sized[-1].get(k) for k in ("cpu", "deployment", "autoscaling") if k in sized[-1]},
            )
    return sized


def size_model_file(data: dict[str, Any], free_cpus: float, free_memory: int, gpus: float) -> dict[str, Any]:
    """One file's `auto` values, given the CPUs, memory and GPUs its replicas may share."""
    data = {**data}
    resources = data.get("resources") or {}
    num_cpus = float(resources.get("num_cpus", 1.0))
    num_gpus = float(resources.get("num_gpus", 0.0))
    memory = int(resources.get("memory_bytes") or 0)
    scaling = {**(data.get("autoscaling") or {})}
    cpu = {**(data.get("cpu") or {})}
    deployment = {**(data.get("deployment") or {})}

    if num_cpus > free_cpus + 1e-9 and data.get("enabled", True):
        logger.warning(
            "%s asks %g CPUs a replica but only %g are left beside the rest of the app: it cannot be placed",
            data.get("name"),
            num_cpus,
            max(free_cpus, 0.0),
        )
    if scaling.get("max_replicas") == AUTO:
        min_replicas = scaling.get("min_replicas", 1)
        fits = [math.floor(free_cpus / num_cpus + 1e-9) if num_cpus > 0 else 64]
        if num_gpus > 0:
            fits.append(math.floor(gpus / num_gpus + 1e-9))
        if memory > 0:
            fits.append(free_memory // memory)
        scaling["max_replicas"] = max(1, min_replicas if isinstance(min_replicas, int) else 1, min(fits))
    replicas = scaling.get("max_replicas", 1)

    if cpu.get("max_sequences") == AUTO:
        threads = cpu.get("threads") or max(1, math.ceil(num_cpus))
        cpu["max_sequences"] = SEQUENCES_PER_THREAD * threads
    if data.get("engine") != "cpu":
        sequences = VLLM_SEQUENCES
    elif cpu.get("engine", "slots") == "batched":
        sequences = cpu.get("max_sequences", 8)
    else:
        sequences = cpu.get("slots", 1)

    if deployment.get("max_ongoing_requests") == AUTO:
        deployment["max_ongoing_requests"] = sequences + max(1, sequences // 4)
    if deployment.get("max_queued_requests") == AUTO:
        deployment["max_queued_requests"] = max(1, sequences // 2) * (replicas if isinstance(replicas, int) else 1)

    for key, part in (("autoscaling", scaling), ("cpu", cpu), ("deployment", deployment)):
        if part or key in data:
            data[key] = part
    return data
