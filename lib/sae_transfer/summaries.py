"""Each chapter's "In short" (two sentences at the top of its page) and the book's findings, written from results.

A chapter calls its function here with the numbers its own prose already states, so the box can never disagree
with the page; the introduction reads the boxes back from every chapter's ``results.json`` (``numbers["in_short"]``)
and sets them side by side for each part of the book. Every subject (which finetune, which size, which probe) is
picked from the results, so the sentences read right for any models a user passes.

The seed's numbers quoted here are theirs (Kutsyk et al. 2025), and say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .labels import short, slug
from .residuals import PAPER_COSINE
from .sae_metric_tables import PAPER_TABLE
from .verdict import ev_wording
from .zoo.card import is_real
from .zoo.pretrained import PRETRAINED
from .zoo.store import Zoo

#: The seed's two pairs, their numbers as the chapters quote them: (label, residual cosine, delta CE on the finetune).
SEED_PAIRS = (("Gemma-2b / Python (theirs)", PAPER_COSINE["Gemma-2b vs Python-code finetune (theirs)"],
               PAPER_TABLE["Gemma-2b python-codes (theirs)"]["delta CE"]),
              ("Mistral-7B / MetaMath (theirs)", PAPER_COSINE["Mistral-7B vs MetaMath (theirs)"],
               PAPER_TABLE["MetaMath-Mistral-7B (theirs)"]["delta CE"]))

#: The chapters whose boxes make the introduction's findings, in the order a reader meets the argument, each with
#: the question it answers.
FINDINGS = (("sae_metrics", "Does the base SAE still work on a finetune?"),
            ("features", "Which features keep their meaning?"),
            ("predict", "Can we tell in advance?"),
            ("diffing", "What does the base SAE miss?"),
            ("sizes", "Does an SAE carry across model sizes?"))


def _pct(x: float) -> str:
    return f"{x:.0f}%"


def _change(drop: float) -> str:
    return f"loses {drop:.3f} AUROC" if drop >= 0 else f"gains {-drop:.3f} AUROC"


# ------------------------------------------------------------------------------------------ the chapters' boxes

def zoo(card: dict, h: dict[str, Any]) -> str:
    models = card["models"]
    roots = [n for n, m in models.items() if m["parent"] is None]
    fts = [n for n, m in models.items() if m["parent"]]
    n_saes = int(h["saes_n_saes"])
    if is_real(card):
        text = (f"The real model `{roots[0]}` ({models[roots[0]]['n_params'] / 1e6:.0f}M parameters, fetched by "
                f"package name), {len(fts)} full finetune{'s' if len(fts) != 1 else ''} of it and {n_saes} "
                f"SAE{'s' if n_saes != 1 else ''} trained here.")
    else:
        text = (f"{len(roots)} base model{'s' if len(roots) != 1 else ''} ({', '.join(f'`{r}`' for r in roots)}), "
                f"{len(fts)} finetune{'s' if len(fts) != 1 else ''} and {n_saes} SAEs, all trained here on CPU.")
    return text + (f" {int(h['saes_n_meeting_bars'])} of the {n_saes} SAEs meet every quality bar on held-out prose "
                   f"(worst explained variance {h['saes_worst_explained_variance']:.3f}).")


def residuals(h: dict[str, Any], own: dict[str, str]) -> str:
    """``own``: finetune spec -> the dataset spec it is read on (its own domain where known)."""
    cos = {ft: h[f"cos_{slug(ft, ds)}"] for ft, ds in own.items()}
    most = min(cos, key=cos.get)
    text = (f"At the middle layer, `{short(most)}` moved furthest: its residual keeps mean cosine {cos[most]:.3f} "
            f"with the base's on {short(own[most])}")
    if len(cos) > 1:
        least = max(cos, key=cos.get)
        text += f"; `{short(least)}` keeps {cos[least]:.3f} on {short(own[least])}"
    seed = ", ".join(f"{cos:.2f} for {label.removesuffix(' (theirs)')}" for label, cos, _ in SEED_PAIRS)
    return text + f". The seed's pairs, their numbers: {seed}."


def sae_metrics(h: dict[str, Any], own: list[tuple[str, str]]) -> str:
    parts = []
    for ft, ds in own:
        b, f = h[f"ev_token_base_{short(ds)}"], h[f"ev_token_{slug(ft, ds)}"]
        parts.append(f"**{ev_wording(b, f)}** on `{short(ft)}` (explained variance per token {f:.3f} on "
                     f"{short(ds)}, {b:.3f} on the base)")
    worst = max(own, key=lambda p: h[f"delta_ce_{slug(*p)}"])
    return ("The base SAE " + "; it ".join(parts) + ". Splicing it into the finetune costs up to "
            f"{h[f'delta_ce_{slug(*worst)}']:.3f} nats of cross-entropy (`{short(worst[0])}`), against "
            f"{h[f'delta_ce_base_{short(worst[1])}']:.3f} in the base.")


def features(h: dict[str, Any], finetunes: list[str]) -> str:
    sims = {ft: h[f"regular_sim_{slug(ft)}"] for ft in finetunes if f"regular_sim_{slug(ft)}" in h}
    if not sims:
        return "No finetune had regular features to score."
    lo, hi = min(sims, key=sims.get), max(sims, key=sims.get)
    text = (f"On `{short(lo)}` the base SAE's regular features fire on the same tokens with mean activation "
            f"similarity {sims[lo]:.2f} ({_pct(h[f'regular_above08_{slug(lo)}'])} above 0.8)")
    if hi != lo:
        text += f"; on `{short(hi)}`, {sims[hi]:.2f} ({_pct(h[f'regular_above08_{slug(hi)}'])})"
    rec = [ft for ft in finetunes if f"rec_final_ev_{slug(ft)}" in h]
    if rec:
        ft = min(rec, key=lambda f: h[f"rec_base_ev_{slug(f)}"])
        text += (f". Fine-tuning the SAE on `{short(ft)}` for {h['sae_finetune_tokens']:,} tokens takes its explained "
                 f"variance from {h[f'rec_base_ev_{slug(ft)}']:.3f} to {h[f'rec_final_ev_{slug(ft)}']:.3f}")
    return text + "."


def predict(h: dict[str, Any]) -> str:
    base = ("the finetuning-compute baseline (steps x learning rate) does as well or better"
            if h["baseline_rank"] == 1 else
            f"the finetuning-compute baseline ranks {h['baseline_rank']} ({h['baseline_mean_abs']:.2f})")
    return (f"Across {h['n_cases']} cases, {h['best_predictor']} tracks transfer best (mean |Spearman r| "
            f"{h['best_mean_abs']:.2f} over the transfer measures); {base}. The `check` command's thresholds call "
            f"{h['cal_transfers']} cases transfers, {h['cal_degraded']} degraded and {h['cal_broken']} broken.")


def answerability(h: dict[str, Any]) -> str:
    return (f"A residual probe tells answerable from unanswerable prompts at AUROC {h['residual_in']:.2f} in its "
            f"own domain and {h['residual_out']:.2f} in others; a single SAE feature at {h['sae1_in']:.2f} and "
            f"{h['sae1_out']:.2f}. Carried to the finetunes without retraining, the residual probe "
            f"{_change(h['drop_residual'])} and the one-feature probe {_change(h['drop_sae1'])}.")


def diffing(h: dict[str, Any]) -> str:
    text = (f"Against a crosscoder of base and finetune, {h['worst_ft']} keeps {_pct(h['worst_kept_pct'])} of the "
            f"base SAE's firing features and loses {_pct(h['worst_lost_pct'])}")
    if h["n_pairs"] > 1:
        text += f"; {h['best_ft']} keeps {_pct(h['best_kept_pct'])}"
    new = h["total_new"]
    text += (". The crosscoder finds no latent new in any finetune" if new == 0 else
             f". The crosscoder finds {new} latent{'s' if new != 1 else ''} new in the finetunes")
    if h["has_floor"] and h["has_ceiling"]:
        text += (f"; an independently pretrained twin keeps {_pct(h['floor_kept_pct'])} by the same rule and a "
                 f"second SAE of the base {_pct(h['ceiling_kept_pct'])}")
    return text + "."


def sizes(h: dict[str, Any]) -> str:
    text = (f"Stitched from {h['small']} into {h['large']}, the small model's SAE explains "
            f"{_pct(100 * h['ev_transferred'])} of the large model's variance (the large model's own SAE: "
            f"{_pct(100 * h['ev_large'])}); a steering vector carried across keeps {_pct(h['steer_ratio_pct'])} of "
            f"the own vector's effect")
    if "init_reached" in h:
        text += (". As a starting point for the large SAE it " +
                 (f"saves {_pct(h['init_saved_pct'])} of the compute" if h["init_reached"] and h["init_saved_pct"] > 0
                  else "saves no compute once the stitch is paid for"))
    return text + "."


# ------------------------------------------------------------------------------------------ the introduction

def findings(parts: dict[str, dict[str, dict]], links: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The introduction's findings: for each chapter of ``FINDINGS`` that some part ran, its question and each
    part's box. ``parts``: ``{part: {chapter: results.json}}``; ``links``: the same keys to page paths. Each
    finding: ``{chapter, question, answers: [{part, text, title, link}]}``."""
    out = []
    for chapter, question in FINDINGS:
        answers = [{"part": part, "text": chapters[chapter]["numbers"]["in_short"],
                    "title": chapters[chapter]["meta"]["title"], "link": links[part][chapter]}
                   for part, chapters in parts.items() if "in_short" in chapters.get(chapter, {}).get("numbers", {})]
        if answers:
            out.append({"chapter": chapter, "question": question, "answers": answers})
    return out


def findings_markdown(found: list[dict[str, Any]]) -> str:
    """A numbered list, one question each, one line per part of the book under it."""
    lines = []
    for i, f in enumerate(found, 1):
        lines.append(f"{i}. **{f['question']}**")
        # Glued Markdown is rendered without Sphinx's cross-references (a link to an .ipynb stays one, roles stay
        # text), so the links name the built pages.
        lines += [f"   - *{a['part']}:* {a['text']} ([{a['title']}]({a['link'].removesuffix('.ipynb')}.html))"
                  for a in f["answers"]]
    return "\n".join(lines) if lines else "No chapter of this build has a summary yet."


def family(zoo: str) -> str:
    """What a part of the book runs on, for a reader: the real model's name, or the toy zoo."""
    real = Zoo.open(zoo).recipe.pretrained
    return f"On {PRETRAINED[real].title}" if real else "On the toy zoo"


def load_runs(runs: dict[str, dict[str, dict]]) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, str]]]:
    """``runs``: ``{part: {chapter: {"run_dir", "page"}}}`` as the book passes it -> ``(parts, links)``: each
    chapter's ``results.json`` and the page to link, keyed by what the part runs on (``family``) and chapter."""
    parts, links = {}, {}
    for chapters in runs.values():
        results = {c: json.loads((Path(r["run_dir"]) / "results.json").read_text()) for c, r in chapters.items()}
        zoo = next((r["meta"]["params"]["zoo"] for r in results.values() if "zoo" in r["meta"]["params"]), None)
        label = family(zoo) if zoo else f"Part {len(parts) + 1}"
        label = label if label not in parts else f"{label} ({len(parts) + 1})"
        parts[label] = results
        links[label] = {c: r["page"] for c, r in chapters.items()}
    return parts, links


def transfer_points(parts: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """Every case of each part's predicting-transfer chapter: ``part``, ``finetune``, ``step``, ``dataset``,
    ``kind`` (the base itself, a finetune on its own domain, or on other data), residual cosine and delta CE."""
    frames = []
    for caption, chapters in parts.items():
        if "predict" not in chapters:
            continue
        cases = pd.DataFrame(chapters["predict"]["tables"]["cases"])
        zoo = Zoo.open(chapters["predict"]["meta"]["params"]["zoo"])
        own = {n: short(zoo.own_domain(f"zoo:{n}") or "") for n in cases["name"].unique()}
        kind = ["the base itself" if step == 0 else "finetune, own domain" if own.get(n) == ds else
                "finetune, other data" for n, step, ds in zip(cases["name"], cases["step"], cases["dataset"])]
        frames.append(pd.DataFrame({"part": caption, "finetune": cases["name"], "step": cases["step"],
                                    "dataset": cases["dataset"], "kind": kind,
                                    "residual cosine": cases["residual cosine"], "delta CE": cases["delta CE"]}))
    columns = ["part", "finetune", "step", "dataset", "kind", "residual cosine", "delta CE"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
