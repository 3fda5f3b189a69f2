"""Smoke test of the answerability chapter: asserts on the datasets, probes and bridge it recorded."""

import math

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("answerability")

DOMAINS = ["reading", "equation", "math", "entity"]
PROBES = ["residual", "SAE k=1", "SAE k=2", "SAE k=5", "SAE k=10"]  # the smoke profile's ks


def test_datasets_are_balanced_in_every_cell(results):
    balance = results[1]["tables"]["balance"]
    assert {r["domain"] for r in balance} == set(DOMAINS)
    for r in balance:
        want = (80 if r["split"] == "train" else 40) // 4
        assert r["answerable"] == r["unanswerable"] == want
    n = results[1]["numbers"]
    assert n["h_n_train"] == 80 and n["h_n_test"] == 40 and n["h_n_domains"] == 4


def test_summary_agrees_with_the_matrices_and_intervals_bracket(results):
    r = results[1]
    in_domain = {row["index"]: row for row in r["tables"]["in_domain"]}
    summary = {row["index"]: row for row in r["tables"]["summary"]}
    assert list(summary) == PROBES
    for probe in PROBES:
        cells = [in_domain[probe][d] for d in DOMAINS]
        points = [float(c.split(" [")[0]) for c in cells]
        assert summary[probe]["in-domain AUROC"] == pytest.approx(sum(points) / 4, abs=2e-3)  # cells are rounded
        for c in cells:
            est, lo, hi = (float(x) for x in c.replace("[", "").replace("]", "").replace(",", "").split())
            assert 0 <= lo <= hi <= 1 and lo - 0.05 <= est <= hi + 0.05
    n = r["numbers"]
    assert n["h_residual_in"] == pytest.approx(summary["residual"]["in-domain AUROC"])
    assert n["h_residual_vs_best_in"] in ("above", "below", "level with")


def test_the_small_model_carries_some_answerability_in_domain(results):
    # the smoke model is tiny, yet the matched pairs differ in a few tokens the residual can see
    assert results[1]["numbers"]["h_residual_in"] > 0.55


def test_templates_layers_and_cosines(results):
    r = results[1]
    templates = r["tables"]["templates"]
    assert [row["probe"] for row in templates] == PROBES
    layers = r["tables"]["layer_auroc"]
    assert [row["hook"] for row in layers] == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre",
                                               "blocks.1.hook_resid_post"]
    cos = r["tables"]["cosines"]
    assert [row["index"] for row in cos] == DOMAINS
    for row in cos:
        assert all(-1 <= row[k] <= 1 for k in row if k != "index")
        assert row["random |cos|"] == pytest.approx(math.sqrt(2 / (math.pi * 64)))  # smoke d_model 64
        # one feature combined is that feature's decoder row, up to the sign its weight gives it
        assert abs(row["SAE k=1 combined"]) == pytest.approx(abs(row["top-1 feature"]), abs=1e-6)


def test_bridge_covers_every_checkpoint_and_the_retrained_ceiling(results):
    r = results[1]
    bridge = {row["probe"]: row for row in r["tables"]["bridge_base"]}
    assert list(bridge) == PROBES
    assert all(0 <= bridge[p][f] <= 1 for p in PROBES for f in ("code", "math"))  # columns as labelled
    retrained = {row["probe"]: row for row in r["tables"]["bridge_retrained"]}
    assert list(retrained) == PROBES
    n = r["numbers"]
    assert -1 <= n["h_drop_residual"] <= 1
    assert n["h_sae1_vs_residual_drop"] in ("more than", "less than", "about as much as")
    assert set(r["figures"]) == {"heatmaps", "k_curve", "layers", "bridge"}
    out = results[0]
    for f in r["figures"].values():
        assert (out / f["png"]).stat().st_size > 5000


def test_bad_parameters_are_refused_before_any_work():
    from sae_transfer.book.chapters import ParameterError, get_chapter, resolve_params

    chapter = get_chapter("answerability")
    for name, value, message in (("n_train", "6", "multiple of 4"), ("domains", "[poetry]", "distinct domains"),
                                 ("layers", "[-1]", "block indices"), ("ks", "[0]", "positive feature counts")):
        with pytest.raises(ParameterError, match=message):
            resolve_params(chapter, "smoke", [], [(name, value)])
