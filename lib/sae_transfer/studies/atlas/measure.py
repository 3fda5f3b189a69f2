"""The atlas chapter: every finetune (and checkpoint) of the base through ``python -m sae_transfer atlas``'s
engine, the base's passes once; one row per (finetune, dataset), its verdict and the predictors that need no
training data, and how well each predictor ranks the cases.

The atlas's outputs are keyed by content (``atlas.run``): a second run of the chapter reads the finished jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from sae_transfer.atlas.config import parse
from sae_transfer.atlas.run import read_rows
from sae_transfer.atlas.run import run as run_atlas
from sae_transfer.core import verdict as V
from sae_transfer.core.io import fingerprint
from sae_transfer.core.labels import short
from sae_transfer.core.paths import cache_dir
from sae_transfer.core.stats import correlate
from sae_transfer.models.pairs import PairSetup
from sae_transfer.studies.parameters import Config

#: The predictors on the page (row keys of ``atlas.jsonl``) and what a page calls them. Compute is the zoo
#: recipe's steps x learning rate: absent for models without a recipe.
PREDICTORS = {"residual_cos": "residual cosine", "weight_deviation": "weight deviation",
              "steps_x_lr": "steps x lr"}
#: The outcome the predictors are scored against: the verdict's first criterion.
OUTCOME = ("ev_drop", "EV drop")


@dataclass(frozen=True, kw_only=True)
class AtlasStudy(Config):
    finetunes: tuple[str, ...]
    checkpoints: bool
    datasets: tuple[str, ...]
    n_tokens: int
    context_size: int
    batch_size: int
    outliers: str
    executor: str


def config(setup: PairSetup, study: AtlasStudy) -> dict[str, Any]:
    """The atlas file this chapter runs (the ``atlas`` command takes the same)."""
    zoo = setup.zoo_handle
    finetunes = [{"checkpoints": ft} if study.checkpoints and zoo.checkpoints(ft) is not None else ft
                 for ft in study.finetunes]
    return {"base": setup.base, "saes": [setup.sae], "datasets": list(study.datasets), "finetunes": finetunes,
            "zoo": setup.zoo, "hook": setup.hook, "device": setup.device, "dtype": setup.dtype,
            "memory": setup.memory, "executor": study.executor,
            "check": {"tokens": study.n_tokens, "context_size": study.context_size, "batch_size": study.batch_size,
                      "outliers": study.outliers}}


def measure(setup: PairSetup, study: AtlasStudy) -> dict[str, Any]:
    """Run the atlas (finished jobs are read, not run again); ``{"rows", "summary"}``. A failed job fails the
    chapter with its line: a table with holes would read as a finding."""
    raw = config(setup, study)
    out = cache_dir() / "atlas" / f"chapter-{fingerprint(raw)}"
    summary = run_atlas(parse(raw, "atlas"), out)
    if summary["failed"]:
        raise RuntimeError("atlas jobs failed: " + "; ".join(f"{f['job']}: {f['error']}" for f in summary["failed"]))
    return {"rows": read_rows(out), "summary": summary}


def correlations(rows: list[dict], n_boot: int = 2000) -> dict[str, dict]:
    """Spearman's r of each predictor with the EV drop over the cases, with bootstrap intervals; a predictor
    missing from any case (compute for models without a recipe) is left out."""
    out = {}
    for key in PREDICTORS:
        if rows and all(r.get(key) is not None for r in rows):
            out[key] = correlate([r[key] for r in rows], [r[OUTCOME[0]] for r in rows], n_boot=n_boot)
    return out


def headline(data: dict[str, Any], corr: dict[str, dict]) -> dict[str, Any]:
    rows, s = data["rows"], data["summary"]
    verdicts = [r["verdict"] for r in rows]
    h: dict[str, Any] = {"n_finetunes": s["jobs"], "n_cases": len(rows),
                         "n_datasets": len({r["dataset"] for r in rows}),
                         "models_atlas": s["jobs"] + 1, "models_checks": 2 * s["jobs"],
                         "store_mb": s["store_bytes"] / 1e6, "tokens_budget": s["config"]["spec"]["max_tokens"],
                         "tokens_min": min(r["tokens"] for r in rows), "tokens_max": max(r["tokens"] for r in rows)}
    h.update({f"n_{v}": verdicts.count(v) for v in V.VERDICTS})
    h["n_undecided"] = sum(not r["decided"] for r in rows)
    for key, c in corr.items():
        h.update({f"rho_{key}": c["spearman"], f"rho_{key}_lo": c["spearman_lo"], f"rho_{key}_hi": c["spearman_hi"]})
    return h


#: The table's short headers (one sortable table must fit the text column), explained under it on the page.
COLUMNS = {"ev_drop": "EV drop", "ce_recovered_drop": "CE rec. drop", "regular_act_sim": "act. sim",
           "residual_cos": "resid. cos", "weight_deviation": "weight dev.", "steps_x_lr": "steps×lr"}


def table(rows: list[dict]) -> pd.DataFrame:
    """One row per (finetune, dataset): the verdict (``?`` when its intervals did not decide it at this budget),
    its three criteria, the predictors (``COLUMNS``)."""
    df = pd.DataFrame([{"finetune": short(r["finetune"]), "dataset": short(r["dataset"]),
                        "verdict": r["verdict"] + ("" if r["decided"] else "?"),
                        **{name: r.get(key) for key, name in COLUMNS.items()}} for r in rows])
    if not df.empty and df["steps×lr"].isna().all():
        df = df.drop(columns="steps×lr")
    return df.set_index(["finetune", "dataset"])
