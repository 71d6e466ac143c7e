"""What a selection keeps, against the full set: the preview (size, class counts, the
Kolmogorov-Smirnov statistic and total variation distance) and the distribution plot.

``POST /v1/jobs/{id}/selections/preview`` and ``GET /v1/jobs/{id}/plots/distribution.{fmt}`` store
nothing: they run the very call a stored selection runs (:func:`app.selections.service.
run_strategy`), so a preview keeps exactly what the selection will.
"""

from __future__ import annotations

import numpy as np

from app import plots
from app.jobs.summary import ScoredJob
from app.selections import service
from app.selections.schemas import (
    PreviewClass,
    PreviewHistogram,
    SelectionCreate,
    SelectionPreview,
)


def kept_indices(scored: ScoredJob, body: SelectionCreate) -> np.ndarray:
    """(size,) int64 ascending positions ``POST /v1/jobs/{id}/selections`` would keep."""
    result = service.run_strategy(scored.scores, scored.codes, body)
    return np.asarray(result.indices, dtype=np.int64)


def preview(
    scored: ScoredJob, body: SelectionCreate, kept: np.ndarray, bins: int
) -> SelectionPreview:
    """The preview of keeping positions ``kept`` of ``scored``, with a ``bins``-bin histogram."""
    scores = scored.scores
    kept_scores = scores[kept]
    edges = plots.histogram_edges(scores, bins)
    names = scored.class_names
    codes = scored.codes
    if codes is not None and names:
        full_counts = np.bincount(codes, minlength=len(names))
        kept_counts = np.bincount(codes[kept], minlength=len(names))
        classes = [
            PreviewClass(label=name, full=int(f), kept=int(k))
            for name, f, k in zip(names, full_counts, kept_counts, strict=True)
        ]
        tv = plots.tv_distance(full_counts, kept_counts)
    else:
        classes, tv = [], None
    finite_all = scores[np.isfinite(scores)].astype(np.float64)
    finite_kept = kept_scores[np.isfinite(kept_scores)].astype(np.float64)
    return SelectionPreview(
        job_id=scored.job.id,
        keep=float(body.keep),
        strategy=body.strategy,
        split=float(body.split),
        seed=int(body.seed),
        size=len(kept),
        num_samples=len(scores),
        excluded=int(np.isnan(scores).sum()),
        class_counts={
            "full": {c.label: c.full for c in classes},
            "kept": {c.label: c.kept for c in classes},
        },
        classes=classes,
        ks_statistic=plots.ks_statistic(scores, kept_scores),
        tv_distance=tv,
        mean_score={
            "full": float(finite_all.mean()) if finite_all.size else None,
            "kept": float(finite_kept.mean()) if finite_kept.size else None,
        },
        histogram=PreviewHistogram(
            edges=[float(e) for e in edges],
            full=plots.counts_in(scores, edges).tolist(),
            kept=plots.counts_in(kept_scores, edges).tolist(),
        ),
    )


def distribution(
    scored: ScoredJob, kept: np.ndarray, fmt: plots.PlotFormat, title: str, bins: int
) -> bytes:
    """The kept scores' distribution against the full set's, drawn as ``fmt``."""
    scores = scored.scores
    edges = plots.histogram_edges(scores, bins)
    kept_scores = scores[kept]
    return plots.render_distribution(
        edges,
        plots.counts_in(scores, edges),
        plots.counts_in(kept_scores, edges),
        fmt,
        ks=plots.ks_statistic(scores, kept_scores),
        title=title,
    )
