"""Smoke test of the sizes chapter: asserts on the stitch, the carried SAE, probes, steering and the feature
matches it recorded (smoke zoo: base-s stitched into base-m)."""

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("sizes")


def _n(results) -> dict:
    return {k.removeprefix("h_"): v for k, v in results[1]["numbers"].items()}


def test_the_stitch_explains_variance_both_ways_and_the_table_is_the_headline(results):
    rows = results[1]["tables"]["stitch"]
    assert [r["data"] for r in rows] == ["prose", "code", "math"]
    for r in rows:
        assert 0.3 < r["EV up (small to large)"] <= 1 and 0.3 < r["EV down (large to small)"] <= 1
        # the large model resumed from stitched activations is worse than on its own, but far from chance
        assert r["CE large"] < r["CE large on stitched"] < r["CE large"] + 2
    n = _n(results)
    assert n["ev_up"] == pytest.approx(sum(r["EV up (small to large)"] for r in rows) / 3)


def test_the_large_models_own_sae_beats_the_carried_one_which_beats_nothing(results):
    rows = results[1]["tables"]["sae"]
    for data in ("prose", "code", "math"):
        by = {r["SAE, model"]: r for r in rows if r["data"] == data}
        own, carried = by["large SAE on large"], by["transferred SAE on large"]
        assert own["EV"] > carried["EV"] > 0
        assert own["FVU"] == pytest.approx(1 - own["EV"])
        assert own["delta CE"] < carried["delta CE"]
    n = _n(results)
    assert n["fvu_transferred"] > n["fvu_large"]
    assert (n["seed_fvu_original"], n["seed_fvu_transferred"]) == (0.11, 0.39)  # quoted as the paper's


def test_the_initialisation_curves_have_every_checkpoint(results):
    rows = {r["start"]: r for r in results[1]["tables"]["init"]}
    assert set(rows) == {"from scratch", "from the transferred SAE"}
    assert rows["from scratch"]["SAE tokens"] == rows["from the transferred SAE"]["SAE tokens"] == 20480
    assert rows["from the transferred SAE"]["stitch tokens"] == 65536
    assert 0 < rows["from scratch"]["final EV"] <= 1


def test_probes_carry_intervals_and_steering_moves_toward_the_target(results):
    probes = results[1]["tables"]["probes"]
    assert len(probes) == 6
    for r in probes:
        auc, lo, hi = (float(x.strip("[],")) for x in r["AUROC"].split())
        assert 0 <= lo <= auc <= hi <= 1
    steer = {r["vector"]: r for r in results[1]["tables"]["steering"]}
    assert steer["none"]["change, points"] == 0
    assert steer["large model's own"]["change, points"] > 0  # adding the code direction raises code tokens' mass
    n = _n(results)
    assert n["steer_own"] == pytest.approx(steer["large model's own"]["change, points"])
    assert -1 <= n["steer_cos"] <= 1


def test_matched_shares_fall_with_the_threshold_and_the_second_seed_is_the_ceiling(results):
    shares = {r["comparison"]: r for r in results[1]["tables"]["shares"]}
    assert "large to second seed, activations" in shares
    for row in shares.values():
        v = [row[f">= {t}"] for t in ("0.3", "0.5", "0.7", "0.9")]
        assert v == sorted(v, reverse=True)
    n = _n(results)
    assert n["ceiling_pct"] >= n["stable_large_pct"]
    classes = {r["class"]: r for r in results[1]["tables"]["classes"]}
    assert sum(r["% of live"] for r in classes.values()) == pytest.approx(100.0)
    assert classes["core"]["% of live"] == pytest.approx(n["core_pct"])
