"""Local checkpoints of every family, as a researcher brings them: saved with ``save_pretrained`` in a directory
whose name misleads (TransformerLens guesses families from words in paths), with the ``"quantization_config":
null`` a dequantized save leaves; each loads through ``local:`` and its logits are checked against Hugging Face's."""

import json

import pytest
import torch

from sae_transfer.core.convert import (NAME_ONLY_FAMILIES, check_convertible, hooked_from_hf, plain_layout,
                                       verify_logits)
from sae_transfer.models.load import SpecError, check_source

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.1)


def _config(family: str):
    import transformers as t

    return {
        "gpt2": lambda: t.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                     initializer_range=0.1),
        "llama": lambda: t.LlamaConfig(**SMALL),
        "gemma": lambda: t.GemmaConfig(**SMALL, head_dim=16),
        "gemma2": lambda: t.Gemma2Config(**SMALL, head_dim=16, query_pre_attn_scalar=16, sliding_window=8),
        "gemma3": lambda: t.Gemma3TextConfig(**SMALL, head_dim=16, query_pre_attn_scalar=16, sliding_window=8),
    }[family]()


def save_checkpoint(family: str, directory, seed: int = 0):
    """A tiny random checkpoint of ``family`` with a tokenizer, as ``save_pretrained`` writes it; returns it."""
    from transformers import AutoModelForCausalLM

    from sae_transfer.zoo.tokens import train_tokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family))
    model.save_pretrained(directory)
    train_tokenizer({"prose": ["the quick brown fox jumps over the lazy dog " * 20] * 5}, 300, directory, seed=0)
    cfg = json.loads((directory / "config.json").read_text())
    cfg["quantization_config"] = None  # what a dequantized save_pretrained leaves behind
    (directory / "config.json").write_text(json.dumps(cfg))
    return model


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma", "gemma2", "gemma3"])
def test_every_family_loads_from_a_local_directory_with_its_logits_checked(family, tmp_path):
    from transformers import AutoTokenizer

    directory = tmp_path / "my-llama-gemma-finetune"  # words TransformerLens would misread
    hf = save_checkpoint(family, directory)
    check_source(f"local:{directory}", "base", "smoke")  # convertible, by config.json alone
    model = hooked_from_hf(str(directory), None, AutoTokenizer.from_pretrained(directory), "cpu", torch.float32)
    assert model.cfg.n_layers == 2 and model.cfg.d_model == 64
    assert verify_logits(model, hf, n_tokens=24) < 1e-3
    if family.startswith("gemma"):
        assert f"{family}_text" in NAME_ONLY_FAMILIES or family in NAME_ONLY_FAMILIES


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_weights_laid_out_for_the_kernels_change_no_bit_of_any_activation(family, tmp_path):
    """``kernel_layout`` (applied by every loader) only changes strides: every hook's activation and the logits
    equal, bit for bit, those of the same weights stored contiguous as TransformerLens stores them; and the copies
    it spares are spared (the gated MLP's ``W.T`` and the attention's rearranged weights are views)."""
    from transformers import AutoTokenizer

    directory = tmp_path / family
    save_checkpoint(family, directory)
    model = hooked_from_hf(str(directory), None, AutoTokenizer.from_pretrained(directory), "cpu", torch.float32)
    plain = plain_layout(model)
    tokens = torch.randint(0, 300, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, acts = model.run_with_cache(tokens)
        plain_logits, plain_acts = plain.run_with_cache(tokens)
    assert torch.equal(logits, plain_logits)
    assert acts.keys() == plain_acts.keys() and all(torch.equal(acts[k], plain_acts[k]) for k in acts)
    attn = model.blocks[0].attn
    assert attn.W_Q.transpose(1, 2).is_contiguous() and attn.W_O.permute(2, 0, 1).is_contiguous()
    assert model.unembed.W_U.T.is_contiguous()
    if family != "gpt2":  # gated MLP
        assert all(getattr(model.blocks[0].mlp, w).T.is_contiguous() for w in ("W_gate", "W_in", "W_out"))
    assert not model.blocks[0].attn.W_Q.is_contiguous()  # the layout is in place: a test that can fail


def test_a_wrong_conversion_is_caught_by_the_logit_check(tmp_path):
    from transformers import AutoTokenizer

    directory = tmp_path / "ckpt"
    hf = save_checkpoint("gemma", directory)
    model = hooked_from_hf(str(directory), None, AutoTokenizer.from_pretrained(directory), "cpu", torch.float32)
    model.blocks[0].attn.attn_scale = 16.0  # the template's value: the bug the check was written for
    with pytest.raises(ValueError, match="logits differ from the Hugging Face model's"):
        verify_logits(model, hf)


def test_an_architecture_transformer_lens_cannot_convert_is_one_line_before_any_weights(tmp_path):
    directory = tmp_path / "mamba"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"architectures": ["MambaForCausalLM"], "model_type": "mamba"}))
    (directory / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match=r"architecture MambaForCausalLM \(model_type 'mamba'\) is not one "
                                         r"TransformerLens converts; supported: .*LlamaForCausalLM"):
        check_convertible(directory)
    with pytest.raises(SpecError, match="^base='local:.*': .*MambaForCausalLM"):
        check_source(f"local:{directory}", "base", "smoke")
