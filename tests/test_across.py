"""The chapter across architectures' words, from headline numbers: the verdict against the floor in each of its
three cases, and prose that stays true without a twin or without the zoo's recipes."""

import pytest

from sae_transfer.studies.across import prose, tables

H = {"first": "prose", "threshold": 0.5, "n_alive": 2000, "n_features": 2048, "twin": True, "zoo_recipes": True,
     "blocks_other": "rotary positions, RMSNorm, a gated SiLU MLP",
     "blocks_base": "learned positions, LayerNorm, a GELU MLP",
     "stitch_worked": True, "stitch_ev_other": 0.78, "stitch_ev_min_other": 0.74, "stitch_ev_twin": 0.78,
     "cka_other": 0.80, "cka_twin": 0.83, "ce_stitched_other": 5.63, "ce_stitched_twin": 5.68, "ce_base": 5.57,
     "ev_carried_other": 0.51, "ce_rec_carried_other": 0.72, "ev_carried_twin": 0.56, "ce_rec_carried_twin": 0.76,
     "ev_own": 0.96, "ce_rec_own": 0.99, "share_other": 0.61, "share_other_lo": 0.59, "share_other_hi": 0.63,
     "share_twin": 0.68, "share_twin_lo": 0.66, "share_twin_hi": 0.70, "share_second_seed": 0.98,
     "share_second_seed_lo": 0.97, "share_second_seed_hi": 0.99}


@pytest.mark.parametrize("diff, lo, hi, words", [
    (-0.07, -0.09, -0.05, "7 points fewer features with a counterpart than a reseed of the base's own architecture "
                          "does (95% interval 5 to 9)"),
    (0.04, 0.01, 0.07, "4 points more features with a counterpart than a reseed"),
    (-0.01, -0.03, 0.02, "as many features with a counterpart as a reseed of the base's own architecture does, within "
                         "the intervals (a difference of -1 points, 95% interval -3 to +2)"),
])
def test_the_verdict_against_the_floor_follows_the_paired_interval(diff, lo, hi, words):
    h = {**H, "diff_other": diff, "diff_other_lo": lo, "diff_other_hi": hi}
    assert words in tables.verdict_vs_floor(h)
    assert words in prose.in_short(h) and words in tables.describe(h)["shares"]


def test_without_a_twin_or_the_zoos_recipes_the_prose_claims_neither():
    h = {k: v for k, v in H.items() if "twin" not in k}
    h.update(twin=False, zoo_recipes=False)
    text = prose.in_short(h)
    assert "reseed" not in text and "data and budget" not in text and "on the base's tokenizer" in text
    assert "against 98% for a second seed of the SAE itself." in text
    assert "twin" not in " ".join(tables.describe(h).values())


def test_a_stitch_that_found_no_map_says_so_before_any_finding():
    h = {**H, "stitch_worked": False, "stitch_ev_min_other": 0.3, "diff_other": -0.07, "diff_other_lo": -0.09,
         "diff_other_hi": -0.05}
    assert prose.in_short(h).startswith("The stitch from the other architecture")
    assert "it has not found the map there" in tables.describe(h)["stitch"]
