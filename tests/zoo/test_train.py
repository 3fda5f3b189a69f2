"""How the zoo trains: its losses, and the precision a recipe sets."""

import pytest
import torch

from sae_transfer.zoo.recipe import parse_recipe
from sae_transfer.zoo.train import tl_loss, train_lm

TOY = {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "n_layers": 2, "d_model": 32, "n_heads": 2, "d_mlp": 64}


def _toy_model(seed: int = 0):
    from sae_transfer.zoo.build import architecture
    from sae_transfer.zoo.store import new_model

    recipe = parse_recipe({"models": {"a": TOY}}, "t")
    torch.manual_seed(seed)
    return new_model(architecture(recipe, recipe.models["a"], 64))


def test_the_fp32_loss_is_exactly_the_models_own():
    """Computed from the logits outside autocast, the fp32 loss is bit for bit what the model's return_type="loss"
    gives, so fp32 zoos train as they did before zoos had a precision."""
    model, tokens = _toy_model(), torch.randint(0, 64, (4, 16))
    assert torch.equal(tl_loss(model, tokens), model(tokens, return_type="loss"))


def test_the_fp32_loss_of_a_hugging_face_model_is_exactly_its_own():
    from transformers import LlamaConfig, LlamaForCausalLM

    from sae_transfer.zoo.train import hf_loss

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1))
    tokens = torch.randint(0, 64, (4, 16))
    assert torch.equal(hf_loss(model, tokens), model(input_ids=tokens, labels=tokens).loss)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no bf16 units on this CPU")
def test_bf16_mixed_trains_fp32_weights_on_an_fp32_loss_close_to_fp32s():

    class Stream:
        def sample(self, n, rng):
            return torch.from_numpy(rng.integers(0, 64, (n, 16)))

    runs = {}
    for precision in ("fp32", "bf16-mixed"):
        model = _toy_model()
        log = train_lm(model, {"code": Stream()}, {"code": 1.0}, steps=8, batch_size=8, lr=1e-3, seed=0, warmup=1,
                       precision=precision)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs[precision] = (log.loss, {k: v.clone() for k, v in model.state_dict().items()})
    (fp32_loss, fp32_w), (bf16_loss, bf16_w) = runs["fp32"], runs["bf16-mixed"]
    assert fp32_loss[0] == pytest.approx(bf16_loss[0], rel=1e-2)  # the same step, rounded otherwise
    assert fp32_loss != bf16_loss  # the passes did run in bf16
    drift = max(float((fp32_w[k] - bf16_w[k]).abs().max()) for k in fp32_w if fp32_w[k].is_floating_point())
    assert 0 < drift < 1e-2  # eight steps at lr 1e-3 move a weight at most ~8e-3
    with torch.no_grad():
        tokens = torch.randint(0, 64, (2, 16))
        assert tl_loss(_toy_model(), tokens, "bf16-mixed").dtype == torch.float32
