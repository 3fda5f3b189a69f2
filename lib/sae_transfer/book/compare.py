"""The page that sets a book's parts side by side: the toy zoo's answer to each question beside a real family's,
read from the chapters' ``results.json``, with a plain verdict on whether they agree.

Each comparison asks one ordered question of the two finetunes every zoo holds, the one trained on code and the
one trained on math: which moved further from the base by one measure ("on which does the base SAE lose more
explained variance?"). It compares changes, not levels: where a chapter
measures the base SAE on the base model too, the finetune's value less the base's on the same data (the base SAE
explains code worse than prose already on the base, so a level would mix the data with the finetune). Two
changes closer than the comparison's stated tolerance are a tie; the families agree when their answers do.
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
    base_key: str | None = None  # the base's own value on the same data; the change from it is compared
    tolerance: float = 0.01  # changes closer than this are a tie

    def values(self, numbers: dict[str, Any]) -> dict[str, float] | None:
        """Each finetune's value, or its change from the base (``base_key``), None where a number is missing."""
        out = {}
        for ft in ("code", "math"):
            v = numbers.get(self.key.format(ft=ft))
            b = numbers.get(self.base_key.format(ft=ft)) if self.base_key else 0.0
            if not (isinstance(v, (int, float)) and isinstance(b, (int, float))):
                return None
            out[ft] = v - b
        return out

    def further(self, numbers: dict[str, Any]) -> str | None:
        """The finetune (``code`` or ``math``) that moved further from its base by this measure, ``tie`` within
        the tolerance, None when a number is missing."""
        v = self.values(numbers)
        if v is None:
            return None
        if abs(v["code"] - v["math"]) <= self.tolerance:
            return "tie"
        return min(v, key=v.get) if self.higher_is_closer else max(v, key=v.get)


COMPARISONS = (
    Comparison("residuals", "cos_{ft}_{ft}", "whose residual stream is less aligned with the base's (cosine, own domain)", True),
    Comparison("residuals", "rel_{ft}_{ft}", "whose residuals lie further from the base's (relative distance, own domain)", False),
    Comparison("sae_metrics", "ev_token_{ft}_{ft}", "on which the base SAE loses more explained variance (change from the base, own domain)", True,
               "ev_token_base_{ft}"),
    Comparison("sae_metrics", "ce_recovered_{ft}_{ft}", "on which the base SAE recovers less of the CE loss (change from the base, own domain)",
               True, "ce_recovered_base_{ft}"),
    Comparison("sae_metrics", "delta_ce_{ft}_{ft}", "on which splicing the base SAE adds more CE (change from the "
                                                     "base, own domain, nats)", False, "delta_ce_base_{ft}"),
    Comparison("features", "regular_sim_{ft}", "on which the base SAE's regular features fire less alike (activation similarity)", True),
    Comparison("features", "dec_cos_regular_{ft}", "on which the regular features' decoders turn further when the "
                                                    "SAE is fine-tuned (decoder cosine)", True, tolerance=0.001),
)

#: Chapters the page does not compare, and why: what it says in their place.
NOT_COMPARED = ("The predicting-transfer chapter ranks predictors over checkpoints and the answerability chapter "
                "probes the base model: neither asks which finetune moved further, so they are not compared here.")


def _verdicts_at(parts: dict[str, dict[str, dict]]) -> str:
    """Where the ``check`` verdicts of every case are: the parts that ran the predicting-transfer chapter."""
    at = [caption for caption, chapters in parts.items() if "predict" in chapters]
    if not at:
        return ""
    named = ", ".join(f"\u201c{c}\u201d" for c in at)
    return (" The `check` verdicts of every case are in the predicting-transfer chapter of "
            + ("each part." if len(at) == len(parts) else f"the part{'s' if len(at) > 1 else ''} {named}."))


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
            rows.append({"comparison": c, "answers": answers, "agree": len(verdicts) == 1})
    return rows


def pair(code: float, math: float, signed: bool = False) -> str:
    """``code / math`` to three decimals, or to as many more (up to six) as it takes for two different values to
    read differently: the verdict beside them is drawn from the unrounded numbers. ``signed``: changes, with +."""
    digits = next((d for d in range(3, 7) if f"{code:.{d}f}" != f"{math:.{d}f}"), 3)
    sign = "+" if signed else ""
    return f"{code:{sign}.{digits}f} / {math:{sign}.{digits}f}"


def page(parts: dict[str, dict[str, dict]]) -> str:
    """The comparison page (MyST Markdown), every number from the parts' results."""
    rows = compare(parts)
    captions = list(parts)
    agree = sum(r["agree"] for r in rows)
    lines = ["# The toy zoo and the real family compared", "",
             "Every chapter runs once per part of this book. Each row below asks one question of the two finetunes "
             "every part holds, the one trained on code and the one trained on math: **which of them moved further "
             "from the base, by this measure?** Where a chapter measures the base SAE on the base model too, the row holds the change "
             "from the base on the same data (the finetune's value less the base's, signed), not the level, which "
             "also depends on the data. Two values closer than the row's tolerance are a tie. The parts agree when "
             "they give the same answer. The numbers are the chapters' own, read from their `results.json`; the "
             "chapters give their token counts and, where they are measured, their intervals.", "",
             f"**{agree} of {len(rows)} comparisons agree.**" if rows else
             "No comparison could be made: a part lacks the chapters or the code and math finetunes.", ""]
    header = ("| question | chapter | " + " | ".join(f"{c}: code / math" for c in captions)
              + " | tolerance | answer |")
    lines += [header, "|" + "---|" * (4 + len(captions))]
    for r in rows:
        c = r["comparison"]
        cells = [pair(v["code"], v["math"], signed=c.base_key is not None) for v, _ in r["answers"].values()]
        further = [f for _, f in r["answers"].values()]
        verdict = ((f"{further[0]} in every part" if further[0] != "tie" else "a tie in every part") if r["agree"]
                   else "parts differ: " + ", ".join(further))
        lines.append(f"| {c.what} | {c.chapter} | " + " | ".join(cells) + f" | {c.tolerance:g} | {verdict} |")
    differ = [r for r in rows if not r["agree"]]
    lines += ["", "Where they differ: " + "; ".join(r["comparison"].what for r in differ) + "."
              if differ else "They differ nowhere in this table.", "", NOT_COMPARED + _verdicts_at(parts), ""]
    return "\n".join(lines)
