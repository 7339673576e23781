"""Infra files are validated statically (no Docker engine here): YAML parses, every image is
pinned, every compose service has a health check, every deployment entrypoint imports."""

from __future__ import annotations

import importlib
import re

import yaml

from tests.conftest import REPO

INFRA = REPO / "infra"
PINNED = re.compile(r"^[\w./-]+:(?!latest$)[\w][\w.-]*$")


def test_compose_services_are_pinned_and_health_checked():
    c = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    assert set(c["services"]) >= {"postgres", "prefect-server", "qdrant", "worker"}
    for name, svc in c["services"].items():
        assert PINNED.match(svc["image"]), f"{name}: image {svc['image']!r} is not pinned"
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert {"pgdata", "qdrant"} <= set(c["volumes"])
    env = c["services"]["worker"]["environment"]
    assert env["INDEXOPS_STORE__BACKEND"] == "qdrant"
    assert env["INDEXOPS_RUNNER__KIND"] == "dask" and env["INDEXOPS_RUNNER__ADDRESS"].startswith("tcp://dask-scheduler:")
    assert {"dask-scheduler", "dask-worker"} <= set(c["services"])


def test_env_selects_the_dask_runner(monkeypatch):
    from indexops.settings import load_settings

    monkeypatch.setenv("INDEXOPS_RUNNER__KIND", "dask")
    monkeypatch.setenv("INDEXOPS_RUNNER__ADDRESS", "tcp://dask-scheduler:8786")
    r = load_settings().runner
    assert (r.kind, r.address) == ("dask", "tcp://dask-scheduler:8786")


def test_helm_values_describe_a_replicated_cluster_and_a_k8s_pool():
    q = yaml.safe_load((INFRA / "k8s" / "qdrant-values.yaml").read_text())
    assert q["replicaCount"] == 3 and q["config"]["cluster"]["enabled"] is True
    assert PINNED.match(f"{q['image']['repository']}:{q['image']['tag']}")
    w = yaml.safe_load((INFRA / "k8s" / "prefect-worker-values.yaml").read_text())
    assert w["worker"]["config"]["type"] == "kubernetes"


def test_dockerfile_pins_python_and_torch():
    text = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", text, re.M)
    assert "torch==2.13.0" in text


def test_deployment_entrypoints_import():
    d = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert d["deployments"]
    for dep in d["deployments"]:
        path, func = dep["entrypoint"].split(":")
        mod = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert callable(getattr(mod, func)), dep["entrypoint"]


def test_env_overrides_move_store_and_ledger(monkeypatch):
    from indexops.settings import load_settings

    monkeypatch.setenv("INDEXOPS_STORE__BACKEND", "qdrant")
    monkeypatch.setenv("INDEXOPS_STORE__URL", "http://qdrant:6333")
    monkeypatch.setenv("INDEXOPS_LEDGER__URL", "postgresql+psycopg://u@db/indexops")
    s = load_settings()
    assert (s.store.backend, s.store.url, s.ledger.url) == ("qdrant", "http://qdrant:6333", "postgresql+psycopg://u@db/indexops")
