"""Predicting transfer: each predictor on constructed cases, and the correlation statistics."""

import math

import numpy as np
import pytest
import torch

from sae_transfer.studies.predict.measure import correlate, correlation_table, ranking, weight_deviation
from sae_transfer.studies.predict.sts import sts, unigram_similarity


def _model(seed: int, positional: str = "standard"):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50, n_ctx=64,
                                  act_fn="gelu", positional_embedding_type=positional, device="cpu")
    return HookedTransformer(cfg).eval()


class _ReluSAE:
    def __init__(self, d_in: int, d_sae: int):
        g = torch.Generator().manual_seed(0)
        self.W_enc = torch.randn(d_in, d_sae, generator=g)
        self.dtype = torch.float32

    def encode(self, x):
        return torch.relu(x @ self.W_enc)


def test_weight_deviation_of_identical_and_perturbed_models():
    a = _model(0)
    b = _model(0)
    d = weight_deviation(a, b)
    assert d["overall"] == 0.0 and d["per_layer"] == [0.0, 0.0]
    with torch.no_grad():
        b.blocks[1].mlp.W_in.mul_(2.0)  # one matrix of block 1 doubles
    d = weight_deviation(a, b)
    assert d["per_layer"][0] == 0.0 and 0 < d["per_layer"][1] < 1.0 and 0 < d["overall"] < d["per_layer"][1]


def test_sts_is_zero_when_the_hook_cannot_see_the_context():
    """Rotary attention and the embeddings' hook: a token's activation ignores what came before it."""
    model = _model(1, positional="rotary")
    g = torch.Generator().manual_seed(2)
    demos = torch.randint(1, 50, (6, 20), generator=g)
    queries = torch.randint(1, 50, (6, 9), generator=g)
    r = sts(model, _ReluSAE(16, 40), "blocks.0.hook_resid_pre", demos, queries, n_shift=10)
    assert r["sts_icl"] == 0.0 and len(r["shifted"]) == 10 and r["sts_act"] > 0
    assert r["raw_icl"] == 0.0 and set(r["by_n"]) == {"10", "30"}  # N = 100 and 300 exceed the 40 features
    assert all(v["sts_icl"] == 0.0 for v in r["by_n"].values())
    deeper = sts(model, _ReluSAE(16, 40), "blocks.1.hook_resid_pre", demos, queries, n_shift=10)
    assert deeper["sts_icl"] > 0 and deeper["raw_icl"] > 0  # after attention, the demonstrations shift the features
    assert deeper["by_n"]["10"]["sts_icl"] == deeper["sts_icl"] <= deeper["by_n"]["30"]["sts_icl"]


def test_demonstrations_identical_to_the_query_still_shift_a_causal_model():
    """The shift is what the context does to the query's tokens: the same text before them is still context."""
    model = _model(1, positional="rotary")
    queries = torch.randint(1, 50, (6, 9), generator=torch.Generator().manual_seed(2))
    r = sts(model, _ReluSAE(16, 40), "blocks.1.hook_resid_pre", queries.clone(), queries, n_shift=10)
    assert r["sts_icl"] > 0


def test_unigram_similarity_of_windows():
    a = torch.tensor([[0, 5, 6, 7], [0, 5, 5, 6]])
    assert unigram_similarity(a, a) == pytest.approx(1.0)
    assert unigram_similarity(a, torch.tensor([[0, 8, 9, 9]])) == 0.0  # no token in common (BOS left out)


def _claim_rows():
    """Two finetunes x two checkpoints x two domains; CE change grows with a planted score on the final ones."""
    rows = []
    for name, lr in (("a", 1e-3), ("b", 1e-4)):
        for step in (5, 10):
            for k, ds in enumerate(("zoo:prose", "zoo:code")):
                score = (1 + k) * (10 if name == "a" else 1)
                rows.append({"name": name, "step": step, "dataset": ds, "CE change": -0.01 * score * step / 10,
                             "STS_ICL": score, "STS_act": 1.0 + k, "raw ICL shift": 2.0, "unigram similarity": 0.5,
                             "steps x lr": step * lr, "STS by N": {"10": {"sts_icl": score}, "30": {"sts_icl": -score}}})
    return rows + [{**rows[0], "step": 0, "name": "none"}]


def test_the_claim_is_scored_on_final_checkpoints_and_on_all():
    from sae_transfer.studies.predict import sts as S

    cases = S.claim_cases(_claim_rows())
    assert len(cases) == 8 and cases["final"].sum() == 4 and (cases["|CE change|"] > 0).all()
    table = S.claim_table(_claim_rows(), n_boot=200)
    final = table.loc[("final checkpoints", "STS_ICL")]
    assert final["n"] == 4 and final["pearson"] == pytest.approx(1.0)
    assert math.isnan(table.loc[("final checkpoints", "raw ICL shift"), "pearson"])  # constant: undefined
    assert table.loc[("all checkpoints", "STS_ICL"), "n"] == 8
    sweep = S.sweep_table(_claim_rows(), n_boot=200)
    assert sweep.loc[10, "pearson"] == pytest.approx(1.0) and sweep.loc[30, "pearson"] == pytest.approx(-1.0)
    h = S.claim_headline(table)
    assert h["claim_final_sts_icl"] == pytest.approx(1.0) and h["claim_n_final"] == 4
    text = S.claim_text(table)
    assert "STS_ICL 1.00" in text and "0.60 to 0.90" in text and "little power" in text


def test_correlations_and_their_intervals():
    x = np.arange(20, dtype=float)
    r = correlate(x, x**3, n_boot=200)
    assert r["spearman"] == pytest.approx(1.0) and r["spearman_lo"] == pytest.approx(1.0)
    assert 0.8 < r["pearson"] < 1.0
    noise = np.random.default_rng(0).normal(size=20)
    r = correlate(x, noise, n_boot=500)
    assert r["spearman_lo"] < r["spearman"] < r["spearman_hi"] and r["spearman_lo"] < 0 < r["spearman_hi"]
    r = correlate(x, np.ones(20), n_boot=50)
    assert math.isnan(r["pearson"]) and math.isnan(r["spearman"])  # constant: undefined, not dropped silently


def test_ranking_orders_predictors():
    rng = np.random.default_rng(1)
    n = 30
    good = rng.normal(size=n)
    rows = []
    for i in range(n):
        rows.append({"delta CE": -good[i], "CE recovered": good[i], "EV per token": good[i], "L0 ratio": -good[i],
                     "density r": good[i], "regular act sim": good[i], "residual cosine": good[i] + 0.01 * i,
                     "weight deviation": rng.normal(), "STS_ICL": rng.normal(), "STS_act": rng.normal(),
                     "steps x lr": rng.normal()})
    corr = correlation_table(rows, n_boot=100)
    ranked = ranking(rows, corr, n_boot=100)
    assert ranked.index[0] == "residual cosine" and ranked.iloc[0]["mean |Spearman r|"] > 0.9
    assert ranked.loc["residual cosine", "outcomes with interval excluding 0"] == "6 of 6"
    # noise against a predictor that tracks every outcome: behind it, and the interval of the gap says so
    noise = ranked.drop("residual cosine")
    assert (noise["tied with the first"] == "no").all() and (noise["gap 95% high"] < 0).all()
    assert ranked.loc["residual cosine", "tied with the first"] == "yes"  # the first ties itself


def test_the_claims_verdict_reads_estimate_and_interval():
    from sae_transfer.studies.predict.sts import verdict

    assert verdict({"pearson": 0.8, "pearson_lo": 0.3}) == "supports the claim"
    assert verdict({"pearson": 0.4, "pearson_lo": 0.1}).startswith("agrees in sign")
    assert verdict({"pearson": 0.7, "pearson_lo": -0.3}).startswith("reaches the paper's range in its estimate")
    assert verdict({"pearson": 0.2, "pearson_lo": -0.5}) == "does not support the claim"
    assert verdict({"pearson": float("nan"), "pearson_lo": float("nan")}) == "does not support the claim"
