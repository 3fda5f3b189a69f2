"""Smoke test of the chapter across architectures: asserts on the stitches, the carried SAEs and the counterparts it
recorded (smoke zoo: base-llama and the twin, each stitched into base-s)."""

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("across")


def _n(results) -> dict:
    return {k.removeprefix("h_"): v for k, v in results[1]["numbers"].items()}


def test_each_partner_is_stitched_on_every_dataset_with_intervals_around_the_estimate(results):
    rows = results[1]["tables"]["stitch"]
    partners = {"other architecture", "twin (same architecture, another seed)"}
    assert {r["partner"] for r in rows} == partners
    assert sorted(r["data"] for r in rows) == sorted(["prose", "code", "math"] * 2)
    for r in rows:
        assert 0 < r["EV of the base"] <= 1 and r["low"] <= r["EV of the base"] <= r["high"]
        assert r["CE base"] < r["CE base from stitched"]  # a stitched stream costs the base some loss
    n = _n(results)
    other = [r["EV of the base"] for r in rows if r["partner"] == "other architecture"]
    assert n["stitch_ev_other"] == pytest.approx(sum(other) / 3)
    assert n["stitch_ev_min_other"] == pytest.approx(min(other))
    assert n["blocks_other"] == "rotary positions, RMSNorm, a gated SiLU MLP"
    assert n["blocks_base"] == "learned positions, LayerNorm, a GELU MLP"


def test_the_base_sae_beats_each_carried_sae_and_the_headline_is_the_table(results):
    rows = results[1]["tables"]["sae"]
    n = _n(results)
    for data in ("prose", "code", "math"):
        by = {r["SAE, model"]: r for r in rows if r["data"] == data}
        own = by["base SAE on base"]
        for role in ("other", "twin"):
            carried = by[f"{role}'s SAE carried to base"]
            assert own["EV"] > carried["EV"]
            assert carried["EV low"] <= carried["EV"] <= carried["EV high"]
        if data == n["first"]:
            assert n["ev_own"] == pytest.approx(own["EV"])
            assert n["ev_carried_other"] == pytest.approx(by["other's SAE carried to base"]["EV"])


def test_counterpart_shares_fall_with_the_threshold_and_the_floor_is_paired(results):
    rows = results[1]["tables"]["counterparts"]
    n = _n(results)
    by = {}
    for r in rows:
        by.setdefault(r["matched in"], []).append(r)
        assert r["low"] <= r["share"] <= r["high"]
    assert len(by) == 3  # the other architecture, the twin (floor), a second seed of the base SAE (ceiling)
    for who, rs in by.items():
        shares = [r["share"] for r in sorted(rs, key=lambda r: r["correlation at least"])]
        assert shares == sorted(shares, reverse=True)
    at = {who: next(r for r in rs if r["correlation at least"] == 0.5) for who, rs in by.items()}
    assert n["share_other"] == pytest.approx(at["the other architecture's SAE"]["share"])
    assert n["share_second_seed"] == pytest.approx(at["the base SAE from another seed (ceiling)"]["share"])
    assert n["diff_other"] == pytest.approx(n["share_other"] - n["share_twin"])
    assert n["diff_other_lo"] <= n["diff_other"] <= n["diff_other_hi"]
    assert 0 < n["n_alive"] <= n["n_features"]
    in_short = results[1]["numbers"]["in_short"]
    assert f"{100 * n['share_other']:.0f}%" in in_short and "reseed" in in_short
