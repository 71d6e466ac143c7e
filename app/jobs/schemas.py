"""Job request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.datasets.schemas import ErrorInfo
from dlcprune.core.params import BaselineParams, DLCParams, params_of, required
from dlcprune.names import (
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_PRIORITY,
    DEFAULT_STRATEGY,
    METHODS,
    PRIORITIES,
)


def request_model(
    cls: type, name: str, doc: str | None, exclude: tuple[str, ...] = (), **config: Any
) -> type[BaseModel]:
    """A request schema over a parameters dataclass (``dlcprune.core.params``,
    ``dlcprune.core.selection.params``): the names, types, defaults, bounds, choices and
    descriptions are the definition's; a field without a default is required. Execution details
    (the batch size) are left out: they are worker settings (``DLCPRUNE_BATCH_SIZE``).
    ``config``: more of the model's ``ConfigDict`` (``json_schema_extra`` examples)."""
    definitions: dict[str, Any] = {}
    for p in params_of(cls):
        spec = p.spec
        if spec.execution or p.name in exclude:
            continue
        kind: Any = p.type
        if spec.choices is not None:
            kind = Literal[spec.choices]  # type: ignore[valid-type]
        if p.optional:
            kind = kind | None
        # JSON numbers only: no true for 1, no "0.3" for 0.3 (an int is still a float).
        strict = True if p.type in (int, float) and spec.choices is None else None
        info = Field(
            strict=strict,
            default=... if required(cls, p.name) else p.default,
            ge=spec.ge,
            gt=spec.gt,
            le=spec.le,
            lt=spec.lt,
            max_length=spec.max_chars,
            description=spec.help,
        )
        definitions[p.name] = (kind, info)
    return create_model(  # type: ignore[call-overload, no-any-return]
        name, __config__=ConfigDict(extra="forbid", **config), __doc__=doc, **definitions
    )


DLCParamsIn = request_model(
    DLCParams, "DLCParamsIn", "DLC's parameters, by the CLI options' names in snake case."
)
BaselineParamsIn = request_model(
    BaselineParams,
    "BaselineParamsIn",
    "Parameters of the baselines; epochs, seeds, lr, head_lr and train_batch_size apply to the\n"
    "training-based ones (which fine-tune the backbone and a linear head on the whole dataset).",
)


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                    "model": "efficientnet_lite0",
                    "method": "dlc",
                    "params": {"image_size": 64, "levels": 20, "schedule": "geometric"},
                },
                {
                    "dataset_id": "4f8e2a10-6c1d-4b7e-9f3a-2d5c8b1e0a97",
                    "model": "all-minilm-l6-v2",
                    "params": {"levels": 10, "max_length": 128},
                },
                {
                    "dataset_id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                    "model": "timm:resnet18",
                    "weights_id": "7d3c2b1a-0f9e-4d8c-b7a6-5e4d3c2b1a09",
                    "params": {"image_size": 224, "levels": 50, "masking": "random", "draws": 3},
                },
                {
                    "dataset_id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                    "model": "efficientnet_lite0",
                    "method": "el2n",
                    "params": {"image_size": 64, "epochs": 3, "seeds": 2},
                },
            ]
        },
    )

    dataset_id: uuid.UUID
    model: str = Field(
        default=DEFAULT_MODEL,
        min_length=1,
        max_length=200,
        description="a registry name (efficientnet_lite0 for images, all-minilm-l6-v2 for text), "
        "a timm/torchvision architecture (timm:NAME, torchvision:NAME) with weights_id, "
        "'torchscript' with weights_id, or 'hf' with weights_id of a Hugging Face model "
        "directory uploaded as an archive (an encoder for text, a causal LM for instructions)",
    )
    weights_id: uuid.UUID | None = Field(
        default=None, description="weights uploaded with POST /v1/weights"
    )
    method: Literal[METHODS] = Field(  # type: ignore[valid-type]
        default=DEFAULT_METHOD,
        description="dlc, or a baseline to compare it with: training-free (random, herding, "
        "kcenter_greedy, moderate) or training-based, which fine-tune on the whole dataset "
        "first (el2n, grand, forgetting, entropy, margin, least_confidence)",
    )
    params: DLCParamsIn | BaselineParamsIn = Field(
        default_factory=DLCParamsIn,
        description="the method's parameters: DLCParamsIn for dlc, BaselineParamsIn otherwise",
    )
    priority: Literal[PRIORITIES] = Field(  # type: ignore[valid-type]
        default=DEFAULT_PRIORITY,
        description="queued jobs of a higher priority are taken first (high, normal, low); "
        "within one priority, in order of arrival",
    )


class ProgressRead(BaseModel):
    done: int = Field(description="work units done (samples times passes over the data)")
    total: int
    fraction: float = Field(ge=0, le=1)
    stage: str
    eta_seconds: float | None = None


class JobRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5f1d8a4e-2b1c-4f7e-8a9b-0c1d2e3f4a5b",
                    "dataset_id": "9b0c3b8e-3d0c-4c55-9a53-5f4c3d2a1b10",
                    "model": "efficientnet_lite0",
                    "method": "dlc",
                    "params": {"image_size": 64, "levels": 20},
                    "status": "running",
                    "cached": False,
                    "progress": {
                        "done": 12000,
                        "total": 39534,
                        "fraction": 0.30,
                        "stage": "level 5/20",
                        "eta_seconds": 41.0,
                    },
                }
            ]
        }
    )

    id: uuid.UUID
    dataset_id: uuid.UUID
    model: str
    weights_id: uuid.UUID | None = None
    method: str
    params: dict[str, Any]
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    priority: str = Field(default=DEFAULT_PRIORITY, description="high, normal or low")
    cached: bool = Field(description="answered from scores computed before, without recomputing")
    recommended_strategy: str = Field(
        default=DEFAULT_STRATEGY,
        description="the selection this method's paper uses (flexrand for dlc; hard for el2n, "
        "grand, forgetting and the uncertainty scores; easy for herding, k-center and moderate)",
    )
    unscored: int = Field(
        default=0,
        description="samples that could not be scored (instructions whose response was "
        "truncated away); listed with a null score under scores_url",
    )
    cancel_requested: bool = False
    progress: ProgressRead
    error: ErrorInfo | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    url: str
    scores_url: str
    selections_url: str


class JobList(BaseModel):
    items: list[JobRead]
    total: int
    limit: int
    offset: int


class ScoreItem(BaseModel):
    sample_id: str
    label: str | None
    score: float | None = Field(description="null when the sample could not be scored")
    tokens: int | None = Field(
        default=None, description="instructions: response tokens scored (0: truncated away)"
    )


class ScorePage(BaseModel):
    items: list[ScoreItem]
    total: int
    limit: int
    offset: int
