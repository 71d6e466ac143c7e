"""The Kubernetes manifests (deploy/kubernetes), rendered and checked offline: every object of
every overlay validates against the Kubernetes schemas (kubernetes-validate, strict) or, for
KEDA's ScaledObject, against its CRD's shape (tests/deploy/keda.py); what the objects refer to
exists; the API has its probes, the workers their kinds, GPUs and node selectors, the migration
job its command; autoscaling reads the backlog the API serves. The renderer
(deploy/kustomize.py) is checked against kustomize itself where kubectl is installed.
"""

from __future__ import annotations

import base64
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from dlcprune.names import GPU_WORK, WORK_KINDS
from tests.deploy.keda import SCALED_OBJECT, scaler_errors
from tests.deploy.parsing import ROOT, WORKER_CMD

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("production", "cpu-only")
K8S_VERSION = "1.30.0"


def _renderer() -> Any:
    spec = importlib.util.spec_from_file_location("kustomize", ROOT / "deploy" / "kustomize.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


kustomize = _renderer()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes with each overlay's secret env files made from the examples
    (as an operator would; the real ones are never committed)."""
    root = tmp_path_factory.mktemp("k8s") / "kubernetes"
    shutil.copytree(KUBERNETES, root)
    for example in root.glob("overlays/*/*.env.example"):
        example.with_suffix("").write_text(example.read_text())
    return root


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize.render(tree / "overlays" / name) for name in OVERLAYS}


def _one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def _pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Job",
        "Namespace",
        "PersistentVolumeClaim",
        "ScaledObject",
        "Secret",
        "Service",
    ]
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(obj, SCALED_OBJECT)
            assert scaler_errors(obj) == [], where
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "dlcprune", where


def test_the_validators_refuse_broken_objects(rendered: dict) -> None:
    """The checks above can fail: a misspelt field, a wrong type, an unknown KEDA field."""
    import copy

    api = copy.deepcopy(_one(rendered["production"], "Deployment", "dlcprune-api"))
    api["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSION, strict=True)
    api = copy.deepcopy(_one(rendered["production"], "Deployment", "dlcprune-api"))
    api["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSION, strict=True)
    scaled = copy.deepcopy(_one(rendered["production"], "ScaledObject", "dlcprune-gpu-worker"))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT)
    scaled = copy.deepcopy(_one(rendered["production"], "ScaledObject", "dlcprune-gpu-worker"))
    del scaled["spec"]["triggers"][0]["metadata"]["valueLocation"]
    assert scaler_errors(scaled) == ["triggers[0] (metrics-api): missing ['valueLocation']"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered: dict, overlay: str) -> None:
    """Every ConfigMap, Secret and volume claim a pod names is rendered; every image is the
    overlay's registry image."""
    objects = rendered[overlay]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = _pod(obj)
        for container in pod["containers"]:
            assert container["image"].startswith("registry.example.com/dlcprune/")
            assert container["image"].endswith(":0.1.0")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (kind, ref["name"]) in names, ref
        for volume in pod.get("volumes", []):
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert ("PersistentVolumeClaim", claim) in names
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the images' user


def test_api_probes_and_service(rendered: dict) -> None:
    objects = rendered["production"]
    api = _one(objects, "Deployment", "dlcprune-api")
    (container,) = _pod(api)["containers"]
    assert container["command"] == [
        "dlcprune",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--no-embedded-worker",
    ]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "resources" in container and "nvidia.com/gpu" not in str(container["resources"])
    service = _one(objects, "Service", "dlcprune-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert api["spec"]["template"]["metadata"]["labels"].items() >= (
        service["spec"]["selector"].items()
    )
    assert service["spec"]["ports"][0]["port"] == 8000


def test_workers_per_kind_with_gpus_and_node_selectors(rendered: dict) -> None:
    objects = rendered["production"]
    gpu = _one(objects, "Deployment", "dlcprune-gpu-worker")
    cpu = _one(objects, "Deployment", "dlcprune-cpu-worker")
    (g,) = _pod(gpu)["containers"]
    (c,) = _pod(cpu)["containers"]
    assert g["command"] == [*WORKER_CMD, "--kind", "gpu"]
    assert c["command"] == [*WORKER_CMD, "--kind", "cpu"]
    assert g["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert g["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert _pod(gpu)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert _pod(gpu)["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nvidia.com/gpu" not in str(c["resources"]) and "nodeSelector" not in _pod(cpu)
    assert {e["name"]: e["value"] for e in g["env"]}["DLCPRUNE_DEVICE"] == "cuda"
    assert {e["name"]: e["value"] for e in c["env"]}["DLCPRUNE_DEVICE"] == "cpu"
    for worker in (gpu, cpu):
        assert _pod(worker)["terminationGracePeriodSeconds"] >= 120  # a warm shutdown

    cpu_only = rendered["cpu-only"]
    assert "nvidia.com/gpu" not in str(cpu_only)
    gpu_there = _pod(_one(cpu_only, "Deployment", "dlcprune-gpu-worker"))
    assert "nodeSelector" not in gpu_there and "tolerations" not in gpu_there
    env = {e["name"]: e["value"] for e in gpu_there["containers"][0]["env"]}
    assert env["DLCPRUNE_DEVICE"] == "cpu"


def test_queue_names_and_settings_are_ones_the_service_reads(rendered: dict) -> None:
    config = _one(rendered["production"], "ConfigMap", "dlcprune-config")["data"]
    assert all(key.startswith("DLCPRUNE_") for key in config)
    known = {f"DLCPRUNE_{name.upper()}" for name in Settings.model_fields}
    assert set(config) <= known, set(config) - known
    settings = Settings(**{k.removeprefix("DLCPRUNE_").lower(): v for k, v in config.items()})
    assert {f"DLCPRUNE_QUEUE_{k.upper()}" for k in WORK_KINDS} <= set(config)
    assert len({settings.queue_name(kind) for kind in WORK_KINDS}) == len(WORK_KINDS)
    assert settings.migrate_on_start is False  # the migration job runs them
    # Webhook payloads are written by workers, outside any request: their URLs need it.
    assert urlsplit(settings.public_url).scheme == "https"


def test_the_migration_job_and_the_secrets(rendered: dict) -> None:
    objects = rendered["production"]
    job = _one(objects, "Job", "dlcprune-migrate")
    (container,) = _pod(job)["containers"]
    assert container["command"] == ["dlcprune", "migrate"]
    assert _pod(job)["restartPolicy"] in ("OnFailure", "Never")
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert set(secrets) == {"dlcprune-database", "dlcprune-broker", "dlcprune-store"}
    decoded = {
        name: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for name, s in secrets.items()
    }
    assert decoded["dlcprune-database"]["DLCPRUNE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert decoded["dlcprune-broker"]["DLCPRUNE_BROKER_URL"].startswith("redis://")
    assert set(decoded["dlcprune-store"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    # No credentials outside the Secrets, and none committed: the env files are ignored.
    for obj in objects:
        if obj["kind"] != "Secret":
            assert "CHANGE-ME" not in str(obj) and "postgresql" not in str(obj)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/kubernetes/overlays/production/database.env"],
        cwd=ROOT,
    )
    assert ignored.returncode == 0, "the secrets' env files must be git-ignored"


def test_scoring_workers_scale_on_the_backlog_the_api_serves(rendered: dict) -> None:
    objects = rendered["production"]
    scaled = _one(objects, "ScaledObject", "dlcprune-gpu-worker")
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "dlcprune-gpu-worker")
    _one(objects, "Deployment", target["name"])
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    url = urlsplit(trigger["metadata"]["url"])
    service = _one(objects, "Service", "dlcprune-api")
    namespace = service["metadata"]["namespace"]
    assert url.hostname == f"dlcprune-api.{namespace}.svc.cluster.local"
    assert url.port == service["spec"]["ports"][0]["port"] and url.path == "/metrics/backlog"
    assert float(trigger["metadata"]["targetValue"]) == 1.0  # one job per GPU worker
    # The key it reads is one /metrics/backlog answers (app.metrics.backlog; its values are
    # checked with real workers in tests/service/test_workers.py).
    assert trigger["metadata"]["valueLocation"] == "gpu"
    assert set(GPU_WORK) < set(WORK_KINDS)


def test_the_renderer_refuses_what_it_does_not_do(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ncommonLabels: {a: b}\n"
    )
    with pytest.raises(kustomize.KustomizeError, match="commonLabels"):
        kustomize.render(tmp_path)
    doc = {"a": {"b": [1, 2]}}
    assert kustomize.json_patch(doc, [{"op": "remove", "path": "/a/b/0"}]) == {"a": {"b": [2]}}
    assert (
        kustomize.json_patch(doc, [{"op": "add", "path": "/a/c~1d", "value": 1}])["a"]["c/d"] == 1
    )
    with pytest.raises(kustomize.KustomizeError, match="no such"):
        kustomize.json_patch(doc, [{"op": "replace", "path": "/a/x", "value": 1}])


def _kubectl_kustomize() -> bool:
    if not shutil.which("kubectl"):
        return False
    proc = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True, timeout=30)
    return proc.returncode == 0


def _normalised(objects: list[dict]) -> list[dict]:
    """Secrets' data decoded (kustomize wraps base64 at 76 characters; the API ignores that)."""
    out = []
    for obj in objects:
        if obj["kind"] == "Secret":
            obj = {**obj, "data": {k: base64.b64decode(v) for k, v in obj["data"].items()}}
        out.append(obj)
    return out


@pytest.mark.skipif(not _kubectl_kustomize(), reason="kubectl (with kustomize) is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kustomize(tree: Path, rendered: dict, overlay: str) -> None:
    proc = subprocess.run(
        ["kubectl", "kustomize", str(tree / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    theirs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert _normalised(theirs) == _normalised(rendered[overlay])


def test_the_renderer_runs_as_a_script(tree: Path) -> None:
    import sys

    def script(directory: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "deploy" / "kustomize.py"), str(directory)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    proc = script(tree / "overlays" / "production")
    assert proc.returncode == 0, proc.stderr
    assert len([d for d in yaml.safe_load_all(proc.stdout) if d]) == 12
    missing = script(KUBERNETES / "overlays" / "production")
    if not (KUBERNETES / "overlays" / "production" / "database.env").exists():
        assert missing.returncode == 1 and "database.env.example" in missing.stderr
