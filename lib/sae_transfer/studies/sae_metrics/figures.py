"""Figures of the SAE-metric chapter, from ``sae_metrics.measure``'s results. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from sae_transfer.core.labels import short
from sae_transfer.core.plotting import MAX_COLS, legend_beside, pair_grid, panels
from sae_transfer.passes.accumulators import ACT_BINS, DENSITY_BANDS, DENSITY_BINS
from sae_transfer.passes.sae_metrics import density_comparison, log_density


def density_histograms(results: dict, subset: str = "kept"):
    """Histograms of log10(feature density + 1e-10) of the base SAE's features on base and finetune."""
    bins = DENSITY_BINS.edges()
    fig, cells = pair_grid(results)
    for ft, ds, ax in cells:
        for label, r in (("base", results["base"][ds][subset]), (short(ft), results["finetunes"][ft][ds][subset])):
            counts = DENSITY_BINS.counts(log_density(r))
            ax.stairs(counts.numpy(), bins, label=label, fill=label == "base", alpha=0.35 if label == "base" else 1)
        ax.set_title(f"{short(ft)} pair on {short(ds)}", fontsize=10)
        ax.set_xlabel("log10 feature density")
        ax.legend(fontsize=8)
    fig.supylabel("features")
    fig.tight_layout()
    return fig


def activation_histograms(results: dict, subset: str = "kept"):
    """Histograms of log10 of nonzero feature activations, per dataset, base and each finetune; the number of
    zero activations (not on a log axis) is given in the legend."""

    dss = list(results["base"])
    fig, axes = panels(len(dss), 3.8, 3.2)
    edges = ACT_BINS.edges()
    for ax, ds in zip(axes, dss):
        models = [("base", results["base"][ds][subset])] + [
            (short(ft), r[ds][subset]) for ft, r in results["finetunes"].items()]
        for label, r in models:
            zero = r["zero_acts"] / (r["n_tokens"] * len(r["density"]))
            ax.stairs(r["act_hist"], edges, label=f"{label} ({100 * zero:.1f}% zero)")
        ax.set_yscale("log")
        ax.set_title(f"on {short(ds)}", fontsize=10)
        ax.set_xlabel("log10 activation (nonzero)")
        ax.legend(fontsize=7)
    for ax in axes[::MAX_COLS]:
        ax.set_ylabel("feature activations")
    fig.tight_layout()
    return fig


def density_scatter(results: dict, subset: str = "kept"):
    """log10 density per feature, base (x) vs finetune (y), with Pearson r in each panel's title."""
    fig, cells = pair_grid(results, 3.3, 3.3)
    for ft, ds, ax in cells:
        b, f = results["base"][ds][subset], results["finetunes"][ft][ds][subset]
        r = density_comparison(b, f)["pearson_log_density"]
        ax.scatter(log_density(b), log_density(f), s=3, alpha=0.3, lw=0)
        ax.plot([-10, 0], [-10, 0], color="black", lw=0.8, ls="--")
        ax.set_title(f"{short(ft)} on {short(ds)}: r = {r:.2f}", fontsize=10)
        ax.set_xlabel("base log10 density")
        ax.set_ylabel(f"{short(ft)} log10 density")
    fig.tight_layout()
    return fig


def density_parallel(results: dict, pairs: list[tuple[str, str]], subset: str = "kept", max_lines: int = 3000,
                         seed: int = 0):
    """Parallel coordinates: each feature's log10 density on the base (left) and finetune (right), coloured by
    the base's density band; ``pairs`` lists the (finetune, dataset) panels. At most ``max_lines`` features
    are drawn per panel (a seeded sample)."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D


    colors = dict(zip((b[0] for b in DENSITY_BANDS), sns.color_palette("deep", len(DENSITY_BANDS))))
    fig, axes = panels(len(pairs), 4, 4)
    rng = np.random.default_rng(seed)
    for ax, (ft, ds) in zip(axes, pairs):
        b = log_density(results["base"][ds][subset]).numpy()
        f = log_density(results["finetunes"][ft][ds][subset]).numpy()
        idx = np.arange(len(b)) if len(b) <= max_lines else np.sort(rng.choice(len(b), max_lines, replace=False))
        for name, lo, hi in DENSITY_BANDS:
            sel = idx[(b[idx] > lo) & (b[idx] <= hi)]
            segs = [[(0, b[i]), (1, f[i])] for i in sel]
            ax.add_collection(LineCollection(segs, colors=[colors[name]], alpha=0.15, lw=0.6))
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-10.3, 0.3)
        ax.set_xticks([0, 1], ["base", short(ft)])
        ax.set_title(f"on {short(ds)}", fontsize=10)
    for ax in axes[::MAX_COLS]:
        ax.set_ylabel("log10 feature density")
    handles = [Line2D([], [], color=c, label=n) for n, c in colors.items()]
    legend_beside(axes[-1], handles=handles, title="base band")
    fig.tight_layout()
    return fig


def checkpoints(rows: list[dict]):
    """Delta CE, per-token explained variance, L0 and dead fraction of the base SAE along finetuning."""
    df = pd.DataFrame(rows)
    metrics = ("delta CE", "EV per token", "L0", "dead %")
    fig, axes = panels(len(metrics), 3.6, 3.0, cols=2)
    for ax, metric in zip(axes, metrics):
        for name, g in df.groupby("finetune"):
            ax.plot(g["step"], g[metric], marker="o", label=name)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("finetuning step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ feature transfer
