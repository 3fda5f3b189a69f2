"""Smoke test of the chapter across languages on the real family at CI size (smollm2-smoke: SmolLM2-135M and a
few steps of a French finetune): asserts on the verdicts, the SAE table and the feature classes it recorded."""

import pytest

from sae_transfer.core.verdict import VERDICTS
from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("languages", real=True)


def _n(results) -> dict:
    return {k.removeprefix("h_"): v for k, v in results[1]["numbers"].items()}


def test_the_finetune_learned_french_and_each_language_has_a_verdict(results):
    n = _n(results)
    assert (n["lang_base"], n["lang_new"]) == ("English", "French")
    assert n["ce_clean_finetune_new"] < n["ce_clean_base_new"]  # a few steps on French text lower its French loss
    for k in ("base", "new"):
        assert n[f"verdict_{k}"] in VERDICTS
        assert n[f"tokens_{k}"] == 1024  # every batch measured: no early stop
        for m in ("ev_drop", "ce_recovered_drop", "regular_act_sim", "ce_clean_base"):
            assert n[f"{m}_{k}_lo"] <= n[f"{m}_{k}"] <= n[f"{m}_{k}_hi"]


def test_the_sae_table_is_the_headline(results):
    rows = results[1]["tables"]["sae"]
    n = _n(results)
    by = {(r["text"], r["metric"]): r for r in rows}
    ev = by[("French (fr)", "explained variance")]
    assert ev["base"] == pytest.approx(n["ev_base_new"]) and ev["finetune"] == pytest.approx(n["ev_finetune_new"])
    assert n["ev_drop_new"] == pytest.approx(ev["base"] - ev["finetune"])
    ce = by[("English (prose)", "clean CE (nats)")]
    assert ce["base low"] <= ce["base"] <= ce["base high"]
    verdicts = [r for r in results[1]["tables"]["verdict"] if r["criterion"] == "verdict"]
    assert [r["class"].split(" ")[0] for r in verdicts] == [n["verdict_base"], n["verdict_new"]]


def test_classes_partition_the_features_and_the_references_bracket_the_translation(results):
    rows = results[1]["tables"]["classes"]
    n = _n(results)
    assert [r["class"] for r in rows[::2]] == ["general", "shared, uncorrelated", "English only", "French only",
                                               "silent"]
    for model in ("base", "finetune"):
        assert sum(r["share"] for r in rows if r["model"] == model) == pytest.approx(1.0)
    for r in rows:
        assert r["low"] <= r["share"] <= r["high"]
    assert 0 < n["n_alive"] <= n["n_features"] == 1152
    # a second English translation follows the verses far more than French does, and a wrong pairing least
    for side in ("before", "after"):
        assert n[f"general_{side}_floor"] <= n[f"general_{side}"] < n[f"general_{side}_ceiling"]
        assert n[f"general_{side}_ceiling"] > 0.5
    assert n["general_change"] == pytest.approx(n["general_after"] - n["general_before"])
    assert n["general_change_lo"] <= n["general_change"] <= n["general_change_hi"]


def test_transfer_rows_count_the_base_classes(results):
    rows = results[1]["tables"]["transfer"]
    n = _n(results)
    assert [r["class on the base"] for r in rows[::2]] == ["general", "shared, uncorrelated", "English only",
                                                            "French only"]
    assert {r["verses in"] for r in rows} == {"English", "French"}
    assert sum(r["features"] for r in rows[::2]) == round(n["n_alive"] * (1 - n["silent_before"]))
    for r in rows:
        assert r["features"] == 0 or r["low"] <= r["share transferring"] <= r["high"]
