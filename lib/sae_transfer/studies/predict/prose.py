"""The predicting-transfer chapter's sentences, written from its headline numbers, so the box at the top of the
page can never disagree with the page; the introduction reads the box back from ``results.json``. A predictor is
said to beat another only where the interval of their gap excludes 0 (``measure.ranking``); otherwise they tie."""

from __future__ import annotations

from typing import Any


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def ranking_reading(h: dict[str, Any]) -> str:
    """Which predictors track transfer best, ties called ties, and where the compute baseline stands."""
    tied, values = h["tied_predictors"].split(" | "), h["tied_values"].split(" | ")
    if len(tied) == 1:
        lead = (f"{h['best_predictor']} tracks transfer best (mean |Spearman r| {h['best_mean_abs']:.2f} over the "
                "transfer measures; the 95% interval of every other predictor's gap to it excludes 0)")
    else:
        lead = (f"{_listed(tied)} track transfer about equally (mean |Spearman r| {_listed(values)} over the "
                "transfer measures; the 95% interval of each one's gap to the first holds 0, so none beats another)")
    if h["baseline_tied"]:
        base = ("the finetuning-compute baseline (steps x learning rate) is " +
                ("the first" if h["baseline_rank"] == 1 else "one of them"))
    else:
        base = (f"the finetuning-compute baseline (steps x learning rate) ranks {h['baseline_rank']} "
                f"({h['baseline_mean_abs']:.2f}), behind the first by {-h['baseline_gap_hi']:.2f} to "
                f"{-h['baseline_gap_lo']:.2f} (95% interval)")
    return f"{lead}; {base}."


def in_short(h: dict[str, Any]) -> str:
    return (f"Across {h['n_cases']} cases, {ranking_reading(h)} Of the {h['cal_n']} cases after step 0, the "
            f"`check` command's thresholds call {h['cal_transfers']} transfers, {h['cal_degraded']} degraded and "
            f"{h['cal_broken']} broken.")
