"""Does a base SAE still work on a finetune? The stated, versioned thresholds behind every verdict the project
gives: the SAE-metric chapter's prose, the predict chapter's calibration and ``python -m sae_transfer check``.

A verdict compares the finetune with the base on the same tokens, with the same SAE, on three criteria, one per
way an SAE can fail a user:

- **EV drop**: explained variance per token on the base minus on the finetune (reconstruction);
- **CE recovered drop**: the same for the share of the zero-ablation loss the SAE recovers (what the model's
  predictions keep when the SAE stands in for the activation);
- **regular activation similarity**: the mean Pearson r of each regular feature's activations on the two models
  (does a feature fire on the same tokens; what a monitor or probe built on it relies on).

Each criterion is ``transfers``, ``degraded`` or ``broken`` by its two thresholds; the verdict is the worst of
the three. With an interval per criterion, a verdict is *decided* when the interval's two ends give the same
verdict (``python -m sae_transfer check`` stops measuring there). Change a threshold and ``VERSION`` changes:
``check.json`` records which thresholds produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

#: Bumped whenever a threshold or criterion changes; recorded with every verdict.
VERSION = 1

VERDICTS = ("transfers", "degraded", "broken")
#: The ``check`` command's exit status per verdict. 2 stays "bad input", as in every command; none of them is a code
#: a crash gives (1: an uncaught error; 128 + N, or -N to a parent, for a signal: 137 a kill or the OOM killer), so a
#: CI job never reads a crash as a verdict.
EXIT_STATUS = {"transfers": 0, "degraded": 10, "broken": 11}


@dataclass(frozen=True)
class Criterion:
    """``key`` is the measured quantity; ``keep`` and ``breaks`` its thresholds. ``higher_is_worse``: a drop
    (worse when larger) or a similarity (worse when smaller)."""

    key: str
    label: str
    keep: float
    breaks: float
    higher_is_worse: bool

    def classify(self, value: float) -> str:
        if value != value:  # NaN: nothing measured (e.g. no regular features) never passes as "transfers"
            return "degraded"
        worse = (lambda a, b: a > b) if self.higher_is_worse else (lambda a, b: a < b)
        if worse(value, self.breaks):
            return "broken"
        return "degraded" if worse(value, self.keep) else "transfers"

    def rule(self) -> str:
        """The thresholds in words, for tables and ``--help``."""
        if self.higher_is_worse:
            return f"transfers <= {self.keep:g} < degraded <= {self.breaks:g} < broken"
        return f"broken < {self.breaks:g} <= degraded < {self.keep:g} <= transfers"


#: EV drop thresholds are the SAE-metric chapter's "still works" (0.02) and "breaks" (0.2).
EV_DROP = Criterion("ev_drop", "EV drop", keep=0.02, breaks=0.2, higher_is_worse=True)
CE_RECOVERED_DROP = Criterion("ce_recovered_drop", "CE recovered drop", keep=0.02, breaks=0.10, higher_is_worse=True)
REGULAR_ACT_SIM = Criterion("regular_act_sim", "regular activation sim", keep=0.9, breaks=0.7, higher_is_worse=False)
CRITERIA = (EV_DROP, CE_RECOVERED_DROP, REGULAR_ACT_SIM)

#: Below this explained variance on the base itself, the SAE never worked on that data: nothing to transfer.
POOR = 0.5


def worst(verdicts) -> str:
    return max(verdicts, key=VERDICTS.index)


def classify(values: Mapping[str, float]) -> dict[str, str]:
    """Each criterion's class and the overall ``verdict`` (the worst), from ``values`` keyed by criterion key."""
    out = {c.key: c.classify(values[c.key]) for c in CRITERIA}
    out["verdict"] = worst(out.values())
    return out


def decided(intervals: Mapping[str, tuple[float, float]]) -> bool:
    """Whether every point of the criteria's intervals gives the same verdict (the optimistic and pessimistic
    ends agree); ``intervals`` keyed by criterion key, (lo, hi)."""
    ends = [{c.key: intervals[c.key][i] for c in CRITERIA} for i in (0, 1)]
    # The optimistic end of a drop is its low end, of a similarity its high end.
    best = {c.key: ends[0 if c.higher_is_worse else 1][c.key] for c in CRITERIA}
    worst_case = {c.key: ends[1 if c.higher_is_worse else 0][c.key] for c in CRITERIA}
    return classify(best)["verdict"] == classify(worst_case)["verdict"]


def thresholds() -> dict:
    """The thresholds as plain data (``check.json``, the calibration table)."""
    return {"version": VERSION, "poor_base_ev": POOR,
            "criteria": {c.key: {"label": c.label, "keep": c.keep, "breaks": c.breaks,
                                 "worse_when": "higher" if c.higher_is_worse else "lower", "rule": c.rule()}
                         for c in CRITERIA}}


def judge(values: Mapping[str, float]) -> dict:
    """The verdict from the criteria that were measured (``values`` keyed by criterion key; a criterion missing
    from it is not judged): ``{"verdict", "decided_by", "classes"}``, ``decided_by`` the first criterion at the
    verdict's class (None when everything transfers)."""
    measured = [c for c in CRITERIA if c.key in values]
    classes = {c.key: c.classify(values[c.key]) for c in measured}
    verdict = worst(classes.values()) if classes else "degraded"
    decider = next((c for c in measured if classes[c.key] == verdict != "transfers"), None)
    return {"verdict": verdict, "decided_by": decider.key if decider else None, "classes": classes}


VERBS = {"transfers": "transfers", "degraded": "is degraded", "broken": "is broken"}
#: What the reconstruction criteria alone say, in words that are not a verdict's.
RECONSTRUCTION = {"transfers": "reconstructs as well as on the base", "degraded": "reconstructs worse than on the base",
                  "broken": "reconstructs far worse than on the base"}


def in_words(values: Mapping[str, float], verbs: Mapping[str, str] = VERBS) -> str:
    """One verdict in words with the criterion that decided it: ``is degraded (CE recovered drop 0.031, over
    0.02)``, or ``transfers (EV drop 0.004, CE recovered drop 0.010, within `check`'s thresholds)``: the verdict
    ``check`` gives the same numbers."""
    j = judge(values)
    if j["decided_by"] is None:
        measured = [c for c in CRITERIA if c.key in values]
        return f"{verbs[j['verdict']]} (" + ", ".join(f"{c.label} {values[c.key]:.3f}" for c in measured) + \
            ", within `check`'s thresholds)" if measured else verbs[j["verdict"]]
    c = next(c for c in CRITERIA if c.key == j["decided_by"])
    edge = c.breaks if j["verdict"] == "broken" else c.keep
    return f"{verbs[j['verdict']]} ({c.label} {values[c.key]:.3f}, {'over' if c.higher_is_worse else 'under'} {edge:g})"


def pair_words(base: Mapping[str, float], finetune: Mapping[str, float]) -> str:
    """The reconstruction view in words for a base SAE measured on base and finetune with the same tokens
    (``ev_token`` and ``ce_recovered`` of each): the drops of ``check``'s first two criteria, said with
    ``RECONSTRUCTION`` words, never a verdict's (a page that measures two criteria does not give the verdict)."""
    return words({"ev_drop": base["ev_token"] - finetune["ev_token"],
                  "ce_recovered_drop": base["ce_recovered"] - finetune["ce_recovered"]}, base["ev_token"],
                 RECONSTRUCTION)


def words(values: Mapping[str, float], base_ev: float, verbs: Mapping[str, str] = VERBS) -> str:
    """``in_words`` of the criteria measured, unless the SAE explains little on the base itself (``base_ev``
    below ``POOR``): then it has nothing to transfer, and is said to."""
    if base_ev < POOR:
        return ("explains little even on the base, and about as little" if values["ev_drop"] <= EV_DROP.keep else
                "explains little even on the base, and less still")
    return in_words(values, verbs)
