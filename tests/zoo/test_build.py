"""The smoke zoo: every artifact built, finetunes better on their own domain, reuse, checkpoints, resumability."""

import json
import math
from pathlib import Path

import pytest

from sae_transfer.zoo import Zoo, build_zoo
from sae_transfer.zoo.card import format_card, sae_quality


def test_card_has_every_artifact_and_sane_losses(smoke_card):
    assert set(smoke_card["models"]) == {"base-s", "base-m", "base-llama", "code", "math", "mix", "twin"}
    vocab = smoke_card["data"]["vocab_size"]
    for m in smoke_card["models"].values():
        for ce in m["heldout_ce"].values():
            assert 1.0 < ce < math.log(vocab)  # trained: better than uniform over the vocabulary
    for split in smoke_card["data"]["splits"].values():
        assert split["train"]["tokens"] > 5 * split["heldout"]["tokens"] > 0


def test_the_twin_and_the_second_sae_differ_from_their_originals_by_seed_only(smoke_card):
    from sae_transfer.zoo.recipe import load_recipe

    recipe = load_recipe("smoke")
    for a, b in (("base-s", "twin"), ("base-s", "base-s-seed1")):
        group = recipe.models if a in recipe.models and b in recipe.models else recipe.saes
        ra, rb = vars(group[a]).copy(), vars(group[b]).copy()
        assert rb.pop("seed") != ra.pop("seed")
        assert {k: v for k, v in ra.items() if k != "name"} == {k: v for k, v in rb.items() if k != "name"}
    ce = {n: m["heldout_ce"] for n, m in smoke_card["models"].items()}
    # the same recipe learns as well from another seed, but its weights are its own
    assert abs(ce["twin"]["prose"] - ce["base-s"]["prose"]) < 0.3
    assert ce["twin"]["prose"] != ce["base-s"]["prose"]
    q = sae_quality(smoke_card)
    assert abs(q["base-s-seed1"]["explained_variance"] - q["base-s"]["explained_variance"]) < 0.1
    # the other architecture is base-s's recipe but for its blocks and its MLP's width; its SAE, base-s's recipe
    ra, rb = vars(recipe.models["base-s"]).copy(), vars(recipe.models["base-llama"]).copy()
    assert {k for k in ra if ra[k] != rb[k]} == {"name", "blocks", "d_mlp"} and rb["blocks"] == "llama"
    sa, sb = vars(recipe.saes["base-s"]).copy(), vars(recipe.saes["base-llama"]).copy()
    assert {k for k in sa if sa[k] != sb[k]} == {"name", "model"}


def test_finetunes_beat_their_base_on_their_domain(smoke_card):
    ce = {n: m["heldout_ce"] for n, m in smoke_card["models"].items()}
    assert ce["base-s"]["code"] - ce["code"]["code"] > 0.3
    assert ce["base-s"]["math"] - ce["math"]["math"] > 0.2
    # and the aggressive code finetune forgets prose more than the gentle math finetune
    assert ce["code"]["prose"] > ce["math"]["prose"]


def test_saes_are_trained_not_random(smoke_card):
    q = sae_quality(smoke_card)
    for name, s in q.items():
        assert s["explained_variance"] > 0.5, name
        assert s["ce_loss_score"] > 0.6, name
        assert s["l0"] < smoke_card["saes"][name]["d_sae"] / 2, name


def test_dead_features_are_counted_over_more_tokens_than_the_other_evals(smoke_card):
    recipe = smoke_card["recipe"]
    assert recipe["dead_windows"] > recipe["eval_windows"]
    for name, s in smoke_card["saes"].items():
        assert s["dead_tokens"] == recipe["dead_windows"] * recipe["context_size"]
        # the wide count's windows include the evals' windows, so no feature dead there is alive here
        assert 0 <= s["dead_fraction"] <= s["evals"][f"{s['model']}/prose"]["dead_fraction"], name
        assert sae_quality(smoke_card)[name]["dead_fraction"] == s["dead_fraction"]


def test_rebuild_reuses_everything(smoke_card, smoke_root):
    stamps = {p: p.stat().st_mtime for p in smoke_root.rglob("fingerprint.json")}
    card = build_zoo("smoke")
    assert card["fingerprint"] == smoke_card["fingerprint"]
    assert card["last_build_seconds"] == {}  # nothing was missing, so nothing was planned
    assert {p: p.stat().st_mtime for p in smoke_root.rglob("fingerprint.json")} == stamps
    assert "base-s" in format_card(card)


def test_checkpoints_load_and_differ(smoke_root):
    import torch

    steps = json.loads((smoke_root / "models" / "code" / "train_log.json").read_text())["checkpoint_steps"]
    assert steps[0] == 0 and len(steps) >= 5
    zoo = Zoo.open("smoke")
    base, step0, mid = zoo.model("base-s"), zoo.model("code@0"), zoo.model(f"code@{steps[2]}")
    w = "blocks.0.mlp.W_in"
    assert torch.equal(base.state_dict()[w], step0.state_dict()[w])
    assert not torch.equal(base.state_dict()[w], mid.state_dict()[w])


@pytest.mark.parametrize("name", ["base-s", "base-llama"])
def test_a_zoo_model_holds_its_file_s_weights_once_laid_out_for_the_kernels(smoke_root, name):
    """``Zoo.model`` copies the file's weights into a model laid out by ``kernel_layout``: every value is the
    file's, every activation equals that of the same weights stored contiguous, and once loaded the file is no
    longer mapped (the model holds its weights once, not also the file's pages)."""
    import torch
    from safetensors.torch import load_file

    from sae_transfer.core.convert import plain_layout

    weights = (smoke_root / "models" / name / "model.safetensors").resolve()
    mapped = lambda: str(weights) in Path("/proc/self/maps").read_text()  # noqa: E731 (Linux: what CI runs on)
    model = Zoo.open("smoke").model(name)
    linux = Path("/proc/self/maps").exists()
    assert not (linux and mapped())
    stored = load_file(str(weights))
    assert mapped() or not linux  # safetensors maps the file: the check above can fail
    state = model.state_dict()
    assert [k for k, v in stored.items() if not torch.equal(state[k], v)] == []
    assert model.unembed.W_U.T.is_contiguous() and not model.unembed.W_U.is_contiguous()
    plain = plain_layout(model)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, acts = model.run_with_cache(tokens)
        plain_logits, plain_acts = plain.run_with_cache(tokens)
    assert torch.equal(logits, plain_logits) and all(torch.equal(acts[k], plain_acts[k]) for k in acts)


def test_bad_specs_list_valid_choices(smoke_root):
    zoo = Zoo.open("smoke")
    with pytest.raises(ValueError, match=r"saved steps are \[0, "):
        zoo.model("code@99999")
    models = r"\['base-llama', 'base-m', 'base-s', 'code', 'math', 'mix', 'twin'\]"
    with pytest.raises(ValueError, match=rf"its models are {models}"):
        zoo.model("poetry")
    with pytest.raises(ValueError, match="built SAEs are"):
        zoo.sae("math")


def test_sae_training_depends_on_its_seed_not_on_the_process_random_state(smoke_root):
    import torch

    from sae_transfer.zoo.sae import train_sae

    zoo = Zoo.open("smoke")
    model = zoo.model("base-s")
    stream = zoo.streams("train", zoo.recipe.context_size)["prose"]

    def weights(seed: int) -> dict:
        sae = train_sae(model, stream, "blocks.1.hook_resid_pre", 64, 2048, 1.0, 1e-3, seed, batch_tokens=512)
        return {k: v.detach().clone() for k, v in sae.state_dict().items()}

    torch.manual_seed(1)
    first = weights(0)
    torch.rand(1000)  # a build that trained something else first
    after = torch.get_rng_state()
    second = weights(0)
    assert torch.equal(torch.get_rng_state(), after)  # the caller's generator is left as it was
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(weights(1)["W_enc"], first["W_enc"])


@pytest.mark.slow
def test_two_zoo_builds_at_once_on_one_cache_both_finish_with_one_artifact(smoke_root, tmp_path):
    """Two processes build the same missing SAE at once: one builds it, the other waits for the zoo and then
    finds it built; neither removes the other's work, and the SAE matches its build record."""
    import os
    import shutil
    import subprocess
    import sys

    from sae_transfer.zoo.fingerprints import damaged_files

    cache = tmp_path / "cache"
    shutil.copytree(smoke_root, cache / "zoo" / "smoke")
    shutil.rmtree(cache / "zoo" / "smoke" / "saes" / "base-s-seed1")
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(cache), "TQDM_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "sae_transfer", "zoo", "build", "--profile", "smoke"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert any("another process is building it; waiting" in o for o in outs), outs
    sae = cache / "zoo" / "smoke" / "saes" / "base-s-seed1"
    assert damaged_files(sae) == [] and not list(sae.parent.glob(".tmp-*"))
