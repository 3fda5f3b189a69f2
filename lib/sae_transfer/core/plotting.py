"""Helpers every chapter's figures share. The theme is set once, here, on import."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def centers(edges: list[float]) -> list[float]:
    """Bin centres of histogram ``edges`` [n + 1] -> [n]."""
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]


def pair_grid(results: dict, width: float = 3.6, height: float = 3.0):
    """One panel per (finetune, dataset) of ``sae_metrics.measure``'s results: rows finetunes, columns datasets."""
    fts = list(results["finetunes"])
    dss = list(results["base"])
    fig, axes = plt.subplots(len(fts), len(dss), figsize=(width * len(dss), height * len(fts)), squeeze=False)
    return fig, [(ft, ds, axes[i][j]) for i, ft in enumerate(fts) for j, ds in enumerate(dss)]
