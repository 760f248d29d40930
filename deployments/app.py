"""The application builder: `serve run deployments.app:build_app` or serve_config.yaml.

One model deployment per enabled model file, each with the replica count,
concurrency and queue bounds its file declares, and one autoscaled ingress that
reaches them through deployment handles, and the task dispatcher, which owns the
agent runner actors. The two engines' builders sit side by
side here; both deployments answer the same protocol (`sutazai.schemas.engine`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.serve import Application

from deployments.cpu_model import CPUModelServer
from deployments.embedder import EmbedderServer
from deployments.ingress import Ingress
from deployments.task_dispatcher import TaskDispatcher
from sutazai.catalog import EmbedderSpec, ModelCatalog, ModelSpec
from sutazai.settings import Settings, get_settings


def _runtime_env(env: dict[str, str]) -> dict[str, Any]:
    return {"runtime_env": {"env_vars": dict(env)}} if env else {}


def cpu_model_deployment(spec: ModelSpec, env: dict[str, str]) -> Application:
    return CPUModelServer.options(  # type: ignore[attr-defined]  # Serve's decorator makes a Deployment
        name=spec.deployment_name,
        max_ongoing_requests=spec.deployment.max_ongoing_requests,
        max_queued_requests=spec.deployment.max_queued_requests,
        autoscaling_config=spec.autoscaling.to_serve(),
        ray_actor_options=spec.ray_actor_options() | _runtime_env(env),
        health_check_period_s=10,
        graceful_shutdown_timeout_s=20,
    ).bind(spec.model_dump())


def embedder_deployment(spec: EmbedderSpec, env: dict[str, str]) -> Application:
    """One embedding model (`kind: embedding` in models/): batched across callers by `@serve.batch`."""
    return EmbedderServer.options(  # type: ignore[attr-defined]  # Serve's decorator makes a Deployment
        name=spec.deployment_name,
        max_ongoing_requests=spec.deployment.max_ongoing_requests,
        max_queued_requests=spec.deployment.max_queued_requests,
        autoscaling_config=spec.autoscaling.to_serve(),
        ray_actor_options=spec.ray_actor_options() | _runtime_env(env),
        health_check_period_s=10,
        graceful_shutdown_timeout_s=20,
    ).bind(spec.model_dump())


def vllm_model_deployment(spec: ModelSpec, env: dict[str, str]) -> Application:
    from deployments.vllm_model import build_vllm_deployment  # imports vLLM: GPU nodes only

    return build_vllm_deployment(spec, env)


def model_deployment(spec: ModelSpec, env: dict[str, str]) -> Application:
    return vllm_model_deployment(spec, env) if spec.engine == "vllm" else cpu_model_deployment(spec, env)


def ingress_options(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "ingress",
        "max_ongoing_requests": settings.ingress_max_ongoing_requests,
        "max_queued_requests": settings.ingress_max_ongoing_requests * 2,
        "autoscaling_config": {
            "min_replicas": settings.ingress_min_replicas,
            "max_replicas": settings.ingress_max_replicas,
            "target_ongoing_requests": max(1, settings.ingress_max_ongoing_requests // 4),
            "look_back_period_s": 15,
        },
        "ray_actor_options": {"num_cpus": settings.ingress_num_cpus} | _runtime_env(env),
        "logging_config": {"enable_access_log": settings.ingress_access_log},
    }


def dispatcher_options(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    return {"name": "task-dispatcher", "ray_actor_options": {"num_cpus": 0.1} | _runtime_env(env)}


def build_app(args: dict[str, Any] | None = None) -> Application:
    """`args` may carry `env`: environment variables for every replica
    (DATABASE_URL, REDIS_URL, ...), as `serve_config.yaml` or `sutazai run` give them."""
    args = dict(args or {})
    env = {str(k): str(v) for k, v in (args.pop("env", None) or {}).items()}
    if args:
        raise ValueError(f"unknown application args: {sorted(args)}")
    settings = get_settings()
    catalog = ModelCatalog.load(Path(env.get("SUTAZAI_MODELS_DIR", settings.models_dir)))
    models = {spec.name: model_deployment(spec, env) for spec in catalog.specs.values()}
    embedders = {spec.name: embedder_deployment(spec, env) for spec in catalog.embedders.values()}
    dispatcher = TaskDispatcher.options(**dispatcher_options(settings, env)).bind()  # type: ignore[attr-defined]
    return Ingress.options(**ingress_options(settings, env)).bind(  # type: ignore[attr-defined]
        models,
        [spec.model_dump() for spec in catalog.specs.values()],
        dispatcher,
        embedders=embedders,
        embedder_specs=[spec.model_dump() for spec in catalog.embedders.values()],
    )
