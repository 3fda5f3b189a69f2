"""The chapter across languages' tables, headline numbers and paragraphs, all from ``measure``'s plain data."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short
from sae_transfer.data.verses import TRANSLATIONS
from sae_transfer.studies.languages.measure import CLASSES

#: The check's numbers the SAE table shows, by the name it gives them.
METRICS = {"explained variance": "ev", "CE recovered": "ce_recovered", "CE with SAE - clean (nats)": "delta_ce",
           "KL with SAE": "kl", "clean CE (nats)": "ce_clean"}


def language(code: str) -> str:
    """A verse translation's language in words: "French"."""
    return TRANSLATIONS[code].language


def _lang_names(result: dict) -> dict[str, str]:
    langs = result["languages"]
    return {"base_text": language(langs["base_language"]), "new_text": language(langs["new_language"])}


def sae_table(result: dict) -> pd.DataFrame:
    """Per language and metric: the base SAE on the base and on the finetune, with 95% intervals over token
    batches."""
    names, rows = _lang_names(result), []
    for which, r in result["checks"].items():
        m = r["metrics"]
        for label, key in METRICS.items():
            row = {"text": f"{names[which]} ({short(result['datasets'][which])})", "metric": label}
            for side in ("base", "finetune"):
                x = m[f"{key}_{side}"]
                row.update({side: x["value"], f"{side} low": x["lo"], f"{side} high": x["hi"]})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["text", "metric"])


def verdict_table(result: dict) -> pd.DataFrame:
    """Per language: each criterion of the verdict with its interval and class, and the verdict."""
    names, rows = _lang_names(result), []
    for which, r in result["checks"].items():
        for c in V.CRITERIA:
            x = r["metrics"][c.key]
            rows.append({"text": names[which], "criterion": c.label, "value": x["value"], "low": x["lo"],
                         "high": x["hi"], "class": r["criteria"][c.key], "rule": c.rule()})
        rows.append({"text": names[which], "criterion": "verdict", "class": r["verdict"]
                     + ("" if r["decided"] else " (not decided by the intervals)")})
    return pd.DataFrame(rows).set_index(["text", "criterion"])


def class_names(result: dict) -> dict[str, str]:
    """What tables and figures call each class: the one-language classes by their language."""
    langs = result["languages"]
    return {**{c: c for c in CLASSES}, "base language only": f"{language(langs['base_language'])} only",
            "new language only": f"{language(langs['new_language'])} only"}


def classes_table(result: dict) -> pd.DataFrame:
    """The share of each class of features on the base and on the finetune, with 95% intervals over features."""
    s, names, rows = result["shares"], class_names(result), []
    for name in CLASSES:
        for side, label in (("before", "base"), ("after", "finetune")):
            x = s["classes"][side][name]
            rows.append({"class": names[name], "model": label, "share": x["share"], "low": x["ci"][0],
                         "high": x["ci"][1]})
    return pd.DataFrame(rows).set_index(["class", "model"])


#: What the general-share table calls each pairing of verses.
PAIRINGS = {"translation": "with its translation", "shuffled": "with another verse's translation (floor)",
            "second translation": "with a second translation in the base's language (ceiling)"}


def general_table(result: dict) -> pd.DataFrame:
    """The share of language-general features, each verse paired with its translation, with a wrong one (the
    floor) and with a second translation in the base's language (the ceiling), before and after."""
    rows = []
    for side, by in result["shares"]["general"].items():
        for pairing, x in by.items():
            rows.append({"model": {"before": "base", "after": "finetune"}[side], "verse paired": PAIRINGS[pairing],
                         "share general": x["share"], "low": x["ci"][0], "high": x["ci"][1]})
    return pd.DataFrame(rows).set_index(["model", "verse paired"])


def transfer_table(result: dict) -> pd.DataFrame:
    """Per class on the base and language, the share of its features that transfer (correlation over verses
    between base and finetune at least the threshold), with 95% intervals over features."""
    langs, names, rows = result["languages"], class_names(result), []
    for name, x in result["shares"]["transfer"].items():
        for code in (langs["base_language"], langs["new_language"]):
            rows.append({"class on the base": names[name], "verses in": language(code), "features": x["n"],
                         "share transferring": x[code]["share"], "low": x[code]["ci"][0], "high": x[code]["ci"][1]})
    return pd.DataFrame(rows).set_index(["class on the base", "verses in"])


def headline(result: dict) -> dict[str, Any]:
    """Every number the prose glues."""
    names, langs, s = _lang_names(result), result["languages"], result["shares"]
    h: dict[str, Any] = {"lang_base": names["base_text"], "lang_new": names["new_text"],
                         "n_verses": result["verses"]["n_verses"], "n_alive": s["n_alive"],
                         "n_features": s["n_features"], **result["thresholds"],
                         "ceiling": bool(langs["ceiling"])}
    for which, key in (("base_text", "base"), ("new_text", "new")):
        r = result["checks"][which]
        h[f"verdict_{key}"], h[f"decided_{key}"] = r["verdict"], r["decided"]
        h[f"tokens_{key}"] = r["tokens"]
        for metric in ("ev_base", "ev_finetune", "ce_recovered_base", "ce_recovered_finetune", "ev_drop",
                       "ce_recovered_drop", "regular_act_sim", "ce_clean_base", "ce_clean_finetune"):
            x = r["metrics"][metric]
            h[f"{metric}_{key}"], h[f"{metric}_{key}_lo"], h[f"{metric}_{key}_hi"] = x["value"], x["lo"], x["hi"]
    for side in ("before", "after"):
        for pairing, x in s["general"][side].items():
            k = f"general_{side}" + {"translation": "", "shuffled": "_floor", "second translation": "_ceiling"}[pairing]
            h[k], h[f"{k}_lo"], h[f"{k}_hi"] = x["share"], *x["ci"]
        for name in CLASSES:
            x = s["classes"][side][name]
            h[f"{_slug(name)}_{side}"] = x["share"]
    c = s["general_change"]
    h["general_change"], h["general_change_lo"], h["general_change_hi"] = c["difference"], *c["ci"]
    for name, x in s["transfer"].items():
        for code, key in ((langs["base_language"], "base"), (langs["new_language"], "new")):
            h[f"transfer_{_slug(name)}_{key}"] = x[code]["share"]
        h[f"n_{_slug(name)}"] = x["n"]
    h["general_kept"] = s["moved"]["general"]
    return h


def _slug(name: str) -> str:
    return {"general": "general", "shared, uncorrelated": "shared", "base language only": "base_only",
            "new language only": "new_only", "silent": "silent"}[name]


def _pct(x: float | None, digits: int | None = None) -> str:
    """A share in percent: a decimal under 10%, where whole points would hide it."""
    if x is None:
        return "n/a"
    return f"{100 * x:.{digits if digits is not None else (1 if abs(x) < 0.1 else 0)}f}%"


def _span(h: dict, name: str, pct: bool = True) -> str:
    lo, hi = h.get(f"{name}_lo"), h.get(f"{name}_hi")
    if lo is None or hi is None:
        return ""
    if not pct:
        return f" (95% interval {lo:.3f} to {hi:.3f})"
    digits = 1 if max(abs(lo), abs(hi)) < 0.1 else 0
    return f" (95% interval {_pct(lo, digits)[:-1]}-{_pct(hi, digits)})"


def verdict_words(h: dict, key: str) -> str:
    """The verdict on one language's text with the criterion that decided it (``check``'s words), and whether
    the intervals decide it."""
    values = {c.key: h[f"{c.key}_{key}"] if h[f"{c.key}_{key}"] is not None else float("nan") for c in V.CRITERIA}
    said = V.words(values, h[f"ev_base_{key}"])
    if h[f"decided_{key}"] or h[f"ev_base_{key}"] < V.POOR:  # a poor SAE has no verdict to decide
        return said
    return f"{said}, not decided by the intervals"


def general_reading(h: dict) -> str:
    """Whether the general share before stands clear of its floor and how it compares with its ceiling."""
    if h["general_before_lo"] <= h["general_before_floor_hi"]:
        return ("no more than the floor: pairing each verse with another verse's translation gives "
                f"{_pct(h['general_before_floor'])}, so these features' agreement across the two languages is what "
                "chance and their firing rates give")
    text = f"well above the {_pct(h['general_before_floor'])} that pairing each verse with a wrong translation gives"
    if h["ceiling"]:
        text += (f", and {'close to' if h['general_before_ceiling_lo'] <= h['general_before_hi'] else 'below'} the "
                 f"{_pct(h['general_before_ceiling'])} that two translations in {h['lang_base']} give")
    return text


def change_reading(h: dict) -> str:
    """The change of the general share with the finetune, read from its paired interval."""
    d, lo, hi = (100 * h[k] for k in ("general_change", "general_change_lo", "general_change_hi"))
    if lo > 0:
        return f"{d:.1f} points more (95% interval {lo:.1f} to {hi:.1f})"
    if hi < 0:
        return f"{-d:.1f} points fewer (95% interval {-hi:.1f} to {-lo:.1f})"
    return f"as many within the interval (a change of {d:+.1f} points, 95% interval {lo:+.1f} to {hi:+.1f})"


def describe(h: dict) -> dict[str, str]:
    """The chapter's paragraphs, written from the numbers (glued as ``languages_<name>``)."""
    en, new = h["lang_base"], h["lang_new"]
    learned = h["ce_clean_finetune_new"] - h["ce_clean_base_new"]
    verdict = (f"On {new} text the finetune's next-token loss is {h['ce_clean_finetune_new']:.3f} nats against the "
               f"base's {h['ce_clean_base_new']:.3f} ({learned:+.3f}); on {en} text, "
               f"{h['ce_clean_finetune_base']:.3f} against {h['ce_clean_base_base']:.3f}. "
               f"The base SAE explains {_pct(h['ev_finetune_new'])} of the finetune's residual variance on {new} "
               f"text against {_pct(h['ev_base_new'])} of the base's (a drop of {h['ev_drop_new']:+.3f}"
               f"{_span(h, 'ev_drop_new', pct=False)}), and {_pct(h['ev_finetune_base'])} against "
               f"{_pct(h['ev_base_base'])} on {en} text. Its regular features' activations correlate at "
               f"{h['regular_act_sim_new']:.2f} between base and finetune on {new} text and "
               f"{h['regular_act_sim_base']:.2f} on {en}. By `check`'s thresholds the base SAE "
               f"**{verdict_words(h, 'new')}** on {new} text and **{verdict_words(h, 'base')}** on {en} text.")
    general = (f"Of the base SAE's {h['n_alive']:,} features that fire on at least {_pct(h['min_rate'])} of the "
               f"{h['n_verses']:,} verses in either language (of {h['n_features']:,}), "
               f"{_pct(h['general_before'])}{_span(h, 'general_before')} are language-general on the base: they fire "
               f"in both languages and their activations over verses correlate at {h['general_corr']:.1f} or more "
               f"with those on the translations. That is {general_reading(h)}. "
               f"{_pct(h['base_only_before'])} fire in {en} only, {_pct(h['new_only_before'])} in {new} only.")
    change = (f"After the finetune, {_pct(h['general_after'])}{_span(h, 'general_after')} are language-general: "
              f"{change_reading(h)} than before. {_pct(h['base_only_after'])} then fire in {en} only and "
              f"{_pct(h['new_only_after'])} in {new} only.")
    groups = [("general", "language-general"), ("shared", "shared but uncorrelated"),
              ("base_only", f"{en}-only"), ("new_only", f"{new}-only")]
    said = [f"{_pct(h[f'transfer_{k}_base'])} and {_pct(h[f'transfer_{k}_new'])} of the {h[f'n_{k}']:,} {name} ones"
            for k, name in groups if h[f"n_{k}"]]
    transfer = (f"Which features transfer (their largest activation per verse correlates at {h['transfer_corr']:.1f} "
                f"or more between base and finetune), in {en} and in {new} verses: " + "; ".join(said) + ".")
    return {"verdict": verdict, "general": general, "change": change, "transfer": transfer}
