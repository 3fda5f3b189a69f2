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

from sae_transfer.book.chapters import chapter_names
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


def _inline(label: str) -> str:
    """A part's label inside a sentence: ``On the toy zoo`` -> ``on the toy zoo``."""
    return label[:1].lower() + label[1:]


def parts_reading(parts: dict[str, dict[str, dict]]) -> str:
    """Which chapters each part after the first runs again, written from the runs (a part may leave some out):
    ``The part on SmolLM2 runs 7 of the 8 chapters again (all but *Across model sizes*).``, and names the chapters
    only it runs, one sentence per further part."""
    (_, main), *rest = parts.items()
    out = []
    for part, chapters in rest:
        left = [main[c]["meta"]["title"] for c in main if c not in chapters]
        own = [r["meta"]["title"] for c, r in chapters.items() if c not in main]
        said = (f"runs {len(chapters) - len(own)} of the {len(main)} chapters again"
                + (" (all but " + ", ".join(f"*{t}*" for t in left) + ")" if left else "")
                + (", and " + ", ".join(f"*{t}*" for t in own) + ", which only it holds" if own else ""))
        out.append(f"The part {_inline(part)} {said}.")
    return " ".join(out)


#: What each chapter shows, for the introduction's list of the chapters a book holds. Glued Markdown renders no
#: Sphinx role, so no citation here (the chapters cite their sources).
ABOUT = {
    "zoo": "the models, finetunes and SAEs the part runs on, and how well each was trained.",
    "residuals": "how far finetuning moves the residual stream, layer by layer, on several data distributions and "
                 "along finetuning.",
    "sae_metrics": "does the base SAE still reconstruct the finetune? Every standard metric, with and without "
                   "outliers, from one streamed pass per model, checked against SAELens.",
    "features": "which features keep their meaning, whether their directions moved, how quickly fine-tuning the SAE "
                "recovers it, and the features' top contexts.",
    "predict": "which cheap signal (residual similarity, weight deviation, the SAE-based transferability score, "
               "finetuning compute) predicts transfer, across every checkpoint; the thresholds of the `check` "
               "command against every case; and STS tested on its own claim.",
    "answerability": "do SAE features that tell an answerable prompt from an unanswerable one generalize across "
                     "domains and templates like a residual probe, and do the base's probes survive finetuning?",
    "diffing": "a crosscoder on base and finetune; the base SAE's features kept, shifted or lost; latents new in the "
               "finetune; an unrelated twin and a second SAE as floor and ceiling; a browsable page per latent.",
    "sizes": "affine maps between a small and a large model of one family carry the small model's SAE (zero-shot "
             "and as the large SAE's starting point), probes and a steering vector across; which features are core "
             "to both sizes and which emerge only in the larger.",
    "across": "a model built of other blocks (rotary positions, RMSNorm, a gated MLP) on the base's tokenizer, data "
              "and budget: its SAE carried onto the base through the same stitch, and the share of the base SAE's "
              "features that have a counterpart in it, between a reseed's floor and a second SAE's ceiling.",
    "languages": "a finetune into another language, the base SAE's metrics and verdict on text in each language, "
                 "and on parallel verses which of its features are language-general or language-specific, before "
                 "and after, each against the floor of a wrong pairing and the ceiling of a second translation.",
    "atlas": "every finetune and checkpoint in one sortable table, each with `check`'s verdict and the predictors "
             "that need no training data, the base's passes computed once (the `atlas` command, which also runs on "
             "a SLURM cluster).",
    "known_answers": "finetunes with planted feature changes (kept, shifted, rarer, lost, new), and every label of "
                     "the book (the crosscoder's classes, activation similarity, `check`'s verdict) scored against "
                     "the truth: where each can be trusted and where it stops being right.",
}


def _html(page: str) -> str:
    """A page's built address, relative to the introduction: glued Markdown is rendered without Sphinx's
    cross-references (a link to an .ipynb stays one), so links name the built pages."""
    return f"{page.removesuffix('.ipynb')}.html"


def _zoo_of(chapters: dict[str, dict]) -> str | None:
    return next((r["meta"]["params"]["zoo"] for r in chapters.values() if "zoo" in r["meta"]["params"]), None)


def chapter_list(parts: dict[str, dict[str, dict]], links: dict[str, dict[str, str]]) -> str:
    """The introduction's numbered list of the chapters this book holds, in book order, each linked to every part
    that ran it (``ABOUT`` says what it shows). A chapter no part ran is not listed, so no link leads nowhere."""
    lines = []
    for name in chapter_names():
        held = [(part, links[part][name]) for part in parts if name in parts[part]]
        if not held:
            continue
        title = parts[held[0][0]][name]["meta"]["title"]
        where = (f"[{title}]({_html(held[0][1])})" if len(parts) == 1 else
                 f"*{title}* (" + ", ".join(f"[{_inline(part)}]({_html(page)})" for part, page in held)
                 + ")")
        lines.append(f"{len(lines) + 1}. {where}: {ABOUT[name]}")
    return "\n".join(lines) if lines else "No chapter of this build ran."


def _family_words(zoo: str) -> str:
    """What a zoo holds, for a reader: its real model or the toy zoo's training, its finetunes and SAEs."""
    recipe = Zoo.open(zoo).recipe
    finetunes = [name for name, m in recipe.models.items() if m.parent is not None]
    n_sae = len(recipe.saes)
    held = (f"{len(finetunes)} finetune{'s' * (len(finetunes) != 1)} ({', '.join(f'`{f}`' for f in finetunes)}) "
            f"and {n_sae} SAE{'s' * (n_sae != 1)}")
    if recipe.pretrained:
        return f"{family_name(zoo)}, a real pretrained model fetched by package name, with {held}"
    return f"the toy zoo, small models the project trains itself so that every finetune is under control: {held}"


def book_reading(parts: dict[str, dict[str, dict]], links: dict[str, dict[str, str]]) -> str:
    """What this book runs on, written from its runs: each part's family (what its zoo holds, linked to its zoo
    page), which chapters each further part runs again (``parts_reading``) and, with several parts, the page that
    sets their answers side by side."""
    said = []
    for part, chapters in parts.items():
        zoo = _zoo_of(chapters)
        words = _family_words(zoo) if zoo else f"{_inline(part)}, models given by parameter files"
        if "zoo" in links[part]:
            words += f" ([its zoo page]({_html(links[part]['zoo'])}))"
        said.append(words)
    if not said:
        return ""
    count = {2: "two", 3: "three"}.get(len(said), str(len(said)))
    text = (f"This book runs on one family: {said[0]}." if len(said) == 1 else
            f"This book runs on {count} families: " + "; and ".join(said) + ".")
    if len(parts) > 1:
        text += (f" {parts_reading(parts)} A [last page](compare.html) sets the families' answers side by side and "
                 "says where they agree.")
    return text


def findings_markdown(found: list[dict[str, Any]]) -> str:
    """A numbered list, one question each, one line per part of the book under it."""
    lines = []
    for i, f in enumerate(found, 1):
        lines.append(f"{i}. **{f['question']}**")
        lines += [f"   - *{a['part']}:* {a['text']} ([{a['title']}]({_html(a['link'])})"
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
        zoo = _zoo_of(results)
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
