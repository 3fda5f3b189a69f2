"""Smoke test of the atlas chapter: asserts on the table and numbers it recorded."""

import pytest

from sae_transfer.core import verdict as V
from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("atlas")


def test_every_checkpoint_has_a_row_and_the_verdicts_add_up(results):
    _, r = results
    n, rows = r["numbers"], r["tables"]["atlas"]
    assert n["n_finetunes"] == 13 and n["n_cases"] == len(rows) == 13  # 5 + 5 + 3 saved checkpoints, one dataset
    assert sum(n[f"n_{v}"] for v in V.VERDICTS) == 13
    assert (n["models_atlas"], n["models_checks"]) == (14, 26)
    assert 0 < n["store_mb"] < 50
    assert n["tokens_min"] <= n["tokens_max"] <= n["tokens_budget"]
    # the verdict in each row is the one its three criteria give; a ? marks the undecided, counted as such
    for row in rows:
        assert row["verdict"].rstrip("?") == V.classify({"ev_drop": row["EV drop"],
                                                         "ce_recovered_drop": row["CE rec. drop"],
                                                         "regular_act_sim": row["act. sim"]})["verdict"]
    assert sum(row["verdict"].endswith("?") for row in rows) == n["n_undecided"]


def test_the_aggressive_code_finetune_moves_furthest(results):
    _, r = results
    rows = {row["finetune"]: row for row in r["tables"]["atlas"]}
    # along the code finetune the weights move away from the base, and its last checkpoint is the worst case
    code = [rows[f"code@{s}"] for s in (8, 15, 30, 60, 120)]
    assert all(a["weight dev."] < b["weight dev."] for a, b in zip(code, code[1:]))
    assert rows["code@120"]["act. sim"] < rows["math@120"]["act. sim"]
    assert rows["code@120"]["EV drop"] > rows["math@120"]["EV drop"]


def test_the_predictors_are_scored_with_intervals_and_the_prose_reads_them(results):
    _, r = results
    n = r["numbers"]
    for key in ("residual_cos", "weight_deviation", "steps_x_lr"):
        assert -1 <= n[f"rho_{key}_lo"] <= n[f"rho_{key}"] <= n[f"rho_{key}_hi"] <= 1
    assert n["rho_residual_cos"] < 0  # the further the residual moved, the more EV the SAE lost
    assert f"{n['n_finetunes']} finetuned models" in n["in_short"]
    assert ("ranks them best" in n["ranking_reading"]) != ("intervals overlap" in n["ranking_reading"])


def test_the_table_is_sortable_on_the_page(results):
    out, _ = results
    page = (out / "atlas.ipynb").read_text()
    assert 'class=\\"sortable\\"' in page or "class=\"sortable\"" in page
