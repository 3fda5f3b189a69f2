"""Smoke test of the predicting-transfer chapter: asserts on the cases and correlations it recorded."""

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("predict")


def test_enough_cases_spanning_transfer_to_breakage(results):
    r = results[1]
    assert r["numbers"]["n_cases"] >= 12
    cases = r["tables"]["cases"]
    base = [c for c in cases if c["name"] == "none"]
    assert base and all(c["residual cosine"] == pytest.approx(1.0, abs=1e-6) for c in base)
    assert all(c["weight deviation"] == 0.0 and c["regular act sim"] == pytest.approx(1.0) for c in base)
    ev = [c["EV per token"] for c in cases]
    assert max(ev) - min(ev) > 0.1  # the cases differ in how well the SAE transfers


def test_finetuning_compute_predicts_the_drift_it_causes(results):
    n = results[1]["numbers"]
    # more finetuning, further residuals and weights: cosine falls as deviation and steps x lr grow
    assert n["sp_residual_cosine__regular_act_sim"] > 0.5
    assert n["sp_weight_deviation__regular_act_sim"] < -0.5
    assert -1 <= n["sp_sts_icl__ev_per_token"] <= 1
    assert 0 < n["best_mean_abs"] <= 1 and 1 <= n["baseline_rank"] <= 5
    # the verdicts count the cases after step 0, and add up to them
    assert n["cal_transfers"] + n["cal_degraded"] + n["cal_broken"] == n["cal_n"] < n["n_cases"]
    assert n["n_tied"] == len(n["tied_predictors"].split(" | ")) >= 1
    assert f"Of the {n['cal_n']} cases after step 0" in n["in_short"]


def test_tables_and_figures(results):
    out, r = results
    corr = r["tables"]["correlations"]
    assert len(corr) == 5 * 6
    defined = [row for row in corr if row["spearman"] is not None]
    assert len(defined) >= 5 * 5
    assert all(-1 - 1e-9 <= row["spearman_lo"] <= row["spearman_hi"] <= 1 + 1e-9 for row in defined)
    # a percentile interval need not contain the estimate, but nearly always does
    inside = [row["spearman_lo"] - 1e-9 <= row["spearman"] <= row["spearman_hi"] + 1e-9 for row in defined]
    assert sum(inside) >= 0.8 * len(defined)
    assert set(r["figures"]) == {"scatter", "compute", "calibration_map"}
    for f in r["figures"].values():
        assert (out / f["png"]).stat().st_size > 5000


def test_the_calibration_reads_the_book_as_the_book_does(results):
    """check's thresholds on the chapter's cases: the aggressive code finetune ends broken, the gentle math one
    transfers or is degraded; the counts add up and the reading names both."""
    n, r = results[1]["numbers"], results[1]
    assert n["cal_final_code"] == "broken"
    assert n["cal_final_math"] in ("transfers", "degraded")
    assert n["cal_transfers"] + n["cal_degraded"] + n["cal_broken"] == n["cal_n"] == n["n_cases"] - 3
    assert 0 <= n["cal_views_agree"] <= n["cal_n"]
    table = r["tables"]["calibration"]
    assert len(table) == n["cal_n"]
    order = ("transfers", "degraded", "broken")
    for row in table:  # the verdict is the worst of the two views
        assert order.index(row["verdict"]) == max(order.index(row["reconstruction"]), order.index(row["features"]))
    # the reading counts verdicts and names none: the book's verdict for a finetune is the introduction's
    assert f"Over all {n['cal_n']} cases (every checkpoint after step 0, on every dataset, 2,048 tokens each)" in \
        n["calibration_reading"] and "`code`" not in n["calibration_reading"]
    assert "the book's verdict for a finetune is the introduction's" in n["calibration_reading"]


def test_sts_is_tested_on_its_own_claim(results):
    """The seed's claim: STS forecasts the magnitude of each domain's performance change. Recorded for the final
    checkpoints and for every checkpoint, with the paper's baselines and the sweep over N."""
    n, r = results[1]["numbers"], results[1]
    assert n["claim_n_final"] == 9 and n["claim_n_all"] == n["n_cases"] - 3  # 3 finetunes x 3 domains; step 0 out
    assert -1 <= n["claim_final_sts_icl"] <= 1 and n["claim_final_sts_icl_lo"] <= n["claim_final_sts_icl_hi"]
    predictors = {row["predictor"] for row in r["tables"]["claim"]}
    assert predictors == {"STS_ICL", "STS_act", "raw ICL shift", "unigram similarity", "steps x lr"}
    scopes = {row["cases"] for row in r["tables"]["claim"]}
    assert {"final checkpoints", "all checkpoints", "finetune code", "finetune math", "finetune mix"} == scopes
    assert [row["N"] for row in r["tables"]["claim_sweep"]] == [10, 30, 100, 300]
    cases = r["tables"]["claim_cases"]
    assert all(c["|CE change|"] == pytest.approx(abs(c["CE change"])) for c in cases)
    assert all(0 <= c["unigram similarity"] <= 1 and c["raw ICL shift"] > 0 for c in cases)
    assert "0.60 to 0.90" in n["claim_reading"] and "Here STS_ICL **" in n["claim_reading"]
