"""Figures of the chapter across languages. Each takes ``languages.measure``'s plain data and returns a matplotlib
Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from sae_transfer.core.plotting import legend_beside, share_curve  # (importing plotting sets the theme)
from sae_transfer.studies.languages.measure import CLASSES
from sae_transfer.studies.languages.tables import class_names, language

SIDES = {"before": ("base", "#333333"), "after": ("finetune", "#3d7ec8")}
#: The general figure's legend: each verse paired with ...
SHORT = {"translation": "its translation", "shuffled": "another verse's (floor)",
         "second translation": "a second translation (ceiling)"}


def classes(result: dict):
    """The share of the base SAE's features in each class on the base and on the finetune, with 95% intervals
    over features."""
    names = class_names(result)
    fig, ax = plt.subplots(figsize=(8.4, 3.2))
    y = np.arange(len(CLASSES))
    for k, (side, (label, color)) in enumerate(SIDES.items()):
        s = [result["shares"]["classes"][side][c] for c in CLASSES]
        share = np.array([x["share"] for x in s])
        err = np.array([[x["share"] - x["ci"][0], x["ci"][1] - x["share"]] for x in s]).T
        ax.barh(y + (k - 0.5) * 0.38, share, height=0.36, xerr=err, color=color, label=label, capsize=2)
    ax.set_yticks(y, [names[c] for c in CLASSES])
    ax.invert_yaxis()
    ax.set_xlabel("share of the base SAE's features firing on the verses")
    legend_beside(ax)
    fig.tight_layout()
    return fig


def rates(result: dict):
    """Each feature's firing rate over the verses in the base's language (x) and the new one (y), coloured by the
    correlation of its activations with those on the translations; on the base and on the finetune."""
    langs, t = result["languages"], result["thresholds"]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), sharex=True, sharey=True, layout="constrained")
    floor = t["min_rate"] / 4
    for ax, (side, (label, _)) in zip(axes, SIDES.items()):
        f = result["features"][side]
        x = np.maximum(np.array(f["rate_base"], dtype=float), floor)
        y = np.maximum(np.array(f["rate_new"], dtype=float), floor)
        r = np.array([np.nan if v is None else v for v in f["corr"]], dtype=float)
        seen = (x > floor) | (y > floor)
        sc = ax.scatter(x[seen], y[seen], c=np.nan_to_num(r[seen], nan=0.0), cmap="viridis", vmin=0, vmax=1, s=6,
                        alpha=0.7, linewidths=0)
        ax.axvline(t["min_rate"], color="grey", ls="--", lw=1)
        ax.axhline(t["min_rate"], color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"on the {label}")
        ax.set_xlabel(f"share of verses it fires on, {language(langs['base_language'])}")
    axes[0].set_ylabel(f"share of verses, {language(langs['new_language'])}")
    fig.colorbar(sc, ax=axes.tolist(), label="correlation with the translations", shrink=0.9)
    return fig


def general(result: dict):
    """The share of language-general features at every correlation threshold, each verse paired with its
    translation (solid), another verse's translation (the floor, dotted) and a second translation in the base's
    language (the ceiling, dashed), on the base and on the finetune, with 95% intervals over features."""
    fig, ax = plt.subplots(figsize=(8.4, 3.4))
    styles = {"translation": "-", "shuffled": ":", "second translation": "--"}
    for side, (label, color) in SIDES.items():
        for pairing, by_t in result["shares"]["curve"][side].items():
            t, share, lo, hi = share_curve(by_t)
            ax.plot(t, share, styles[pairing], marker="o", ms=3, color=color, label=f"{label}: {SHORT[pairing]}")
            ax.fill_between(t, lo, hi, color=color, alpha=0.15, lw=0)
    ax.axvline(result["thresholds"]["general_corr"], color="grey", ls="--", lw=1)
    ax.set_xlabel("correlation with the paired verses, at least")
    ax.set_ylabel("share of features language-general")
    ax.set_ylim(0, 1.02)
    legend_beside(ax)
    fig.tight_layout()
    return fig
