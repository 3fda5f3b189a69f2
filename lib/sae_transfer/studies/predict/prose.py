"""The predicting-transfer chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any


def in_short(h: dict[str, Any]) -> str:
    base = ("the finetuning-compute baseline (steps x learning rate) does as well or better"
            if h["baseline_rank"] == 1 else
            f"the finetuning-compute baseline ranks {h['baseline_rank']} ({h['baseline_mean_abs']:.2f})")
    return (f"Across {h['n_cases']} cases, {h['best_predictor']} tracks transfer best (mean |Spearman r| "
            f"{h['best_mean_abs']:.2f} over the transfer measures); {base}. The `check` command's thresholds call "
            f"{h['cal_transfers']} cases transfers, {h['cal_degraded']} degraded and {h['cal_broken']} broken.")
