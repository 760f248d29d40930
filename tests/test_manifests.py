"""The cluster manifests, serve_config.yaml and the Dockerfile keep a cluster closed: token auth on
every node, a private dashboard, secrets by file path, and import paths and files that exist."""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sutazai.settings import PROJECT_ROOT

MANIFESTS = PROJECT_ROOT / "cluster" / "manifests"
SECRET_NAMES = ("SUTAZAI_JWT_SECRET", "SUTAZAI_ADMIN_PASSWORD", "RAY_AUTH_TOKEN", "JWT_SECRET", "PASSWORD")


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _rayservice() -> dict[str, Any]:
    (service,) = [d for d in _load_all(MANIFESTS / "kuberay-rayservice.yaml") if d["kind"] == "RayService"]
    return service


def _ray_up() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "ray-cluster.yaml").read_text())


def _settings_pairs(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (name, value) a document sets: mapping entries and Kubernetes `env` items."""
    if isinstance(node, dict):
        if set(node) >= {"name", "value"}:
            yield str(node["name"]), node["value"]
        for key, value in node.items():
            yield str(key), value
            yield from _settings_pairs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _settings_pairs(item)


def _assert_no_secret_values(document: Any) -> None:
    for name, value in _settings_pairs(document):
        if name.upper().endswith(SECRET_NAMES) and not name.upper().endswith("_FILE"):
            pytest.fail(f"{name} is given by value ({value!r}); give the path of a file instead")


def _assert_import_path_resolves(import_path: str) -> None:
    module, _, attribute = import_path.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def _ray_start_commands(commands: list[str]) -> list[str]:
    return [c for c in commands if "ray start" in c]


def _flag(command: str, name: str) -> str | None:
    for arg in shlex.split(command):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def test_rayservice_turns_on_token_auth_for_every_node():
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"
    major, minor, _ = (int(p) for p in cluster["rayVersion"].split("."))
    assert (major, minor) >= (2, 52)  # KubeRay turns authOptions on only for Ray >= 2.52
    for pod in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for name, value in _settings_pairs(pod["template"]):
            assert not (name == "RAY_AUTH_MODE" and value != "token")


def test_rayservice_dashboard_is_not_bound_to_every_interface():
    head = _rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]
    host = head["rayStartParams"].get("dashboard-host")
    assert host is not None, "KubeRay binds the dashboard to 0.0.0.0 when dashboard-host is unset"
    assert host not in ("0.0.0.0", "::")


def test_rayservice_network_policy_keeps_ray_ports_to_its_own_pods():
    (policy,) = [d for d in _load_all(MANIFESTS / "kuberay-rayservice.yaml") if d["kind"] == "NetworkPolicy"]
    name = _rayservice()["metadata"]["name"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/originated-from-cr-name": name}
    open_to_all = [rule for rule in policy["spec"]["ingress"] if "from" not in rule]
    assert [p["port"] for rule in open_to_all for p in rule["ports"]] == [8000]


def test_rayservice_secrets_are_mounted_files_named_by_path():
    service = _rayservice()
    _assert_no_secret_values(service)
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    env = serve_config["applications"][0]["args"]["env"]
    secret_files = [Path(v) for k, v in env.items() if k.endswith("_FILE")]
    assert {"SUTAZAI_JWT_SECRET_FILE", "SUTAZAI_ADMIN_PASSWORD_FILE"} <= set(env)
    cluster = service["spec"]["rayClusterConfig"]
    for pod in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        spec = pod["template"]["spec"]
        secret_volumes = {v["name"] for v in spec["volumes"] if "secret" in v}
        mounts_of_secrets = [
            Path(m["mountPath"])
            for c in spec["containers"]
            for m in c.get("volumeMounts", [])
            if m["name"] in secret_volumes
        ]
        assert all(f.parent in mounts_of_secrets for f in secret_files), spec


def test_rayservice_import_path_resolves():
    serve_config = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    for app in serve_config["applications"]:
        _assert_import_path_resolves(app["import_path"])


def test_ray_up_starts_every_node_with_token_auth_from_a_mounted_file():
    config = _ray_up()
    mounted = [Path(destination) for destination in config["file_mounts"]]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = _ray_start_commands(config[key])
        env = dict(a.split("=", 1) for a in shlex.split(start) if re.fullmatch(r"[A-Z_]+=.*", a))
        assert env["RAY_AUTH_MODE"] == "token"
        assert any(Path(env["RAY_AUTH_TOKEN_PATH"]).is_relative_to(m) for m in mounted)
        assert "RAY_AUTH_TOKEN" not in env


def test_ray_up_dashboard_listens_on_loopback_only():
    (start,) = _ray_start_commands(_ray_up()["head_start_ray_commands"])
    assert _flag(start, "dashboard-host") == "127.0.0.1"


def test_ray_up_passes_no_secret_values():
    _assert_no_secret_values(_ray_up())


def test_serve_config_import_path_resolves():
    config = yaml.safe_load((PROJECT_ROOT / "serve_config.yaml").read_text())
    for app in config["applications"]:
        _assert_import_path_resolves(app["import_path"])


def test_serve_config_names_secrets_by_file_path():
    config = yaml.safe_load((PROJECT_ROOT / "serve_config.yaml").read_text())
    _assert_no_secret_values(config)
    env = config["applications"][0]["args"]["env"]
    assert Path(env["SUTAZAI_JWT_SECRET_FILE"]).is_absolute()
    assert Path(env["SUTAZAI_ADMIN_PASSWORD_FILE"]).is_absolute()


def test_serve_config_sets_a_request_timeout():
    config = yaml.safe_load((PROJECT_ROOT / "serve_config.yaml").read_text())
    assert config["http_options"]["request_timeout_s"] > 0


def test_files_the_image_copies_exist():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    copied = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for sources in copied:
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source
    assert "serve_config.yaml" in [s for sources in copied for s in sources]  # ray-cluster.yaml deploys it


def test_image_takes_away_passwordless_sudo():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"sed -i '/\^ray /d' /etc/sudoers", dockerfile)
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users[-1] == "ray"
    assert "RUN ! sudo -n true" in dockerfile


def test_rayservice_autoscales_a_cpu_and_a_gpu_worker_group():
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}

    def gpus(group: dict[str, Any]) -> int:
        limits = [c["resources"]["limits"] for c in group["template"]["spec"]["containers"]]
        return sum(int(limit.get("nvidia.com/gpu", 0)) for limit in limits)

    assert {name for name, g in groups.items() if gpus(g) > 0} == {"gpu"}
    assert {name for name, g in groups.items() if gpus(g) == 0} == {"cpu"}
    for group in groups.values():
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["minReplicas"] < group["maxReplicas"]
        assert group["rayStartParams"]["metrics-export-port"] == "8266"  # Prometheus finds every node


def test_ray_up_lets_the_autoscaler_start_its_workers():
    config = _ray_up()
    assert config["max_workers"] == len(config["provider"]["worker_ips"]) > config["min_workers"]
    (start,) = _ray_start_commands(config["head_start_ray_commands"])
    assert _flag(start, "autoscaling-config")
