"""The atlas chapter's "In short", written from its headline numbers."""

from __future__ import annotations

from typing import Any

from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short
from sae_transfer.studies.atlas.measure import OUTCOME, PREDICTORS


def _rho(h: dict[str, Any], key: str) -> str:
    return f"{h[f'rho_{key}']:.2f} [{h[f'rho_{key}_lo']:.2f}, {h[f'rho_{key}_hi']:.2f}]"


def ranking(h: dict[str, Any]) -> str:
    """Which predictor ranks the cases by their EV drop, read from the intervals: one "ranks best" only when its
    interval lies wholly above every other's |r|."""
    keys = [k for k in PREDICTORS if f"rho_{k}" in h]
    if h["n_cases"] < 5 or not keys:
        return f"With {h['n_cases']} cases, no correlation across them is worth reporting."
    listed = "; ".join(f"{PREDICTORS[k]} {_rho(h, k)}" for k in keys)
    strength = {k: (min(abs(h[f"rho_{k}_lo"]), abs(h[f"rho_{k}_hi"]))
                    if h[f"rho_{k}_lo"] * h[f"rho_{k}_hi"] > 0 else 0.0, max(abs(h[f"rho_{k}_lo"]), abs(h[f"rho_{k}_hi"])))
                for k in keys}
    best = max(keys, key=lambda k: abs(h[f"rho_{k}"]))
    clear = all(strength[best][0] > strength[k][1] for k in keys if k != best)
    verdict = (f"{PREDICTORS[best]} ranks them best: its interval lies above every other's" if clear and len(keys) > 1
               else "the intervals overlap: no predictor here ranks them better than another")
    return f"Spearman's r of each predictor with the {OUTCOME[1]} across the {h['n_cases']} cases: {listed}; {verdict}."


def _datasets(h: dict[str, Any]) -> str:
    return f"{h['n_datasets']} datasets" if h["n_datasets"] > 1 else "one dataset"


def cases(h: dict[str, Any]) -> str:
    """What the table holds and on how many tokens."""
    spread = (f"between {h['tokens_min']:,} and {h['tokens_max']:,} tokens" if h["tokens_min"] < h["tokens_max"]
              else f"{h['tokens_max']:,} tokens")
    return (f"{h['n_finetunes']} models, each on {_datasets(h)}, at most {h['tokens_budget']:,} tokens a case: each "
            f"check stops early once its verdict is decided, so each case measured {spread}.")


def in_short(h: dict[str, Any], base: str) -> str:
    counts = ", ".join(f"{h[f'n_{v}']} {v}" for v in V.VERDICTS)
    undecided = (f" ({h['n_undecided']} not decided at {h['tokens_budget']:,} tokens)" if h["n_undecided"] else "")
    return (f"{h['n_finetunes']} finetuned models of `{short(base)}` (each saved checkpoint counts as one), each on "
            f"{_datasets(h)}: {counts}{undecided}. The base's passes were computed once and read by every job: "
            f"{h['models_atlas']} models loaded where one `check` per finetune loads {h['models_checks']}, "
            f"{h['store_mb']:.1f} MB of stored passes. {ranking(h)}")
