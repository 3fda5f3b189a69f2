"""The SAE-metric chapter's tables and headline numbers, from ``sae_metrics.measure``'s plain results: the
paper's table beside ours, outlier filtering, per-feature densities, the sweep along finetuning."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sae_transfer.core.labels import short, slug
from sae_transfer.core.verdict import pair_words
from sae_transfer.passes.sae_metrics import density_comparison

#: The seed's headline table (Kutsyk et al. 2025, section 4; ../shared/reference/methods.md section A):
#: their numbers, quoted, for billion-parameter models on the base's pretraining data.
PAPER_TABLE = {
    "Mistral-7B (theirs)": {"L0": 83.37, "clean CE": 1.78, "substitution CE": 1.93, "delta CE": 0.15,
                            "R² pooled": 0.68, "dead %": 0.76},
    "MetaMath-Mistral-7B (theirs)": {"L0": 90.22, "clean CE": 1.94, "substitution CE": 2.10, "delta CE": 0.16,
                                     "R² pooled": 0.58, "dead %": 0.64},
    "Gemma-2b (theirs)": {"L0": 53.59, "clean CE": 2.65, "substitution CE": 3.16, "delta CE": 0.51,
                          "R² pooled": 0.97, "dead %": 48.1},
    "Gemma-2b python-codes (theirs)": {"L0": 84.74, "clean CE": 3.29, "substitution CE": 7.50, "delta CE": 4.21,
                                       "R² pooled": -10.27, "dead %": 0.1},
}

#: Table columns: (label, result key, scale).
COLUMNS = (("L0", "l0", 1), ("L0 / width %", "l0_frac", 100), ("clean CE", "ce_clean", 1),
           ("substitution CE", "ce_spliced", 1), ("delta CE", "delta_ce", 1), ("CE recovered", "ce_recovered", 1),
           ("KL", "kl", 1), ("R² pooled", "r2_pooled", 1), ("EV per token", "ev_token", 1),
           ("cosine", "cos", 1), ("norm ratio", "norm_ratio", 1), ("dead %", "dead_frac", 100),
           ("dense %", "dense_frac", 100))


def rows(results: dict, subset: str = "kept"):
    """``(finetune, dataset, model spec, result)`` for the base and each finetune, base first within a pair."""
    for ft, by_ds in results["finetunes"].items():
        for ds, r in by_ds.items():
            yield ft, ds, None, results["base"][ds][subset]
            yield ft, ds, ft, r[subset]


def results_table(results: dict, subset: str = "kept", with_paper: bool = True):
    """The paper's table per (pair, dataset): a base row and a finetune row, then the paper's rows (theirs)."""
    out = []
    for ft, ds, model, r in rows(results, subset):
        out.append({"pair": f"base vs {short(ft)}", "data": short(ds), "model": short(model) if model else "base",
                    **{label: r[key] * scale for label, key, scale in COLUMNS}})
    if with_paper:
        for name, vals in PAPER_TABLE.items():
            out.append({"pair": "paper (theirs)", "data": "base's pretraining data", "model": name, **vals})
    return pd.DataFrame(out).set_index(["pair", "data", "model"])


def filtering_table(results: dict):
    """Key metrics over all tokens vs without outliers, and the outlier fraction, per model and dataset."""
    keys = (("L0", "l0"), ("delta CE", "delta_ce"), ("CE recovered", "ce_recovered"), ("EV per token", "ev_token"),
            ("R² pooled", "r2_pooled"))
    out = []
    models = [("base", results["base"])] + [(short(ft), r) for ft, r in results["finetunes"].items()]
    for name, by_ds in models:
        for ds, r in by_ds.items():
            row = {"model": name, "data": short(ds), "outlier %": 100 * r["outlier_frac"],
                   "outliers at BOS": r["outliers_at_pos0"]}
            for label, key in keys:
                row[f"{label} (all)"] = r["all"][key]
                row[f"{label} (no outliers)"] = r["kept"].get(key, float("nan"))
            out.append(row)
    return pd.DataFrame(out).set_index(["model", "data"])


def density_table(results: dict, subset: str = "kept"):
    """``density_comparison`` for every (finetune, dataset)."""
    out = []
    for ft, by_ds in results["finetunes"].items():
        for ds, r in by_ds.items():
            out.append({"pair": f"base vs {short(ft)}", "data": short(ds),
                        **density_comparison(results["base"][ds][subset], r[subset])})
    return pd.DataFrame(out).set_index(["pair", "data"])


def checkpoint_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    return df.set_index(["finetune", "step"]) if rows else df


def cross_check_table(rows: list[dict]) -> pd.DataFrame:
    """Our metrics beside ``run_evals``'s; a one-line table saying so when the cross-check was skipped."""
    if not rows:
        return pd.DataFrame({"cross-check": ["not run: check_tokens is 0"]}).set_index("cross-check")
    df = pd.DataFrame(rows, columns=["model", "metric", "ours", "sae_lens", "abs diff"])
    return df.set_index(["model", "metric"])


def cross_check_reading(rows: list[dict], max_rel_diff: float | None) -> str:
    """The appendix's sentence on the cross-check, or why there is none."""
    if not rows:
        return "The cross-check was not run here (`check_tokens` is 0); the metrics above stand on this code alone."
    return f"The largest relative difference over all metrics is {max_rel_diff:.1e}."


#: Metrics glued per (model, dataset); the finetune's also carry the norm ratio.
HEADLINE_METRICS = ("l0", "l0_frac", "delta_ce", "ce_recovered", "ev_token", "r2_pooled", "kl", "dead_frac")


#: Metrics whose 95% interval over token batches the prose quotes (``ev_token_code_code_lo`` / ``_hi``).
INTERVAL_METRICS = ("delta_ce", "ce_recovered", "ev_token")


def _intervals(result: dict, key: str) -> dict[str, float]:
    return {f"{m}_{key}_{end}": v for m in INTERVAL_METRICS if m in result.get("ci", {})
            for end, v in zip(("lo", "hi"), result["ci"][m])}


def headline(results: dict, checkpoints: list[dict], check: list[dict],
             own: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """Every number the chapter's prose glues: each metric per base/finetune and dataset (``l0_base_prose``,
    ``delta_ce_code_code``), density agreement per pair, the first and final checkpoint of each finetune,
    the largest relative difference from SAELens in the cross-check (0 when it was skipped), and ``check``'s two
    reconstruction criteria of each ``own`` (finetune, its data) pair (``views``)."""
    out: dict[str, Any] = {}
    for ds, by_subset in results["base"].items():
        out.update({f"{m}_base_{short(ds)}": by_subset["kept"][m] for m in HEADLINE_METRICS})
        out.update(_intervals(by_subset["kept"], f"base_{short(ds)}"))
    for ft, by_ds in results["finetunes"].items():
        for ds, by_subset in by_ds.items():
            out.update({f"{m}_{slug(ft, ds)}": by_subset["kept"][m] for m in (*HEADLINE_METRICS, "norm_ratio")})
            out.update(_intervals(by_subset["kept"], slug(ft, ds)))
            if ds in results["base"]:
                d = density_comparison(results["base"][ds]["kept"], by_subset["kept"])
                out[f"density_r_{slug(ft, ds)}"] = d["pearson_log_density"]
                out[f"dead_both_{slug(ft, ds)}"] = d["dead_both"]
    first = next(iter(results["base"].values()))["all"]
    out["n_tokens_measured"] = first["n_tokens"]
    out["d_sae"] = len(first["density"])
    out["max_outlier_pct"] = float(filtering_table(results)["outlier %"].max())
    for name, g in pd.DataFrame(checkpoints).groupby("finetune") if checkpoints else ():
        out.update({f"ckpt_first_step_{name}": int(g["step"].iloc[1]),
                    f"ckpt_first_delta_ce_{name}": float(g["delta CE"].iloc[1]),
                    f"ckpt_final_delta_ce_{name}": float(g["delta CE"].iloc[-1]),
                    f"ckpt_first_ev_{name}": float(g["EV per token"].iloc[1]),
                    f"ckpt_final_ev_{name}": float(g["EV per token"].iloc[-1])})
    rel = [r["abs diff"] / max(abs(r["sae_lens"]), 1e-6) for r in check]
    if check:  # a skipped cross-check has no difference to report, not a difference of 0
        out["check_max_rel_diff"] = max((x for x in rel if x == x), default=float("nan"))  # NaN rows left out
    out.update(views(out, own))
    return {k: v for k, v in out.items() if v == v}  # undefined (a correlation of constants): left out, not NaN


# ------------------------------------------------------------------------------------------ prose

def views(h: dict[str, Any], own: list[tuple[str, str]]) -> dict[str, Any]:
    """``check``'s two reconstruction criteria for each finetune on its own data, keyed by its short name ``k``
    as the features chapter keys its own (``recon_ev_drop_k``, ``recon_ce_recovered_drop_k``, the base's EV
    ``recon_base_ev_k`` and ``recon_dataset_k``): the book's verdict joins them with that chapter's activation
    similarity (``book.findings.verdicts``)."""
    out: dict[str, Any] = {}
    for ft, ds in own:
        k, b = slug(ft), f"base_{short(ds)}"
        out.update({f"recon_ev_drop_{k}": h[f"ev_token_{b}"] - h[f"ev_token_{slug(ft, ds)}"],
                    f"recon_ce_recovered_drop_{k}": h[f"ce_recovered_{b}"] - h[f"ce_recovered_{slug(ft, ds)}"],
                    f"recon_base_ev_{k}": h[f"ev_token_{b}"], f"recon_dataset_{k}": short(ds)})
    return out


def describe(results: dict, own: list[tuple[str, str]], checkpoints: list[dict] = ()) -> dict[str, str]:
    """The chapter's verdict paragraphs, written from the results for any finetunes: ``verdicts`` (each finetune
    on its own data against the base on the same data, with intervals over token batches) and ``prose_ce`` (what
    splicing does to each finetune's loss on the base's first dataset); ``base`` (the SAE on the base's first
    dataset), ``densities`` (how far feature densities move) and ``checkpoints`` (``measure_checkpoints``'s rows)."""
    base, fts = results["base"], results["finetunes"]
    lines, ranked = [], []
    for ft, ds in own:
        b, f = base[ds]["kept"], fts[ft][ds]["kept"]
        ci = lambda r, m: f" ({r['ci'][m][0]:.3f} to {r['ci'][m][1]:.3f})" if m in r.get("ci", {}) else ""
        word = pair_words(b, f)
        ranked.append((b["ev_token"] - f["ev_token"], short(ft)))
        lines.append(f"On `{short(ft)}`, on {short(ds)}, the base SAE **{word}**: explained variance per token "
                     f"{f['ev_token']:.3f}{ci(f, 'ev_token')} against {b['ev_token']:.3f}{ci(b, 'ev_token')} on the "
                     f"base, CE loss recovered {f['ce_recovered']:.3f}{ci(f, 'ce_recovered')} against "
                     f"{b['ce_recovered']:.3f}, L0 {f['l0']:.1f} against {b['l0']:.1f}, KL of the spliced from the "
                     f"clean next-token distribution {f['kl']:.3f} against {b['kl']:.3f}.")
    ranked.sort(reverse=True)
    if len(ranked) > 1:
        lines.append(f"It transfers least to `{ranked[0][1]}` (a drop in explained variance of {ranked[0][0]:.3f}) "
                     f"and best to `{ranked[-1][1]}` ({ranked[-1][0]:.3f}). The seed contrasted Gemma/Python "
                     "(broken: delta CE 4.21 on the finetune) with Mistral/MetaMath (working: 0.16), their numbers.")
    if any("ci" in fts[ft][ds]["kept"] for ft, ds in own):
        lines.insert(0, "Intervals in parentheses are 95% intervals over token batches.")
    first = next(iter(base))
    lowered = [(short(ft), r[first]["kept"]["delta_ce"]) for ft, r in fts.items()
               if first in r and r[first]["kept"]["delta_ce"] < 0]
    if lowered:
        prose_ce = ("On " + short(first) + ", splicing the base SAE *lowers* the loss of " + ", ".join(
            f"`{ft}` (delta CE {d:.3f})" for ft, d in lowered) + ": the reconstruction pulls the finetune's residual "
            "back towards the base's, and the base predicts that text better than a finetune that has partly "
            "forgotten it. A good CE number can sit beside a poor reconstruction.")
    else:
        prose_ce = (f"Here splicing the base SAE raises every finetune's loss on {short(first)}, so the CE numbers "
                    "and the reconstruction tell the same story.")
    b = base[first]["kept"]
    own_base = (f"On the base's own data, {short(first)}, the SAE costs {b['delta_ce']:.3f} nats of CE (CE loss "
                f"recovered {b['ce_recovered']:.3f}, explained variance per token {b['ev_token']:.3f}, L0 "
                f"{b['l0']:.1f}).")
    dens = [f"{density_comparison(base[ds]['kept'], fts[ft][ds]['kept'])['pearson_log_density']:.2f} for "
            f"`{short(ft)}` on {short(ds)}" for ft, ds in own if "density" in base.get(ds, {}).get("kept", {})]
    densities = ("How far feature densities move: the Pearson r of log densities is " + ", ".join(dens)
                 + " (the seed's: 0.47 for Gemma/Python, 0.94 for Mistral/MetaMath)." if dens else "")
    along = [f"`{name}`'s explained variance per token goes from {g['EV per token'].iloc[1]:.3f} after "
             f"{int(g['step'].iloc[1])} steps to {g['EV per token'].iloc[-1]:.3f} at step {int(g['step'].iloc[-1])}, "
             f"its delta CE from {g['delta CE'].iloc[1]:.3f} to {g['delta CE'].iloc[-1]:.3f}"
             for name, g in (pd.DataFrame(checkpoints).groupby("finetune", sort=False) if checkpoints else ())]
    return {"verdicts": " ".join(lines), "prose_ce": prose_ce, "base": own_base, "densities": densities,
            "checkpoints": ("Along finetuning, " + "; ".join(along) + ".") if along else
            "None of these finetunes has saved checkpoints to follow."}
