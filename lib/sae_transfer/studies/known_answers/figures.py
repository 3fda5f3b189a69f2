"""The known-answers chapter's figures. Plain data in (``measure``'s), Figures out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from sae_transfer.core import plotting
from sae_transfer.core import verdict as V
from sae_transfer.studies.known_answers.scores import LABELS
from sae_transfer.studies.known_answers.tables import SWEEPS, TRUSTED

COLOURS = dict(zip((*LABELS, "new"), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
VERDICT_COLOURS = {"transfers": "#2a9d4b", "degraded": "#e0a000", "broken": "#c0392b"}


def _err(points: list[dict | None]) -> tuple[list, list]:
    lo = [p["value"] - p["lo"] if p and p.get("lo") is not None else 0.0 for p in points]
    hi = [p["hi"] - p["value"] if p and p.get("hi") is not None else 0.0 for p in points]
    return lo, hi


def sweeps(data: dict):
    """Rows: precision and recall; columns: the sweeps. One line per label (the base SAE's features labelled
    kept, shifted, lost; the crosscoder's new latents), each point with its 95% interval; dotted: ``TRUSTED``."""
    axes_names = [a for a in SWEEPS if len(data[a]) > 1]
    fig, axes = plotting.panels(2 * len(axes_names), width=3.4, height=2.8, cols=len(axes_names))
    for j, axis in enumerate(axes_names):
        rows = sorted(data[axis], key=lambda r: r[axis])
        x = np.array([r[axis] for r in rows], dtype=float)
        for i, metric in enumerate(("precision", "recall")):
            ax = axes[i * len(axes_names) + j]
            for k, lab in enumerate((*LABELS, "new")):
                pts = [(r["scores"]["new"] if lab == "new" else r["scores"]["features"][lab])[metric] for r in rows]
                ok = [p["value"] is not None for p in pts]
                if not any(ok):
                    continue
                xs = x[ok] * (1 + 0.015 * (k - 1.5))  # a little apart, so the intervals do not hide each other
                ys = [p["value"] for p, o in zip(pts, ok) if o]
                ax.errorbar(xs, ys, yerr=_err([p for p, o in zip(pts, ok) if o]), color=COLOURS[lab], marker="o",
                            ms=3.5, lw=1, capsize=2, label=lab)
            if metric == "precision":
                ax.axhline(TRUSTED, color="0.4", ls=":", lw=0.8)
            ax.set_ylim(-0.03, 1.03)
            if axis == "features_per_dim":
                ax.set_xscale("log", base=2)
            elif axis == "train_tokens":
                plotting.count_ticks(ax.xaxis)
            ax.set_xlabel(SWEEPS[axis] if i == 1 else "")
            ax.set_ylabel(metric if j == 0 else "")
    seen: dict = {}
    for ax in axes:  # a label never given has no precision points: its handle comes from a recall panel
        for handle, name in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(name, handle)
    names = [n for n in (*LABELS, "new") if n in seen]
    fig.legend([seen[n] for n in names], names, loc="upper center", ncol=len(names), fontsize=8,
               bbox_to_anchor=(0.5, 1.04), frameon=False)
    fig.tight_layout()
    return fig


def verdict_against_truth(data: dict):
    """Over the severity grid, ``check``'s two measured criteria against the true share of changed activation
    mass, each point coloured by the verdict; dashed: the criterion's thresholds."""
    rows = sorted(data["severity"], key=lambda r: r["changed_mass"])
    fig, axes = plotting.panels(2, width=3.6, height=2.9)
    for ax, crit in zip(axes, (V.EV_DROP, V.REGULAR_ACT_SIM)):
        x = [r["changed_mass"] for r in rows]
        y = [r["verdict"]["values"][crit.key] for r in rows]
        ax.plot(x, y, color="0.6", lw=0.8, zorder=1)
        for xi, yi, r in zip(x, y, rows):
            ax.scatter([xi], [yi], color=VERDICT_COLOURS[r["verdict"]["verdict"]], s=28, zorder=2)
        for level in (crit.keep, crit.breaks):
            ax.axhline(level, color="0.5", ls="--", lw=0.7)
        ax.set_xlabel("true share of activation mass changed")
        ax.set_ylabel(crit.label)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 1.06), frameon=False)
    fig.tight_layout()
    return fig


def similarity_by_truth(case: dict):
    """The feature chapter's activation similarity of the base SAE's matched features, one strip per true class
    (a feature that stopped firing has no correlation: drawn at -1)."""
    fig, axes = plotting.panels(1, width=5.2, height=2.8)
    ax = axes[0]
    sims = case["scores"]["similarity"]
    classes = [c for c in sims if sims[c]]
    rng = np.random.default_rng(0)
    for i, c in enumerate(classes):
        v = np.asarray(sims[c], dtype=float)
        ax.scatter(v, i + rng.uniform(-0.18, 0.18, len(v)), s=9, alpha=0.6)
    ax.axvline(V.REGULAR_ACT_SIM.keep, color="0.5", ls="--", lw=0.7)
    ax.set_yticks(range(len(classes)), [f"{c} ({len(sims[c])})" for c in classes])
    ax.set_xlabel("activation similarity, base against finetune")
    fig.tight_layout()
    return fig
