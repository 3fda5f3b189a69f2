"""Figures of the diffing chapter. Each function takes ``diffing.measure``'s plain data (or a table of it) and
returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sae_transfer.core.plotting import MAX_COLS, legend_beside, panels  # (importing plotting sets the theme)
from sae_transfer.methods import crosscoder_classes as dc
from sae_transfer.studies.diffing.tables import feature_table, floors_table, pair_rows

CLASS_COLORS = {"kept": "#4c9f70", "shifted": "#e0b040", "lost": "#c8553d", "unmatched": "#9aa5b1"}


def relative_norms(result: dict):
    """The field's signature plot: per pair, the histogram of live latents' relative decoder norm
    ||d_ft|| / (||d_base|| + ||d_ft||), the class bands shaded (0: base-only, 1: finetune-only)."""
    rows = pair_rows(result)
    fig, axes = panels(len(rows), 3.4, 2.9)
    for ax, (label, r) in zip(axes, rows):
        classes = np.asarray(dc.latent_classes(r))
        rel = np.asarray(r["latents"]["rel_norm"])[classes != "dead"]
        ax.axvspan(0, dc.BASE_ONLY, color="#c8553d", alpha=0.12, lw=0)
        ax.axvspan(dc.FT_ONLY, 1, color="#3d7ec8", alpha=0.12, lw=0)
        ax.axvspan(*dc.SHARED, color="#4c9f70", alpha=0.10, lw=0)
        ax.hist(rel, bins=np.linspace(0, 1, 41), color="#333333")
        ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("relative decoder norm (finetune)", fontsize=9)
    for ax in axes[::MAX_COLS]:
        ax.set_ylabel("latents")
    fig.tight_layout()
    return fig


def decoder_cosines(result: dict):
    """Per pair, the cosine between the base and finetune decoders of shared latents: 1 means the latent writes the
    same direction in both models."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(-0.2, 1, 49)
    for label, r in pair_rows(result):
        classes = np.asarray(dc.latent_classes(r))
        cos = np.asarray(r["latents"]["decoder_cos"])[classes == "shared"]
        ax.hist(cos, bins=bins, histtype="step", lw=1.6, label=f"{label} ({len(cos)})", density=True)
    ax.axvline(dc.SHIFT, color="grey", ls="--", lw=1)
    ax.set_xlabel("decoder cosine, base vs finetune (shared latents)")
    ax.set_ylabel("density")
    legend_beside(ax, title="shared latents")
    fig.tight_layout()
    return fig


def feature_classes(table: pd.DataFrame):
    """Stacked bars: the base SAE's firing features in four classes per pair (``diffing_tables.feature_table``)."""
    fig, ax = plt.subplots(figsize=(6.0, 0.5 + 0.55 * len(table)))
    left = np.zeros(len(table))
    for c in dc.FEATURE_CLASSES:
        v = table[f"{c} %"].to_numpy()
        ax.barh(table.index, v, left=left, color=CLASS_COLORS[c], label=c)
        left += v
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("% of the base SAE's features that fire on the finetune's data")
    ax.legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def floors(table: pd.DataFrame):
    """Activation similarity and kept share of every pair against the floor (twin) and the ceiling (two SAEs of one
    model) (``diffing_tables.floors_table``)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 0.6 + 0.5 * len(table)), sharey=True)
    colors = ["#9aa5b1" if ("floor" in i or "ceiling" in i) else "#3d7ec8" for i in table.index]
    for ax, col, xlim in ((axes[0], "activation sim (regular)", (min(0, table.iloc[:, 0].min()), 1)),
                          (axes[1], "kept %", (0, 100))):
        ax.barh(table.index, table[col], color=colors)
        ax.set_xlim(*xlim)
        ax.set_xlabel(col)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def along_checkpoints(table: pd.DataFrame):
    """New latents and kept features along the finetune (``diffing_tables.checkpoint_table``)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for ft, sub in table.groupby(level=0, sort=False):
        steps = [str(s) for s in sub.index.get_level_values(1)]
        ax.plot(steps, sub["new %"], marker="o", label=f"{ft}: new latents %")
        ax.plot(steps, sub["kept %"], marker="s", ls="--", label=f"{ft}: kept features %")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig



def class_figures(result: dict) -> dict[str, tuple]:
    """The figures that report the crosscoder's classes, ``{glue name: (draw, caption)}``, drawn only where it
    trained (``Report.findings``)."""
    return {"classes": (lambda: feature_classes(feature_table(result)), "Base-SAE feature classes."),
            "floor_bars": (lambda: floors(floors_table(result)), "Between floor and ceiling."),
            # decoders of a crosscoder that did not train, drawn against the class bands, would read as classes
            "rel_norms": (lambda: relative_norms(result), "Relative decoder norms."),
            "dec_cos": (lambda: decoder_cosines(result), "Decoder cosines of shared latents.")}
