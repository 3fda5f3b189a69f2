"""Smoke test of the known-answers chapter: asserts on the tables and numbers it recorded."""

import pytest

from sae_transfer.studies.known_answers import prose
from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("known_answers")


def test_the_planted_cases_hold_the_counts_their_parameters_give(results):
    _, r = results
    rows = {row["case"]: row for row in r["tables"]["planted"]}
    # the smoke profile: 64 features, 30% changed (7 shifted, 6 rarer, 6 lost), 0.1 x 64 = 6 new
    assert {c: rows["default"][c] for c in ("kept", "shifted", "rarer", "lost", "new")} == \
        {"kept": 45, "shifted": 7, "rarer": 6, "lost": 6, "new": 6}
    assert rows["null finetune"]["kept"] == 64 and rows["null finetune"]["changed mass"] == 0
    assert 0.1 < rows["default"]["changed mass"] < 0.6


def test_the_methods_say_nothing_changed_on_the_null_finetune(results):
    _, r = results
    n = r["numbers"]
    assert n["null_new"] == 0 and n["null_verdict"] == "transfers" and n["null_kept_recall"] == 1.0
    assert n["null_shifted"] == n["null_lost"] == 0 and 0 < n["null_kept"] + n["null_unmatched"] <= n["matched"]
    assert "every method says nothing changed" in n["reading_null"]


def test_the_base_sae_finds_the_true_features_and_the_labels_are_scored(results):
    _, r = results
    n = r["numbers"]
    assert n["worked"]
    assert n["mcc_sae"] > 0.75 and n["matched"] >= 40 and n["f1_sae"] > 0.5  # measured: 0.85, 51, 0.76
    assert 0 < n["seed_shared"] < 1
    assert n["kept_precision"] >= 0.9 and n["kept_recall"] > 0.5
    assert n["auroc"] > 0.75 and n["auroc_lo"] <= n["auroc"] <= n["auroc_hi"]
    labels = {row["label"]: row for row in r["tables"]["labels"]}
    assert set(labels) == {"kept", "shifted", "lost", "new (crosscoder latents)"}
    assert labels["kept"]["labelled"] == n["kept_n_pred"]
    # the confusion table adds up to the features scored
    confusion = r["tables"]["confusion"]
    assert sum(row[c] for row in confusion for c in ("kept", "shifted", "lost", "unmatched")) == \
        sum(n[f"{lab}_n_true"] for lab in ("kept", "shifted", "lost"))


def test_the_verdict_worsens_with_the_true_change_and_the_prose_reads_it(results):
    _, r = results
    n = r["numbers"]
    assert n["n_severity_transfers"] >= 1 and n["n_severity_broken"] >= 1
    assert n["mass_transfers_max"] < n["mass_broken_min"]
    assert "worsens as the true changed mass grows" in n["reading_verdict"]
    for lab in ("kept", "shifted", "lost", "new"):
        said = prose.trust(n, lab)
        assert said in n["reading_labels"]
    assert ("can be trusted" in n["in_short"]) == any(prose.trust(n, lab) == "trustworthy"
                                                      for lab in ("kept", "shifted", "lost", "new"))


def test_the_breaking_points_cover_every_label_and_sweep(results):
    _, r = results
    table = r["tables"]["breaking_points"]
    assert [row["label"] for row in table] == ["kept", "shifted", "lost", "new"]
    assert all(len(row) == 5 for row in table)  # the label and four sweeps


def test_the_real_level_plants_in_the_smoke_base_and_check_reads_it(results):
    """The second level, on the smoke zoo's base-s (measured 2026-12-05: 154 of its SAE's 511 living features
    changed and 51 new; check transfers at a changed mass of 0, degraded at 0.31, broken at 0.87; the null
    crosscoder calls no latent new)."""
    _, r = results
    n = r["numbers"]
    assert n["real_base"] == "zoo:base-s" and n["real_hook"].startswith("blocks.")
    assert n["real_n_changed"] > 0 and n["real_n_new"] > 0
    assert n["real_null_verdict"] == "transfers" and n["real_null_new"] == 0
    # a lost feature's term is gone, and it keeps less of its activation than a kept feature
    assert 0 <= n["real_kept_act_lost"] < n["real_kept_act_kept"] <= 1.05
    rows = {row["share changed"]: row for row in r["tables"]["real_verdicts"]}
    assert rows["0"]["verdict"] == "transfers" and float(rows["0"]["changed mass"]) == 0
    assert rows["1"]["verdict"].startswith("broken") and float(rows["1"]["changed mass"]) > 0.5
    assert float(rows["0.3"]["changed mass"]) < float(rows["1"]["changed mass"])
    assert f"Planted in a real model (`{n['real_base']}`)" in n["in_short"]
    assert f"MCC {n['real_mcc_cc_base']:.2f}" in n["reading_real"]
    assert n["real_verdict"] in n["reading_real"] and f"{n['real_kept_act_lost']:.0%}" in n["reading_real"]


def test_the_trained_finetune_learns_its_planted_rule_and_the_methods_point_where_it_was_planted(results):
    """The second form of the real level, on the smoke zoo's base-s (measured 2026-12-06: the planted target at
    probability 0.90 after a trigger against 0.0003 in the control; the stream moved 0.61 of its norm at a trigger
    against 0.16 elsewhere; the SAE's unexplained variance 2.1 times higher on planted positions, 1.0 on the
    control; similarity loss against exposure Spearman 0.43 [0.36, 0.51])."""
    _, r = results
    n = r["numbers"]
    assert n["trained_took"] and n["trained_rule_planted"] > 0.5 and n["trained_rule_control"] < 0.05
    assert n["trained_entropy_planted"] > n["trained_entropy_control"]
    assert min(n["trained_moved_added"], n["trained_moved_removed"]) > 2 * n["trained_moved_other"]
    assert n["trained_ratio_planted"] > 1.5 * n["trained_ratio_control"]
    assert n["trained_sim_lo"] > 0
    rows = {row["measure"]: row for row in r["tables"]["trained_behaviour"]}
    assert float(rows["P(target) after a trigger"]["planted"]) == pytest.approx(n["trained_rule_planted"], abs=1e-4)
    positions = {row["positions"]: row for row in r["tables"]["trained_positions"]}
    assert set(positions) == {"at a trigger", "at a removed token", "elsewhere"}
    planted_sae = {k: float(row["SAE unexplained (base / control / planted)"].split(" / ")[2])
                   for k, row in positions.items()}
    assert planted_sae["at a trigger"] > planted_sae["elsewhere"]
    methods = {row["measure"]: row for row in r["tables"]["trained_methods"]}
    assert methods["check"]["planted"].split()[0] == n["trained_verdict_planted"]
    assert f"probability {n['trained_rule_planted']:.2f}" in n["reading_trained"]
    assert f"{n['trained_ratio_planted']:.1f} times" in n["reading_trained"]
    assert "planted token patterns" in n["in_short"]
