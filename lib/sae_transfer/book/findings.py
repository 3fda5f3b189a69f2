"""The book's findings, written from results: the introduction reads each chapter's "In short" box back from its
``results.json`` (``numbers["in_short"]``) and sets them side by side for each part of the book.

The seed's numbers quoted here are theirs (Kutsyk et al. 2025), and say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

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
            ("diffing", "What does the base SAE miss?"),
            ("sizes", "Does an SAE carry across model sizes?"))


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
