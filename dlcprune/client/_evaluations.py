"""The client's calls for kept embeddings, label issues and evaluations (a mixin of ``Client``).

ev = dlc.evaluate(job.id, ["flexrand", "moderate"], keep=[0.1, 0.3, 0.5], seeds=10)
ev = dlc.wait_evaluation(ev.id)
print(ev.recommendation)           # {"keep": 0.3, "strategy": "flexrand", ...} or None
sel = dlc.select_recommended(ev.id)
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcprune.client.errors import DlcpruneError

Id = str | uuid.UUID

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Evaluation:
    """An evaluation (``GET /v1/evaluations/{id}``): its state and, once succeeded, ``result``
    (cells with accuracy intervals and paired differences from the control, the full-set
    accuracy, the recommendation). ``probe`` says what the accuracy measures."""

    id: str
    job_id: str
    status: str
    fraction: float
    probe: str
    request: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    url: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def recommendation(self) -> dict[str, Any] | None:
        return (self.result or {}).get("recommendation")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            id=str(data["id"]),
            job_id=str(data["job_id"]),
            status=str(data["status"]),
            fraction=float(data.get("progress", {}).get("fraction", 0.0)),
            probe=str(data.get("probe", "")),
            request=dict(data.get("request") or {}),
            result=data.get("result"),
            error=data.get("error"),
            url=str(data.get("url", "")),
            raw=data,
        )


class EvaluationCalls:
    """Mixed into ``Client``: uses its transport (``_json``, ``_stream``, ``_save``, ``_pages``)."""

    _json: Any
    _send: Any
    _stream: Any
    _save: Any
    _pages: Any

    # Embeddings and label issues ----------------------------------------------------------------

    def embeddings(self, job_id: Id, dest_dir: str | os.PathLike[str], format: str = "npy") -> Path:
        """Save a job's kept embeddings into ``dest_dir``: ``npy`` (float16, (N, D), dataset
        order) or ``parquet`` (index, sample_id, label, embedding)."""
        path = f"/v1/jobs/{job_id}/embeddings"
        with self._stream("GET", path, params={"format": format}) as resp:
            return self._save(resp, dest_dir, f"embeddings-{job_id}.{format}")  # type: ignore[no-any-return]

    def label_issues(
        self,
        job_id: Id,
        share: float | None = None,
        threshold: float | None = None,
        limit: int = 100,
        *,
        wait: bool = True,
        timeout: float | None = None,
        poll: float | None = None,
    ) -> dict[str, Any]:
        """Suspected mislabels, least confident first (give ``share`` or ``threshold``).

        A worker computes them once per job's scores: until it has, the service answers 202 and
        this call polls (every ``poll`` seconds, else the service's ``Retry-After``) until they
        are there, or ``timeout`` passes (``DlcpruneError`` code ``timeout``). With
        ``wait=False`` it returns the 202's body instead (``status``: queued or running)."""
        params: dict[str, Any] = {"limit": limit}
        if share is not None:
            params["share"] = share
        if threshold is not None:
            params["threshold"] = threshold
        path = f"/v1/jobs/{job_id}/label-issues"
        started = time.monotonic()
        while True:
            resp = self._send("GET", path, params=params)
            body = dict(resp.json())
            if resp.status_code != 202 or not wait:
                return body
            if timeout is not None and time.monotonic() - started > timeout:
                message = f"label issues of job {job_id} are still {body.get('status')}"
                raise DlcpruneError(None, "timeout", message)
            try:
                delay = float(resp.headers.get("retry-after") or 1.0) if poll is None else poll
            except ValueError:
                delay = 1.0
            time.sleep(delay)

    # Evaluations --------------------------------------------------------------------------------

    def evaluate(
        self,
        job_id: Id,
        strategies: list[str],
        keep: list[float],
        seeds: int = 10,
        holdout: float = 0.2,
        tolerance: float = 0.01,
    ) -> Evaluation:
        """Start an evaluation of ``strategies`` at ``keep`` ratios (answered at once)."""
        body = {
            "strategies": list(strategies),
            "keep": list(keep),
            "seeds": seeds,
            "holdout": holdout,
            "tolerance": tolerance,
        }
        data = self._json("POST", f"/v1/jobs/{job_id}/evaluations", json=body)
        return Evaluation.from_json(data)

    def evaluation(self, evaluation_id: Id) -> Evaluation:
        return Evaluation.from_json(self._json("GET", f"/v1/evaluations/{evaluation_id}"))

    def evaluations(self, job_id: Id) -> list[Evaluation]:
        """A job's evaluations, newest first (all pages)."""
        path = f"/v1/jobs/{job_id}/evaluations"
        return [Evaluation.from_json(e) for e in self._pages(path, {}, 1000)]

    def cancel_evaluation(self, evaluation_id: Id) -> Evaluation:
        data = self._json("POST", f"/v1/evaluations/{evaluation_id}/cancel")
        return Evaluation.from_json(data)

    def wait_evaluation(
        self, evaluation_id: Id, timeout: float | None = None, poll: float = 1.0
    ) -> Evaluation:
        """Poll until the evaluation is finished; raises ``DlcpruneError`` (code
        ``evaluation_failed`` / ``evaluation_cancelled``) when it did not succeed."""
        started = time.monotonic()
        while True:
            ev = self.evaluation(evaluation_id)
            if ev.finished:
                if ev.status != "succeeded":
                    message = (ev.error or {}).get("message", f"evaluation {ev.status}")
                    raise DlcpruneError(None, f"evaluation_{ev.status}", message)
                return ev
            if timeout is not None and time.monotonic() - started > timeout:
                message = f"evaluation {evaluation_id} is still {ev.status}"
                raise DlcpruneError(None, "timeout", message)
            time.sleep(poll)

    def evaluation_plot(
        self, evaluation_id: Id, dest_dir: str | os.PathLike[str], fmt: str = "png"
    ) -> Path:
        """Accuracy versus keep ratio per strategy, saved into ``dest_dir`` (png or svg)."""
        path = f"/v1/evaluations/{evaluation_id}/plot.{fmt}"
        with self._stream("GET", path) as resp:
            return self._save(resp, dest_dir, f"evaluation-{str(evaluation_id)[:8]}.{fmt}")  # type: ignore[no-any-return]

    def select_recommended(self, evaluation_id: Id) -> Any:
        """Store the recommendation as a selection (its strategy and keep ratio, seed 0)."""
        from dlcprune.client.models import Selection

        data = self._json("POST", f"/v1/evaluations/{evaluation_id}/select")
        return Selection.from_json(data)
