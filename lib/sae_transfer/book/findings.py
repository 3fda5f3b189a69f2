"""The book's findings, written from results: the introduction reads each chapter's "In short" box back from its
``results.json`` (``numbers["in_short"]``) and sets them side by side for each part of the book. The first
question, whether the base SAE still works, is answered by ``check``'s verdict for each finetune, joined here from
the two chapters that measure its three criteria (``verdict_text``): the book's one verdict per finetune.

The seed's numbers quoted here are theirs (Kutsyk et al. 2025), and say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short
from sae_transfer.studies.residuals.measure import PAPER_COSINE
from sae_transfer.studies.sae_metrics.tables import PAPER_TABLE
from sae_transfer.zoo.pretrained import PRETRAINED
from sae_transfer.zoo.store import Zoo

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
            ("atlas", "Across every finetune and checkpoint at once, which break it?"),
            ("diffing", "What does the base SAE miss?"),
            ("known_answers", "Can the labels be trusted where the truth is known?"),
            ("answerability", "Does a probe trained on the base still work on the finetunes?"),
            ("sizes", "Does an SAE carry across model sizes?"),
            ("across", "Does an SAE's dictionary carry across architectures?"),
            ("languages", "Does a base SAE survive a finetune into another language?"))


# ------------------------------------------------------------------------------------------ the introduction

def verdict_text(chapters: dict[str, dict]) -> str | None:
    """``check``'s verdict for each finetune on its own data, with the criterion that decided it: the SAE-metric
    chapter's two reconstruction criteria (``recon_*``) joined with the features chapter's activation similarity of
    the regular features on the same data, each with its token count. None without the SAE-metric chapter."""
    sm = chapters.get("sae_metrics", {}).get("numbers", {})
    features = chapters.get("features", {})
    fe = features.get("numbers", {})
    names = [k.removeprefix("recon_ev_drop_") for k in sm if k.startswith("recon_ev_drop_")]
    if not names:
        return None
    said, partial = [], []
    for k in names:
        values = {"ev_drop": sm[f"recon_ev_drop_{k}"], "ce_recovered_drop": sm[f"recon_ce_recovered_drop_{k}"]}
        if f"regular_sim_{k}" in fe and fe.get(f"dataset_{k}") == sm[f"recon_dataset_{k}"]:
            values["regular_act_sim"] = fe[f"regular_sim_{k}"]
        else:
            partial.append(f"`{k}`")
        said.append(f"**{V.words(values, sm[f'recon_base_ev_{k}'])}** on `{k}`")
    sources = (f"explained variance and CE loss recovered on {sm['n_tokens_measured']:,} tokens a dataset, from the "
               "SAE-metric chapter")
    if len(partial) < len(names):
        sources += (f"; the regular features' activation similarity on {features['meta']['params']['n_tokens']:,} "
                    "tokens, from the features chapter")
    text = ("By `check`'s thresholds, each finetune on its own data, the base SAE " + "; it ".join(said)
            + f" ({sources}).")
    if partial:
        text += (f" For {', '.join(partial)} the features chapter has no activation similarity on the same data: "
                 "that verdict rests on two of the three criteria.")
    return text


#: Answers the introduction does not read from the chapter's own box: ``{chapter: reader(chapters) -> text}``.
READERS = {"sae_metrics": verdict_text}

#: What each box's numbers were measured on, stated beside its answer (the same quantity measured by two chapters at
#: two budgets differs, and a reader must see why): the words for each chapter's ``n_tokens``. The verdict states
#: its own.
BUDGETS = {"features": "{:,} evaluation tokens", "predict": "{:,} tokens a case",
           "atlas": "up to {:,} tokens a finetune and dataset", "diffing": "{:,} evaluation tokens a dataset",
           "known_answers": "{:,} held-out draws", "sizes": "{:,} tokens a dataset",
           "across": "{:,} tokens a dataset", "languages": "{:,} tokens a language"}


def budget(chapter: str, results: dict) -> str | None:
    """The words for what ``chapter``'s numbers were measured on (``BUDGETS``), from its run's ``n_tokens``."""
    value = results["meta"]["params"].get("n_tokens")
    return BUDGETS[chapter].format(value) if chapter in BUDGETS and isinstance(value, int) else None


def findings(parts: dict[str, dict[str, dict]], links: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The introduction's findings: for each chapter of ``FINDINGS`` that some part ran, its question and each
    part's answer (the chapter's box, or ``READERS``'s). ``parts``: ``{part: {chapter: results.json}}``;
    ``links``: the same keys to page paths. Each finding: ``{chapter, question, answers: [{part, text, title,
    link, budget}]}``."""
    out = []
    for chapter, question in FINDINGS:
        read = READERS.get(chapter, lambda chapters, c=chapter: chapters[c]["numbers"].get("in_short"))
        answers = [{"part": part, "text": text, "title": chapters[chapter]["meta"]["title"],
                    "link": links[part][chapter], "budget": budget(chapter, chapters[chapter])}
                   for part, chapters in parts.items() if chapter in chapters and (text := read(chapters))]
        if answers:
            out.append({"chapter": chapter, "question": question, "answers": answers})
    return out


def parts_reading(parts: dict[str, dict[str, dict]]) -> str:
    """Which chapters each part after the first runs again, written from the runs (a part may leave some out):
    ``It runs 7 of the 8 chapters again (all but *Across model sizes*).``, and names the chapters only it runs,
    one sentence per further part, led by the part's name where there are several."""
    (_, main), *rest = parts.items()
    out = []
    for part, chapters in rest:
        left = [main[c]["meta"]["title"] for c in main if c not in chapters]
        own = [r["meta"]["title"] for c, r in chapters.items() if c not in main]
        said = (f"runs {len(chapters) - len(own)} of the {len(main)} chapters again"
                + (" (all but " + ", ".join(f"*{t}*" for t in left) + ")" if left else "")
                + (", and " + ", ".join(f"*{t}*" for t in own) + ", which only it holds" if own else ""))
        out.append(f"It {said}." if len(rest) == 1 else f"{part}, it {said}.")
    return " ".join(out)


def findings_markdown(found: list[dict[str, Any]]) -> str:
    """A numbered list, one question each, one line per part of the book under it."""
    lines = []
    for i, f in enumerate(found, 1):
        lines.append(f"{i}. **{f['question']}**")
        # Glued Markdown is rendered without Sphinx's cross-references (a link to an .ipynb stays one, roles stay
        # text), so the links name the built pages.
        lines += [f"   - *{a['part']}:* {a['text']} ([{a['title']}]({a['link'].removesuffix('.ipynb')}.html)"
                  + (f"; {a['budget']})" if a.get("budget") else ")") for a in f["answers"]]
    return "\n".join(lines) if lines else "No chapter of this build has a summary yet."


def family_name(zoo: str) -> str:
    """What a zoo profile's models are, for a reader: the real model's name, or the toy zoo."""
    real = Zoo.open(zoo).recipe.pretrained
    return PRETRAINED[real].title if real else "the toy zoo"


def family(zoo: str) -> str:
    """What a part of the book runs on, for a reader: ``On`` the real model, or the toy zoo."""
    return f"On {family_name(zoo)}"


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
