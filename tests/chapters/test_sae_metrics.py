"""Smoke test of the SAE-metrics chapter: asserts on the metrics it recorded."""

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("sae_metrics")


def test_base_sae_works_on_the_base(results):
    n = results[1]["numbers"]
    assert 0.8 < n["ce_recovered_base_prose"] <= 1.05
    assert 0 < n["l0_base_prose"] and n["l0_frac_base_prose"] < 0.3  # far below the width
    assert n["ev_token_base_prose"] > 0.6
    assert 0 <= n["delta_ce_base_prose"] < 0.5


def test_code_finetune_breaks_the_sae_more_than_math(results):
    n = results[1]["numbers"]
    assert n["ev_token_code_code"] < n["ev_token_math_math"]
    assert n["kl_code_code"] > n["kl_math_math"]
    assert n["density_r_code_code"] < n["density_r_math_math"] <= 1.0
    # along finetuning the code finetune drifts away from what the SAE reconstructs
    assert n["ckpt_final_ev_code"] < n["ckpt_first_ev_code"]


def test_checkpoint_zero_is_the_base(results):
    r = results[1]
    rows = r["tables"]["checkpoints"]
    base_code = [row for row in r["tables"]["results"] if row["model"] == "base" and row["data"] == "code"][0]
    step0 = [row for row in rows if row["finetune"] == "code" and row["step"] == 0][0]
    # the sweep measures fewer tokens than the main table, so only roughly equal
    assert step0["L0"] == pytest.approx(base_code["L0"], rel=0.15)
    assert step0["dead %"] >= base_code["dead %"]  # fewer tokens: at least as many never fire


def test_cross_check_and_records(results):
    out, r = results
    assert r["numbers"]["check_max_rel_diff"] < 1e-4
    assert any("theirs" in row["model"] for row in r["tables"]["results"])  # the seed's rows, labelled
    assert len(r["tables"]["filtering"]) == 3 * 3  # base and two finetunes on three datasets
    assert set(r["figures"]) == {"density_hist", "density_scatter", "density_parallel", "act_hist",
                                 "checkpoint_curves"}
    for f in r["figures"].values():
        assert (out / f["png"]).stat().st_size > 5000
    assert r["numbers"]["n_tokens_measured"] == 8192


def test_the_reading_is_written_from_the_numbers_for_each_finetune(results):
    n = results[1]["numbers"]
    assert f"costs {n['delta_ce_base_prose']:.3f} nats of CE" in n["sae_base"]
    assert f"{n['density_r_code_code']:.2f} for `code` on code" in n["sae_densities"]
    assert (f"`code`'s explained variance per token goes from {n['ckpt_first_ev_code']:.3f} after "
            f"{n['ckpt_first_step_code']} steps") in n["sae_checkpoints"]
