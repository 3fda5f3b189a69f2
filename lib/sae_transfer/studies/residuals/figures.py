"""Figures of the residuals chapter, from ``residuals.measure``'s records. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from sae_transfer.core.labels import short
from sae_transfer.core.plotting import MAX_COLS, centers, legend_beside, panels
from sae_transfer.studies.residuals.measure import summarised


def histograms(records: list[dict], metric: str, xlabel: str, xlim=None):
    """Step histograms of a per-token metric (``cos`` or ``rel``), one line per (finetune, dataset)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for rec in records:
        ft, ds, r = rec["finetune"], rec["dataset"], summarised(rec)
        counts = r["hist"][metric]
        total = sum(counts)
        ax.step(centers(r["bins"][metric]), [c / total for c in counts], where="mid",
                label=f"{short(ft)} on {short(ds)}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of tokens")
    if xlim:
        ax.set_xlim(*xlim)
    legend_beside(ax)
    fig.tight_layout()
    return fig


def by_position(records: list[dict]):
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for rec in records:
        ft, ds, r = rec["finetune"], rec["dataset"], summarised(rec)
        ax.plot(r["by_position"]["cos"], label=f"{short(ft)} on {short(ds)}")
    ax.set_xlabel("context position")
    ax.set_ylabel("mean cosine similarity")
    legend_beside(ax)
    fig.tight_layout()
    return fig


def by_layer(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for (ft, ds), row in table.iterrows():
        ax.plot(list(row.index), row.values, marker="o", label=f"{ft} on {ds}")
    ax.set_xlabel("residual stream after")
    ax.set_ylabel("mean cosine similarity")
    legend_beside(ax)
    fig.tight_layout()
    return fig


def norms(records: list[dict]):
    """log10 residual norm distributions of base and finetune at the summarised layer, one panel per dataset."""
    datasets = sorted({rec["dataset"] for rec in records})
    fig, axes = panels(len(datasets), 4, 3.3)
    for ax, ds in zip(axes, datasets):
        drawn_base = False
        seen: list[float] = []  # where any drawn histogram has tokens
        for rec in records:
            if rec["dataset"] != ds:
                continue
            ft, r = rec["finetune"], summarised(rec)
            x = centers(r["bins"]["log10_norm"])
            if not drawn_base:
                ax.step(x, r["hist"]["log10_norm_base"], where="mid", color="black", label="base")
                drawn_base = True
            ax.step(x, r["hist"]["log10_norm_ft"], where="mid", label=short(ft))
            seen += [v for v, b, f in zip(x, r["hist"]["log10_norm_base"], r["hist"]["log10_norm_ft"]) if b or f]
        ax.set_title(short(ds))
        ax.set_xlabel("log10 residual norm")
        if seen:  # the norms' own range, not the bins' fixed -2..4 (the data sat in a tenth of the axis)
            ax.set_xlim(min(seen) - 0.25, max(seen) + 0.25)
        ax.legend(fontsize=8)
    for ax in axes[::MAX_COLS]:
        ax.set_ylabel("tokens")
    fig.tight_layout()
    return fig


def checkpoints(rows: list[dict]):
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, g in df.groupby("finetune"):
        ax.plot(g["step"], g["cosine"], marker="o", label=f"{name} (summarised layer)")
        ax.plot(g["step"], g["last-layer cosine"], marker=".", ls="--", label=f"{name} (last layer)")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("mean cosine similarity to base")
    legend_beside(ax)
    fig.tight_layout()
    return fig
