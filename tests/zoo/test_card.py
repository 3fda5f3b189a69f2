"""The zoo card's quality bars, on a hand-made card whose verdicts are known."""

import pytest

from sae_transfer.zoo.card import quality_summary, sae_quality


def _sae(l0: float, ev: float, ce: float, dead: float, d_sae: int = 1000) -> dict:
    prose = {"l0": l0, "explained_variance": ev, "ce_loss_score": ce, "kl_div_score": 0.99, "dead_fraction": 0.5}
    return {"model": "m", "d_sae": d_sae, "dead_fraction": dead, "evals": {"m/prose": prose, "m/code": {}}}


CARD = {"saes": {"good": _sae(l0=50, ev=0.95, ce=0.99, dead=0.03),
                 "dead": _sae(l0=80, ev=0.90, ce=0.95, dead=0.106),       # just over the 10% bar
                 "dense": _sae(l0=100, ev=0.85, ce=0.92, dead=0.0)}}      # L0/width 0.1 is not under 0.1


def test_each_bar_is_judged_on_prose_of_the_saes_own_model():
    q = sae_quality(CARD)
    assert q["good"]["meets_bars"]
    assert not q["dead"]["meets_bars"] and not q["dead"]["pass_dead_fraction"] and q["dead"]["pass_l0_over_width"]
    assert not q["dense"]["meets_bars"] and not q["dense"]["pass_l0_over_width"]
    assert q["good"]["l0_over_width"] == pytest.approx(0.05)
    assert q["good"]["dead_fraction"] == 0.03  # the wide count, not the evals' own


def test_quality_summary_counts_passes_and_takes_the_worst_of_each_metric():
    s = quality_summary(CARD)
    assert s["n_saes"] == 3 and s["n_meeting_bars"] == 1
    assert s["worst_dead_fraction"] == 0.106
    assert s["worst_l0_over_width"] == pytest.approx(0.1)
    assert s["worst_explained_variance"] == 0.85
    assert s["worst_ce_loss_score"] == 0.92


def test_the_zoo_page_says_where_its_two_measures_part_ways(smoke_card):
    """#40: a row where explained variance is below 0 while the CE loss score is above (or the reverse) is named,
    so "near 1" never reads as "works" on one measure alone."""
    import copy

    from sae_transfer.zoo.card import describe

    card = copy.deepcopy(smoke_card)
    sae = next(n for n, s in card["saes"].items() if len({k.split("/")[0] for k in s["evals"]}) > 1)
    for e in card["saes"][sae]["evals"].values():  # every row agrees ...
        e["explained_variance"], e["ce_loss_score"] = 0.8, 0.9
    assert "part ways" not in describe(card)["transfer"]
    key = next(iter(card["saes"][sae]["evals"]))
    card["saes"][sae]["evals"][key].update(explained_variance=-3.105, ce_loss_score=1.099)  # ... but one
    n = len(card["saes"][sae]["evals"])
    assert (f"The two measures part ways on 1 of {n} rows: on `{key}` the explained variance is -3.105 and the CE "
            "loss score 1.099") in describe(card)["transfer"]
