"""The architectures section's tables, headline numbers and paragraphs, all from ``measure``'s plain data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sae_transfer.core.labels import short
from sae_transfer.core.specs import is_zoo
from sae_transfer.models.hooks import residual_index
from sae_transfer.methods.stitched_pair import CORE

#: What the tables call each partner of the base.
PARTNERS = {"other": "other architecture", "twin": "twin (same architecture, another seed)"}
#: A stitch that explains less of the base's residual variance than this has not found the map: what it carries
#: then measures the stitch, not the dictionary.
STITCH_FLOOR = 0.5


def stitch_table(result: dict) -> pd.DataFrame:
    """Per partner and dataset: each map's explained variance (with its interval over batches), the base's
    next-token loss on its own and run from the stitched partner activations, and the KL between the two."""
    rows = []
    for role, r in result["pairs"].items():
        for d in result["order"]:
            x = r["datasets"][d]
            q, ci = x["quality"], x["quality"].get("ci", {})
            rows.append({"partner": PARTNERS[role], "data": short(d),
                         "EV of the base": q["ev_up"], "low": ci.get("ev_up", [np.nan])[0],
                         "high": ci.get("ev_up", [np.nan, np.nan])[1], f"EV of the {role}": q["ev_down"],
                         "CE base": x["ce_target"], "CE base from stitched": x["ce_stitched"],
                         "KL stitched": x["kl_stitched"]})
    return pd.DataFrame(rows).set_index(["partner", "data"])


def sae_table(result: dict) -> pd.DataFrame:
    """Per dataset: the base SAE on the base, and each partner's SAE carried onto the base (and on its own model,
    for reference), with 95% intervals of explained variance and CE recovered over token batches."""
    rows = []
    for d in result["order"]:
        entries = [("base SAE on base", next(iter(result["pairs"].values()))["sae_metrics"][d]["base SAE on base"])]
        for role, r in result["pairs"].items():
            m = r["sae_metrics"][d]
            entries += [(f"{role}'s SAE carried to base", m["transferred SAE on base"]),
                        (f"{role}'s SAE on {role}", m[f"{role} SAE on {role}"])]
        for name, m in entries:
            ci = m.get("ci", {})
            rows.append({"data": short(d), "SAE, model": name, "EV": m["ev_global"],
                         "EV low": ci.get("ev_global", [np.nan])[0],
                         "EV high": ci.get("ev_global", [np.nan, np.nan])[1],
                         "CE recovered": m["ce_recovered"], "CE rec. low": ci.get("ce_recovered", [np.nan])[0],
                         "CE rec. high": ci.get("ce_recovered", [np.nan, np.nan])[1], "L0 / width": m["l0_frac"]})
    return pd.DataFrame(rows).set_index(["data", "SAE, model"])


#: What the counterparts table calls each SAE the base SAE's features are matched in.
MATCHED = {"other": "the other architecture's SAE", "twin": "the twin's SAE (floor)",
           "second seed": "the base SAE from another seed (ceiling)"}


def counterparts_table(result: dict) -> pd.DataFrame:
    """The share of the base SAE's living features with a counterpart in each SAE, at every threshold."""
    c = result["counterparts"]
    rows = []
    for who, by_t in c["shares"].items():
        for t, s in by_t.items():
            rows.append({"matched in": MATCHED[who], "correlation at least": float(t), "share": s["share"],
                         "low": s["ci"][0], "high": s["ci"][1]})
    return pd.DataFrame(rows).set_index(["matched in", "correlation at least"])


def _mean(result: dict, role: str, f) -> float:
    return float(np.mean([f(result["pairs"][role]["datasets"][d]) for d in result["order"]]))


def headline(result: dict) -> dict[str, Any]:
    """Every number the prose glues: per partner the stitch's explained variance of the base (mean over datasets),
    the carried SAE's and the base SAE's explained variance and CE recovered on the first dataset with intervals,
    the shares of base features with a counterpart at ``CORE`` with intervals, and each partner's difference from
    the floor."""
    first = result["order"][0]
    h: dict[str, Any] = {"first": short(first), "threshold": CORE, "n_alive": result["counterparts"]["n_alive"],
                         "n_features": result["counterparts"]["n_features"], "twin": "twin" in result["pairs"]}
    own = next(iter(result["pairs"].values()))["sae_metrics"][first]["base SAE on base"]
    h.update(ev_own=own["ev_global"], ce_rec_own=own["ce_recovered"])
    for role, r in result["pairs"].items():
        m = r["sae_metrics"][first]["transferred SAE on base"]
        ci = m.get("ci", {})
        h[f"stitch_ev_{role}"] = _mean(result, role, lambda x: x["quality"]["ev_up"])
        h[f"stitch_ev_min_{role}"] = min(r["datasets"][d]["quality"]["ev_up"] for d in result["order"])
        h[f"ce_stitched_{role}"] = _mean(result, role, lambda x: x["ce_stitched"])
        hooks = r["hooks"]  # linear CKA at the two SAEs' layers, where the stitch is trained
        h[f"cka_{role}"] = r["cka"][residual_index(hooks[f"{role}_sae"])][residual_index(hooks["base_sae"])]
        h[f"ev_carried_{role}"] = m["ev_global"]
        h[f"ce_rec_carried_{role}"] = m["ce_recovered"]
        for metric, name in (("ev_global", "ev_carried"), ("ce_recovered", "ce_rec_carried")):
            if metric in ci:  # none under 4 token batches
                h[f"{name}_{role}_lo"], h[f"{name}_{role}_hi"] = ci[metric]
    h["ce_base"] = _mean(result, next(iter(result["pairs"])), lambda x: x["ce_target"])
    for who, by_t in result["counterparts"]["shares"].items():
        s = by_t[str(CORE)]
        key = who.replace(" ", "_")
        h[f"share_{key}"], h[f"share_{key}_lo"], h[f"share_{key}_hi"] = s["share"], *s["ci"]
    for who, d in result["counterparts"]["vs_floor"].items():
        key = who.replace(" ", "_")
        h[f"diff_{key}"], h[f"diff_{key}_lo"], h[f"diff_{key}_hi"] = d["difference"], *d["ci"]
    h["stitch_worked"] = h["stitch_ev_min_other"] >= STITCH_FLOOR
    # whether the zoo's recipes say the partners share the base's data and budget (a model given by path does not)
    h["zoo_recipes"] = all(is_zoo(s) for s in (result["specs"]["base"], result["specs"]["other"],
                                              result["specs"]["twin"]) if s)
    blocks = result["pairs"]["other"]["blocks"]
    h.update(blocks_other=blocks["other"], blocks_base=blocks["base"],
             params_other=result["pairs"]["other"]["n_params"]["other"],
             params_base=result["pairs"]["other"]["n_params"]["base"])
    return h


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _span(h: dict, name: str) -> str:
    """`` (95% interval 61-64%)`` of ``h[name]``, or nothing where no interval was measured."""
    if f"{name}_lo" not in h:
        return ""
    return f" (95% interval {100 * h[name + '_lo']:.0f}-{100 * h[name + '_hi']:.0f}%)"


def verdict_vs_floor(h: dict) -> str:
    """The other architecture's share of counterparts against the twin's, as the object of "The other architecture
    leaves ...": resolvably fewer, more, or as many within the paired interval."""
    if "diff_other" not in h:
        return "no floor to compare with (no twin was given)"
    d, lo, hi = (100 * h[k] for k in ("diff_other", "diff_other_lo", "diff_other_hi"))
    if hi < 0:
        return (f"{-d:.0f} points fewer features with a counterpart than a reseed of the base's own architecture "
                f"does (95% interval {-hi:.0f} to {-lo:.0f})")
    if lo > 0:
        return (f"{d:.0f} points more features with a counterpart than a reseed of the base's own architecture does "
                f"(95% interval {lo:.0f} to {hi:.0f})")
    return (f"as many features with a counterpart as a reseed of the base's own architecture does, within the "
            f"intervals (a difference of {d:+.0f} points, 95% interval {lo:+.0f} to {hi:+.0f})")


def models_text(result: dict) -> str:
    """How the models compared came to be, as far as the chapter knows it: the zoo's recipes say it; a model given
    by path or name says only what it is."""
    specs = result["specs"]
    partners = [s for s in (specs["other"], specs["twin"]) if s]
    if all(is_zoo(s) for s in (specs["base"], *partners)):
        return ("The other architecture and the twin are built from the base's recipe in the zoo (tokenizer, data, "
                "steps, batch, learning rate): the twin from another seed, the other architecture with its own "
                "blocks and an MLP as many weights wide. Each SAE is trained with the base SAE's recipe on its own "
                "model's residual at the same depth.")
    return (f"The models compared were given: `{short(specs['base'])}`, `{short(specs['other'])}`"
            + (f" and `{short(specs['twin'])}`" if specs["twin"] else "") + ", with their SAEs. How each was trained "
            "is not known here: the floor compares like with like only as far as the twin shares the base's "
            "recipe, and each SAE the base SAE's.")


def describe(h: dict) -> dict[str, str]:
    """The section's paragraphs, written from the numbers (glued as ``across_<name>``)."""
    twin = h["twin"]
    stitch = (f"Mapped by the stitch, the other architecture's residual explains {_pct(h['stitch_ev_other'])} of the "
              f"base's variance at the SAE's layer (mean over the datasets; the lowest, "
              f"{_pct(h['stitch_ev_min_other'])})"
              + (f", against {_pct(h['stitch_ev_twin'])} from the twin" if twin else "")
              + f"; linear CKA between the two layers is {h['cka_other']:.2f}"
              + (f" ({h['cka_twin']:.2f} for the twin)" if twin else "") + ". Run from the stitched "
              f"activations, the base's next-token loss is {h['ce_stitched_other']:.3f} nats"
              + (f" ({h['ce_stitched_twin']:.3f} from the twin's)" if twin else "")
              + f", against {h['ce_base']:.3f} on its own.")
    if not h["stitch_worked"]:
        stitch += (f" On at least one dataset the stitch explains under {_pct(STITCH_FLOOR)} of the base's variance: "
                   "it has not found the map there, and what it carries below measures the stitch, not the "
                   "dictionary.")
    carried = (f"Carried onto the base through the stitch, the other architecture's SAE explains "
               f"{_pct(h['ev_carried_other'])}{_span(h, 'ev_carried_other')} of the base's residual variance on "
               f"{h['first']} and recovers {_pct(h['ce_rec_carried_other'])} of the loss"
               f"{_span(h, 'ce_rec_carried_other')}"
               + (f"; the twin's SAE, carried the same way, {_pct(h['ev_carried_twin'])}{_span(h, 'ev_carried_twin')} "
                  f"and {_pct(h['ce_rec_carried_twin'])}" if twin else "")
               + f"; the base's own SAE, {_pct(h['ev_own'])} and {_pct(h['ce_rec_own'])}.")
    shares = (f"Of the base SAE's {h['n_alive']:,} features that fire on the held-out text (of {h['n_features']:,}), "
              f"{_pct(h['share_other'])}{_span(h, 'share_other')} have a counterpart in "
              f"the other architecture's SAE, a feature whose activations correlate with theirs at "
              f"{h['threshold']:.1f} or more on the same tokens"
              + (f"; {_pct(h['share_twin'])}{_span(h, 'share_twin')} in the twin's" if twin else "")
              + (f"; {_pct(h['share_second_seed'])}{_span(h, 'share_second_seed')} in the base SAE retrained from "
                 "another seed, the most any other dictionary can be expected to share"
                 if "share_second_seed" in h else "")
              + (f". The other architecture leaves {verdict_vs_floor(h)}." if twin else "."))
    return {"stitch": stitch, "carried": carried, "shares": shares}
