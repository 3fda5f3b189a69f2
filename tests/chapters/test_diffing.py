"""Smoke test of the diffing chapter: asserts on the classes, bars and pages it recorded."""

import re

import pytest

from tests.conftest import chapter_fixture

pytestmark = pytest.mark.slow

results = chapter_fixture("diffing")
PAIRS = ["code", "math", "twin (unrelated model)"]


def _rows(table):
    return {row["pair"]: row for row in table}


def test_every_pair_and_the_twin_have_latent_classes_that_add_up(results):
    latents = _rows(results[1]["tables"]["latents"])
    assert list(latents) == PAIRS
    for row in latents.values():
        assert row["live latents"] > 0
        shares = sum(row[f"{c} %"] for c in ("shared", "base-only", "finetune-only", "between"))
        assert shares == pytest.approx(100.0, abs=1e-6)
        assert 0 <= row["unexplained % base"] < 100 and 0 <= row["unexplained % finetune"] < 100
        assert row["unexplained % base"] <= 100 * results[1]["numbers"]["h_fvu_max"] + 1e-9


def test_feature_classes_partition_the_firing_features(results):
    classes = _rows(results[1]["tables"]["feature_classes"])
    n = {k.removeprefix("h_"): v for k, v in results[1]["numbers"].items()}
    for name, row in classes.items():
        assert row["features firing"] > 0
        assert sum(row[f"{c} %"] for c in ("kept", "shifted", "lost", "unmatched")) == pytest.approx(100.0, abs=1e-6)
    assert classes["twin (unrelated model)"]["kept %"] == pytest.approx(n["floor_kept_pct"])
    worst, best = n["worst_ft"], n["best_ft"]
    assert {worst, best} == {"code", "math"}
    assert classes[worst]["kept %"] == pytest.approx(n["worst_kept_pct"])
    assert n["worst_kept_pct"] <= n["best_kept_pct"]


def test_the_ceiling_is_above_the_floor(results):
    floors = _rows(results[1]["tables"]["floors"])
    n = {k.removeprefix("h_"): v for k, v in results[1]["numbers"].items()}
    ceiling, floor = floors["two SAEs of the base (ceiling)"], floors["twin (unrelated model) (floor)"]
    assert ceiling["activation sim (regular)"] == pytest.approx(n["ceiling_sim"])
    assert floor["activation sim (regular)"] == pytest.approx(n["floor_sim"])
    # two SAEs of one model agree far more than one SAE read on an unrelated model
    assert n["ceiling_sim"] > n["floor_sim"] + 0.3
    assert abs(n["floor_sim"]) < 0.2
    assert n["ceiling_kept_pct"] > n["floor_kept_pct"]


def test_checkpoints_are_followed_to_the_final_finetune(results):
    rows = results[1]["tables"]["along_checkpoints"]
    assert [r["finetune"] for r in rows] == ["code", "code"]  # the smoke profile: one checkpoint, then the final
    assert rows[-1]["step"] == "final" and rows[0]["step"] == results[1]["numbers"]["h_ckpt_first_step"]


def test_latent_pages_have_contexts_for_at_least_20_latents_per_pair(results):
    pages = results[0] / "pages"
    index = (pages / "index.html").read_text()
    for pair in ("code", "math", "twin__unrelated_model_"):
        files = sorted((pages / pair).glob("latent-*.html"))
        assert len(files) >= 20
        assert index.count(f"href='{pair}/latent-") == len(files)
        text = files[0].read_text()
        assert "<mark>" in text and "class='ctx'" in text and "<svg" in text and "promotes" in text
        assert re.search(r"relative decoder norm <b>[01]\.\d{3}</b>", text)


def test_the_labels_say_how_far_they_can_be_trusted(results):
    """Quoted from the known-answers record: each label's precision where the truth is known."""
    said = results[1]["numbers"]["trust_reading"]
    assert said.startswith("Where the truth is known")
    assert all(f"*{lab}* " in said for lab in ("kept", "shifted", "lost", "new"))
