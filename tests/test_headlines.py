"""Each study's ``headline`` on small synthetic results: the glue names the prose uses, and the values."""

import pytest

from sae_transfer.studies.features import measure as features
from sae_transfer.studies.predict import measure as predict
from sae_transfer.models.hooks import residual_index
from sae_transfer.studies.residuals import measure as residuals
from sae_transfer.studies.sae_metrics import tables as sae_metric_tables


def _layer(hook: str, cos: float) -> dict:
    return {"hook": hook, "cos_mean": cos, "rel_dist_mean": 1 - cos, "pos0": {"cos": 1.0}, "n_tokens": 630}


def _record(ft: str, ds: str, coses: list[float], sae_hook: str = "") -> dict:
    hooks = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(len(coses) - 1)]
    at = residual_index(sae_hook) if sae_hook else len(coses) // 2
    return {"finetune": ft, "dataset": ds, "layers": [_layer(h, c) for h, c in zip(hooks, coses)], "at": at,
            "sae_hook": sae_hook}


def test_residuals_headline_names_pairs_by_finetune_and_dataset():
    records = [_record("zoo:code", "zoo:code", [1.0, 0.9, 0.5]), _record("zoo:math", "zoo:prose", [1.0, 0.99, 0.95])]
    sweep = [{"finetune": "code", "step": s, "cosine": c} for s, c in ((0, 1.0), (5, 0.8), (50, 0.5))]
    h = residuals.headline(records, sweep)
    assert h["cos_code_code"] == 0.9 and h["rel_code_code"] == pytest.approx(0.1)
    assert h["last_cos_code_code"] == 0.5 and h["embed_cos_math_prose"] == 1.0
    assert h["summary_hook"] == "blocks.0.hook_resid_post" and h["n_tokens_measured"] == 630
    assert (h["ckpt_first_step_code"], h["ckpt_first_cos_code"], h["ckpt_final_cos_code"]) == (5, 0.8, 0.5)
    assert "ckpt_first_cos_math" not in h  # no checkpoints, no sentence about them
    assert h["summary_where"] == "the middle layer (blocks.0.hook_resid_post)"


def test_residuals_summary_describes_the_layer_the_sae_reads():
    """An SAE at block 2's input reads the stream after block 1: the summary is there, not at the middle."""
    records = [_record("local:/x/ft", "json:/x/t.jsonl", [1.0, 0.9, 0.7, 0.5, 0.3], "blocks.2.hook_resid_pre")]
    h = residuals.headline(records, [])
    assert h["cos__x_ft__x_t_jsonl"] == 0.7 and h["summary_hook"] == "blocks.1.hook_resid_post"
    assert h["summary_where"] == ("the layer the SAE reads (blocks.2.hook_resid_pre, the same stream as "
                                  "blocks.1.hook_resid_post)")
    assert "0.700 with the base at the layer the SAE reads" in residuals.describe(records, [], {
        "local:/x/ft": "json:/x/t.jsonl"})


def _sae_result(l0: float, density: list[float]) -> dict:
    metrics = {k: 0.5 for k in sae_metric_tables.HEADLINE_METRICS + ("norm_ratio",)}
    r = {**metrics, "l0": l0, "density": density, "n_tokens": 100}
    return {"all": r, "kept": r, "outlier_frac": 0.25, "outliers_at_pos0": 1}


def test_sae_metric_headline_and_cross_check_ratio():
    results = {"base": {"zoo:prose": _sae_result(10.0, [0.0, 1e-3, 1e-2, 0.5])},
               "finetunes": {"zoo:code": {"zoo:prose": _sae_result(20.0, [0.0, 0.0, 1e-2, 0.5])}},
               "thresholds": {"zoo:prose": None}}
    check = [{"model": "base", "metric": "l0", "ours": 10.0, "sae_lens": 10.1, "abs diff": 0.1},
             {"model": "base", "metric": "norm_ratio", "ours": 1.0, "sae_lens": float("nan"), "abs diff": float("nan")}]
    h = sae_metric_tables.headline(results, [], check)
    assert h["l0_base_prose"] == 10.0 and h["l0_code_prose"] == 20.0 and h["norm_ratio_code_prose"] == 0.5
    assert h["d_sae"] == 4 and h["n_tokens_measured"] == 100 and h["max_outlier_pct"] == 25.0
    assert h["dead_both_code_prose"] == 0.25
    assert h["check_max_rel_diff"] == pytest.approx(0.1 / 10.1)  # the NaN row is left out, not propagated
    assert "check_max_rel_diff" not in sae_metric_tables.headline(results, [], [])  # skipped: no difference of 0
    assert "not run" in sae_metric_tables.cross_check_reading([], None)
    assert "not run" in sae_metric_tables.cross_check_table([]).index[0]


def test_features_headline_reads_the_regular_group():
    n = 6
    scores = {"act_sim": [0.9, 0.7, 0.95, 0.85, float("nan"), 0.1], "logit_sim": [0.99] * n, "act_error": [0.1] * n,
              "density_base": [0.01] * n, "density_finetune": [0.01] * n, "max_base": [1.0] * n,
              "max_finetune": [1.0] * n}
    result = {"zoo:code": {"scores": scores, "groups": {"regular": [0, 1, 2, 3], "dead_in_base": [5],
                                                        "dead_in_finetune": []},
                           "pool_sizes": {"regular": 4, "dead_in_base": 1, "dead_in_finetune": 0},
                           "unembed_frobenius_ratio": 0.2, "dataset": "zoo:code"}}
    study = features.FeatureStudy(n_select=8, n_tokens=8, context_size=4, batch_size=2, n_regular=4, n_dead=2,
                                  outliers="2x", dataset="")
    h = features.headline(result, study)
    assert h["regular_sim_code"] == pytest.approx((0.9 + 0.7 + 0.95 + 0.85) / 4)
    assert h["regular_above08_code"] == pytest.approx(75.0)
    assert h["all_undefined_code"] == 1 and h["pool_dead_in_base_code"] == 1 and h["dataset_code"] == "code"
    assert (h["n_regular"], h["n_dead"]) == (4, 2)


def test_predict_headline_ranks_predictors():
    rows = [{"finetune": f"zoo:code@{i}", "residual cosine": 1 - i / 10, "weight deviation": i / 10,
             "STS_ICL": (i * 7) % 5, "STS_act": 1.0 + (i % 2), "steps x lr": float(i % 3),
             **{o: -i / 10 for o in predict.OUTCOMES}} for i in range(8)]
    corr = predict.correlation_table(rows, n_boot=50)
    study = predict.PredictStudy(n_tokens=64, context_size=16, batch_size=4, outliers="2x", n_shift=100,
                                 sts_examples=64, demo_tokens=96)
    h = predict.headline(rows, corr, predict.ranking(rows, corr, n_boot=50), study, n_datasets=1, n_boot=50)
    assert h["n_cases"] == 8 and h["n_checkpoints"] == 8
    assert h["sp_residual_cosine__delta_ce"] == pytest.approx(1.0)
    assert h["best_predictor"] in ("residual cosine", "weight deviation") and h["best_mean_abs"] == pytest.approx(1.0)
    assert 1 <= h["baseline_rank"] <= len(predict.PREDICTORS)
    # both track every outcome perfectly: on every resample their gap is 0, a tie, never a winner
    assert h["n_tied"] >= 2 and {"residual cosine", "weight deviation"} <= set(h["tied_predictors"].split(" | "))


def test_predict_prose_calls_ties_ties_and_counts_the_cases_it_classifies():
    from sae_transfer.studies.predict import prose

    h = {"best_predictor": "weight deviation", "best_mean_abs": 0.609, "n_tied": 3,
         "tied_predictors": "weight deviation | residual cosine | steps x lr", "tied_values": "0.61 | 0.59 | 0.58",
         "baseline_tied": True, "baseline_rank": 3, "baseline_mean_abs": 0.577, "baseline_gap_lo": -0.08,
         "baseline_gap_hi": 0.03, "n_cases": 42, "cal_n": 39, "cal_transfers": 14, "cal_degraded": 17,
         "cal_broken": 8}
    text = prose.in_short(h)
    assert "best" not in text and "weight deviation, residual cosine and steps x lr track transfer about equally " \
                                   "(mean |Spearman r| 0.61, 0.59 and 0.58" in text
    assert "baseline (steps x learning rate) is one of them." in text
    assert text.endswith("Of the 39 cases after step 0, the `check` command's thresholds call 14 transfers, 17 "
                         "degraded and 8 broken.")
    alone = prose.in_short({**h, "n_tied": 1, "tied_predictors": "weight deviation", "tied_values": "0.61",
                            "baseline_tied": False, "baseline_gap_lo": -0.09, "baseline_gap_hi": -0.01})
    assert "Across 42 cases, weight deviation tracks transfer best (mean |Spearman r| 0.61" in alone
    assert "ranks 3 (0.58), behind the first by 0.01 to 0.09 (95% interval)." in alone
