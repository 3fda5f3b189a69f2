"""Figures of the sizes chapter. Each takes ``sizes.measure``'s plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from sae_transfer.core.plotting import legend_beside  # (importing plotting sets the theme)
from sae_transfer.models.hooks import residual_index
from sae_transfer.studies.sizes.tables import SHARE_ROWS, cka_frame, short
from sae_transfer.methods.stitched_pair import CORE, EMERGENT

CLASS_COLORS = {"core": "#4c9f70", "partial": "#e0b040", "emergent": "#c8553d"}


def cka(result: dict):
    """Linear CKA between every layer of the two models, the SAEs' pairing outlined."""
    df = cka_frame(result)
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * df.shape[1], 0.9 + 0.55 * df.shape[0]))
    sns.heatmap(df, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, cbar_kws={"label": "linear CKA"}, ax=ax,
                annot_kws={"fontsize": 8})
    i, j = residual_index(result["hooks"]["small_sae"]), residual_index(result["hooks"]["large_sae"])
    ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="white", lw=2.5))
    ax.set_xlabel(f"{short(result['specs']['large'])}: residual after")
    ax.set_ylabel(f"{short(result['specs']['small'])}: residual after")
    fig.tight_layout()
    return fig


def init_curves(result: dict):
    """Explained variance on held-out text against training compute, for the large model's SAE from scratch and
    from the transferred SAE (whose curve starts at the stitch's cost)."""
    i = result["init"]
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    if i is None:
        ax.text(0.5, 0.5, "not run (sae_tokens = 0)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    offsets = {"from scratch": 0.0, "from the transferred SAE": i["stitch_flops"]}
    for name, color in (("from scratch", "#333333"), ("from the transferred SAE", "#3d7ec8")):
        rows = i["curves"][name]
        x = [(offsets[name] + r["tokens"] * i["flops_per_token"]["sae"]) / 1e12 for r in rows]
        ax.plot(x, [r["ev"] for r in rows], marker="o", color=color, label=name)
    ax.axhline(i["target_ev"], color="grey", ls="--", lw=1, label="from scratch, final")
    ax.set_xlabel("training compute, TFLOP (stitch included)")
    ax.set_ylabel("explained variance")
    lo = min(r["ev"] for rows in i["curves"].values() for r in rows)
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def match_shares(result: dict):
    """Share of live features whose best partner reaches each threshold: small vs large SAE (activations and
    mapped decoders) against a second seed of the large SAE (the ceiling)."""
    shares = {k: result["stability"]["shares"][k] for k in SHARE_ROWS if k in result["stability"]["shares"]}
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    styles = {"activations": "-", "decoders": ":"}
    colors = {"small to large": "#3d7ec8", "large from small": "#4c9f70", "large to second seed": "#999999"}
    for name, row in shares.items():
        who, what = name.split(", ")
        t = [float(k) for k in row]
        ax.plot(t, [100 * v for v in row.values()], marker="o", ls=styles[what], color=colors[who], label=name)
    ax.axvline(CORE, color="grey", lw=0.8)
    ax.set_xlabel("threshold (correlation or decoder cosine)")
    ax.set_ylabel("% of live features matched")
    ax.set_ylim(0, 102)
    legend_beside(ax)
    fig.tight_layout()
    return fig


def classes(result: dict):
    """The large SAE's live features: density against their best correlation with a small-SAE feature, by class."""
    st = result["stability"]
    cls, corr, dens = np.asarray(st["class"]), np.asarray(st["corr"]), np.asarray(st["density"])
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for c, color in CLASS_COLORS.items():
        m = cls == c
        ax.scatter(corr[m], 100 * dens[m], s=5, alpha=0.5, color=color, label=f"{c} ({int(m.sum())})")
    for t in (EMERGENT, CORE):
        ax.axvline(t, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("best activation correlation with a small-SAE feature")
    ax.set_ylabel("density on held-out text, %")
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig
