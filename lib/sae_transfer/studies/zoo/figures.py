"""Figures of the zoo page: training curves, held-out losses, the base SAE on its finetunes. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sae_transfer.core.plotting import legend_beside  # (importing plotting sets the book's figure theme)


def training_curves(curves: dict[str, dict[str, list]]):
    """Training loss against step, pretraining and finetunes side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for name, c in curves.items():
        ax = axes[1] if c.get("parent") else axes[0]
        if c["steps"]:  # a pretrained root has no training curve of its own
            ax.plot(c["steps"], c["loss"], label=f"{name} (from {c['parent']})" if c.get("parent") else name)
    for ax, title in zip(axes, ("pretraining", "finetuning")):
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
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
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("explained var.", "CE loss score")):
        sns.barplot(long, x="model", y=metric, hue="data", ax=ax)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(metric)
        ax.get_legend().remove()  # one legend for both panels, beside them: inside, bars run under it
    legend_beside(axes[-1], handles=axes[0].get_legend_handles_labels()[0], title="data")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
