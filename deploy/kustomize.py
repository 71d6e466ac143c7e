"""Render a kustomization (``deploy/kubernetes/overlays/...``) without the kustomize binary.

    python deploy/kustomize.py deploy/kubernetes/overlays/production > dlcprune.yaml

The manifests under ``deploy/kubernetes`` are plain kustomize: ``kubectl apply -k DIR`` applies
them. This renderer is for where neither kubectl nor kustomize is installed (CI, the tests): it
does the subset of kustomize the manifests use, the same way, and refuses any other field of a
kustomization instead of ignoring it. Where kubectl is installed, the tests check that both
render the same objects (tests/deploy/test_kubernetes.py).

The subset: ``resources`` (files of one or more documents, and directories with a
kustomization), ``namespace`` (set on every namespaced object), ``images`` (``newName``,
``newTag``), ``secretGenerator`` from ``envs`` files with ``generatorOptions:
disableNameSuffixHash: true`` (no hash suffix), and ``patches`` holding JSON patches (RFC 6902:
add, remove, replace) with a ``target`` (group, version, kind, name). Objects come out in
kustomize's legacy order.

Standard library and PyYAML only.
"""

from __future__ import annotations

import base64
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "secretGenerator",
    "generatorOptions",
    "patches",
}
# Kinds that have no namespace (the few the manifests could hold).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
# kustomize's legacy output order: these kinds first, in this order, those last; the rest
# between, by group, version and kind.
ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render (named with the file at fault)."""


def _kustomization(directory: Path) -> tuple[Path, dict[str, Any]]:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            unknown = set(data) - SUPPORTED
            if unknown:
                raise KustomizeError(f"{path}: fields this renderer does not do: {sorted(unknown)}")
            return path, data
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _load(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise KustomizeError(f"{path}: every document needs kind and metadata")
    return docs


def _group_version(obj: dict[str, Any]) -> tuple[str, str]:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return group, version


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    group, version = _group_version(obj)
    wanted = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"].get("name"),
        "namespace": obj["metadata"].get("namespace"),
    }
    unknown = set(target) - set(wanted)
    if unknown:
        raise KustomizeError(f"patch targets by {sorted(unknown)}: not supported")
    return all(wanted[key] == value for key, value in target.items())


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"a JSON pointer starts with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise KustomizeError(f"patch path {path}: no {part!r}") from exc
    return node


def json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with RFC 6902 ``add``, ``remove`` and ``replace`` operations applied."""
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        parts = _pointer(path)
        parent = _parent(doc, parts, path)
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind in ("remove", "replace") and 0 <= index < len(parent):
                if kind == "remove":
                    del parent[index]
                else:
                    parent[index] = copy.deepcopy(op["value"])
            else:
                raise KustomizeError(f"patch {kind} {path}: no such item")
        elif kind == "add":
            parent[last] = copy.deepcopy(op["value"])
        elif kind in ("remove", "replace") and last in parent:
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])
        else:
            raise KustomizeError(f"patch {kind} {path}: not done (no such field, or op unknown)")
    return doc


def _env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise KustomizeError(f"{path}: missing (copy {path.name}.example and fill it in)")
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise KustomizeError(f"{path}:{number}: not KEY=VALUE")
        out[key.strip()] = value
    return out


def _secret(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    data: dict[str, str] = {}
    for env in spec.get("envs", []):
        data.update(_env_file(base / env))
    unknown = set(spec) - {"name", "envs", "type"}
    if unknown:
        raise KustomizeError(f"secretGenerator {spec.get('name')}: {sorted(unknown)} not supported")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec["name"]},
        "type": spec.get("type", "Opaque"),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def _set_images(node: Any, images: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    container["image"] = _image(container.get("image", ""), images)
            else:
                _set_images(value, images)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, images)


def _image(image: str, images: list[dict[str, Any]]) -> str:
    name, tag = image, ""
    if "@" in image:
        name, _, digest = image.partition("@")
        tag = "@" + digest
    elif ":" in image.rsplit("/", 1)[-1]:
        name, _, rest = image.rpartition(":")
        tag = ":" + rest
    for rule in images:
        if rule["name"] == name:
            name = rule.get("newName", name)
            if "newTag" in rule:
                tag = f":{rule['newTag']}"
            if "digest" in rule:
                tag = f"@{rule['digest']}"
    return name + tag


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The objects a kustomization directory builds, in kustomize's legacy order."""
    return sorted(_build(Path(directory)), key=_order)


def _build(directory: Path) -> list[dict[str, Any]]:
    path, spec = _kustomization(directory)
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        objects.extend(_build(target) if target.is_dir() else _load(target))
    options = spec.get("generatorOptions", {})
    if spec.get("secretGenerator") and options.get("disableNameSuffixHash") is not True:
        raise KustomizeError(f"{path}: generators need disableNameSuffixHash: true here")
    objects.extend(_secret(s, directory) for s in spec.get("secretGenerator", []))
    for patch in spec.get("patches", []):
        operations = yaml.safe_load(
            patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
        )
        if not isinstance(operations, list):
            raise KustomizeError(f"{path}: only JSON patches (a list of operations) here")
        hits = [i for i, obj in enumerate(objects) if _matches(obj, patch.get("target", {}))]
        if not hits:
            raise KustomizeError(f"{path}: a patch's target matches nothing: {patch['target']}")
        for i in hits:
            objects[i] = json_patch(objects[i], operations)
    if "images" in spec:
        for obj in objects:
            _set_images(obj, spec["images"])
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _order(obj: dict[str, Any]) -> tuple:
    kind = obj["kind"]
    group, version = _group_version(obj)
    if kind in ORDER_FIRST:
        rank, gvk = ORDER_FIRST.index(kind), ""
    elif kind in ORDER_LAST:
        rank, gvk = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind), ""
    else:
        rank, gvk = len(ORDER_FIRST), f"{group}_{version}_{kind}"
    meta = obj["metadata"]
    return rank, gvk, meta.get("namespace", ""), meta.get("name", "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python deploy/kustomize.py KUSTOMIZATION_DIR", file=sys.stderr)
        return 2
    try:
        objects = render(args[0])
    except KustomizeError as exc:
        print(f"kustomize.py: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
