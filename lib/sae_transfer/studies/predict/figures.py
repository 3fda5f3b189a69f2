"""Figures of the predicting-transfer chapter. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sae_transfer.core.plotting import count_ticks, legend_beside  # (importing plotting sets the theme)
from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short


def scatter(rows: list[dict], predictors, outcomes):
    """One panel per (predictor row, outcome column), at most three to a row; points coloured by dataset, marked
    by finetune."""
    df = pd.DataFrame(rows)
    fig, grid = plt.subplots(len(predictors), len(outcomes), figsize=(2.9 * len(outcomes), 2.5 * len(predictors)),
                             squeeze=False, sharey="col")
    markers = dict(zip(sorted(df["name"].unique()), "osD^vP*"))
    for i, p in enumerate(predictors):
        for j, o in enumerate(outcomes):
            ax = grid[i][j]
            for k, (ds, g) in enumerate(df.groupby("dataset")):
                for name, gg in g.groupby("name"):
                    ax.scatter(gg[p], gg[o], s=18, marker=markers[name], color=sns.color_palette()[k])
            ax.set_xlabel(p, fontsize=9)
            if i == 0:
                ax.set_title(o, fontsize=10)
    # one legend for every panel, beside the first row: colour is the data, the marker the finetune
    from matplotlib.lines import Line2D

    handles = ([Line2D([], [], ls="", marker="o", color=sns.color_palette()[k], label=f"on {short(ds)}")
                for k, ds in enumerate(sorted(df["dataset"].unique()))]
               + [Line2D([], [], ls="", marker=m, color="grey", label="the base" if name == "none" else name)
                  for name, m in markers.items()])
    legend_beside(grid[0][-1], handles=handles, fontsize=7)
    fig.tight_layout()
    return fig


def compute(rows: list[dict], outcomes=("EV per token", "delta CE", "regular act sim")):
    """Outcomes against tokens of finetuning, one line per (finetune, dataset)."""
    df = pd.DataFrame(rows)
    base_rows = df[df["name"] == "none"]
    fig, axes = plt.subplots(1, len(outcomes), figsize=(3.4 * len(outcomes), 3.2), squeeze=False)
    for ax, o in zip(axes[0], outcomes):
        for name, g in df[df["name"] != "none"].groupby("name"):
            for ds, gg in g.groupby("dataset"):
                start = base_rows[base_rows["dataset"] == ds]
                gg = pd.concat([start, gg]).sort_values("tokens_seen")
                ax.plot(gg["tokens_seen"], gg[o], marker="o", ms=3, label=f"{name} on {short(ds)}")
        ax.set_xlabel("finetuning tokens")
        count_ticks(ax.xaxis)
        ax.set_title(o, fontsize=10)
    legend_beside(axes[0][-1])
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ answerability probes


def calibration(table: pd.DataFrame):
    """The calibration cases (``predict.calibration``): EV drop against regular activation similarity, coloured by
    verdict, the thresholds drawn; the third criterion (CE recovered drop) shows in the colour only."""
    t = table.reset_index()
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    ev, sim = V.EV_DROP, V.REGULAR_ACT_SIM
    colours = {"transfers": "#1a7f37", "degraded": "#d97706", "broken": "#c00000"}
    markers = dict(zip(sorted(t["dataset"].unique()), "osD^v"))
    for (verdict, ds), g in t.groupby(["verdict", "dataset"]):
        ax.scatter(g[ev.label], g[sim.label], color=colours[verdict], marker=markers[ds], s=28,
                   label=f"{verdict}, {ds}")
    for x in (ev.keep, ev.breaks):
        ax.axvline(x, color="grey", lw=0.8, ls="--")
    for y in (sim.keep, sim.breaks):
        ax.axhline(y, color="grey", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(left=min(1.5 * float(t[ev.label].min()), -0.005))
    ax.set_xlabel("EV drop (base minus finetune; symlog)")
    ax.set_ylabel("regular activation similarity")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
