"""The shape of KEDA's ScaledObject (keda.sh/v1alpha1) as a JSON schema, for checking the
manifests offline: the fields KEDA 2.x documents for it, each typed, no others allowed (a
misspelt field fails here as KEDA's admission webhook would refuse it), and per scaler the
metadata KEDA requires."""

from __future__ import annotations

from typing import Any

_INT = {"type": "integer", "minimum": 0}
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253}

_HPA_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}

SCALED_OBJECT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _NAME,
                "namespace": _NAME,
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": _NAME,
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer", "minimum": 1},
                        "replicas": _INT,
                        "behavior": {
                            "enum": ["static", "currentReplicas", "currentReplicasIfHigher"]
                        },
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": _NAME,
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": _HPA_RULES, "scaleDown": _HPA_RULES},
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": _NAME,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": _NAME,
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

# Per scaler: the metadata it requires, and the keys it knows.
SCALERS: dict[str, tuple[set[str], set[str]]] = {
    "metrics-api": (
        {"url", "valueLocation", "targetValue"},
        {
            "url",
            "valueLocation",
            "targetValue",
            "activationTargetValue",
            "format",
            "authMode",
            "unsafeSsl",
            "method",
        },
    ),
    "redis": (
        {"listName"},
        {
            "address",
            "host",
            "port",
            "listName",
            "listLength",
            "activationListLength",
            "databaseIndex",
            "enableTLS",
            "unsafeSsl",
            "addressFromEnv",
            "hostFromEnv",
            "portFromEnv",
            "usernameFromEnv",
            "passwordFromEnv",
        },
    ),
}


def scaler_errors(obj: dict[str, Any]) -> list[str]:
    """What KEDA would refuse in the triggers' metadata (beyond the schema's shape)."""
    errors = []
    for i, trigger in enumerate(obj["spec"]["triggers"]):
        kind = trigger["type"]
        if kind not in SCALERS:
            errors.append(f"triggers[{i}]: scaler {kind!r} is not one checked here")
            continue
        required, known = SCALERS[kind]
        given = set(trigger["metadata"])
        if required - given:
            errors.append(f"triggers[{i}] ({kind}): missing {sorted(required - given)}")
        if given - known:
            errors.append(f"triggers[{i}] ({kind}): unknown {sorted(given - known)}")
        for key in ("targetValue", "activationTargetValue", "listLength"):
            if key in trigger["metadata"]:
                try:
                    float(trigger["metadata"][key])
                except ValueError:
                    errors.append(f"triggers[{i}] ({kind}): {key} is not a number")
    return errors
