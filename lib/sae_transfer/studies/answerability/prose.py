"""The answerability chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any


def _change(drop: float) -> str:
    return f"loses {drop:.3f} AUROC" if drop >= 0 else f"gains {-drop:.3f} AUROC"


#: An AUROC this close to 0.5 is a probe at chance: the box says so instead of reading its changes as findings.
NEAR_CHANCE = 0.1


def in_short(h: dict[str, Any]) -> str:
    text = (f"A residual probe tells answerable from unanswerable prompts at AUROC {h['residual_in']:.2f} in its "
            f"own domain and {h['residual_out']:.2f} in others; a single SAE feature at {h['sae1_in']:.2f} and "
            f"{h['sae1_out']:.2f}. Carried to the finetunes without retraining, the residual probe "
            f"{_change(h['drop_residual'])} and the one-feature probe {_change(h['drop_sae1'])}.")
    chance = [where for where, key in (("in its own domain", "residual_in"), ("in other domains", "residual_out"))
              if abs(h[key] - 0.5) < NEAR_CHANCE]
    if chance:
        text += (f" The residual probe is near chance {' and '.join(chance)} (within {NEAR_CHANCE} of 0.5): no "
                 "linear probe finds answerability there at this layer, and what the finetunes change there says "
                 "nothing.")
    return text


def capacity(toy_base: bool) -> str:
    """What the probes can find in the base: the zoo's toy base (``PairSetup.toy_base``) was never asked to
    answer; of any other base the page says nothing it has not measured."""
    what = ("The zoo's small base model was trained briefly on mostly prose and never asked to answer anything: "
            "the probes can only find what its residual stream carries about the prompt's surface (whether the "
            "article's title recurs in the context, whether a year or a number is present). " if toy_base else "")
    return what + ("Where the in-domain AUROC is near 0.5 no linear probe finds the distinction at that layer, and "
                   "the generalization and finetuning results for that domain say nothing. The paper's question, "
                   "whether answerability is *one* direction that features pick out, needs a model that can answer: "
                   "`params/paper/gemma-2-9b-answerability.yaml` runs the same chapter on Gemma 2 9B with a Gemma "
                   "Scope SAE, as the paper did, on a GPU.")
