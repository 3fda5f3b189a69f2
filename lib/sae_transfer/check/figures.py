"""Figures of ``python -m sae_transfer check``: the verdict's three
criteria with their intervals against the thresholds. Plain data in (``check.json``'s results), Figures out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from sae_transfer.core import plotting  # noqa: F401 (sets the book's figure theme on import)
from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short

#: Zone colours, the same on every page: green transfers, amber degraded, red broken.
ZONES = {"transfers": "#d9f0d3", "degraded": "#fee8c8", "broken": "#fdd0d0"}


def _zones(ax, c: V.Criterion, lo: float, hi: float, vertical: bool) -> tuple[float, float]:
    """Shade the criterion's three zones on ``ax`` over a range that holds [lo, hi] and both thresholds."""
    a, b = sorted((c.keep, c.breaks))
    pad = 0.1 * max(hi - lo, b - a, 1e-3)
    lo, hi = min(lo, a) - pad, max(hi, b) + pad
    worse_low = ("broken", "degraded", "transfers")
    names = worse_low[::-1] if c.higher_is_worse else worse_low
    span = ax.axhspan if vertical else ax.axvspan
    for (x0, x1), name in zip(((lo, a), (a, b), (b, hi)), names):
        span(x0, x1, color=ZONES[name], zorder=0, lw=0)
    return lo, hi


def criteria(results: list[dict]):
    """One panel per criterion; one row per (finetune, dataset) with its value and 95% interval."""
    labels = [f"{short(r['finetune'])} on {short(r['dataset'])}" for r in results]
    fig, axes = plt.subplots(1, len(V.CRITERIA), figsize=(3.4 * len(V.CRITERIA), max(1.8, 0.7 + 0.42 * len(results))),
                             sharey=True, squeeze=False)
    for ax, c in zip(axes[0], V.CRITERIA):
        m = [r["metrics"][c.key] for r in results]
        vals = [x["value"] for x in m if x["value"] is not None]
        ends = [e for x in m for e in (x["lo"], x["hi"]) if e is not None] + vals
        xlo, xhi = _zones(ax, c, min(ends, default=0.0), max(ends, default=1.0), vertical=False)
        for y, x in enumerate(m):
            if x["value"] is None:
                continue
            err = [[x["value"] - (x["lo"] if x["lo"] is not None else x["value"])],
                   [(x["hi"] if x["hi"] is not None else x["value"]) - x["value"]]]
            ax.errorbar(x["value"], y, xerr=err, fmt="o", color="black", ms=4, capsize=3)
        ax.set_xlim(xlo, xhi)
        ax.set_title(c.label, fontsize=10)
        ax.grid(False)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return fig


def watch(results: list[dict]):
    """The criteria over a series of checkpoints: one panel per criterion, one line (with its interval band) per
    dataset, the zones behind."""
    df = pd.DataFrame([{"step": r["step"], "dataset": short(r["dataset"]), **{
        f"{c.key}{s}": r["metrics"][c.key][s] for c in V.CRITERIA for s in ("value", "lo", "hi")}}
        for r in results]).astype({f"{c.key}{s}": float for c in V.CRITERIA for s in ("value", "lo", "hi")})
    fig, axes = plt.subplots(1, len(V.CRITERIA), figsize=(3.6 * len(V.CRITERIA), 3.0), squeeze=False)
    for ax, c in zip(axes[0], V.CRITERIA):
        cols = [f"{c.key}{s}" for s in ("value", "lo", "hi")]
        lo, hi = _zones(ax, c, float(df[cols].min().min()), float(df[cols].max().max()), vertical=True)
        for ds, g in df.sort_values("step").groupby("dataset"):
            ax.plot(g["step"], g[f"{c.key}value"], marker="o", ms=3, label=ds)
            ax.fill_between(g["step"], g[f"{c.key}lo"], g[f"{c.key}hi"], alpha=0.25)
        ax.set_ylim(lo, hi)
        ax.set_title(c.label, fontsize=10)
        ax.set_xlabel("finetuning step")
        ax.grid(False)
    axes[0][0].legend(fontsize=8, title="data", title_fontsize=8)
    fig.tight_layout()
    return fig
