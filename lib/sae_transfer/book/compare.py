"""The page that sets a book's parts side by side: the toy zoo's answer to each question beside a real family's,
read from the chapters' ``results.json``, with a plain verdict on whether they agree.

Each comparison asks one ordered question of the two finetunes every zoo holds, the one trained on code and the
one trained on math ("which does the base SAE transfer to worse?"); the families agree when their answers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Comparison:
    chapter: str
    key: str  # a results.json number with {ft} for the finetune's domain: "ev_token_{ft}_{ft}"
    what: str
    higher_is_closer: bool  # whether a higher value means the finetune stays closer to its base

    def values(self, numbers: dict[str, Any]) -> dict[str, float] | None:
        out = {ft: numbers.get(self.key.format(ft=ft)) for ft in ("code", "math")}
        return out if all(isinstance(v, (int, float)) for v in out.values()) else None

    def further(self, numbers: dict[str, Any]) -> str | None:
        """The finetune (``code`` or ``math``) that moved further from its base by this measure."""
        v = self.values(numbers)
        if v is None or v["code"] == v["math"]:
            return None
        return min(v, key=v.get) if self.higher_is_closer else max(v, key=v.get)


COMPARISONS = (
    Comparison("residuals", "cos_{ft}_{ft}", "residual cosine with the base, on the finetune's own domain", True),
    Comparison("residuals", "rel_{ft}_{ft}", "relative residual distance from the base, own domain", False),
    Comparison("sae_metrics", "ev_token_{ft}_{ft}", "base SAE's explained variance, own domain", True),
    Comparison("sae_metrics", "ce_recovered_{ft}_{ft}", "base SAE's CE loss recovered, own domain", True),
    Comparison("sae_metrics", "delta_ce_{ft}_{ft}", "CE added by splicing the base SAE, own domain", False),
    Comparison("features", "regular_sim_{ft}", "activation similarity of the base SAE's regular features", True),
    Comparison("features", "dec_cos_regular_{ft}", "decoder cosine of regular features, base SAE vs its "
                                                    "fine-tuned copy", True),
)


def compare(parts: dict[str, dict[str, dict]]) -> list[dict[str, Any]]:
    """``parts``: ``{part caption: {chapter: results.json}}``. One row per comparison every part can answer."""
    rows = []
    for c in COMPARISONS:
        answers = {}
        for caption, chapters in parts.items():
            numbers = chapters.get(c.chapter, {}).get("numbers", {})
            if c.values(numbers) is None:
                break
            answers[caption] = (c.values(numbers), c.further(numbers))
        else:
            verdicts = {a[1] for a in answers.values()}
            rows.append({"comparison": c, "answers": answers,
                         "agree": len(verdicts) == 1 and None not in verdicts})
    return rows


def pair(code: float, math: float) -> str:
    """``code / math`` to three decimals, or to as many more (up to six) as it takes for two different values to
    read differently: the verdict beside them is drawn from the unrounded numbers."""
    digits = next((d for d in range(3, 7) if f"{code:.{d}f}" != f"{math:.{d}f}"), 3)
    return f"{code:.{digits}f} / {math:.{digits}f}"


def page(parts: dict[str, dict[str, dict]]) -> str:
    """The comparison page (MyST Markdown), every number from the parts' results."""
    rows = compare(parts)
    captions = list(parts)
    agree = sum(r["agree"] for r in rows)
    lines = ["# The toy zoo and the real family compared", "",
             "Every chapter runs once per part of this book. Each row below asks one question of the two finetunes "
             "every part holds, the one trained on code and the one trained on math: **which moved further from "
             "its base?** The parts agree when they give the same answer. The numbers are the chapters' own, read "
             "from their `results.json`; the chapters give their token counts and, where they are measured, "
             "their intervals.", "",
             f"**{agree} of {len(rows)} comparisons agree.**" if rows else
             "No comparison could be made: a part lacks the chapters or the code and math finetunes.", ""]
    header = "| question | chapter | " + " | ".join(f"{c}: code / math" for c in captions) + " | further from base |"
    lines += [header, "|" + "---|" * (3 + len(captions))]
    for r in rows:
        c = r["comparison"]
        cells = [pair(v["code"], v["math"]) for v, _ in r["answers"].values()]
        further = [f for _, f in r["answers"].values()]
        verdict = (f"{further[0]} in every part" if r["agree"] else
                   "parts differ: " + ", ".join(f"{f or 'tie'}" for f in further))
        lines.append(f"| {c.what} | {c.chapter} | " + " | ".join(cells) + f" | {verdict} |")
    differ = [r for r in rows if not r["agree"]]
    lines += ["", "Where they differ: " + "; ".join(r["comparison"].what for r in differ) + "."
              if differ else "They differ nowhere in this table.", ""]
    return "\n".join(lines)
