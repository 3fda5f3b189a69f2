"""Figures of the feature-transfer chapter. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sae_transfer.core.labels import short
from sae_transfer.core.plotting import count_ticks, legend_beside, panels  # (importing plotting sets the theme)

GROUP_LABELS = {"regular": "regular", "dead_in_base": "dead in base only", "dead_in_finetune": "dead in finetune only"}


def score_histograms(results: dict, drift: dict | None = None):
    """Per pair (rows): histograms of activation similarity, logit similarity and decoder cosine per group."""
    import numpy as np

    cols = [("act_sim", "activation similarity"), ("logit_sim", "logit similarity")]
    if drift:
        cols.append(("decoder_cos", "decoder cosine (base vs fine-tuned SAE)"))
    fig, axes = plt.subplots(len(results), len(cols), figsize=(4 * len(cols), 3 * len(results)), squeeze=False)
    for i, (ft, r) in enumerate(results.items()):
        scores = dict(r["scores"])
        if drift and ft in drift:
            scores["decoder_cos"] = drift[ft]["decoder_cos"]
        for j, (key, label) in enumerate(cols):
            ax = axes[i][j]
            if key not in scores:
                ax.set_axis_off()
                continue
            vals = np.asarray(scores[key], dtype=float)
            # scores often crowd near 1: bins over the range the data take (to -1 at most), not the whole [-1, 1]
            lo = max(-1.0, np.floor(20 * (float(np.nanmin(vals)) - 0.01)) / 20) if np.isfinite(vals).any() else -1.0
            for group, idx in r["groups"].items():
                v = vals[idx]
                v = v[~np.isnan(v)]
                if len(v):
                    ax.hist(v, bins=np.linspace(lo, 1, 81), histtype="step", density=True,
                            label=f"{GROUP_LABELS[group]} ({len(v)})")
            ax.set_title(f"{short(ft)}: {label}", fontsize=10)
            # below the panel: groups' spikes reach any corner inside it
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


def sim_vs_decoder(results: dict, drift: dict):
    """Per pair: each feature's activation similarity (y) against how far fine-tuning the SAE turned its decoder
    row (x), regular features highlighted."""
    import numpy as np

    pairs = [ft for ft in results if ft in drift]
    fig, axes = panels(len(pairs), 4.2, 3.8)
    for ax, ft in zip(axes, pairs):
        sim = np.asarray(results[ft]["scores"]["act_sim"], dtype=float)
        dec = np.asarray(drift[ft]["decoder_cos"], dtype=float)
        ax.scatter(dec, sim, s=3, color="0.7", lw=0, label="all features")
        reg = results[ft]["groups"]["regular"]
        ax.scatter(dec[reg], sim[reg], s=4, lw=0, label="regular")
        ax.set_xlabel("decoder cosine, base vs fine-tuned SAE")
        ax.set_ylabel("activation similarity")
        ax.set_title(short(ft), fontsize=10)
        ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


def recovery(rows: list[dict]):
    """Delta CE and explained variance of the base SAE fine-tuned for more and more tokens on each finetune;
    dashed: the native SAE trained on the finetune, when the zoo has one."""
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("delta CE", "EV per token")):
        for i, (name, g) in enumerate(df.groupby("finetune")):
            color = sns.color_palette()[i]
            curve = g[g["fine-tuning tokens"].notna()].sort_values("fine-tuning tokens")
            ax.plot(curve["fine-tuning tokens"], curve[metric], marker="o", color=color, label=name)
            native = g[g["fine-tuning tokens"].isna()]
            for v in native[metric]:
                ax.axhline(v, color=color, ls="--", lw=1, label=f"{name}: native SAE")
        ax.set_xlabel("tokens of SAE fine-tuning on the finetune")
        count_ticks(ax.xaxis)
        ax.set_title(metric, fontsize=10)
    legend_beside(axes[-1])
    fig.tight_layout()
    return fig


def checkpoints(rows: list[dict]):
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, g in df.groupby("finetune"):
        ax.plot(g["step"], g["regular: activation sim"], marker="o", label=f"{name}: mean")
        ax.plot(g["step"], g["regular: share above 0.8"], marker=".", ls="--", label=f"{name}: share above 0.8")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("regular features")
    legend_beside(ax)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ predicting transfer
