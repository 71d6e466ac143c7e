"""The numbers behind the job and selection plots (which the dashboard shows), and the plots
themselves (PNG or SVG).

The first half is pure numpy: score histograms per class, the two-sample Kolmogorov-Smirnov
statistic, the total variation distance between class proportions and the loss-versus-mask-level
curve (mean, median and a 10-90% band across samples). The second half draws them with matplotlib
on the Agg backend. matplotlib is imported inside the drawing functions, so importing this module
(and starting the API) stays fast; figures are built with the object API (``Figure``), never
``pyplot``, so concurrent requests in the thread pool share no global figure state.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from starlette.responses import Response

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PlotFormat = Literal["png", "svg"]

MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}

# Percentiles of the band drawn around the mean loss curve.
BAND = (10.0, 90.0)

# Above this many classes the plots show the whole dataset only (a legend of 200 entries helps
# nobody); the JSON summary still carries every class.
MAX_PLOTTED_CLASSES = 10

_FULL_COLOUR = "#8a94a6"
_KEPT_COLOUR = "#2563eb"
_MEAN_COLOUR = "#1d4ed8"


# --------------------------------------------------------------------------------------------
# Statistics (numpy only)
# --------------------------------------------------------------------------------------------


def histogram_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins + 1`` ascending edges spanning the finite ``values`` (a unit span around a single
    value, ``[0, 1]`` when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    return np.histogram_bin_edges(finite.astype(np.float64), bins=bins)


def counts_in(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the finite ``values`` in the bins given by ``edges`` (int64, ``len(edges) - 1``);
    values outside the edges are clipped into the first or last bin."""
    finite = values[np.isfinite(values)].astype(np.float64)
    clipped = np.clip(finite, edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    return counts.astype(np.int64)


@dataclass
class ScoreHistogram:
    """Score counts of the whole dataset and of each class, on shared bin edges."""

    edges: np.ndarray  # (B+1,) float64
    total: np.ndarray  # (B,) int64
    classes: list[str] = field(default_factory=list)
    per_class: list[np.ndarray] = field(default_factory=list)  # one (B,) int64 per class

    def as_json(self) -> dict[str, Any]:
        return {
            "edges": [float(e) for e in self.edges],
            "total": self.total.tolist(),
            "per_class": [
                {"label": name, "counts": counts.tolist()}
                for name, counts in zip(self.classes, self.per_class, strict=True)
            ],
        }


def score_histogram(
    scores: np.ndarray,
    codes: np.ndarray | None,
    class_names: Sequence[str],
    bins: int,
    max_classes: int | None = None,
) -> ScoreHistogram:
    """Histogram of the finite scores, overall and per class (the first ``max_classes``).

    Args:
        scores: (N,) float scores; NaN (unscored) samples are left out.
        codes: (N,) int class codes into ``class_names`` (or None: unlabelled).
        class_names: the class names in code order.
        bins: number of bins.
        max_classes: per-class counts for this many classes at most (None: all).
    """
    edges = histogram_edges(scores, bins)
    hist = ScoreHistogram(edges=edges, total=counts_in(scores, edges))
    if codes is None or not class_names:
        return hist
    shown = len(class_names) if max_classes is None else min(len(class_names), max_classes)
    finite = np.isfinite(scores)
    clipped = np.clip(scores[finite].astype(np.float64), edges[0], edges[-1])
    bin_of = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, bins - 1)
    code_of = codes[finite].astype(np.int64)
    in_shown = code_of < shown
    flat = code_of[in_shown] * bins + bin_of[in_shown]
    table = np.bincount(flat, minlength=shown * bins).reshape(shown, bins)
    hist.classes = list(class_names[:shown])
    hist.per_class = [table[c].astype(np.int64) for c in range(shown)]
    return hist


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic ``D = sup_x |F_a(x) - F_b(x)|``.

    ``F_a`` and ``F_b`` are the empirical distribution functions of the finite values of ``a``
    and ``b``. The supremum is reached at one of the pooled sample values, where both functions
    are evaluated right-continuously (``searchsorted(..., side="right")``). 0.0 when either side
    is empty.
    """
    x = np.sort(np.asarray(a, dtype=np.float64)[np.isfinite(a)])
    y = np.sort(np.asarray(b, dtype=np.float64)[np.isfinite(b)])
    if x.size == 0 or y.size == 0:
        return 0.0
    pooled = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, pooled, side="right") / x.size
    cdf_y = np.searchsorted(y, pooled, side="right") / y.size
    return float(np.max(np.abs(cdf_x - cdf_y)))


def tv_distance(p_counts: Sequence[float], q_counts: Sequence[float]) -> float | None:
    """Total variation distance ``1/2 * sum_c |p_c - q_c|`` between two count vectors taken as
    proportions (0 to 1); None when either has no mass."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"count vectors differ in length: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


@dataclass
class LossCurve:
    """Per mask level: the share of weights masked and the loss across samples."""

    fractions: np.ndarray  # (L+1,) masked share per row; row 0 is the unmasked model
    mean: np.ndarray  # (L+1,)
    median: np.ndarray
    low: np.ndarray  # BAND[0] percentile
    high: np.ndarray  # BAND[1] percentile
    samples: int  # samples that contributed (finite losses)
    classes: list[str] = field(default_factory=list)
    class_mean: list[np.ndarray] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        def floats(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "levels": len(self.fractions),
            "mask_fractions": floats(self.fractions),
            "mean": floats(self.mean),
            "median": floats(self.median),
            "band": {"low": BAND[0], "high": BAND[1]},
            "low": floats(self.low),
            "high": floats(self.high),
            "samples": self.samples,
            "per_class_mean": [
                {"label": name, "mean": floats(m)}
                for name, m in zip(self.classes, self.class_mean, strict=True)
            ],
        }


def loss_curve(
    losses: np.ndarray,
    fractions: Sequence[float] | None,
    *,
    codes: np.ndarray | None = None,
    class_names: Sequence[str] = (),
    max_classes: int | None = None,
) -> LossCurve:
    """Summarise a (L+1, N) loss matrix row by row (a row at a time, so a memory-mapped matrix is
    read once and never copied whole). NaN entries (unscored samples) are ignored.

    ``fractions`` gives the masked share of each row; when it is missing or of another length,
    the row numbers are used instead.
    """
    if losses.ndim != 2:
        raise ValueError(f"losses must be 2-D (levels, samples), got shape {losses.shape}")
    rows, n = losses.shape
    if fractions is not None and len(fractions) == rows:
        x = np.asarray(fractions, dtype=np.float64)
    else:
        x = np.arange(rows, dtype=np.float64)
    mean = np.full(rows, np.nan)
    median = np.full(rows, np.nan)
    low = np.full(rows, np.nan)
    high = np.full(rows, np.nan)
    shown = 0
    if codes is not None and class_names:
        shown = len(class_names) if max_classes is None else min(len(class_names), max_classes)
    class_mean = np.full((shown, rows), np.nan)
    contributing = np.zeros(n, dtype=bool)
    for r in range(rows):
        row = np.asarray(losses[r], dtype=np.float64)
        ok = np.isfinite(row)
        contributing |= ok
        if not ok.any():
            continue
        values = row[ok]
        mean[r] = values.mean()
        low[r], median[r], high[r] = np.percentile(values, [BAND[0], 50.0, BAND[1]])
        if shown:
            assert codes is not None
            code_ok = codes[ok].astype(np.int64)
            keep = code_ok < shown
            sums = np.bincount(code_ok[keep], weights=values[keep], minlength=shown)
            cnts = np.bincount(code_ok[keep], minlength=shown)
            with np.errstate(invalid="ignore", divide="ignore"):
                class_mean[:, r] = np.where(cnts > 0, sums / np.maximum(cnts, 1), np.nan)
    return LossCurve(
        fractions=x,
        mean=mean,
        median=median,
        low=low,
        high=high,
        samples=int(contributing.sum()),
        classes=list(class_names[:shown]),
        class_mean=[class_mean[c] for c in range(shown)],
    )


# --------------------------------------------------------------------------------------------
# Drawing (matplotlib, Agg)
# --------------------------------------------------------------------------------------------


_setup_lock = threading.Lock()
_setup_done = False


def _setup_matplotlib() -> None:
    """Once per process: the Agg backend, and a fixed salt for the ids in SVG files (so the same
    plot gives the same bytes). Both are constants, set before any figure is drawn."""
    global _setup_done
    with _setup_lock:
        if _setup_done:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        matplotlib.rcParams["svg.hashsalt"] = "dlcprune"
        _setup_done = True


def _figure(width: float = 6.4, height: float = 3.6) -> Figure:
    """A new Agg figure, independent of pyplot's global state."""
    _setup_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Axes) -> None:
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(colors="#374151", labelsize=9)


def _save(fig: Figure, fmt: PlotFormat) -> bytes:
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown plot format {fmt!r}; expected png or svg")
    buf = io.BytesIO()
    # No timestamps in the files: the same data draws the same bytes.
    metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
    fig.savefig(buf, format=fmt, metadata=metadata, dpi=100 if fmt == "png" else "figure")
    return buf.getvalue()


def _colours(n: int) -> list[str]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [matplotlib.colors.to_hex(cmap(i % 10)) for i in range(n)]


def render_histogram(hist: ScoreHistogram, fmt: PlotFormat, title: str = "") -> bytes:
    """DLC score histogram: the whole dataset as filled bars, each class (up to
    :data:`MAX_PLOTTED_CLASSES`) as a step line on the same bins."""
    fig = _figure()
    ax = fig.add_subplot()
    _style(ax)
    edges = hist.edges
    widths = np.diff(edges)
    ax.bar(
        edges[:-1],
        hist.total,
        width=widths,
        align="edge",
        color="#cbd5e1",
        edgecolor="white",
        linewidth=0.5,
        label="all samples",
    )
    if hist.per_class and len(hist.per_class) <= MAX_PLOTTED_CLASSES:
        for colour, name, counts in zip(
            _colours(len(hist.per_class)), hist.classes, hist.per_class, strict=True
        ):
            ax.stairs(counts, edges, color=colour, linewidth=1.6, label=str(name))
    ax.set_xlabel("DLC score (low = easy)", fontsize=10)
    ax.set_ylabel("samples", fontsize=10)
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    ax.legend(fontsize=8, frameon=False, ncols=2 if len(hist.per_class) > 5 else 1)
    return _save(fig, fmt)


def render_loss_curve(curve: LossCurve, fmt: PlotFormat, title: str = "") -> bytes:
    """Loss against the masked share of weights: the mean across samples, the median and the
    10-90% band."""
    fig = _figure()
    ax = fig.add_subplot()
    _style(ax)
    x = curve.fractions
    ax.fill_between(
        x,
        curve.low,
        curve.high,
        color=_MEAN_COLOUR,
        alpha=0.15,
        linewidth=0,
        label=f"{BAND[0]:.0f}-{BAND[1]:.0f}% of samples",
    )
    ax.plot(x, curve.median, color=_MEAN_COLOUR, linewidth=1.0, linestyle="--", label="median")
    ax.plot(
        x, curve.mean, color=_MEAN_COLOUR, linewidth=2.0, marker="o", markersize=3.5, label="mean"
    )
    is_share = bool(len(x)) and float(np.nanmax(x)) <= 1.0 and float(np.nanmin(x)) >= 0.0
    if is_share:
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_xlabel("weights masked", fontsize=10)
    else:
        ax.set_xlabel("mask level", fontsize=10)
    ax.set_ylabel("loss", fontsize=10)
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, fmt)


def render_distribution(
    edges: np.ndarray,
    full: np.ndarray,
    kept: np.ndarray,
    fmt: PlotFormat,
    *,
    ks: float | None = None,
    title: str = "",
) -> bytes:
    """A subset's score distribution against the full dataset's, as densities on shared bins
    (so the two are comparable whatever the keep ratio)."""
    fig = _figure()
    ax = fig.add_subplot()
    _style(ax)
    widths = np.diff(edges)

    def density(counts: np.ndarray) -> np.ndarray:
        total = counts.sum()
        return counts / (total * widths) if total > 0 else np.zeros_like(widths)

    ax.bar(
        edges[:-1],
        density(full),
        width=widths,
        align="edge",
        color=_FULL_COLOUR,
        alpha=0.35,
        edgecolor="white",
        linewidth=0.5,
        label=f"full ({int(full.sum())})",
    )
    ax.stairs(
        density(kept), edges, color=_KEPT_COLOUR, linewidth=2.0, label=f"kept ({int(kept.sum())})"
    )
    ax.set_xlabel("DLC score (low = easy)", fontsize=10)
    ax.set_ylabel("density", fontsize=10)
    heading = title
    if ks is not None:
        heading = f"{title} · KS D = {ks:.3f}" if title else f"KS D = {ks:.3f}"
    if heading:
        ax.set_title(heading, fontsize=11, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, fmt)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def image_response(data: bytes, fmt: PlotFormat, name: str) -> Response:
    """A plot route's answer, shown inline as ``<name>.<fmt>``: scores never change once stored,
    so a private cache may keep it."""
    headers = {
        "Content-Disposition": f'inline; filename="{name}.{fmt}"',
        "Cache-Control": "private, max-age=300",
    }
    return Response(content=data, media_type=MEDIA_TYPES[fmt], headers=headers)
