"""Figures of the architectures section. Each takes ``across.measure``'s plain data and returns a matplotlib
Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sae_transfer.core.labels import short
from sae_transfer.core.plotting import legend_beside, share_curve  # (importing plotting sets the theme)
from sae_transfer.models.hooks import layer_label, residual_index
from sae_transfer.studies.across.tables import MATCHED

COLORS = {"other": "#3d7ec8", "twin": "#333333", "second seed": "#4c9f70"}


def counterparts(result: dict):
    """Share of the base SAE's living features whose best counterpart reaches each correlation, in the other
    architecture's SAE, the twin's (the floor) and a second seed of the base SAE (the ceiling), with 95%
    intervals over features."""
    fig, ax = plt.subplots(figsize=(8.4, 3.4))  # the axes 5 inches wide, the legend beside them
    for who, by_t in result["counterparts"]["shares"].items():
        t, share, lo, hi = share_curve(by_t)
        ax.errorbar(t, share, yerr=[share - lo, hi - share], marker="o", capsize=3, color=COLORS[who],
                    label=MATCHED[who])
    ax.axvline(result["counterparts"]["threshold"], color="grey", ls="--", lw=1)
    ax.set_xlabel("best counterpart's activation correlation, at least")
    ax.set_ylabel("share of the base SAE's features")
    ax.set_ylim(0, 1.02)
    legend_beside(ax)
    fig.tight_layout()
    return fig


def cka(result: dict):
    """Linear CKA between every layer of the base (columns) and of each partner (rows), one panel per partner,
    the SAEs' layers outlined."""
    pairs = result["pairs"]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.4 * len(pairs) + 1.0, 3.6), squeeze=False, layout="constrained")
    for ax, (role, r) in zip(axes[0], pairs.items()):
        h = r["hooks"]
        df = pd.DataFrame(r["cka"], index=[layer_label(x) for x in h[role]],
                          columns=[layer_label(x) for x in h["base"]])
        sns.heatmap(df, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, cbar=False, ax=ax,
                    annot_kws={"fontsize": 7})
        i, j = residual_index(h[f"{role}_sae"]), residual_index(h["base_sae"])
        ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="white", lw=2.5))
        ax.tick_params(axis="x", rotation=0)
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel(f"{short(result['specs']['base'])}: residual after")
        ax.set_ylabel(f"{short(result['specs'][role])}: residual after")
    fig.colorbar(axes[0][0].collections[0], ax=axes[0].tolist(), label="linear CKA", shrink=0.9)
    return fig
