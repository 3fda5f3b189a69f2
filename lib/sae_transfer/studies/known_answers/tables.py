"""The known-answers chapter's tables and headline numbers, from ``measure``'s plain data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sae_transfer.core import verdict as V
from sae_transfer.data.synthetic import TRUE_CLASSES
from sae_transfer.methods.crosscoder_classes import FEATURE_CLASSES, UNTRAINED_FVU
from sae_transfer.studies.known_answers.scores import LABELS, MATCHED

#: Precision below this is where a label stops being trustworthy (the issue's bar).
TRUSTED = 0.9
#: Below this share of its features within cosine MATCHED of a true one, the base SAE did not learn the world:
#: its features' labels have too little to be scored on.
MIN_MATCHED = 0.5
#: The sweeps, their difficulty axis and how it reads.
SWEEPS = {"angle": "angle of a shifted feature (degrees)", "severity": "share of features changed",
          "features_per_dim": "true features per dimension", "train_tokens": "crosscoder training draws"}
#: Each sweep's column in the breaking-points table (narrow enough for the text column).
COLUMNS = {"angle": "angle (°)", "severity": "share changed", "features_per_dim": "features per dim.",
           "train_tokens": "training draws"}
#: Each sweep's short name, for prose.
NAMES = {"angle": "angle", "severity": "share-changed", "features_per_dim": "features-per-dimension",
         "train_tokens": "training-draws"}
#: A point of each sweep in words, for prose.
AT = {"angle": "a {v}° shift", "severity": "a share of {v} changed", "features_per_dim": "{v} features per dimension",
      "train_tokens": "{v} crosscoder training draws"}
#: The direction in which each sweep gets harder: a larger value (True) or a smaller one.
HARDER_UP = {"angle": False, "severity": True, "features_per_dim": True, "train_tokens": False}


def fmt(est: dict | None, digits: int = 2) -> str:
    """``0.83 [0.78, 0.88]``; ``–`` where nothing was measured; the value alone where no interval exists."""
    if not est or est.get("value") is None:
        return "–"
    v = f"{est['value']:.{digits}f}"
    return v if est.get("lo") is None else f"{v} [{est['lo']:.{digits}f}, {est['hi']:.{digits}f}]"


def planted(data: dict) -> pd.DataFrame:
    """What each case planted: features per class, true L0 of base and finetune, the changed mass, and the
    superposition of the base's directions (the largest absolute cosine between two of them)."""
    rows = {}
    for name, case in _cases(data):
        p = case["pair"]
        rows[name] = {**{c: p["counts"][c] for c in TRUE_CLASSES}, "true L0 base": p["true_l0_base"],
                      "true L0 finetune": p["true_l0_finetune"], "changed mass": case["changed_mass"],
                      "max |cos| of base directions": p["max_cos_base"]}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "case"
    return df


def not_reported(h: dict) -> str:
    """What stands in a table's or figure's place when the methods had nothing to be scored on."""
    why = ([f"the base SAE found {h['matched']} of {h['of']} true features (under {MIN_MATCHED:.0%})"]
           if h["matched"] < MIN_MATCHED * h["of"] else [])
    why += ([f"the crosscoder left {h['fvu_max']:.0%} of a model's variance unexplained: it did not train"]
            if h["fvu_max"] >= UNTRAINED_FVU else [])
    return "Not reported: " + "; ".join(why) + ". Train longer (`sae_samples`, `train_tokens`) or use fewer features."


def _cases(data: dict) -> list[tuple[str, dict]]:
    return [("default", data["default"]), ("null finetune", data["null"])]


def dictionaries(data: dict) -> pd.DataFrame:
    """How well each dictionary recovers the true features (MCC, sae_lens's detection scores), the default case."""
    s, det, seeds = data["default"]["scores"], data["default"]["detection"], data["seeds"]
    rows = [{"dictionary": "base SAE (BatchTopK)", "MCC": fmt(s["mcc"]["sae"]),
             "precision": f"{det['precision']:.2f}", "recall": f"{det['recall']:.2f}", "F1": f"{det['f1_score']:.2f}",
             f"features at cos ≥ {MATCHED:g}": f"{s['matched']['sae_features']} of {s['matched']['of']}"},
            {"dictionary": "crosscoder, base side", "MCC": fmt(s["mcc"]["crosscoder_base"])},
            {"dictionary": "crosscoder, finetune side", "MCC": fmt(s["mcc"]["crosscoder_finetune"])},
            {"dictionary": "base SAE, another seed", "MCC": f"{seeds['mcc_truth'][1]:.2f}",
             f"features at cos ≥ {MATCHED:g}": f"{seeds['shared']:.0%} shared with the first seed"}]
    return pd.DataFrame(rows).set_index("dictionary").fillna("")


def labels(case: dict) -> pd.DataFrame:
    """Per diffing label: its precision and recall against the truth (with intervals), and how many features
    carry it and should."""
    rows = []
    for lab in LABELS:
        f = case["scores"]["features"][lab]
        rows.append({"label": lab, "precision": fmt(f["precision"]), "recall": fmt(f["recall"]),
                     "labelled": f["n_pred"], "truly": f["n_true"]})
    n = case["scores"]["new"]
    rows.append({"label": "new (crosscoder latents)", "precision": fmt(n["precision"]), "recall": fmt(n["recall"]),
                 "labelled": n["n_new_latents"], "truly": n["n_true_new"]})
    return pd.DataFrame(rows).set_index("label")


def confusion(case: dict) -> pd.DataFrame:
    """Base-SAE features matched to a true feature: their true class (rows) against their diffing label."""
    df = pd.DataFrame.from_dict(case["scores"]["confusion"], orient="index")[list(FEATURE_CLASSES)]
    df.index.name = "true class"
    return df


def latent_confusion(case: dict) -> pd.DataFrame:
    """Live crosscoder latents: the true class of the feature their decoder is (``none``: no true feature at
    cosine 0.9) against their latent class."""
    df = pd.DataFrame.from_dict(case["scores"]["latent_confusion"], orient="index")
    df.index.name = "true class"
    return df[df.sum(1) > 0]


def sweep(rows: list[dict], axis: str) -> pd.DataFrame:
    """One row per point of a sweep: each label's precision and recall, the false "new" rate, the AUROC of
    activation similarity, the verdict."""
    out = []
    for r in rows:
        s = r["scores"]
        row: dict[str, Any] = {SWEEPS[axis]: r[axis]}
        for lab in LABELS:
            row[f"{lab} P"] = s["features"][lab]["precision"]["value"]
            row[f"{lab} R"] = s["features"][lab]["recall"]["value"]
        row["new P"] = s["new"]["precision"]["value"]
        row["new R"] = s["new"]["recall"]["value"]
        row["false new"] = s["new"]["false_new_rate"]["value"]
        row["AUROC"] = s["auroc"]["value"]
        row["verdict"] = r["verdict"]["verdict"]
        out.append(row)
    return pd.DataFrame(out).set_index(SWEEPS[axis])


def breaking_points(data: dict) -> pd.DataFrame:
    """Per label and sweep, the easiest difficulty at which its precision falls below ``TRUSTED`` (``–``: never
    on this sweep; ``everywhere``: at every point of it; ``never labelled``: no feature got the label on it).
    A small angle and few training draws are hard (a shifted feature that barely moved, a crosscoder barely
    trained); so are a large share changed and many features per dimension."""
    rows = []
    for lab in (*LABELS, "new"):
        row = {"label": lab}
        for axis in SWEEPS:
            pts = [(r[axis], _precision(r, lab)) for r in data[axis] if not (axis == "severity" and r[axis] == 0)]
            pts.sort(key=lambda t: t[0], reverse=not HARDER_UP[axis])  # easiest first
            measured = [(x, p) for x, p in pts if p is not None]
            below = [x for x, p in measured if p < TRUSTED]
            row[COLUMNS[axis]] = ("never labelled" if not measured else "everywhere" if len(below) == len(measured)
                                 else _point(below[0]) if below else "–")
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def breaking_words(row: dict) -> str:
    """One row of ``breaking_points`` (as recorded) in words: where the label's precision fell below ``TRUSTED``."""
    by_axis = {**{SWEEPS[a]: a for a in SWEEPS}, **{COLUMNS[a]: a for a in SWEEPS}}  # records of either naming
    values = {by_axis[d]: v for d, v in row.items() if d in by_axis}
    if values and all(v == "everywhere" for v in values.values()):
        return f"below {TRUSTED:g} at every point of every sweep"
    said = [f"at every point of the {NAMES[a]} sweep" if v == "everywhere" else "at " + AT[a].format(v=v)
            for a, v in values.items() if v not in ("–", "never labelled")]
    return (f"below {TRUSTED:g} " + " and ".join(said)) if said else f"at or above {TRUSTED:g} on every sweep"


def _point(x: float) -> str:
    """A sweep's value as a table shows it: ``10``, ``0.3``, ``100,000`` (never ``1e+05``)."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:g}"


def _precision(case: dict, lab: str) -> float | None:
    s = case["scores"]
    return (s["new"] if lab == "new" else s["features"][lab])["precision"]["value"]


def headline(data: dict) -> dict[str, Any]:
    """The numbers the chapter's prose glues."""
    d, null = data["default"], data["null"]
    s = d["scores"]
    h: dict[str, Any] = {"n_features": d["pair"]["world"]["n_features"], "d_model": d["pair"]["world"]["d_model"],
                         "share": d["pair"]["edits"]["share"], "angle": d["pair"]["edits"]["angle"],
                         "n_new": d["pair"]["counts"]["new"], "mcc_sae": s["mcc"]["sae"]["value"],
                         "mcc_cc_base": s["mcc"]["crosscoder_base"]["value"],
                         "mcc_cc_ft": s["mcc"]["crosscoder_finetune"]["value"],
                         "f1_sae": d["detection"]["f1_score"], "matched": s["matched"]["sae_features"],
                         "of": s["matched"]["of"], "seed_shared": data["seeds"]["shared"],
                         "mcc_seeds": data["seeds"]["mcc_between"],
                         "auroc": s["auroc"]["value"], "auroc_lo": s["auroc"]["lo"], "auroc_hi": s["auroc"]["hi"],
                         "null_new": null["scores"]["new"]["n_new_latents"],
                         "null_live": null["scores"]["new"]["n_live"],
                         "null_false_new": null["scores"]["new"]["false_new_rate"]["value"],
                         "null_verdict": null["verdict"]["verdict"],
                         "null_kept_recall": null["scores"]["features"]["kept"]["recall"]["value"],
                         **{f"null_{c}": null["scores"]["confusion"]["kept"][c] for c in FEATURE_CLASSES},
                         "default_verdict": d["verdict"]["verdict"], "default_mass": d["changed_mass"],
                         "default_words": d["verdict"]["words"]}
    for lab in LABELS:
        for k in ("precision", "recall"):
            e = s["features"][lab][k]
            h[f"{lab}_{k}"], h[f"{lab}_{k}_lo"], h[f"{lab}_{k}_hi"] = e["value"], e["lo"], e["hi"]
        h[f"{lab}_n_pred"], h[f"{lab}_n_true"] = s["features"][lab]["n_pred"], s["features"][lab]["n_true"]
    h["new_n_pred"] = s["new"]["n_new_latents"]
    for k in ("precision", "recall", "false_new_rate"):
        e = s["new"][k]
        h[f"new_{k}"], h[f"new_{k}_lo"], h[f"new_{k}_hi"] = e["value"], e["lo"], e["hi"]
    h["n_true_new"] = s["new"]["n_true_new"]
    for t, row in s["confusion"].items():
        h.update({f"conf_{t}_{c}": n for c, n in row.items()})
    h["fvu_max"] = max(d["crosscoder"]["heldout_fvu"])
    h["worked"] = h["matched"] >= MIN_MATCHED * h["of"] and h["fvu_max"] < UNTRAINED_FVU
    for v in V.VERDICTS:
        masses = [r["changed_mass"] for r in data["severity"] if r["verdict"]["verdict"] == v]
        h[f"n_severity_{v}"] = len(masses)
        if masses:
            h[f"mass_{v}_min"], h[f"mass_{v}_max"] = min(masses), max(masses)
    # A score nothing could give (no feature labelled so: no precision) is left out, never glued as NaN.
    return {k: v for k, v in h.items() if v is not None and v == v}


# ------------------------------------------------------------------------------------------ the second level

def real_verdicts(planted: dict) -> pd.DataFrame:
    """``check`` on the real model's planted finetunes: per severity, the true changed mass on the tokens it
    measured, its three criteria and its verdict (``?``: the intervals did not decide it)."""
    rows = []
    for r in planted["severity"]:
        v = r["verdict"]["values"]
        rows.append({"share changed": _point(r["severity"]), "changed mass": f"{r['changed_mass']:.3f}",
                     "EV drop": _num(v["ev_drop"], 3), "CE rec. drop": _num(v["ce_recovered_drop"], 3),
                     "act. sim.": _num(v["regular_act_sim"], 2),
                     "verdict": r["verdict"]["verdict"] + ("" if r["verdict"]["decided"] else " ?")})
    return pd.DataFrame(rows).set_index("share changed")


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def real_headline(planted: dict | None) -> dict[str, Any]:
    """The second level's numbers the chapter's prose glues (prefixed ``real_``); empty without a second level."""
    if planted is None:
        return {}
    d, null = planted["default"], planted["null"]
    s, p = d["scores"], d["pair"]
    h: dict[str, Any] = {"base": p["base"], "sae": p["sae"], "hook": p["hook"], "dataset": p["dataset"],
                         "n_scored": s["n_scored"], "share": p["edits"]["share"], "angle": p["edits"]["angle"],
                         "n_new": p["counts"]["new"], "n_changed": sum(p["counts"][c] for c in ("shifted", "rarer",
                                                                                                  "lost")),
                         "auroc": s["auroc"]["value"], "auroc_lo": s["auroc"]["lo"], "auroc_hi": s["auroc"]["hi"],
                         "mcc_cc_base": s["mcc"]["crosscoder_base"]["value"],
                         "verdict": d["verdict"]["verdict"], "mass": d["check_changed_mass"],
                         "null_verdict": null["verdict"]["verdict"],
                         "null_new": null["scores"]["new"]["n_new_latents"],
                         "null_live": null["scores"]["new"]["n_live"],
                         "null_false_new": null["scores"]["new"]["false_new_rate"]["value"],
                         "null_kept_recall": null["scores"]["features"]["kept"]["recall"]["value"],
                         "fvu_max": max(d["crosscoder"]["heldout_fvu"] + null["crosscoder"]["heldout_fvu"])}
    for lab in LABELS:
        for k in ("precision", "recall"):
            e = s["features"][lab][k]
            h[f"{lab}_{k}"], h[f"{lab}_{k}_lo"], h[f"{lab}_{k}_hi"] = e["value"], e["lo"], e["hi"]
        h[f"{lab}_n_pred"], h[f"{lab}_n_true"] = s["features"][lab]["n_pred"], s["features"][lab]["n_true"]
    for k in ("precision", "recall"):
        e = s["new"][k]
        h[f"new_{k}"], h[f"new_{k}_lo"], h[f"new_{k}_hi"] = e["value"], e["lo"], e["hi"]
    h["new_n_pred"], h["n_true_new"] = s["new"]["n_new_latents"], s["new"]["n_true_new"]
    h.update({f"kept_act_{t}": v for t, v in s["activation_kept"].items()})
    sim = {t: v for t, v in s["similarity"].items() if v}
    for t, v in sim.items():
        h[f"sim_{t}"] = float(np.nanmedian(np.asarray(v, dtype=float)))
    h["worked"] = h["fvu_max"] < UNTRAINED_FVU and h["n_scored"] > 0
    return {f"real_{k}": v for k, v in h.items() if v is not None and v == v}


#: The trained finetune's position classes and models, as the tables name them.
POSITIONS = {"added": "at a trigger", "removed": "at a removed token", "other": "elsewhere"}
MODELS = ("base", "control", "planted")
#: The planted rule took when the finetune gives a trigger's target at least this probability on average (where the
#: base gives it about one over the vocabulary), and ten times the control's.
RULE_TOOK = 0.25


def trained_behaviour(trained: dict) -> pd.DataFrame:
    """What the plant did to the models' predictions, on held-out text: per model, the planted target's mean
    probability after a trigger, the mean entropy after a removed token, the mean loss elsewhere."""
    t = trained["truth"]
    rows = {"P(target) after a trigger": (t["rule_probability"], 4),
            "entropy after a removed token (nats)": (t["entropy_after_removed"], 2),
            "loss elsewhere (nats)": (t["loss_elsewhere"], 3)}
    return pd.DataFrame({k: {m: _num(v[m], d) for m in MODELS} for k, (v, d) in rows.items()}).T[
        list(MODELS)].rename_axis("measure")


def trained_positions(trained: dict) -> pd.DataFrame:
    """Per position class: how many, how far the stream at the SAE's hook moved (planted against control, and
    control against base, each over the base's norm, medians), and the base SAE's unexplained variance on each
    model's stream there (base / control / planted)."""
    t = trained["truth"]
    rows = []
    for c, name in POSITIONS.items():
        sae = (trained["planted"]["unexplained"]["base"][c], trained["control"]["unexplained"]["finetune"][c],
               trained["planted"]["unexplained"]["finetune"][c])
        rows.append({"positions": name, "n": t["positions"][c], "planted vs control": _num(t["moved"][c], 2),
                     "control vs base": _num(t["drift"][c], 2),
                     "SAE unexplained (base / control / planted)": " / ".join(_num(v, 2) for v in sae)})
    return pd.DataFrame(rows).set_index("positions")


def trained_methods(trained: dict) -> pd.DataFrame:
    """Each method of the book on (base, planted) and on (base, control): ``check``'s verdict and criteria, the
    crosscoder's labels of the SAE's features, its new latents (and how many fire mostly on planted positions),
    and the SAE's unexplained variance on planted positions over that elsewhere."""
    out = {}
    for k in ("planted", "control"):
        r, v = trained[k], trained[k]["verdict"]
        counts = r["feature_counts"]
        out[k] = {"check": v["verdict"] + ("" if v["decided"] else " ?"),
                  "EV drop": _num(v["values"]["ev_drop"], 3), "CE rec. drop": _num(v["values"]["ce_recovered_drop"], 3),
                  "act. sim.": _num(v["values"]["regular_act_sim"], 2),
                  "features kept / shifted / lost": " / ".join(str(counts.get(c, 0))
                                                              for c in ("kept", "shifted", "lost")),
                  "new latents (on the plant)": f"{r['new']['n']} ({r['new']['on_plant']})",
                  "SAE unexpl., plant / elsewhere": _num(trained["scores"]["unexplained_ratio"][k], 2)}
    return pd.DataFrame(out).rename_axis("measure")


def trained_headline(trained: dict | None) -> dict[str, Any]:
    """The trained finetune's numbers the chapter's prose glues (prefixed ``trained_``); empty without it."""
    if trained is None:
        return {}
    t, s = trained["truth"], trained["scores"]
    p = trained["patterns"]
    h: dict[str, Any] = {
        "n_patterns": len(p["added"]), "steps": trained["steps"],
        "rule_base": t["rule_probability"]["base"], "rule_control": t["rule_probability"]["control"],
        "rule_planted": t["rule_probability"]["planted"],
        "entropy_control": t["entropy_after_removed"]["control"],
        "entropy_planted": t["entropy_after_removed"]["planted"],
        "log_vocab": t["log_vocab"],
        "moved_added": t["moved"]["added"], "moved_removed": t["moved"]["removed"], "moved_other": t["moved"]["other"],
        "ratio_planted": s["unexplained_ratio"]["planted"], "ratio_control": s["unexplained_ratio"]["control"],
        "sim": s["similarity"]["spearman"], "sim_lo": s["similarity"]["lo"], "sim_hi": s["similarity"]["hi"],
        "n_features": s["similarity"]["n"],
        "labels": (s["labels"]["auroc"] or {}).get("value"),
        "labels_lo": (s["labels"]["auroc"] or {}).get("lo"), "labels_hi": (s["labels"]["auroc"] or {}).get("hi"),
        "labels_changed": s["labels"]["n_changed"], "labels_kept": s["labels"]["n_kept"],
        "verdict_planted": trained["planted"]["verdict"]["verdict"],
        "verdict_control": trained["control"]["verdict"]["verdict"],
        "ev_planted": trained["planted"]["verdict"]["values"]["ev_drop"],
        "ev_control": trained["control"]["verdict"]["values"]["ev_drop"],
        "new_planted": trained["planted"]["new"]["n"], "new_on_plant": trained["planted"]["new"]["on_plant"],
        "new_control": trained["control"]["new"]["n"], "new_control_on_plant": trained["control"]["new"]["on_plant"],
        "tokens_found": trained["planted"]["new"]["tokens_found"],
        "tokens_seen": trained["planted"]["new"]["tokens_seen"]}
    rule = [h["rule_planted"], h["rule_control"]]
    h["took"] = None not in rule and rule[0] >= RULE_TOOK and rule[0] > 10 * rule[1]
    return {f"trained_{k}": v for k, v in h.items() if v is not None and v == v}
