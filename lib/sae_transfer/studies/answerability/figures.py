"""Figures of the answerability chapter. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sae_transfer.core.labels import short
from sae_transfer.core.plotting import MAX_COLS, legend_beside, panels  # (importing plotting sets the theme)
from sae_transfer.models.hooks import layer_label


def heatmaps(matrices: dict[str, pd.DataFrame]):
    """Test AUROC, training domain (rows) x test domain (columns), one panel per probe; 0.5 is chance."""
    fig, axes = panels(len(matrices), 3.3, 3.0)
    for ax, (name, m) in zip(axes, matrices.items()):
        sns.heatmap(m, ax=ax, vmin=0.0, vmax=1.0, center=0.5, cmap="vlag", annot=True, fmt=".2f", cbar=False,
                    annot_kws={"fontsize": 8})
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("test domain", fontsize=9)
        ax.set_ylabel("train domain", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    fig.tight_layout()
    return fig


def k_curve(summary: pd.DataFrame):
    """In- and out-of-domain AUROC of k-sparse SAE probes against k, the residual probe as dashed lines."""
    sae = summary[summary.index.str.startswith("SAE k=")]
    ks = [int(i.split("=")[1]) for i in sae.index]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for j, col in enumerate(("in-domain AUROC", "out-of-domain AUROC")):
        color = sns.color_palette()[j]
        ax.plot(ks, sae[col], marker="o", color=color, label=f"SAE probe, {col.removesuffix(' AUROC')}")
        ax.axhline(summary.loc["residual", col], ls="--", color=color, label=f"residual probe, "
                   f"{col.removesuffix(' AUROC')}")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("SAE features in the probe (k)")
    ax.set_ylabel("mean test AUROC")
    legend_beside(ax)
    fig.tight_layout()
    return fig


def layers(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for col in table.columns:
        ax.plot(range(len(table)), table[col], marker="o", label=col)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(range(len(table)), [layer_label(h) for h in table.index])
    ax.set_xlabel("residual stream after")
    ax.set_ylabel("residual probe AUROC")
    legend_beside(ax)
    fig.tight_layout()
    return fig


def bridge(rows: list[dict], base_auroc: dict[str, float], probes=("residual", "SAE k=1")):
    """Mean in-domain AUROC of base-trained probes along each finetune's checkpoints (step 0: the base)."""
    df = pd.DataFrame(rows)
    df = df[(df["trained on"] == "base") & df["probe"].isin(probes)]
    names = list(dict.fromkeys(df["finetune"]))
    fig, axes = panels(len(names), 3.6, 3.2, sharey=True)
    for ax, name in zip(axes, names):
        g = df[df["finetune"] == name]
        for j, p in enumerate(probes):
            gp = g[g["probe"] == p].groupby("step", dropna=False)["auroc"].mean()
            if gp.index.isna().any():  # a hub finetune: no steps, one point after the base
                xs, ys = [0, 1], [base_auroc[p], float(gp.iloc[0])]
            else:
                xs, ys = [0, *gp.index], [base_auroc[p], *gp.values]
            ax.plot(xs, ys, marker="o", color=sns.color_palette()[j], label=p)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_title(short(name), fontsize=10)
        ax.set_xlabel("finetuning step")
    for ax in axes[::MAX_COLS]:
        ax.set_ylabel("mean in-domain AUROC")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
