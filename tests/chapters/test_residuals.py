"""Smoke test of the residual-activations chapter: asserts on the similarities it recorded."""


import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("residuals")


def test_similarities_are_bounded_and_ordered(results):
    _, r = results
    n = r["numbers"]
    for ft in ("code", "math"):
        for ds in ("prose", "code", "math"):
            assert -1 <= n[f"cos_{ft}_{ds}"] < 0.9999  # a finetune moves the residual stream...
            assert n[f"rel_{ft}_{ds}"] > 0.005
            # ...more at the last layer than right after the embeddings
            assert n[f"embed_cos_{ft}_{ds}"] > n[f"last_cos_{ft}_{ds}"]
    # the aggressive code finetune moves further from the base than the gentle math finetune
    assert n["cos_code_code"] < n["cos_math_math"]
    assert n["rel_code_code"] > n["rel_math_math"]
    # along finetuning the residuals drift away from the base
    assert n["ckpt_final_cos_code"] < n["ckpt_first_cos_code"] <= 1.0


def test_checkpoint_zero_is_the_base_itself(results):
    _, r = results
    rows = r["tables"]["checkpoint_table"]
    for name in ("code", "math"):
        step0 = [row for row in rows if row["finetune"] == name and row["step"] == 0]
        assert step0 and step0[0]["cosine"] == pytest.approx(1.0, abs=1e-5)


def test_tables_and_figures_recorded(results):
    out, r = results
    summary = r["tables"]["summary"]
    assert any("theirs" in row["pair"] for row in summary)  # the seed's numbers, labelled
    assert len(summary) == 6 + 2
    assert set(r["figures"]) == {"cos_hist", "rel_hist", "by_layer", "by_position", "norms", "checkpoints"}
    for f in r["figures"].values():
        assert (out / f["png"]).stat().st_size > 5000
    assert r["numbers"]["n_tokens_measured"] == (16384 // 64) * 63


def test_the_reading_is_written_from_the_numbers_for_each_finetune(results):
    """The prose names each finetune on its own domain with its recorded cosine, and the pair that moved most."""
    n = results[1]["numbers"]
    text = n["residuals_reading"]
    for ft in ("code", "math"):
        assert f"`{ft}` on {ft}: mean cosine" in text
    assert f"`code` on code: mean cosine {n['cos_code_code']:.3f}" in text
    assert f"After {n['ckpt_first_step_code']} steps `code` is already at {n['ckpt_first_cos_code']:.3f}" in text
    moved = min(("code", "math"), key=lambda ft: n[f"cos_{ft}_{ft}"])
    assert f"For the pair that moved most, `{moved}` on {moved}" in text
