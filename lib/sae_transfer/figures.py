"""Figures shared by the chapters. Each function takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def training_curves(curves: dict[str, dict[str, list]]):
    """Training loss against step, pretraining and finetunes side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for name, c in curves.items():
        ax = axes[1] if c.get("parent") else axes[0]
        ax.plot(c["steps"], c["loss"], label=name)
    for ax, title in zip(axes, ("pretraining", "finetuning (from base-s)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    axes[0].set_ylabel("training loss (nats/token)")
    fig.tight_layout()
    return fig


def heldout_ce(models: pd.DataFrame):
    """Grouped bars: held-out CE of each model (rows) on each domain (columns named ``CE <domain>``)."""
    ce = models[[c for c in models.columns if c.startswith("CE ")]]
    long = ce.rename(columns=lambda c: c[3:]).reset_index().melt(id_vars="model", var_name="domain",
                                                                  value_name="CE")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(long, x="domain", y="CE", hue="model", ax=ax)
    ax.set_ylabel("held-out CE (nats/token)")
    ax.legend(title="model", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


def sae_transfer(table: pd.DataFrame, title: str):
    """Explained variance and CE loss score of one SAE across models (x) and data domains (hue)."""
    long = table.reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("explained var.", "CE loss score")):
        sns.barplot(long, x="model", y=metric, hue="data", ax=ax)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(metric)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _centers(edges: list[float]):
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]


def residual_histograms(results: dict, hook_of, metric: str, xlabel: str, xlim=None):
    """Step histograms of a per-token metric (``cos`` or ``rel``), one line per (finetune, dataset)."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for (ft, ds), layers in results.items():
        r = layers[hook_of(list(layers))]
        counts = r["hist"][metric]
        total = sum(counts)
        ax.step(_centers(r["bins"][metric]), [c / total for c in counts], where="mid",
                label=f"{ft.removeprefix('zoo:')} on {ds.removeprefix('zoo:')}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of tokens")
    if xlim:
        ax.set_xlim(*xlim)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def residual_by_position(results: dict, hook_of):
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for (ft, ds), layers in results.items():
        r = layers[hook_of(list(layers))]
        ax.plot(r["by_position"]["cos"], label=f"{ft.removeprefix('zoo:')} on {ds.removeprefix('zoo:')}")
    ax.set_xlabel("context position")
    ax.set_ylabel("mean cosine similarity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def residual_by_layer(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for (ft, ds), row in table.iterrows():
        ax.plot(list(row.index), row.values, marker="o", label=f"{ft} on {ds}")
    ax.set_xlabel("residual stream after")
    ax.set_ylabel("mean cosine similarity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def residual_norms(results: dict, hook_of):
    """log10 residual norm distributions of base and finetune at the middle layer, one panel per dataset."""
    datasets = sorted({ds for _, ds in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.3), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        drawn_base = False
        for (ft, d), layers in results.items():
            if d != ds:
                continue
            r = layers[hook_of(list(layers))]
            x = _centers(r["bins"]["log10_norm"])
            if not drawn_base:
                ax.step(x, r["hist"]["log10_norm_base"], where="mid", color="black", label="base")
                drawn_base = True
            ax.step(x, r["hist"]["log10_norm_ft"], where="mid", label=ft.removeprefix("zoo:"))
        ax.set_title(ds.removeprefix("zoo:"))
        ax.set_xlabel("log10 residual norm")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("tokens")
    fig.tight_layout()
    return fig


def checkpoint_curve(rows: list[dict]):
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, g in df.groupby("finetune"):
        ax.plot(g["step"], g["cosine"], marker="o", label=f"{name} (middle layer)")
        ax.plot(g["step"], g["last-layer cosine"], marker=".", ls="--", label=f"{name} (last layer)")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("mean cosine similarity to base")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ SAE metrics

def _pair_grid(results: dict, width: float = 3.6, height: float = 3.0):
    """One panel per (finetune, dataset): rows are finetunes, columns datasets."""
    fts = list(results["finetunes"])
    dss = list(results["base"])
    fig, axes = plt.subplots(len(fts), len(dss), figsize=(width * len(dss), height * len(fts)), squeeze=False)
    return fig, [(ft, ds, axes[i][j]) for i, ft in enumerate(fts) for j, ds in enumerate(dss)]


def _short(spec: str) -> str:
    return spec.split(":", 1)[-1]


def sae_density_histograms(results: dict, subset: str = "kept"):
    """Histograms of log10(feature density + 1e-10) of the base SAE's features on base and finetune."""
    from .sae_metrics import DENSITY_BINS, log_density

    bins = DENSITY_BINS.edges()
    fig, panels = _pair_grid(results)
    for ft, ds, ax in panels:
        for label, r in (("base", results["base"][ds][subset]), (_short(ft), results["finetunes"][ft][ds][subset])):
            counts = DENSITY_BINS.counts(log_density(r))
            ax.stairs(counts.numpy(), bins, label=label, fill=label == "base", alpha=0.35 if label == "base" else 1)
        ax.set_title(f"{_short(ft)} pair on {_short(ds)}", fontsize=10)
        ax.set_xlabel("log10 feature density")
        ax.legend(fontsize=8)
    fig.supylabel("features")
    fig.tight_layout()
    return fig


def sae_activation_histograms(results: dict, subset: str = "kept"):
    """Histograms of log10 of nonzero feature activations, per dataset, base and each finetune; the number of
    zero activations (not on a log axis) is given in the legend."""
    from .sae_metrics import ACT_BINS

    dss = list(results["base"])
    fig, axes = plt.subplots(1, len(dss), figsize=(3.8 * len(dss), 3.2), squeeze=False)
    edges = ACT_BINS.edges()
    for ax, ds in zip(axes[0], dss):
        models = [("base", results["base"][ds][subset])] + [
            (_short(ft), r[ds][subset]) for ft, r in results["finetunes"].items()]
        for label, r in models:
            zero = r["zero_acts"] / (r["n_tokens"] * len(r["density"]))
            ax.stairs(r["act_hist"], edges, label=f"{label} ({100 * zero:.1f}% zero)")
        ax.set_yscale("log")
        ax.set_title(f"on {_short(ds)}", fontsize=10)
        ax.set_xlabel("log10 activation (nonzero)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("feature activations")
    fig.tight_layout()
    return fig


def sae_density_scatter(results: dict, subset: str = "kept"):
    """log10 density per feature, base (x) vs finetune (y), with Pearson r in each panel's title."""
    from .sae_metrics import density_comparison, log_density

    fig, panels = _pair_grid(results, 3.3, 3.3)
    for ft, ds, ax in panels:
        b, f = results["base"][ds][subset], results["finetunes"][ft][ds][subset]
        r = density_comparison(b, f)["pearson_log_density"]
        ax.scatter(log_density(b), log_density(f), s=3, alpha=0.3, lw=0)
        ax.plot([-10, 0], [-10, 0], color="black", lw=0.8, ls="--")
        ax.set_title(f"{_short(ft)} on {_short(ds)}: r = {r:.2f}", fontsize=10)
        ax.set_xlabel("base log10 density")
        ax.set_ylabel(f"{_short(ft)} log10 density")
    fig.tight_layout()
    return fig


def sae_density_parallel(results: dict, pairs: list[tuple[str, str]], subset: str = "kept", max_lines: int = 3000,
                         seed: int = 0):
    """Parallel coordinates: each feature's log10 density on the base (left) and finetune (right), coloured by
    the base's density band; ``pairs`` lists the (finetune, dataset) panels. At most ``max_lines`` features
    are drawn per panel (a seeded sample)."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    from .sae_metrics import DENSITY_BANDS, log_density

    colors = dict(zip((b[0] for b in DENSITY_BANDS), sns.color_palette("deep", len(DENSITY_BANDS))))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 4), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, (ft, ds) in zip(axes[0], pairs):
        b = log_density(results["base"][ds][subset]).numpy()
        f = log_density(results["finetunes"][ft][ds][subset]).numpy()
        idx = np.arange(len(b)) if len(b) <= max_lines else np.sort(rng.choice(len(b), max_lines, replace=False))
        for name, lo, hi in DENSITY_BANDS:
            sel = idx[(b[idx] > lo) & (b[idx] <= hi)]
            segs = [[(0, b[i]), (1, f[i])] for i in sel]
            ax.add_collection(LineCollection(segs, colors=[colors[name]], alpha=0.15, lw=0.6))
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-10.3, 0.3)
        ax.set_xticks([0, 1], ["base", _short(ft)])
        ax.set_title(f"on {_short(ds)}", fontsize=10)
    axes[0][0].set_ylabel("log10 feature density")
    handles = [Line2D([], [], color=c, label=n) for n, c in colors.items()]
    axes[0][-1].legend(handles=handles, title="base band", fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def sae_checkpoint_curves(rows: list[dict]):
    """Delta CE, per-token explained variance, L0 and dead fraction of the base SAE along finetuning."""
    df = pd.DataFrame(rows)
    metrics = ("delta CE", "EV per token", "L0", "dead %")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.2))
    for ax, metric in zip(axes, metrics):
        for name, g in df.groupby("finetune"):
            ax.plot(g["step"], g[metric], marker="o", label=name)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("finetuning step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ feature transfer

GROUP_LABELS = {"regular": "regular", "dead_in_base": "dead in base only", "dead_in_finetune": "dead in finetune only"}


def feature_score_histograms(results: dict, drift: dict | None = None):
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
            # logit similarities crowd near 1: bins over their own range
            lo = min(0.9, float(np.nanmin(vals))) - 0.01 if key == "logit_sim" else -1.0
            for group, idx in r["groups"].items():
                v = vals[idx]
                v = v[~np.isnan(v)]
                if len(v):
                    ax.hist(v, bins=np.linspace(lo, 1, 81), histtype="step", density=True,
                            label=f"{GROUP_LABELS[group]} ({len(v)})")
            ax.set_title(f"{_short(ft)}: {label}", fontsize=10)
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def act_sim_vs_decoder_cos(results: dict, drift: dict):
    """Per pair: each feature's activation similarity (y) against how far fine-tuning the SAE turned its decoder
    row (x), regular features highlighted."""
    import numpy as np

    pairs = [ft for ft in results if ft in drift]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), squeeze=False)
    for ax, ft in zip(axes[0], pairs):
        sim = np.asarray(results[ft]["scores"]["act_sim"], dtype=float)
        dec = np.asarray(drift[ft]["decoder_cos"], dtype=float)
        ax.scatter(dec, sim, s=3, color="0.7", lw=0, label="all features")
        reg = results[ft]["groups"]["regular"]
        ax.scatter(dec[reg], sim[reg], s=4, lw=0, label="regular")
        ax.set_xlabel("decoder cosine, base vs fine-tuned SAE")
        ax.set_ylabel("activation similarity")
        ax.set_title(_short(ft), fontsize=10)
        ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


def recovery_curve(rows: list[dict]):
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
        ax.set_title(metric, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def checkpoint_feature_similarity(rows: list[dict]):
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, g in df.groupby("finetune"):
        ax.plot(g["step"], g["regular: activation sim"], marker="o", label=f"{name}: mean")
        ax.plot(g["step"], g["regular: share above 0.8"], marker=".", ls="--", label=f"{name}: share above 0.8")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("regular features")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ predicting transfer

def predictor_scatter(rows: list[dict], predictors, outcomes):
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
                               label=f"{_short(ds)}" if name == sorted(g["name"].unique())[0] else None)
            if i == len(outcomes) - 1:
                ax.set_xlabel(p)
            if j == 0:
                ax.set_ylabel(o)
    axes[0][0].legend(fontsize=7, title="data", title_fontsize=7)
    fig.tight_layout()
    return fig


def transfer_vs_compute(rows: list[dict], outcomes=("EV per token", "delta CE", "regular act sim")):
    """Outcomes against tokens of finetuning, one line per (finetune, dataset)."""
    df = pd.DataFrame(rows)
    base_rows = df[df["name"] == "none"]
    fig, axes = plt.subplots(1, len(outcomes), figsize=(4 * len(outcomes), 3.4), squeeze=False)
    for ax, o in zip(axes[0], outcomes):
        for name, g in df[df["name"] != "none"].groupby("name"):
            for ds, gg in g.groupby("dataset"):
                start = base_rows[base_rows["dataset"] == ds]
                gg = pd.concat([start, gg]).sort_values("tokens_seen")
                ax.plot(gg["tokens_seen"], gg[o], marker="o", ms=3, label=f"{name} on {_short(ds)}")
        ax.set_xlabel("finetuning tokens")
        ax.set_title(o, fontsize=10)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ answerability probes

def probe_heatmaps(matrices: dict[str, pd.DataFrame]):
    """Test AUROC, training domain (rows) x test domain (columns), one panel per probe; 0.5 is chance."""
    n = len(matrices)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, m) in zip(axes.flat, matrices.items()):
        sns.heatmap(m, ax=ax, vmin=0.0, vmax=1.0, center=0.5, cmap="vlag", annot=True, fmt=".2f", cbar=False,
                    annot_kws={"fontsize": 8})
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("test domain", fontsize=9)
        ax.set_ylabel("train domain", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def probe_k_curve(summary: pd.DataFrame):
    """In- and out-of-domain AUROC of k-sparse SAE probes against k, the residual probe as dashed lines."""
    sae = summary[summary.index.str.startswith("SAE k=")]
    ks = [int(i.split("=")[1]) for i in sae.index]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for j, col in enumerate(("in-domain AUROC", "out-of-domain AUROC")):
        color = sns.color_palette()[j]
        ax.plot(ks, sae[col], marker="o", color=color, label=f"SAE probe, {col.removesuffix(' AUROC')}")
        ax.axhline(summary.loc["residual", col], ls="--", color=color, label=f"residual probe, "
                   f"{col.removesuffix(' AUROC')}")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("SAE features in the probe (k)")
    ax.set_ylabel("mean test AUROC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def probe_layers(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for col in table.columns:
        ax.plot(range(len(table)), table[col], marker="o", label=col)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(range(len(table)), [h.removeprefix("blocks.") for h in table.index], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("residual probe AUROC")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def probe_bridge(rows: list[dict], base_auroc: dict[str, float], probes=("residual", "SAE k=1")):
    """Mean in-domain AUROC of base-trained probes along each finetune's checkpoints (step 0: the base)."""
    df = pd.DataFrame(rows)
    df = df[(df["trained on"] == "base") & df["probe"].isin(probes)]
    names = list(dict.fromkeys(df["finetune"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        g = df[df["finetune"] == name]
        for j, p in enumerate(probes):
            gp = g[g["probe"] == p].groupby("step", dropna=False)["auroc"].mean()
            if gp.index.isna().any():  # a hub finetune: no steps, one point after the base
                xs, ys = [0, 1], [base_auroc[p], float(gp.iloc[0])]
            else:
                xs, ys = [0, *gp.index], [base_auroc[p], *gp.values]
            ax.plot(xs, ys, marker="o", color=sns.color_palette()[j], label=p)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_title(_short(name), fontsize=10)
        ax.set_xlabel("finetuning step")
    axes[0][0].set_ylabel("mean in-domain AUROC")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
