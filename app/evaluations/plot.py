"""The accuracy-versus-keep plot of an evaluation: one line per strategy (mean and its 95%
interval as a band), the full set's accuracy as a dashed line, the recommendation marked."""

from __future__ import annotations

from typing import Any

from app.plots import PlotFormat, _colours, _figure, _save, _style


def render(result: dict[str, Any], fmt: PlotFormat) -> bytes:
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    _style(ax)
    colours = _colours(len(result["strategies"]))
    for colour, strategy in zip(colours, result["strategies"], strict=True):
        cells = [c for c in result["cells"] if c["strategy"] == strategy]
        keep = [c["keep"] for c in cells]
        mean = [c["accuracy"]["mean"] for c in cells]
        low = [
            c["accuracy"]["low"] if c["accuracy"]["low"] is not None else m
            for c, m in zip(cells, mean, strict=True)
        ]
        high = [
            c["accuracy"]["high"] if c["accuracy"]["high"] is not None else m
            for c, m in zip(cells, mean, strict=True)
        ]
        style = "--" if strategy == result["control"] else "-"
        ax.plot(keep, mean, style, marker="o", color=colour, label=strategy, linewidth=1.5)
        ax.fill_between(keep, low, high, color=colour, alpha=0.15, linewidth=0)
    ax.axhline(result["full"]["accuracy"], color="#374151", linestyle=":", label="full set")
    rec = result.get("recommendation")
    if rec:
        ax.plot(
            [rec["keep"]],
            [rec["accuracy"]["mean"]],
            marker="*",
            markersize=14,
            color="#111827",
            linestyle="none",
            label=f"recommended: {rec['strategy']} @ {rec['keep']:g}",
        )
    ax.set_xlabel("keep ratio")
    ax.set_ylabel("held-out accuracy (frozen-feature probe)")
    ax.set_title(f"{result['seeds']} paired seeds, 95% intervals", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, fmt)
