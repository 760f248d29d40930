"""The Prometheus config and the Grafana dashboard agree with sutazai/metrics.py: every metric the
dashboard queries exists, every metric we record has a panel, and Prometheus finds Ray's nodes
through the service discovery file Ray 2.60 writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from sutazai import metrics
from sutazai.settings import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "cluster" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "sutazai-dashboard.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _ours() -> dict[str, str]:
    """`ray_sutazai_*` name (as exported, without suffix) -> kind, for every metric in sutazai/metrics.py."""
    found = {f"ray_{m.name}": m.kind for m in vars(metrics).values() if isinstance(m, metrics.Metric)}
    assert len(found) >= 17
    return found


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, Any]]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return panels


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def _base(exported: str, ours: dict[str, str]) -> str | None:
    """The metric of sutazai/metrics.py that an exported series name belongs to, or None."""
    for name, kind in ours.items():
        if any(exported == name + suffix for suffix in SUFFIXES[kind]):
            return name
    return None


def test_every_metric_the_dashboard_queries_exists():
    ours = _ours()
    queried = {n for e in _exprs() for n in re.findall(r"\bray_sutazai_\w+", e)}
    assert queried
    unknown = sorted(n for n in queried if _base(n, ours) is None)
    assert not unknown, f"the dashboard queries series sutazai/metrics.py does not export: {unknown}"


def test_every_metric_has_a_panel():
    ours = _ours()
    queried = {_base(n, ours) for e in _exprs() for n in re.findall(r"\bray_sutazai_\w+", e)}
    assert not set(ours) - queried, f"no panel for {sorted(set(ours) - queried)}"


def test_histograms_are_read_as_quantiles_of_their_buckets():
    quantiles = [e for e in _exprs() if "histogram_quantile" in e]
    for expr in quantiles:
        assert re.search(r"sum by \(le\b", expr) and "_bucket" in expr, expr
    latency = " ".join(quantiles)
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(ray_sutazai_http_request_duration_seconds_bucket" in latency


def test_dashboard_takes_its_prometheus_from_a_variable():
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids))


def test_prometheus_reads_rays_service_discovery_file_and_falls_back_to_the_exporter_port():
    from ray._private.ray_constants import PROMETHEUS_SERVICE_DISCOVERY_FILE

    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    files = [Path(f) for job in jobs.values() for sd in job.get("file_sd_configs", []) for f in sd["files"]]
    assert files and all(f.name == PROMETHEUS_SERVICE_DISCOVERY_FILE for f in files)
    assert Path("/tmp/ray") / PROMETHEUS_SERVICE_DISCOVERY_FILE in files  # `ray start`'s default temp dir
    # the head `sutazai run` starts keeps its files in <data dir>/ray (relative to this config's folder)
    assert any(f.parts[-3:-1] == (".data", "ray") for f in files)
    static = [t for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert any(t.endswith(":8266") for t in static)


def test_grafana_provisioning_points_at_the_dashboard():
    provisioning = MONITORING / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sutazai.yaml").read_text())["providers"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    compose = yaml.safe_load((MONITORING / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    dashboard_mount = next(m for m in mounts if m.startswith("./grafana/sutazai-dashboard.json:"))
    assert Path(dashboard_mount.split(":")[1]).parent == Path(provider["options"]["path"])
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose["services"]["prometheus"]["volumes"]
