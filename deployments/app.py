"""The application builder: `serve run deployments.app:build_app` or serve_config.yaml.

One LLM deployment per enabled model file, each with the replica count,
concurrency and queue bounds its file declares, and one autoscaled ingress
that reaches them through deployment handles.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments.ingress import Ingress
from deployments.llm import CPUModelServer
from sutazai.catalog import ModelCatalog, ModelSpec
from sutazai.settings import Settings


def _serve_options(spec: ModelSpec, env: dict[str, str]) -> dict:
    actor_options = spec.ray_actor_options()
    if env:
        actor_options["runtime_env"] = {"env_vars": dict(env)}
    return {
        "name": spec.deployment_name,
        "max_ongoing_requests": spec.deployment.max_ongoing_requests,
        "max_queued_requests": spec.deployment.max_queued_requests,
        "autoscaling_config": spec.autoscaling.to_serve(),
        "ray_actor_options": actor_options,
        "health_check_period_s": 10,
        "graceful_shutdown_timeout_s": 20,
    }


def model_deployment(spec: ModelSpec, env: dict[str, str]) -> Application:
    if spec.engine == "vllm":
        from sutazai.engines.vllm import build_vllm_deployment

        return build_vllm_deployment(spec, env)
    return CPUModelServer.options(**_serve_options(spec, env)).bind(spec.model_dump())


def ingress_options(settings: Settings, env: dict[str, str]) -> dict:
    actor_options: dict = {"num_cpus": settings.ingress_num_cpus}
    if env:
        actor_options["runtime_env"] = {"env_vars": dict(env)}
    return {
        "name": "ingress",
        "max_ongoing_requests": settings.ingress_max_ongoing_requests,
        "max_queued_requests": settings.ingress_max_ongoing_requests * 2,
        "autoscaling_config": {
            "min_replicas": settings.ingress_min_replicas,
            "max_replicas": settings.ingress_max_replicas,
            "target_ongoing_requests": settings.ingress_max_ongoing_requests // 2,
            "look_back_period_s": 15,
        },
        "ray_actor_options": actor_options,
    }


def build_app(args: dict[str, Any] | None = None) -> Application:
    """`args` may carry `env`: environment variables for every replica
    (DATABASE_URL, REDIS_URL, ...), as `serve_config.yaml` or `sutazai run` give them."""
    args = dict(args or {})
    env = {str(k): str(v) for k, v in (args.pop("env", None) or {}).items()}
    if args:
        raise ValueError(f"unknown application args: {sorted(args)}")
    settings = Settings(**({"models_dir": env["SUTAZAI_MODELS_DIR"]} if "SUTAZAI_MODELS_DIR" in env else {}))
    catalog = ModelCatalog.load(settings.models_dir)
    models = {spec.name: model_deployment(spec, env) for spec in catalog.specs.values()}
    return Ingress.options(**ingress_options(settings, env)).bind(
        models, [spec.model_dump() for spec in catalog.specs.values()]
    )
