"""Figures shared by the chapters. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def training_curves(curves: dict[str, dict[str, list]]):
    """Training loss against step, pretraining and finetunes side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for name, c in curves.items():
        ax = axes[1] if c.get("parent") else axes[0]
        ax.plot(c["steps"], c["loss"], label=name)
    for ax, title in zip(axes, ("pretraining", "finetuning (from base-s)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    axes[0].set_ylabel("training loss (nats/token)")
    fig.tight_layout()
    return fig


def heldout_ce(models: pd.DataFrame):
    """Grouped bars: held-out CE of each model (rows) on each domain (columns named ``CE <domain>``)."""
    ce = models[[c for c in models.columns if c.startswith("CE ")]]
    long = ce.rename(columns=lambda c: c[3:]).reset_index().melt(id_vars="model", var_name="domain",
                                                                  value_name="CE")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(long, x="domain", y="CE", hue="model", ax=ax)
    ax.set_ylabel("held-out CE (nats/token)")
    ax.legend(title="model", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


def sae_transfer(table: pd.DataFrame, title: str):
    """Explained variance and CE loss score of one SAE across models (x) and data domains (hue)."""
    long = table.reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("explained var.", "CE loss score")):
        sns.barplot(long, x="model", y=metric, hue="data", ax=ax)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(metric)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _centers(edges: list[float]):
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]


def residual_histograms(results: dict, hook_of, metric: str, xlabel: str, xlim=None):
    """Step histograms of a per-token metric (``cos`` or ``rel``), one line per (finetune, dataset)."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for (ft, ds), layers in results.items():
        r = layers[hook_of(list(layers))]
        counts = r["hist"][metric]
        total = sum(counts)
        ax.step(_centers(r["bins"][metric]), [c / total for c in counts], where="mid",
                label=f"{ft.removeprefix('zoo:')} on {ds.removeprefix('zoo:')}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of tokens")
    if xlim:
        ax.set_xlim(*xlim)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def residual_by_position(results: dict, hook_of):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for (ft, ds), layers in results.items():
        r = layers[hook_of(list(layers))]
        ax.plot(r["by_position"]["cos"], label=f"{ft.removeprefix('zoo:')} on {ds.removeprefix('zoo:')}")
    ax.set_xlabel("context position")
    ax.set_ylabel("mean cosine similarity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def residual_by_layer(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for (ft, ds), row in table.iterrows():
        ax.plot(list(row.index), row.values, marker="o", label=f"{ft} on {ds}")
    ax.set_xlabel("residual stream after")
    ax.set_ylabel("mean cosine similarity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def residual_norms(results: dict, hook_of):
    """log10 residual norm distributions of base and finetune at the middle layer, one panel per dataset."""
    datasets = sorted({ds for _, ds in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.3), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        drawn_base = False
        for (ft, d), layers in results.items():
            if d != ds:
                continue
            r = layers[hook_of(list(layers))]
            x = _centers(r["bins"]["log10_norm"])
            if not drawn_base:
                ax.step(x, r["hist"]["log10_norm_base"], where="mid", color="black", label="base")
                drawn_base = True
            ax.step(x, r["hist"]["log10_norm_ft"], where="mid", label=ft.removeprefix("zoo:"))
        ax.set_title(ds.removeprefix("zoo:"))
        ax.set_xlabel("log10 residual norm")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("tokens")
    fig.tight_layout()
    return fig


def checkpoint_curve(rows: list[dict]):
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, g in df.groupby("finetune"):
        ax.plot(g["step"], g["cosine"], marker="o", label=f"{name} (middle layer)")
        ax.plot(g["step"], g["last-layer cosine"], marker=".", ls="--", label=f"{name} (last layer)")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("mean cosine similarity to base")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
