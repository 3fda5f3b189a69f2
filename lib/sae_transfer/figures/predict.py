"""Figures of the predicting-transfer chapter. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..labels import short



def scatter(rows: list[dict], predictors, outcomes):
    """One panel per (outcome row, predictor column); points coloured by dataset, marked by finetune."""
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(len(outcomes), len(predictors), figsize=(2.9 * len(predictors), 2.5 * len(outcomes)),
                             squeeze=False, sharey="row")
    markers = dict(zip(sorted(df["name"].unique()), "osD^vP*"))
    for i, o in enumerate(outcomes):
        for j, p in enumerate(predictors):
            ax = axes[i][j]
            for k, (ds, g) in enumerate(df.groupby("dataset")):
                for name, gg in g.groupby("name"):
                    ax.scatter(gg[p], gg[o], s=18, marker=markers[name], color=sns.color_palette()[k],
                               label=f"{short(ds)}" if name == sorted(g["name"].unique())[0] else None)
            if i == len(outcomes) - 1:
                ax.set_xlabel(p)
            if j == 0:
                ax.set_ylabel(o)
    axes[0][0].legend(fontsize=7, title="data", title_fontsize=7)
    fig.tight_layout()
    return fig


def compute(rows: list[dict], outcomes=("EV per token", "delta CE", "regular act sim")):
    """Outcomes against tokens of finetuning, one line per (finetune, dataset)."""
    df = pd.DataFrame(rows)
    base_rows = df[df["name"] == "none"]
    fig, axes = plt.subplots(1, len(outcomes), figsize=(4 * len(outcomes), 3.4), squeeze=False)
    for ax, o in zip(axes[0], outcomes):
        for name, g in df[df["name"] != "none"].groupby("name"):
            for ds, gg in g.groupby("dataset"):
                start = base_rows[base_rows["dataset"] == ds]
                gg = pd.concat([start, gg]).sort_values("tokens_seen")
                ax.plot(gg["tokens_seen"], gg[o], marker="o", ms=3, label=f"{name} on {short(ds)}")
        ax.set_xlabel("finetuning tokens")
        ax.set_title(o, fontsize=10)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ answerability probes
