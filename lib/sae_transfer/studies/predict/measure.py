"""Which cheap signal tells in advance whether a base SAE will work on a finetune: predictors and outcomes over
every (zoo finetune checkpoint, dataset) case, and their correlations with bootstrap intervals."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short, slug
from sae_transfer.core.stats import correlate
from sae_transfer.data.tokens import TokenSpec, token_batches
from sae_transfer.models.pairs import PairSetup
from sae_transfer.methods.weights import weight_deviation as deviation
from sae_transfer.passes import sae_metrics
from sae_transfer.passes.accumulators import FeaturePairStats, ResidualSimilarity
from sae_transfer.passes.cache import cached, measurement_key
from sae_transfer.passes.feature_groups import select_groups
from sae_transfer.passes.outliers import finite_or_none, outlier_threshold
from sae_transfer.passes.stream import run_pass
from sae_transfer.studies.parameters import Config
from sae_transfer.studies.predict.sts import SWEEP, sts, sts_inputs, unigram_similarity

#: Outcomes (measured with the SAE-metric and feature chapters' code) and predictors, as table columns.
OUTCOMES = ("delta CE", "CE recovered", "EV per token", "L0 ratio", "density r", "regular act sim")
PREDICTORS = ("residual cosine", "weight deviation", "STS_ICL", "STS_act", "steps x lr")


@dataclass(frozen=True)
class Case:
    """One finetune checkpoint measured on one dataset. ``finetune`` is a zoo spec ``zoo:NAME@STEP``."""

    finetune: str
    name: str
    step: int
    lr: float
    tokens_seen: int
    train_domains: tuple[str, ...]
    dataset: str


def zoo_cases(setup: PairSetup, datasets: list[str]) -> list[Case]:
    """Every saved checkpoint of every zoo finetune of the base, on every dataset. Step 0 (the base's own
    weights) appears once, as the first finetune's, labelled ``none``."""
    zoo = setup.zoo_handle
    cases, have_step0 = [], False
    for name in zoo.finetunes_of(setup.base):
        m, saved = zoo.recipe.models[name], zoo.checkpoints(f"zoo:{name}")
        if saved is None:
            continue
        for step in saved.steps:
            if step == 0 and have_step0:
                continue
            have_step0 |= step == 0
            cases += [Case(f"zoo:{name}@{step}", "none" if step == 0 else name, step, 0.0 if step == 0 else m.lr,
                           step * saved.tokens_per_step, tuple(sorted(m.mix)), ds) for ds in datasets]
    return cases


@dataclass(frozen=True, kw_only=True)
class PredictStudy(Config):
    """Tokens per case for the outcomes, and the STS settings: ``n_shift`` shifted SAE dimensions, ``sts_examples``
    (demonstration, query) pairs per case, ``demo_tokens`` of demonstration before each query."""

    n_tokens: int
    context_size: int
    batch_size: int
    outliers: str
    n_shift: int
    sts_examples: int
    demo_tokens: int


# ------------------------------------------------------------------------------------------ predictors

def weight_deviation(base_model, ft_model) -> dict[str, Any]:
    """||W_ft - W_base|| / ||W_base|| over all parameters, and per block (``per_layer``)."""
    return deviation(base_model.named_parameters(), dict(ft_model.named_parameters()), base_model.cfg.n_layers)


# ------------------------------------------------------------------------------------------ measuring

def measure(setup: PairSetup, cases: list[Case], study: PredictStudy) -> list[dict]:
    """One row per case: its description, every outcome and every predictor (each measurement cached)."""
    if study.demo_tokens + 2 > study.context_size:
        raise ValueError(f"demo_tokens={study.demo_tokens} leaves no room for a query in "
                         f"context_size={study.context_size}")
    loader = setup.loader()  # cases come checkpoint by checkpoint: one load each
    rows = []
    for case in cases:
        spec = TokenSpec(case.dataset, study.n_tokens, study.context_size, study.batch_size)
        res = sae_metrics.measure(setup, [case.finetune], [spec], study.outliers, loader=loader)
        b, f = res["base"][case.dataset]["kept"], res["finetunes"][case.finetune][case.dataset]["kept"]
        load = lambda ft=case.finetune: loader(ft)  # noqa: E731
        threshold = outlier_threshold(setup, study.outliers, spec, load)

        def pair_pass() -> dict:
            pair = load()
            sim, feats = run_pass(pair.base, pair.finetune, token_batches(spec, pair.tokenizer, setup.zoo),
                                  [pair.hook], [ResidualSimilarity(pair.hook, study.context_size),
                                                FeaturePairStats(pair.sae, pair.hook, threshold)], spec.n_batches(),
                                  memory=setup.memory)
            regular = select_groups(feats, 10**9, 0, 0)["regular"]
            act = torch.tensor(feats["act_sim"], dtype=torch.float64)[regular]
            return {"cos": sim["cos_mean"], "regular_act_sim": float(act[~act.isnan()].mean()),
                    "n_regular": len(regular), **weight_deviation(pair.base, pair.finetune)}
        pp = cached("predict-pair", measurement_key("predict-pair", __name__, setup, finetune=case.finetune,
                                                    tokens=spec, threshold=finite_or_none(threshold)), pair_pass)

        def sts_run() -> dict:
            pair = load()
            demos, queries = sts_inputs(case.train_domains, case.dataset, pair.tokenizer, setup.zoo,
                                        study.sts_examples, study.demo_tokens, study.context_size)
            return {**sts(pair.base, pair.sae, pair.hook, demos, queries, study.n_shift),
                    "unigram_similarity": unigram_similarity(demos, queries)}
        st = cached("sts", measurement_key("sts", __name__, setup, train_domains=case.train_domains,
                                           dataset=case.dataset, n_shift=study.n_shift, examples=study.sts_examples,
                                           demo_tokens=study.demo_tokens, context_size=study.context_size,
                                           sweep=SWEEP), sts_run)
        rows.append({**asdict(case), "train_domains": "+".join(case.train_domains),
                     "delta CE": f["delta_ce"], "CE recovered": f["ce_recovered"], "EV per token": f["ev_token"],
                     "L0 ratio": f["l0"] / b["l0"], "density r": sae_metrics.density_comparison(b, f)["pearson_log_density"],
                     "regular act sim": pp["regular_act_sim"],
                     "residual cosine": pp["cos"], "weight deviation": pp["overall"],
                     "weight deviation per layer": pp["per_layer"],
                     "STS_ICL": st["sts_icl"], "STS_act": st["sts_act"], "steps x lr": case.step * case.lr,
                     "CE change": f["ce_clean"] - b["ce_clean"], "raw ICL shift": st["raw_icl"],
                     "unigram similarity": st["unigram_similarity"], "STS by N": st["by_n"]})
    return rows


# ------------------------------------------------------------------------------------------ analysis

def correlation_table(rows: list[dict], n_boot: int = 2000, seed: int = 0):
    """One row per (predictor, outcome): Pearson and Spearman r with bootstrap intervals."""
    df = pd.DataFrame(rows)
    out = [{"predictor": p, "outcome": o, **correlate(df[p], df[o], n_boot, seed)}
           for p in PREDICTORS for o in OUTCOMES]
    return pd.DataFrame(out).set_index(["predictor", "outcome"])


def ranking(rows: list[dict], corr: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Predictors ranked by mean |Spearman r| over the outcomes, with how many of their intervals exclude 0, and
    each one's gap to the first with a 95% interval from a paired bootstrap over cases (every predictor's mean
    |Spearman r| on the same resample): a predictor whose gap interval holds 0 is tied with the first."""
    point = corr["spearman"].abs().groupby(level="predictor").mean().sort_values(ascending=False)
    first = point.index[0]
    df = pd.DataFrame(rows)[[*PREDICTORS, *OUTCOMES]].astype(float)
    rng = np.random.default_rng(seed)
    boots = pd.DataFrame([df.iloc[rng.integers(0, len(df), len(df))].corr(method="spearman")
                          .loc[list(PREDICTORS), list(OUTCOMES)].abs().mean(axis=1) for _ in range(n_boot)])
    gaps = boots.sub(boots[first], axis=0)
    out = []
    for p, value in point.items():
        g = corr.xs(p, level="predictor")
        lo, hi = gaps[p].dropna().quantile([0.025, 0.975]) if p != first else (0.0, 0.0)
        out.append({"predictor": p, "mean |Spearman r|": float(value),
                    "gap to the first": float(value - point[first]), "gap 95% low": float(lo),
                    "gap 95% high": float(hi), "tied with the first": "yes" if lo <= 0 <= hi else "no",
                    "outcomes with interval excluding 0":
                        f"{((g['spearman_lo'] > 0) | (g['spearman_hi'] < 0)).sum()} of {len(g)}"})
    return pd.DataFrame(out).set_index("predictor")


def deviation_by_layer(rows: list[dict]):
    """Weight deviation per block of each finetune's last checkpoint (rows from ``measure``)."""
    table = pd.DataFrame(rows)
    last = table[table["name"] != "none"].sort_values("step").groupby("name").tail(1)
    out = pd.DataFrame({row["name"]: row["weight deviation per layer"] for _, row in last.iterrows()}).T
    out.columns = [f"block {i}" for i in out.columns]
    out.index.name = "finetune"
    return out


def cases_table(rows: list[dict]) -> pd.DataFrame:
    """The cases with their outcomes and predictors, one row per (finetune, step, dataset)."""
    shown = pd.DataFrame(rows)[["name", "step", "lr", "tokens_seen", "dataset", *OUTCOMES, *PREDICTORS]].copy()
    shown["dataset"] = shown["dataset"].map(short)
    return shown.set_index(["name", "step", "dataset"])


def headline(rows: list[dict], corr: pd.DataFrame, ranked: pd.DataFrame, study: PredictStudy, n_datasets: int,
             n_boot: int) -> dict:
    """Case counts, every Spearman r (``sp_<predictor>__<outcome>``), the first predictor, those tied with it
    (``ranked``: ``ranking``'s table) and the compute baseline's place."""
    tied = ranked[ranked["tied with the first"] == "yes"]
    base = ranked.loc["steps x lr"]
    out = {"n_cases": len(rows), "n_shift": study.n_shift, "n_checkpoints": pd.DataFrame(rows)["finetune"].nunique(),
           "n_datasets": n_datasets, "n_boot": n_boot,
           **{f"sp_{slug(f'{p}__{o}').lower()}": r["spearman"] for (p, o), r in corr.iterrows()},
           "best_predictor": ranked.index[0], "best_mean_abs": float(ranked.iloc[0]["mean |Spearman r|"]),
           "n_tied": len(tied), "tied_predictors": " | ".join(tied.index),
           "tied_values": " | ".join(f"{v:.2f}" for v in tied["mean |Spearman r|"]),
           "baseline_mean_abs": float(base["mean |Spearman r|"]), "baseline_tied": base["tied with the first"] == "yes",
           "baseline_gap_lo": float(base["gap 95% low"]), "baseline_gap_hi": float(base["gap 95% high"]),
           "baseline_rank": int(list(ranked.index).index("steps x lr")) + 1}
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ calibration

def calibration(rows: list[dict]) -> pd.DataFrame:
    """How ``check``'s thresholds (``verdict.CRITERIA``) classify every case: each finetune checkpoint against the
    base (the step-0 case) on the same dataset. One row per case with the three criteria's values, each
    criterion's class, the verdict, and the two views it combines: ``reconstruction`` (EV and CE-recovered
    drops) and ``features`` (regular activation similarity)."""
    df = pd.DataFrame(rows)
    base = df[df["step"] == 0].set_index("dataset")
    out = []
    for _, r in df[df["step"] > 0].iterrows():
        b = base.loc[r["dataset"]]
        values = {"ev_drop": b["EV per token"] - r["EV per token"],
                  "ce_recovered_drop": b["CE recovered"] - r["CE recovered"],
                  "regular_act_sim": r["regular act sim"]}
        classes = V.classify(values)
        out.append({"name": r["name"], "step": r["step"], "dataset": short(r["dataset"]),
                    **{c.label: values[c.key] for c in V.CRITERIA},
                    "reconstruction": V.worst([classes["ev_drop"], classes["ce_recovered_drop"]]),
                    "features": classes["regular_act_sim"], "verdict": classes["verdict"]})
    return pd.DataFrame(out).set_index(["name", "step", "dataset"])


def own_domains(setup: PairSetup) -> dict[str, str]:
    """Each single-domain zoo finetune of the base, by name, with the domain it was finetuned on."""
    zoo = setup.zoo_handle
    own = {name: zoo.own_domain(f"zoo:{name}") for name in zoo.finetunes_of(setup.base)}
    return {name: domain for name, domain in own.items() if domain}


def calibration_headline(table: pd.DataFrame, own: dict[str, str]) -> dict[str, Any]:
    """Counts per verdict (``cal_transfers`` ...), how often the reconstruction and feature views agree
    (``cal_views_agree`` of ``cal_n``), and each finetune's verdict at its last checkpoint on its own domain
    (``cal_final_<name>``; ``own`` maps finetune names to their domain)."""
    t = table.reset_index()
    out: dict[str, Any] = {"cal_n": len(t), "cal_version": V.VERSION,
                           "cal_views_agree": int((t["reconstruction"] == t["features"]).sum())}
    out.update({f"cal_{v}": int((t["verdict"] == v).sum()) for v in V.VERDICTS})
    for name, domain in own.items():
        g = t[(t["name"] == name) & (t["dataset"] == short(domain))].sort_values("step")
        if len(g):
            out[f"cal_final_{slug(name)}"] = g["verdict"].iloc[-1]
    return out


def calibration_text(table: pd.DataFrame, own: dict[str, str], n_tokens: int) -> str:
    """The calibration's reading in Markdown, written from the table for any finetunes. It counts verdicts and
    gives none for a finetune by name: the book's verdict for each finetune is the introduction's, measured on
    the SAE-metric and features chapters' tokens; these cases are measured on ``n_tokens`` each."""
    h = calibration_headline(table, own)
    t = table.reset_index()
    split = t[t["reconstruction"] != t["features"]]
    disagree = ""
    if len(split):
        rank = V.VERDICTS.index
        only_feat = int((split["features"].map(rank) > split["reconstruction"].map(rank)).sum())
        disagree = (f" Where they disagree, the feature view is the harsher in {only_feat} of {len(split)} cases: "
                    + ("a monitor built on features would be warned before the reconstruction shows it."
                       if only_feat * 2 > len(split) else "the reconstruction fails before the features do."))
    return (f"Over all {h['cal_n']} cases (every checkpoint after step 0, on every dataset, {n_tokens:,} tokens "
            f"each), {h['cal_transfers']} transfer, {h['cal_degraded']} are degraded and {h['cal_broken']} broken. "
            f"The reconstruction view (EV and CE-recovered drops) and the feature view (regular activation "
            f"similarity) give the same class in {h['cal_views_agree']} of {h['cal_n']} cases.{disagree} A class "
            f"here is measured on this chapter's {n_tokens:,} tokens a case; the book's verdict for a finetune is "
            "the introduction's, from the SAE-metric and features chapters' own tokens of its data, and where a "
            "criterion lies near a threshold the two can differ.")
