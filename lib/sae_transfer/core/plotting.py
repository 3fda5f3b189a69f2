"""Helpers every chapter's figures share. The theme is set once, here, on import."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


#: Panels a row holds at most. The book shows a figure at the text column's width, about 7.7 inches: a row of four
#: or more panels shrinks every label below legibility (a row of six 4-inch panels printed its ticks at 3 points).
MAX_COLS = 3


def panels(n: int, width: float = 3.6, height: float = 3.0, cols: int | None = None, **kwargs):
    """A figure of ``n`` panels of ``width`` x ``height`` inches, in rows of at most ``MAX_COLS`` (``cols``: fewer),
    the unused places of the last row left empty. Returns ``(fig, [n axes])`` in reading order."""
    cols = max(1, min(cols or n, MAX_COLS, n))
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kwargs)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def share_curve(by_threshold: dict) -> tuple:
    """``(thresholds, share, lo, hi)`` arrays from ``{str(threshold): {"share", "ci": [lo, hi]}}`` (a share at each
    threshold with its interval, as ``core.stats.share_interval`` gives them)."""
    import numpy as np

    t = np.array([float(k) for k in by_threshold])
    share = np.array([x["share"] for x in by_threshold.values()])
    lo, hi = (np.array([x["ci"][i] for x in by_threshold.values()]) for i in (0, 1))
    return t, share, lo, hi


def legend_beside(ax, **kwargs) -> None:
    """``ax``'s legend outside it, to its right: where lines fill the axes (one per pair and dataset), any corner
    inside covers data. The saved figure grows to hold it (``bbox_inches="tight"``)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False,
              **{"fontsize": 8, **kwargs})


def count_ticks(axis) -> None:
    """Tick labels of a count axis (``ax.xaxis``) as 50K and 1.5M: written out, 75000100000125000 ran together."""
    from matplotlib.ticker import FuncFormatter

    def short(x: float, _pos=None) -> str:
        for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
            if abs(x) >= scale:
                return f"{x / scale:g}{unit}"
        return f"{x:g}"

    axis.set_major_formatter(FuncFormatter(short))


def centers(edges: list[float]) -> list[float]:
    """Bin centres of histogram ``edges`` [n + 1] -> [n]."""
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]


def pair_grid(results: dict, width: float = 3.6, height: float = 3.0):
    """One panel per (finetune, dataset) of ``sae_metrics.measure``'s results: rows finetunes, columns datasets."""
    fts = list(results["finetunes"])
    dss = list(results["base"])
    fig, axes = plt.subplots(len(fts), len(dss), figsize=(width * len(dss), height * len(fts)), squeeze=False)
    return fig, [(ft, ds, axes[i][j]) for i, ft in enumerate(fts) for j, ds in enumerate(dss)]
