"""The project's weight processing (``core.weight_processing``) makes, bit for bit, the model TransformerLens's
``load_and_process_state_dict`` makes, on every family it converts and under the processing an SAE may ask for;
and it leaves the Hugging Face model it reads from as it was."""

import pytest
import torch

from sae_transfer.core import convert
from tests.test_convert import save_checkpoint

FAMILIES = ["gpt2", "llama", "gemma", "gemma2", "gemma3"]
PROCESSING = {
    "defaults": {},
    "sae_lens training": {"center_writing_weights": False},  # what sae_lens's runner loads models with
    "no processing": {"fold_ln": False, "center_writing_weights": False, "center_unembed": False,
                      "fold_value_biases": False},
    "unembed kept": {"center_unembed": False, "fold_value_biases": False},
}


def random_weights(hf):
    """Every weight drawn anew, norms and biases included: initialised to ones and zeros, a norm folded twice or
    a value bias never folded would go unseen."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g) if p.ndim == 1 else 0.1 * torch.randn(p.shape, generator=g))
    return hf


def transformer_lens_model(directory, hf, tokenizer, dtype, kwargs):
    """What ``HookedTransformer.from_pretrained(hf_model=hf)`` does with these weights: the reference."""
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    kwargs = {**convert.PROCESSING_DEFAULTS, **kwargs}
    with convert._config(str(directory), kwargs["fold_ln"], "cpu", dtype, {}) as (official, cfg):
        state = loading.get_pretrained_state_dict(official, cfg, hf, dtype=dtype)
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state, **kwargs)
    return model.eval()


@pytest.mark.parametrize("processing", PROCESSING)
@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_model_as_transformer_lens_bit_for_bit(family, processing, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = tmp_path / "ckpt"
    save_checkpoint(family, directory)
    tok = AutoTokenizer.from_pretrained(directory)
    hf = random_weights(AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32))
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    # no logit check: centring the unembedding before Gemma 2's logit soft cap is not exact for weights this
    # large, in TransformerLens's processing as in ours (test_convert checks conversions against Hugging Face)
    ours = convert.hooked_from_hf(str(directory), hf, tok, "cpu", torch.float32, PROCESSING[processing],
                                  verify=False)
    theirs = transformer_lens_model(directory, hf, tok, torch.float32, PROCESSING[processing])

    assert ours.cfg.normalization_type == theirs.cfg.normalization_type
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    tokens = torch.randint(0, ours.cfg.d_vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(tokens), theirs(tokens))
    # the caller's Hugging Face model is untouched, and the converted one shares no memory with it
    assert all(torch.equal(v, before[k]) for k, v in hf.state_dict().items())
    theirs_storage = {t.untyped_storage().data_ptr() for t in hf.state_dict().values()}
    assert not any(t.untyped_storage().data_ptr() in theirs_storage for t in a.values())
    # each weight owns exactly its own memory (no view keeps a larger processing buffer alive); some are laid
    # out transposed for TransformerLens's kernels (``kernel_layout``), so dense rather than contiguous
    assert all(p.untyped_storage().nbytes() == p.numel() * p.element_size() for p in ours.parameters())


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_reduced_precision_is_processed_in_fp32_as_transformer_lens_does(family, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = tmp_path / "ckpt"
    save_checkpoint(family, directory)
    tok = AutoTokenizer.from_pretrained(directory)
    hf = random_weights(AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)).to(torch.bfloat16)
    ours = convert.hooked_from_hf(str(directory), hf, tok, "cpu", torch.bfloat16)
    theirs = transformer_lens_model(directory, hf, tok, torch.bfloat16, {})
    a, b = ours.state_dict(), theirs.state_dict()
    assert {v.dtype for k, v in a.items() if v.is_floating_point() and "IGNORE" not in k} == {torch.bfloat16}
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
