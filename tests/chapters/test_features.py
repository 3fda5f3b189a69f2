"""Smoke test of the feature-transfer chapter: asserts on the scores it recorded."""

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("features")


def test_gentle_finetune_keeps_more_features(results):
    n = results[1]["numbers"]
    assert 0.8 < n["regular_sim_math"] <= 1.0
    assert n["regular_sim_code"] < n["regular_sim_math"]
    assert n["regular_above08_code"] < n["regular_above08_math"]
    assert n["all_sim_code"] < n["all_sim_math"]
    # logit similarity follows the unembedding, which the aggressive finetune moved further
    assert n["frobenius_code"] > n["frobenius_math"] > 0
    assert n["regular_logit_code"] < n["regular_logit_math"] <= 1.0


def test_sae_fine_tuning_recovers_and_features_drift_along_finetuning(results):
    n = results[1]["numbers"]
    for ft in ("code", "math"):
        assert n[f"rec_final_ev_{ft}"] > n[f"rec_base_ev_{ft}"]
        assert n[f"rec_final_delta_ce_{ft}"] < n[f"rec_base_delta_ce_{ft}"]
        assert 0.5 < n[f"dec_cos_regular_{ft}"] < 1.0  # fine-tuning moved the decoder rows, a little
    assert n["ckpt_final_sim_code"] < n["ckpt_first_sim_code"] <= 1.0


def test_tables_figures_and_contexts(results):
    out, r = results
    rows = r["tables"]["contexts"]
    assert rows and all("⟦" in row["context"] and "⟧" in row["context"] for row in rows)
    assert {row["verdict"] for row in rows} == {"transferred", "broke"}
    assert set(r["figures"]) == {"score_hists", "sim_vs_decoder", "recovery", "checkpoints"}
    for f in r["figures"].values():
        assert (out / f["png"]).stat().st_size > 5000
    native = [row for row in r["tables"]["recovery_table"] if row["sae"].startswith("native")]
    assert len(native) == 1 and native[0]["finetune"] == "code"  # the zoo has an SAE trained on code only


def test_the_reading_is_written_from_the_numbers_for_each_finetune(results):
    """The chapter's prose names each finetune with the numbers it recorded, whatever the finetunes are called."""
    n = results[1]["numbers"]
    assert (f"`code` keeps {n['regular_above08_code']:.1f}% of its regular features above 0.8 activation similarity "
            f"on {n['dataset_code']} (mean {n['regular_sim_code']:.3f})") in n["features_transfer"]
    assert f"{n['frobenius_math']:.3f} for `math`" in n["features_unembedding"]
    assert f"a mean cosine of {n['dec_cos_regular_code']:.3f}" in n["features_drift"]
    assert f"to {n['rec_final_ev_code']:.3f} after {n['sae_finetune_tokens']:,}" in n["features_recovery"]
    assert "The SAE trained on `code` from scratch" in n["features_recovery"]
    assert f"to {n['ckpt_final_sim_math']:.3f}." in n["features_recovery"]


def test_activation_similarity_says_how_well_it_tells_change(results):
    """Quoted from the known-answers record: the AUROC of activation similarity where the truth is known."""
    said = results[1]["numbers"]["trust_reading"]
    assert said.startswith("Where the truth is known") and "AUROC" in said
