"""Tables, headline numbers and result-dependent paragraphs of the sizes chapter, from ``sizes.measure``'s data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sae_transfer.core.labels import short
from sae_transfer.models.hooks import layer_label, residual_index
from sae_transfer.methods.stitched_pair import CORE, EMERGENT

#: Chen et al.'s GPT-2 small -> medium zero-shot numbers (their Table, quoted as theirs): the small SAE on GPT-2
#: small, then transferred to GPT-2 medium.
SEED_GPT2 = {"FVU, original": 0.11, "FVU, transferred": 0.39, "delta CE, original": 0.08,
             "delta CE, transferred": 0.96}
SAE_ROWS = ("small SAE on small", "transferred SAE on large", "large SAE on large")
STEERING_ROWS = ("none", "large model's own", "mapped from small", "random")
SHARE_ROWS = ("small to large, activations", "large from small, activations", "small to large, decoders",
              "large from small, decoders", "large to second seed, activations", "large to second seed, decoders")


def _per_dataset(result: dict, what: str) -> list[tuple[str, dict]]:
    """``result[what]`` by dataset in the order the study lists them (the cache stores mappings sorted)."""
    return [(d, result[what][d]) for d in result["order"]]


def cka_frame(result: dict) -> pd.DataFrame:
    """Linear CKA, small-model layers (rows) by large-model layers (columns)."""
    h = result["hooks"]
    return pd.DataFrame(result["cka"], index=[layer_label(x) for x in h["small"]],
                        columns=[layer_label(x) for x in h["large"]])


def stitch_table(result: dict) -> pd.DataFrame:
    rows = []
    for d, r in _per_dataset(result, "datasets"):
        q = r["quality"]
        rows.append({"data": short(d), "EV up (small to large)": q["ev_up"], "EV down (large to small)": q["ev_down"],
                     "MSE up": q["mse_up"], "MSE down": q["mse_down"],
                     "CE small": r["ce_source"], "CE large": r["ce_target"], "CE large on stitched": r["ce_stitched"],
                     "KL stitched": r["kl_stitched"]})
    return pd.DataFrame(rows).set_index("data")


def sae_table(result: dict) -> pd.DataFrame:
    rows = []
    for d, per in _per_dataset(result, "sae_metrics"):
        for name in SAE_ROWS:
            m = per[name]
            rows.append({"data": short(d), "SAE, model": name, "EV": m["ev_global"], "FVU": 1 - m["ev_global"],
                         "L0 / width": m["l0_frac"], "delta CE": m["delta_ce"], "CE recovered": m["ce_recovered"],
                         "KL": m["kl"], "dead": m["dead_frac"]})
    return pd.DataFrame(rows).set_index(["data", "SAE, model"])


def init_table(result: dict) -> pd.DataFrame:
    i = result["init"]
    if i is None:
        return pd.DataFrame({"initialisation study": ["not run (sae_tokens = 0)"]})
    reached = i["init_tokens_to_target"] is not None
    # whole tokens and GFLOP, and a word where the target is never reached
    rows = [{"start": "from scratch", "stitch tokens": 0, "final EV": i["curves"]["from scratch"][-1]["ev"],
             "tokens to target EV": f"{i['scratch_tokens']:,}", "GFLOP to target": f"{i['scratch_flops'] / 1e9:,.0f}"},
            {"start": "from the transferred SAE", "stitch tokens": result["stitch_log"]["tokens"],
             "final EV": i["curves"]["from the transferred SAE"][-1]["ev"],
             "tokens to target EV": f"{i['init_tokens_to_target']:,.0f}" if reached else "not reached",
             "GFLOP to target": f"{i['init_flops'] / 1e9:,.0f}" if reached else "not reached"}]
    df = pd.DataFrame(rows).set_index("start")
    df.insert(0, "SAE tokens", i["scratch_tokens"])
    df.insert(0, "width", i["recipe"]["d_sae"])
    return df


def probe_table(result: dict) -> pd.DataFrame:
    rows = [{"probe": r["probe"], "trained, read": r["trained, read"],
             "AUROC": f"{r['auroc']:.3f} [{r['auroc_lo']:.3f}, {r['auroc_hi']:.3f}]",
             "accuracy": f"{r['accuracy']:.3f} [{r['accuracy_lo']:.3f}, {r['accuracy_hi']:.3f}]"}
            for r in result["probes"]["rows"]]
    return pd.DataFrame(rows).set_index(["probe", "trained, read"])


def steering_table(result: dict) -> pd.DataFrame:
    rows = result["steering"]["rows"]
    none = rows["none"]
    return pd.DataFrame([{"vector": k, "marker-token mass %": 100 * rows[k]["marker_mass"],
                          "change, points": 100 * (rows[k]["marker_mass"] - none["marker_mass"]),
                          "CE on source text": rows[k]["ce"]} for k in STEERING_ROWS]).set_index("vector")


def shares_table(result: dict) -> pd.DataFrame:
    """Share of live features whose best partner reaches each threshold, per comparison."""
    shares = result["stability"]["shares"]
    df = pd.DataFrame({k: shares[k] for k in SHARE_ROWS if k in shares}).T.rename(columns=lambda t: f">= {t}") * 100
    return df.rename_axis("comparison")


def classes_table(result: dict) -> pd.DataFrame:
    st = result["stability"]
    df = pd.DataFrame({"class": st["class"], "corr": st["corr"], "density": st["density"],
                       "token_share": st["token_share"], "decoder_cos": st["decoder_cos"]})
    live = df[df["class"] != "dead"]
    out = live.groupby("class").agg(features=("corr", "size"), density=("density", "median"),
                                    top_token_share=("token_share", "median"),
                                    decoder_cos=("decoder_cos", "median"))
    out.insert(1, "% of live", 100 * out["features"] / len(live))
    out["density"] *= 100
    order = [c for c in ("core", "partial", "emergent") if c in out.index]
    return out.loc[order].rename(columns={"density": "median density %", "top_token_share": "median top-token share",
                                          "decoder_cos": "median best decoder cos"})


def shown_table(result: dict) -> pd.DataFrame:
    rows = [{"class": c, "feature": f["feature"], "best corr": f"{f['corr']:.2f}",
             "density": f"{100 * f['density']:.2f}%", "top contexts": " | ".join(f["contexts"])}
            for c, fs in result["stability"]["shown"].items() for f in fs]
    return pd.DataFrame(rows).set_index(["class", "feature"]) if rows else pd.DataFrame()


def _mean(result: dict, f) -> float:
    return float(np.mean([f(v) for v in result.values()]))


def headline(result: dict) -> dict[str, Any]:
    """Every number the prose quotes (datasets averaged with equal weight)."""
    h: dict[str, Any] = {"small": short(result["specs"]["small"]), "large": short(result["specs"]["large"])}
    cka = np.asarray(result["cka"])
    i, j = residual_index(result["hooks"]["small_sae"]), residual_index(result["hooks"]["large_sae"])
    h.update(cka_pair=float(cka[i, j]), cka_best=float(cka[i].max()), cka_best_layer=layer_label(
        result["hooks"]["large"][int(cka[i].argmax())]), pair_small=layer_label(result["hooks"]["small"][i]),
        pair_large=layer_label(result["hooks"]["large"][j]), pair_is_best=bool(cka[i].argmax() == j))
    d = result["datasets"]
    h.update(ev_up=_mean(d, lambda r: r["quality"]["ev_up"]), ev_down=_mean(d, lambda r: r["quality"]["ev_down"]),
             ce_small=_mean(d, lambda r: r["ce_source"]), ce_large=_mean(d, lambda r: r["ce_target"]),
             ce_stitched=_mean(d, lambda r: r["ce_stitched"]))
    h["ce_gap"] = h["ce_small"] - h["ce_large"]
    h["ce_gap_min"] = min(r["ce_source"] - r["ce_target"] for r in d.values())
    m = result["sae_metrics"]
    for key, name in zip(("small", "transferred", "large"), SAE_ROWS):
        h[f"ev_{key}"] = _mean(m, lambda r: r[name]["ev_global"])
        h[f"fvu_{key}"] = 1 - h[f"ev_{key}"]
        h[f"dce_{key}"] = _mean(m, lambda r: r[name]["delta_ce"])
        h[f"l0_{key}_pct"] = 100 * _mean(m, lambda r: r[name]["l0_frac"])
    h.update({f"seed_{k.replace(', ', '_').replace(' ', '_').lower()}": v for k, v in SEED_GPT2.items()})
    if result.get("init"):
        i = result["init"]
        h.update(init_target=i["target_ev"], init_scratch_tokens=i["scratch_tokens"],
                 init_reached=i["init_tokens_to_target"] is not None,
                 init_stitch_tokens=result["stitch_log"]["tokens"], init_zero_ev=i["curves"][
                     "from the transferred SAE"][0]["ev"], init_final=i["curves"]["from the transferred SAE"][-1]["ev"])
        if i["init_tokens_to_target"] is not None:
            h.update(init_tokens=i["init_tokens_to_target"], init_saved_pct=100 * i["saved"],
                     init_saved_sae_pct=100 * i["saved_without_stitch"],
                     init_stitch_share_pct=100 * i["stitch_flops"] / i["scratch_flops"])
    p = {(r["probe"], r["trained, read"]): r for r in result["probes"]["rows"]}
    for (probe, where), r in p.items():
        key = ("res" if probe == "residual" else "sae") + "_" + where.split(",")[0] + "_" + where.split()[-1]
        h[f"probe_{key}"] = r["auroc"]
        h[f"probe_{key}_lo"], h[f"probe_{key}_hi"] = r["auroc_lo"], r["auroc_hi"]
    h["probe_k"] = result["probes"]["k"]
    h["n_markers"] = result["steering"]["n_markers"]
    s = result["steering"]["rows"]
    base = s["none"]["marker_mass"]
    h.update(steer_none=100 * base, steer_own=100 * (s["large model's own"]["marker_mass"] - base),
             steer_mapped=100 * (s["mapped from small"]["marker_mass"] - base),
             steer_random=100 * (s["random"]["marker_mass"] - base), steer_cos=result["steering"]["cos_mapped_own"])
    h["steer_ratio_pct"] = 100 * h["steer_mapped"] / h["steer_own"] if h["steer_own"] else float("nan")
    sh = result["stability"]["shares"]
    h.update(stable_small_pct=100 * sh["small to large, activations"][str(CORE)],
             stable_large_pct=100 * sh["large from small, activations"][str(CORE)],
             stable_dec_pct=100 * sh["small to large, decoders"]["0.7"])
    if "large to second seed, activations" in sh:
        h["ceiling_pct"] = 100 * sh["large to second seed, activations"][str(CORE)]
    cl = classes_table(result)
    for c in ("core", "emergent"):
        present = c in cl.index
        h[f"{c}_pct"] = float(cl.loc[c, "% of live"]) if present else 0.0
        h[f"{c}_density_pct"] = float(cl.loc[c, "median density %"]) if present else float("nan")
        h[f"{c}_token_share"] = float(cl.loc[c, "median top-token share"]) if present else float("nan")
    return h


def describe(h: dict) -> dict[str, str]:
    """Paragraphs whose claims depend on the numbers: ``summary``, ``pairing``, ``stitch``, ``init``,
    ``stability``."""
    out: dict[str, str] = {}
    zero_shot = (f"the small model's SAE, carried through the stitch, explains {100 * h['ev_transferred']:.0f}% of the "
                 f"large model's variance (its own SAE: {100 * h['ev_large']:.0f}%; on the small model: "
                 f"{100 * h['ev_small']:.0f}%)")
    summary = f"Stitched from {h['small']} into {h['large']}, {zero_shot}."
    if h.get("init_reached"):
        cost = (f"saves {h['init_saved_pct']:.0f}% of the compute" if h["init_saved_pct"] > 0 else
                f"takes {-h['init_saved_pct']:.0f}% more compute than starting from scratch")
        summary += (f" As a starting point it reaches the from-scratch SAE's final explained variance after "
                    f"{h['init_tokens']:,.0f} of {h['init_scratch_tokens']:,} tokens ({h['init_saved_sae_pct']:.0f}% "
                    f"less SAE training), which {cost} once the stitch is paid for.")
    elif "init_reached" in h:
        summary += (f" As a starting point it does not reach the from-scratch SAE's final explained variance "
                    f"({100 * h['init_final']:.1f}% against {100 * h['init_target']:.1f}% on the same tokens).")
    summary += (f" {h['stable_large_pct']:.0f}% of the large SAE's live features have a small-SAE feature that fires "
                f"with them (correlation at least {CORE})")
    summary += (f", against {h['ceiling_pct']:.0f}% for a second SAE of the large model." if "ceiling_pct" in h
                else ".")
    out["summary"] = summary
    out["pairing"] = (
        f"The small SAE reads the residual after {h['pair_small']} of {h['small']}; the large SAE after "
        f"{h['pair_large']} of {h['large']}, at linear CKA {h['cka_pair']:.2f}. "
        + ("That is the highest CKA in the small layer's row, so the SAEs' own layers are the pairing CKA picks."
           if h["pair_is_best"] else
           f"CKA would pick {h['cka_best_layer']} ({h['cka_best']:.2f}); the chapter stitches at the SAEs' layers, "
           "since the large SAE is the reference every carried object is compared with."))
    between = h["ce_large"] <= h["ce_stitched"] <= h["ce_small"]
    out["stitch"] = (
        f"Mapped up, the small model's residual explains {100 * h['ev_up']:.0f}% of the large model's variance; mapped "
        f"down, the large one explains {100 * h['ev_down']:.0f}% of the small one's. Run from the stitched "
        f"activations, the large model's next-token loss is {h['ce_stitched']:.3f} nats, against {h['ce_large']:.3f} "
        f"on its own and {h['ce_small']:.3f} for the small model: "
        + ("between the two, so the large model's later layers recover part of what the small model's earlier ones "
           "miss." if between else
           "not between the two sizes' own losses" + (f" (here {h['large']} is not the better model: its loss is "
                                                       f"above {h['small']}'s)." if h["ce_large"] > h["ce_small"]
                                                       else ".") if h["ce_stitched"] > h["ce_small"] else
           "at or below the large model's own."))
    if "init_reached" not in h:
        out["init"] = "The initialisation study was not run (`sae_tokens` is 0)."
    elif h["init_reached"]:
        out["init"] = (
            f"Started from the transferred SAE (explained variance {100 * h['init_zero_ev']:.0f}% before any "
            f"training), the large model's SAE reaches the from-scratch run's final {100 * h['init_target']:.1f}% "
            f"after {h['init_tokens']:,.0f} tokens instead of {h['init_scratch_tokens']:,}: "
            f"{h['init_saved_sae_pct']:.0f}% less SAE training. The stitch's own training "
            f"({h['init_stitch_tokens']:,} tokens through both models) costs {h['init_stitch_share_pct']:.0f}% of "
            f"the from-scratch run, so the total "
            + (f"saving is {h['init_saved_pct']:.0f}%." if h["init_saved_pct"] > 0 else
               f"is {-h['init_saved_pct']:.0f}% more than training from scratch: at this scale the stitch costs more "
               "than it saves (Chen et al. report 30-50% saved, on GPT-2 with far longer SAE training over which "
               "one stitch is spread)."))
    else:
        out["init"] = (f"Started from the transferred SAE (explained variance {100 * h['init_zero_ev']:.0f}% before "
                       f"any training), the large model's SAE ends at {100 * h['init_final']:.1f}% after "
                       f"{h['init_scratch_tokens']:,} tokens, short of the from-scratch run's final "
                       f"{100 * h['init_target']:.1f}%: no compute is saved at this budget.")
    out["probes"] = (
        f"The residual probe trained on {h['small']} scores AUROC {h['probe_res_small_small']:.3f} there and "
        f"{h['probe_res_small_large']:.3f} read on {h['large']} through the stitch, against "
        f"{h['probe_res_large_large']:.3f} for the same probe trained on {h['large']}; the {h['probe_k']}-feature SAE "
        f"probe {h['probe_sae_small_small']:.3f}, {h['probe_sae_small_large']:.3f} carried and "
        f"{h['probe_sae_large_large']:.3f} on the large SAE (intervals in the table).")
    denser = "denser" if h["core_density_pct"] > h["emergent_density_pct"] else "sparser"
    level = "more" if h["core_token_share"] > h["emergent_token_share"] else "less"
    out["stability"] = (
        f"{h['core_pct']:.0f}% of the large SAE's live features are core (a small-SAE feature correlates at least "
        f"{CORE} with them) and {h['emergent_pct']:.0f}% emergent (none reaches {EMERGENT}). Core features are "
        f"{denser} than emergent ones (median density {h['core_density_pct']:.2f}% against "
        f"{h['emergent_density_pct']:.2f}%) and {level} token-level (median share of their top activations on one "
        f"token {h['core_token_share']:.2f} against {h['emergent_token_share']:.2f}).")
    return out
