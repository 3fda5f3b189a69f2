"""Tables and headline numbers of the diffing chapter, from ``diffing.measure``'s plain data."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from sae_transfer.core.labels import short
from sae_transfer.methods import crosscoder_classes as dc
from sae_transfer.passes.accumulators import REGULAR

TWIN = "twin (unrelated model)"


def pair_rows(result: dict) -> list[tuple[str, dict]]:
    """(label, pair result) of every finetune, then the twin."""
    rows = [(short(ft), r) for ft, r in result["pairs"].items()]
    if result.get("twin"):
        rows.append((TWIN, result["twin"]))
    return rows


def _regular(db, dft) -> np.ndarray:
    lb, lf = np.log10(np.asarray(db) + 1e-10), np.log10(np.asarray(dft) + 1e-10)
    lo, hi = REGULAR
    return (lb >= lo) & (lb <= hi) & (lf >= lo) & (lf <= hi)


def pair_summary(r: dict) -> dict[str, float]:
    """One pair's shares, its crosscoder's quality and the base SAE's mean activation similarity over the features
    regular in the base (the feature chapter's headline asks regular in both models; against an unrelated twin
    that would leave out exactly the features that broke), a feature constant in the other model counting 0."""
    s = dc.shares(r)
    f = r["features"]
    # regular in the base (the twin may silence or saturate a feature: that is a similarity of 0, not a gap)
    reg = _regular(f["density_base"], f["density_base"])
    sim = np.nan_to_num(np.asarray(f["act_sim"], dtype=float)[reg], nan=0.0)
    fvu = list(r["data"].values())[-1]["fvu"]
    classes = np.asarray(dc.latent_classes(r))
    dcos = np.asarray(r["latents"]["decoder_cos"])[classes == "shared"]
    return {**s, "activation sim (regular)": float(sim.mean()) if reg.any() else 0.0,
            "decoder cos (median, shared)": float(np.median(dcos)) if len(dcos) else 0.0,
            "regular features": int(reg.sum()), "FVU base": fvu[0], "FVU finetune": fvu[1],
            "dead at end of training": r["train"]["dead"], "training tokens": r["train"]["tokens"]}


def latent_table(result: dict) -> pd.DataFrame:
    """Per pair: live latents and the share of each class among them (%), flagged and new latents, the
    crosscoder's variance unexplained per model (% , on the finetune's held-out data)."""
    rows = []
    for label, r in pair_rows(result):
        s = pair_summary(r)
        live = max(s["live latents"], 1)
        rows.append({"pair": label, "live latents": s["live latents"],
                     **{f"{c} %": 100 * s[f"{c} latents"] / live for c in ("shared", "base-only", "finetune-only",
                                                                             "between")},
                     "flagged by scaling": s["flagged by scaling"], "new": s["new latents"],
                     "unexplained % base": 100 * s["FVU base"], "unexplained % finetune": 100 * s["FVU finetune"]})
    return pd.DataFrame(rows).set_index("pair")


def feature_table(result: dict) -> pd.DataFrame:
    """Per pair: the base SAE's features that fire on the finetune's data, in four classes (% of them)."""
    rows = []
    for label, r in pair_rows(result):
        s = pair_summary(r)
        rows.append({"pair": label, "features firing": s["features firing"],
                     **{f"{c} %": 100 * s[f"{c} share"] for c in dc.FEATURE_CLASSES},
                     "new latents": s["new latents"]})
    return pd.DataFrame(rows).set_index("pair")


def ceiling_summary(ceiling: dict) -> dict[str, float]:
    """Two SAEs of the base: the share of firing features matched within ``MATCH``, the mean correlation of matched
    regular features' activations, and the share "kept" by the same rule as a finetune's (matched and correlated at
    least ``KEPT_SIM``)."""
    cos, corr = np.asarray(ceiling["match_cos"]), np.asarray(ceiling["corr"], dtype=float)
    d = np.asarray(ceiling["density"])
    firing = d > 0
    reg = _regular(d, d)
    matched = cos >= dc.MATCH
    return {"matched share": float(matched[firing].mean()),
            "activation sim (regular)": float(np.nanmean(np.where(matched, corr, 0.0)[reg])),
            "kept share": float((matched & (np.nan_to_num(corr) >= dc.KEPT_SIM))[firing].mean())}


def floors_table(result: dict) -> pd.DataFrame:
    """Every pair between its bars: the twin (floor), the finetunes, two SAEs of one model (ceiling). Activation
    similarity over regular features; "matched": the base SAE's firing features with a shared latent within
    ``MATCH`` (kept + shifted), for the ceiling a feature of the second SAE within ``MATCH``."""
    rows = []
    if result.get("ceiling"):
        c = ceiling_summary(result["ceiling"])
        rows.append({"pair": "two SAEs of the base (ceiling)", "activation sim (regular)": c["activation sim (regular)"],
                     "matched %": 100 * c["matched share"], "kept %": 100 * c["kept share"]})
    for label, r in pair_rows(result):
        s = pair_summary(r)
        rows.append({"pair": label + (" (floor)" if label == TWIN else ""),
                     "activation sim (regular)": s["activation sim (regular)"],
                     "matched %": 100 * (s["kept share"] + s["shifted share"]), "kept %": 100 * s["kept share"]})
    return pd.DataFrame(rows).set_index("pair")


def checkpoint_table(result: dict) -> pd.DataFrame:
    """Along the finetune: one row per checkpoint crosscoder (and the final one), shares in %."""
    rows = []
    items = list(result["checkpoints"].items())
    for spec, r in items + [(ft, r) for ft, r in result["pairs"].items()
                            if any(c.split("@")[0] == ft for c, _ in items)]:
        s = pair_summary(r)
        step = spec.split("@")[1] if "@" in spec else "final"
        rows.append({"finetune": short(spec.split("@")[0]), "step": step, "new %": 100 * s["new share"],
                     "finetune-only %": 100 * s["finetune-only latents"] / max(s["live latents"], 1),
                     "kept %": 100 * s["kept share"], "lost %": 100 * s["lost share"],
                     "activation sim (regular)": s["activation sim (regular)"]})
    return pd.DataFrame(rows).set_index(["finetune", "step"]) if rows else pd.DataFrame()


def headline(result: dict) -> dict[str, Any]:
    """Glue names, none bound to a model's name: the pair whose base SAE keeps the least (``worst_*``) and another
    that keeps the most (``best_*``; the same pair when there is one), each with its name, kept, shifted, lost
    and new shares (%) and new count; the floor and the ceiling; the crosscoders' worst FVU and dead share; the
    trend along the checkpoints."""
    summaries = {label: pair_summary(r) for label, r in pair_rows(result)}
    pairs = {label: v for label, v in summaries.items() if label != TWIN}
    worst = min(pairs, key=lambda k: (pairs[k]["kept share"], -pairs[k]["new share"]))
    others = [k for k in pairs if k != worst] or [worst]
    best = max(others, key=lambda k: (pairs[k]["kept share"], -pairs[k]["new share"]))
    h: dict[str, Any] = {"n_pairs": len(pairs), "worst_ft": worst, "best_ft": best,
                         "total_new": sum(p["new latents"] for p in pairs.values())}
    for role, name in (("worst", worst), ("best", best)):
        p = pairs[name]
        h.update({f"{role}_new_pct": 100 * p["new share"], f"{role}_new_count": p["new latents"],
                  f"{role}_kept_pct": 100 * p["kept share"], f"{role}_lost_pct": 100 * p["lost share"],
                  f"{role}_shifted_pct": 100 * p["shifted share"], f"{role}_unmatched_pct": 100 * p["unmatched share"],
                  f"{role}_sim": p["activation sim (regular)"],
                  f"{role}_shared_pct": 100 * p["shared share"], f"{role}_dcos": p["decoder cos (median, shared)"],
                  f"{role}_ftonly_pct": 100 * p["finetune-only latents"] / max(p["live latents"], 1)})
    every = summaries.values()  # the twin's crosscoder too
    h["fvu_max"] = max(max(p["FVU base"], p["FVU finetune"]) for p in every)
    h["fvu_max_pct"] = 100 * h["fvu_max"]
    h["trained"] = h["fvu_max"] < dc.UNTRAINED_FVU
    h["dead_max_pct"] = 100 * max(p["dead latents"] / p["latents"] for p in every)
    h["has_floor"] = bool(result.get("twin"))
    h["has_ceiling"] = bool(result.get("ceiling"))
    if result.get("twin"):
        t = summaries[TWIN]
        h.update(floor_sim=t["activation sim (regular)"], floor_shared_pct=100 * t["shared share"],
                 floor_dcos=t["decoder cos (median, shared)"],
                 floor_kept_pct=100 * t["kept share"], floor_new_pct=100 * t["new share"])
    if result.get("ceiling"):
        c = ceiling_summary(result["ceiling"])
        h.update(ceiling_sim=c["activation sim (regular)"], ceiling_matched_pct=100 * c["matched share"],
                 ceiling_kept_pct=100 * c["kept share"])
    ck = checkpoint_table(result)
    if len(ck):
        first, last = ck.iloc[0], ck.iloc[-1]
        h.update(ckpt_ft=ck.index[0][0], ckpt_first_step=str(ck.index[0][1]), ckpt_first_new=float(first["new %"]),
                 ckpt_last_new=float(last["new %"]), ckpt_first_kept=float(first["kept %"]),
                 ckpt_last_kept=float(last["kept %"]),
                 ckpt_trend="grows" if last["new %"] > first["new %"] else "does not grow")
    return h




def not_trained(h: dict) -> str:
    return (f"The crosscoder did not train: it leaves {h['fvu_max_pct']:.0f}% of a model's variance unexplained on "
            "held-out tokens, no better than predicting the mean, so its kept, shifted, lost and new classes say "
            "nothing about this pair and are not reported as findings. Give it more `train_tokens` (or a smaller "
            "`expansion`) and run the chapter again.")


def class_tables(result: dict) -> dict[str, tuple[Callable[[], pd.DataFrame], int]]:
    """The tables that report the crosscoder's classes, ``{glue name: (make, significant digits)}``, made only
    where it trained (``Report.findings``)."""
    return {"latents": (lambda: latent_table(result), 3), "feature_classes": (lambda: feature_table(result), 3),
            "floors": (lambda: floors_table(result), 2), "along_checkpoints": (lambda: checkpoint_table(result), 3)}


def not_reported(h: dict) -> str:
    """What stands in a table's or a figure's place when the crosscoder did not train."""
    return (f"Not reported: the crosscoder did not train ({h['fvu_max_pct']:.0f}% of a model's variance "
            "unexplained; see above).")


def summary_text(h: dict) -> str:
    """The chapter's opening sentence, written from the results."""
    if not h["trained"]:
        return not_trained(h)
    def pair(role: str) -> str:
        return (f"{h[role + '_ft']} keeps {h[role + '_kept_pct']:.0f}% of the base SAE's firing features, shifts "
                f"{h[role + '_shifted_pct']:.0f}% and loses {h[role + '_lost_pct']:.0f}%")
    text = pair("worst") + ("." if h["n_pairs"] == 1 else f"; {pair('best')}.")
    if h["total_new"] == 0:
        text += (" The crosscoder finds no latent new in any finetune (finetune-only by decoder norm, not flagged by "
                 "latent scaling, and far from every base-SAE feature)")
        if h["has_floor"] and h["floor_shared_pct"] > 90:
            text += (f", and neither does it for the independently pretrained twin, whose latents are "
                     f"{h['floor_shared_pct']:.0f}% shared: at this scale every latent is read by both models, so the "
                     f"relative norm cannot tell models apart. The decoder cosine can: its median over shared latents "
                     f"is {h['floor_dcos']:.2f} for the twin, {h['worst_dcos']:.2f} on {h['worst_ft']}" +
                     (f" and {h['best_dcos']:.2f} on {h['best_ft']}." if h["n_pairs"] > 1 else "."))
        else:
            text += "."
    else:
        text += (f" The crosscoder finds {h['worst_new_count']} latents new in {h['worst_ft']} that no base-SAE "
                 f"feature is close to" + (f", and {h['best_new_count']} in {h['best_ft']}." if h["n_pairs"] > 1
                                           else "."))
    if h["worst_unmatched_pct"] > 50:
        text += (f" But {h['worst_unmatched_pct']:.0f}% of the base SAE's features on {h['worst_ft']} find no shared "
                 f"crosscoder latent within the match threshold, and the crosscoder leaves up to "
                 f"{100 * h['fvu_max']:.0f}% of the variance unexplained: the two dictionaries differ, and these classes "
                 f"say little here.")
    if h["has_floor"] and h["has_ceiling"]:
        text += (f" For scale: by the same rule an independently pretrained twin of the base keeps "
                 f"{h['floor_kept_pct']:.0f}%, and a second SAE of the base itself {h['ceiling_kept_pct']:.0f}%.")
    return text


def describe(h: dict) -> dict[str, str]:
    """Paragraphs whose subject depends on the results or on what was measured: ``summary``, ``floors`` (the two
    bars, or why they are missing) and ``checkpoints`` (the trend along the finetune, or that none was measured)."""
    out = {"summary": summary_text(h)}
    if not h["trained"]:
        out.update(features=not_trained(h), new="", floors="", checkpoints="")
        return out
    two = h["n_pairs"] > 1
    out["features"] = (
        (f"{h['worst_ft']} keeps the fewest, " if two else f"{h['worst_ft']} keeps ")
        + f"{h['worst_kept_pct']:.0f}% (shifted {h['worst_shifted_pct']:.0f}%, lost {h['worst_lost_pct']:.0f}%)"
        + (f"; {h['best_ft']} keeps {h['best_kept_pct']:.0f}% (shifted {h['best_shifted_pct']:.0f}%, lost "
           f"{h['best_lost_pct']:.0f}%)." if two else "."))
    out["new"] = (
        f"{h['worst_ft']} has {h['worst_new_count']} ({h['worst_new_pct']:.1f}% of its live latents; finetune-only "
        f"by norm: {h['worst_ftonly_pct']:.1f}%)" + (f", {h['best_ft']} {h['best_new_count']}." if two else "."))
    if h["has_floor"] and h["has_ceiling"]:
        def where(sim: float) -> str:
            if sim < h["floor_sim"]:
                return "below the floor"
            return "above the ceiling" if sim > h["ceiling_sim"] else "between the bars"
        roles = ["worst"] + (["best"] if h["n_pairs"] > 1 else [])
        placed = "; ".join(f"{h[r + '_ft']} {h[r + '_sim']:.2f}, {where(h[r + '_sim'])}" for r in roles)
        out["floors"] = (
            f"The base SAE's regular features correlate {h['floor_sim']:.2f} on average between the base and its "
            f"independently pretrained twin (floor), and {h['ceiling_sim']:.2f} between the base SAE and a second "
            f"SAE of the base on the same tokens (ceiling). The finetunes: {placed}. The ceiling compares two "
            f"dictionaries of one model, a finetune one dictionary in two models, so a finetune close to its base "
            f"can pass it. By the kept rule the twin keeps {h['floor_kept_pct']:.0f}% and the second SAE "
            f"{h['ceiling_kept_pct']:.0f}%. The median decoder cosine of shared latents is {h['floor_dcos']:.2f} "
            f"for the twin, {h['worst_dcos']:.2f} on {h['worst_ft']}"
            + (f" and {h['best_dcos']:.2f} on {h['best_ft']}." if h["n_pairs"] > 1 else "."))
    else:
        out["floors"] = ("No twin of the base or second SAE was given (`twin`, `second_sae`), so this run has no "
                         "floor or ceiling: read the shares against the project's own book, which has both.")
    if "ckpt_ft" in h:
        out["checkpoints"] = (
            f"Along {h['ckpt_ft']}'s finetuning, new latents are {h['ckpt_first_new']:.1f}% of live latents at step "
            f"{h['ckpt_first_step']} and {h['ckpt_last_new']:.1f}% at the end: the share the base SAE cannot see "
            f"{h['ckpt_trend']} with finetuning compute. The base SAE's kept share goes from "
            f"{h['ckpt_first_kept']:.1f}% to {h['ckpt_last_kept']:.1f}%.")
    else:
        out["checkpoints"] = "No checkpoints were measured (`n_checkpoints` is 0, or the finetune saved none)."
    return out
