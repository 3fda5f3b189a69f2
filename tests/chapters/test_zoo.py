"""Smoke test of the zoo chapter through the runner: asserts on the numbers it recorded in results.json."""

import json
import math

import pytest

from tests.conftest import run_smoke_chapter


@pytest.fixture(scope="module")
def results(smoke_card, tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo-run")
    return out, run_smoke_chapter("zoo", out)


@pytest.mark.slow
def test_zoo_chapter_numbers(results, smoke_card):
    _, r = results
    n = r["numbers"]
    vocab = n["vocab_size"]
    assert vocab == smoke_card["data"]["vocab_size"]
    for model in ("base_s", "base_m", "code", "math"):
        for domain in ("prose", "code", "math"):
            assert 1.0 < n[f"ce_{model}_{domain}"] < math.log(vocab)
    # the finetunes learned their domain; the recorded gains match the recorded losses
    assert n["ce_gain_code"] > 0.3 and n["ce_gain_math"] > 0.2
    assert n["ce_gain_code"] == pytest.approx(n["ce_base_s_code"] - n["ce_code_code"])
    # SAE quality recorded and plausible for a trained SAE
    assert 0.5 < n["sae_base_s_explained_variance"] <= 1.0
    assert 0 < n["sae_base_s_l0"] < smoke_card["saes"]["base-s"]["d_sae"]
    # the base SAE on its own model reproduces the card's numbers
    assert n["transfer_ev_base_s_prose"] == pytest.approx(
        smoke_card["saes"]["base-s"]["evals"]["base-s/prose"]["explained_variance"], abs=1e-3)
    assert n["tokens_prose_train"] == smoke_card["data"]["splits"]["prose"]["train"]["tokens"]


@pytest.mark.slow
def test_zoo_chapter_files_and_provenance(results):
    out, r = results
    assert set(r["figures"]) == {"training_curves", "heldout_ce", "base_sae_transfer"}
    for f in r["figures"].values():
        assert (out / f["png"]).stat().st_size > 5000 and (out / f["svg"]).exists()
    assert {"data_splits", "models", "saes", "base_sae_transfer_table"} <= set(r["tables"])
    meta = r["meta"]
    assert meta["params"] == {"zoo": "smoke", "device": "auto"}
    assert meta["command"] == "python -m sae_transfer run zoo -p zoo smoke"
    nb = json.loads((out / "zoo.ipynb").read_text())
    assert nb["metadata"]["sae_transfer"]["wall_seconds"] == meta["wall_seconds"]
