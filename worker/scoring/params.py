"""Scoring parameters, torch-free so the API can validate a job before any worker sees it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from worker.scoring.errors import ParameterError

SCHEDULES = ("linear", "geometric")
MASKINGS = ("l1", "random")
METHODS = ("dlc",)
# Names the backbone registry serves without a weights file (see backbones.REGISTRY).
REGISTRY_MODELS = ("efficientnet_lite0",)
DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class DLCParams:
    """DLC's parameters; the names are the CLI options' and the job API's ``params``."""

    levels: int = 50
    schedule: str = "geometric"
    masking: str = "l1"
    draws: int = 1
    seed: int = 0
    step: float = 0.02
    start: float = 0.02
    end: float = 0.98
    image_size: int | None = None
    batch_size: int = 64

    def validate(self) -> DLCParams:
        def whole(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ParameterError(f"{name} must be a whole number in [{lo}, {hi}], got {v!r}")

        whole("levels", 0, 1000)
        whole("draws", 1, 100)
        whole("seed", 0, 2**63 - 1)
        whole("batch_size", 1, 65536)
        if self.image_size is not None:
            whole("image_size", 8, 1024)
        if self.schedule not in SCHEDULES:
            raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.masking not in MASKINGS:
            raise ParameterError(f"masking must be one of {', '.join(MASKINGS)}")
        if self.masking == "l1" and self.draws != 1:
            raise ParameterError("draws > 1 needs random masking (l1 masks are deterministic)")
        for name in ("step", "start", "end"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or not 0 <= v <= 1
            ):
                raise ParameterError(f"{name} must be a number in [0, 1], got {v!r}")
        if self.schedule == "geometric" and not 0 < self.step < 1:
            raise ParameterError(f"step must be in (0, 1), got {self.step!r}")
        if self.schedule == "linear" and self.start > self.end:
            raise ParameterError("start must not be above end")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The parameters that change the scores: the score cache's key.

        The batch size is left out (an execution detail), and so are parameters the chosen
        schedule or masking ignores, so equivalent requests share cached scores.
        """
        out: dict[str, Any] = {
            "levels": self.levels,
            "schedule": self.schedule,
            "masking": self.masking,
            "image_size": self.image_size,
        }
        if self.levels > 0:
            if self.schedule == "geometric":
                out["step"] = float(self.step)
            else:
                out["start"], out["end"] = float(self.start), float(self.end)
            if self.masking == "random":
                out["draws"], out["seed"] = self.draws, self.seed
        return out
