"""Scoring parameters, torch-free so the API can validate a job before any worker sees it."""

from __future__ import annotations

import math
import string
from dataclasses import asdict, dataclass, replace
from typing import Any

from dlcprune.core.errors import ParameterError

SCHEDULES = ("linear", "geometric")
MASKINGS = ("l1", "random")
SCOPES = ("global", "layer")
TRUNCATIONS = ("right", "prompt")
PRECISIONS = ("auto", "fp32", "bf16")

# Names the backbone registry serves without a weights file (see backbones.REGISTRY).
REGISTRY_MODELS = ("efficientnet_lite0", "all-minilm-l6-v2")
IMAGE_MODELS = ("efficientnet_lite0",)
TEXT_MODELS = ("all-minilm-l6-v2",)
DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_TEXT_MODEL = "all-minilm-l6-v2"

# The Alpaca prompts (Taori et al., 2023); {instruction} and {input} are filled per sample.
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

# Defaults that depend on the data. For labelled data (the prototype loss) bench/quality.py
# compared the paper's linear path (2%, 4%, ..., 98% of the weights), the authors' code's geometric
# one (2% of the remaining weights per level, 50 levels), 10 or 50 levels, L1 or random masks, on
# digits clean and with 20% of the labels flipped: linear with 10 levels and L1 masks trained best
# on average, and costs a fifth of 50 levels (docs/quality.md). The geometric schedule asked for
# without levels gets the authors' 50. Instruction data: the authors' 20% per step for 3 steps.
LABELLED_PATH: dict[str, Any] = {"schedule": "linear", "levels": 10, "step": 0.02}
GEOMETRIC_LEVELS = 50
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "image": dict(LABELLED_PATH),
    "vector": dict(LABELLED_PATH),
    "text": {**LABELLED_PATH, "max_length": 256},
    "instruction": {"schedule": "geometric", "levels": 3, "step": 0.2, "max_length": 512},
}


def format_prompt(template: str | None, instruction: str, input_: str) -> str:
    """The prompt for one sample: the Alpaca pair by default (with or without an input)."""
    if template is None:
        chosen = ALPACA_PROMPT_INPUT if input_ else ALPACA_PROMPT_NO_INPUT
        return chosen.format(instruction=instruction, input=input_)
    return template.replace("{instruction}", instruction).replace("{input}", input_)


def check_template(template: str) -> None:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    if "instruction" not in fields:
        raise ParameterError("template must contain {instruction}")
    unknown = fields - {"instruction", "input"}
    if unknown:
        raise ParameterError(
            f"template may only use {{instruction}} and {{input}}, not {sorted(unknown)}"
        )


@dataclass(frozen=True)
class DLCParams:
    """DLC's parameters; the names are the CLI options' and the job API's ``params``.

    ``None`` means "the default for this kind of data" (``KIND_DEFAULTS``); ``resolved(kind)``
    fills them in.
    """

    levels: int | None = None
    schedule: str | None = None
    masking: str = "l1"
    scope: str = "global"
    draws: int = 1
    seed: int = 0
    step: float | None = None
    start: float = 0.02
    end: float = 0.98
    image_size: int | None = None
    batch_size: int = 64
    max_length: int | None = None
    template: str | None = None
    truncation: str = "right"
    # Stop adding levels once the running score's ranking is stable (levels visited spread over
    # the whole path); see dlc.spread_order.
    early_stop: bool = False
    early_stop_tol: float = 0.999
    early_stop_window: int = 3
    early_stop_min: int = 6
    # "auto": bfloat16 autocast on a GPU, float32 on the CPU; or "fp32" / "bf16".
    precision: str = "auto"

    def resolved(self, kind: str) -> DLCParams:
        defaults = dict(KIND_DEFAULTS.get(kind, KIND_DEFAULTS["image"]))
        if self.schedule == "geometric" and defaults["schedule"] != "geometric":
            defaults["levels"] = GEOMETRIC_LEVELS
        fill = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return replace(self, **fill)

    def validate(self) -> DLCParams:
        def whole(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ParameterError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}")

        if self.levels is not None:
            whole("levels", 0, 1000)
        whole("draws", 1, 100)
        whole("seed", 0, 2**63 - 1)
        whole("batch_size", 1, 65536)
        if self.image_size is not None:
            whole("image_size", 8, 1024)
        if self.max_length is not None:
            whole("max_length", 8, 1_000_000)
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.masking not in MASKINGS:
            raise ParameterError(f"masking must be one of {', '.join(MASKINGS)}")
        if self.scope not in SCOPES:
            raise ParameterError(f"scope must be one of {', '.join(SCOPES)}")
        if self.truncation not in TRUNCATIONS:
            raise ParameterError(f"truncation must be one of {', '.join(TRUNCATIONS)}")
        if self.masking == "l1" and self.draws != 1:
            raise ParameterError("draws > 1 needs random masking (l1 masks are deterministic)")
        for name in ("step", "start", "end"):
            v = getattr(self, name)
            if v is None:
                continue
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or not 0 <= v <= 1
            ):
                raise ParameterError(f"{name} must be a number in [0, 1], got {v!r}")
        if self.schedule == "geometric" and self.step is not None and not 0 < self.step < 1:
            raise ParameterError(f"step must be in (0, 1), got {self.step!r}")
        if self.schedule == "linear" and self.start > self.end:
            raise ParameterError("start must not be above end")
        if self.template is not None:
            check_template(self.template)
        whole("early_stop_window", 1, 100)
        whole("early_stop_min", 2, 1000)
        tol = self.early_stop_tol
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol <= 1:
            raise ParameterError(f"early_stop_tol must be in (0, 1], got {tol!r}")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self, kind: str = "image") -> dict[str, Any]:
        """The parameters that change the scores: the score cache's key.

        The batch size is left out (an execution detail), and so are parameters the data, the
        schedule or the masking ignores, so equivalent requests share cached scores.
        """
        p = self.resolved(kind)
        out: dict[str, Any] = {
            "levels": p.levels,
            "schedule": p.schedule,
            "masking": p.masking,
            "scope": p.scope,
        }
        if kind in ("image",):
            out["image_size"] = p.image_size
        if kind in ("text", "instruction"):
            out["max_length"] = p.max_length
        if kind == "instruction":
            out["template"] = p.template
            out["truncation"] = p.truncation
        if p.levels:
            if p.schedule == "geometric":
                out["step"] = float(p.step)  # type: ignore[arg-type]
            else:
                out["start"], out["end"] = float(p.start), float(p.end)
            if p.masking == "random":
                out["draws"], out["seed"] = p.draws, p.seed
            if p.early_stop:
                out["early_stop"] = [p.early_stop_tol, p.early_stop_window, p.early_stop_min]
        if p.precision != "auto":
            out["precision"] = p.precision
        return out


# Baselines ---------------------------------------------------------------------------------------

TRAINING_FREE = ("random", "herding", "kcenter_greedy", "moderate")
TRAINING_BASED = ("el2n", "grand", "forgetting", "entropy", "margin", "least_confidence")
BASELINES = TRAINING_FREE + TRAINING_BASED

# The selection each score is used with in its own paper: easy keeps the lowest scores.
STRATEGY = {
    "dlc": "flexrand",
    "random": "random",
    "herding": "easy",
    "kcenter_greedy": "easy",
    "moderate": "easy",
    "el2n": "hard",
    "grand": "hard",
    "forgetting": "hard",
    "entropy": "hard",
    "margin": "hard",
    "least_confidence": "hard",
}


@dataclass(frozen=True)
class BaselineParams:
    """Parameters of the baselines (``epochs``, ``seeds``, ``lr``, ``head_lr``,
    ``train_batch_size`` apply to the training-based ones)."""

    seed: int = 0
    seeds: int = 2
    epochs: int = 3
    lr: float = 1e-3
    head_lr: float = 1e-2
    train_batch_size: int = 32
    image_size: int | None = None
    max_length: int | None = None
    batch_size: int = 64

    def validate(self) -> BaselineParams:
        def whole(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ParameterError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}")

        whole("seed", 0, 2**63 - 1)
        whole("seeds", 1, 20)
        whole("epochs", 1, 200)
        whole("train_batch_size", 1, 4096)
        whole("batch_size", 1, 65536)
        if self.image_size is not None:
            whole("image_size", 8, 1024)
        if self.max_length is not None:
            whole("max_length", 8, 1_000_000)
        for name in ("lr", "head_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v < 10:
                raise ParameterError(f"{name} must be a number in (0, 10), got {v!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self, method: str) -> dict[str, Any]:
        out: dict[str, Any] = {"image_size": self.image_size, "max_length": self.max_length}
        if method == "random":
            return {"seed": self.seed}
        if method in TRAINING_BASED:
            out |= {
                "seed": self.seed,
                "seeds": self.seeds,
                "epochs": self.epochs,
                "lr": self.lr,
                "head_lr": self.head_lr,
                "train_batch_size": self.train_batch_size,
            }
        elif method == "kcenter_greedy":
            out["seed"] = self.seed
        return out


METHODS = ("dlc", *BASELINES)
