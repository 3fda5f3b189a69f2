"""The pair loader on all four sources, offline: zoo models, hub-format models saved to a local directory
(tiny random GPT-2), and SAEs from the zoo and from disk; and every bad input it must refuse."""


import shutil

import pytest
import torch

from sae_transfer.models.load import SpecError, compare_tokenizers, load_pair, parse_spec

D = 32


@pytest.fixture(scope="module")
def hub_dirs(tmp_path_factory):
    """base/ and ft/ written by save_pretrained, plus an sae/ written by sae_lens."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformers import GPT2Config, GPT2LMHeadModel

    from sae_transfer.zoo.tokens import train_tokenizer

    root = tmp_path_factory.mktemp("hub")
    tok = train_tokenizer({"prose": ["the quick brown fox jumps over the lazy dog " * 30] * 5}, 300,
                          root / "tok", seed=0)
    # n_ctx: TransformerLens reads the legacy GPT-2 field, which new transformers no longer sets itself
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_ctx=32, n_embd=D, n_layer=2, n_head=2)
    for name, seed in (("base", 0), ("ft", 1)):
        torch.manual_seed(seed)
        GPT2LMHeadModel(cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    torch.manual_seed(2)
    # The SAE says how its model was loaded; uncentred residuals let the test compare with HF's hidden states.
    meta = SAEMetadata(hook_name="blocks.0.hook_resid_post",
                       model_from_pretrained_kwargs={"center_writing_weights": False})
    StandardSAE(StandardSAEConfig(d_in=D, d_sae=64, metadata=meta)).save_model(str(root / "sae"))
    meta = SAEMetadata(hook_name="blocks.0.hook_resid_post")
    StandardSAE(StandardSAEConfig(d_in=D, d_sae=64, metadata=meta)).save_model(str(root / "sae_default"))
    return root


def test_local_pair_matches_hf_activations(hub_dirs):
    from transformers import AutoModelForCausalLM

    pair = load_pair(f"local:{hub_dirs / 'base'}", f"local:{hub_dirs / 'ft'}", f"local:{hub_dirs / 'sae'}",
                     device="cpu")
    assert pair.hook == "blocks.0.hook_resid_post" and pair.trimmed_tokens == []
    tokens = torch.tensor([[0, 5, 17, 42, 3]])
    for model, name in ((pair.base, "base"), (pair.finetune, "ft")):
        hf = AutoModelForCausalLM.from_pretrained(hub_dirs / name)
        want = hf(tokens, output_hidden_states=True).hidden_states[1]
        _, cache = model.run_with_cache(tokens, names_filter=pair.hook)
        torch.testing.assert_close(cache[pair.hook], want, atol=1e-4, rtol=1e-4)
    # base and finetune really are different models
    assert not torch.allclose(pair.base(tokens), pair.finetune(tokens))


def test_default_processing_centres_the_residual_stream(hub_dirs):
    """Without kwargs in the SAE, weights are processed as HookedTransformer.from_pretrained does."""
    pair = load_pair(f"local:{hub_dirs / 'base'}", f"local:{hub_dirs / 'ft'}", f"local:{hub_dirs / 'sae_default'}",
                     device="cpu")
    _, cache = pair.finetune.run_with_cache(torch.tensor([[0, 5, 17, 42]]), names_filter=pair.hook)
    assert cache[pair.hook].mean(-1).abs().max() < 1e-5  # center_writing_weights


def _with_appended_pad(hub_dirs, out):
    """The finetune saved again with a special token appended to its vocabulary (as chat finetunes do)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hub_dirs / "ft")
    tok.add_special_tokens({"additional_special_tokens": ["<PAD>"]})
    model = AutoModelForCausalLM.from_pretrained(hub_dirs / "ft")
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_finetune_with_appended_pad_is_trimmed(hub_dirs, tmp_path):
    _with_appended_pad(hub_dirs, tmp_path / "ft_pad")
    with pytest.warns(UserWarning, match=r"appends 1 special token\(s\) \['<PAD>'\]"):
        pair = load_pair(f"local:{hub_dirs / 'base'}", f"local:{tmp_path / 'ft_pad'}",
                         f"local:{hub_dirs / 'sae'}", device="cpu")
    assert pair.trimmed_tokens == ["<PAD>"]
    assert pair.finetune.cfg.d_vocab == pair.base.cfg.d_vocab


def test_finetune_with_another_vocabulary_is_refused(hub_dirs, tmp_path):
    from transformers import AutoTokenizer

    from sae_transfer.zoo.tokens import train_tokenizer

    other = train_tokenizer({"code": ["def f(x): return x * 2\n" * 50] * 5}, 300, tmp_path / "o", seed=0)
    with pytest.raises(SpecError, match="finetune tokenizer differs from the base's"):
        compare_tokenizers(AutoTokenizer.from_pretrained(hub_dirs / "base"), other)


def test_bad_hook_lists_close_matches(hub_dirs):
    with pytest.raises(SpecError, match=r"hook='blocks.0.hook_resid_psot' is not a hook.*blocks.0.hook_resid_post"):
        load_pair(f"local:{hub_dirs / 'base'}", f"local:{hub_dirs / 'ft'}", f"local:{hub_dirs / 'sae'}",
                  hook="blocks.0.hook_resid_psot", device="cpu")


def test_sae_width_mismatch_is_refused(hub_dirs):
    with pytest.raises(SpecError, match=r"sae d_in=32 but .* hook='blocks.0.attn.hook_z' has width 16"):
        load_pair(f"local:{hub_dirs / 'base'}", f"local:{hub_dirs / 'ft'}", f"local:{hub_dirs / 'sae'}",
                  hook="blocks.0.attn.hook_z", device="cpu")


@pytest.mark.parametrize("kwargs, message", [
    ({"base": "gemma"}, "base='gemma': unknown source; use zoo:NAME[@STEP], hub:ORG/NAME or local:PATH"),
    ({"finetune": "local:/no/such/dir"}, "finetune='local:/no/such/dir': no such directory"),
    ({"sae": "sae_lens:gemma-2b-res-jb"}, "needs RELEASE:SAE_ID"),
    ({"dtype": "fp8"}, "dtype='fp8': valid dtypes are ['bfloat16', 'float16', 'float32']"),
    ({"device": "cuda:7"}, "no CUDA device is visible"),
    ({"finetune": "hub:meta-math/MetaMath-Mistral-7B"}, "a zoo model pairs only with a zoo model"),
])
def test_bad_requests_fail_before_loading(kwargs, message):
    args = {"base": "zoo:base-s", "finetune": "zoo:code", "sae": "zoo:base-s", "zoo": "smoke", **kwargs}
    with pytest.raises(SpecError) as e:
        load_pair(**args)
    assert message in str(e.value)


def test_spec_parsing():
    assert parse_spec("zoo:code@25", "finetune") == ("zoo", "code@25")
    assert parse_spec("hub:google/gemma-2b", "base") == ("hub", "google/gemma-2b")
    assert parse_spec("sae_lens:gemma-2b-res-jb:blocks.6.hook_resid_post", "sae", sae=True) == \
        ("sae_lens", "gemma-2b-res-jb:blocks.6.hook_resid_post")


def test_the_loader_keeps_base_and_sae_and_swaps_only_the_finetune(hub_dirs, tmp_path):
    """A chapter walking finetunes loads the base once: the second finetune comes with the same base and SAE
    objects, its own trimmed tokens, and activations equal to a pair loaded from nothing (the SAE's
    processing kwargs applied to it too)."""
    from sae_transfer.models.pairs import PairSetup

    _with_appended_pad(hub_dirs, tmp_path / "ft_pad")
    base, sae, ft, ft_pad = (f"local:{hub_dirs / 'base'}", f"local:{hub_dirs / 'sae'}", f"local:{hub_dirs / 'ft'}",
                             f"local:{tmp_path / 'ft_pad'}")
    loader = PairSetup(base, sae, device="cpu").loader()
    first = loader(ft)
    first_base, first_sae, first_ft = first.base, first.sae, first.finetune
    assert loader(ft) is first  # the same finetune again: nothing loads
    with pytest.warns(UserWarning, match=r"appends 1 special token"):
        second = loader(ft_pad)
    assert second.base is first_base and second.sae is first_sae and second.finetune is not first_ft
    assert second.specs == {"base": base, "finetune": ft_pad, "sae": sae} and second.trimmed_tokens == ["<PAD>"]
    with pytest.warns(UserWarning, match=r"appends 1 special token"):
        fresh = load_pair(base, ft_pad, sae, device="cpu")
    tokens = torch.tensor([[0, 5, 17, 42]])
    for got, want in ((second.finetune, fresh.finetune), (second.base, fresh.base)):
        torch.testing.assert_close(got.run_with_cache(tokens, names_filter=second.hook)[1][second.hook],
                                   want.run_with_cache(tokens, names_filter=fresh.hook)[1][fresh.hook])
    assert loader(ft).trimmed_tokens == [] and loader(ft).base is first_base
    with pytest.raises(SpecError, match="finetune="):
        loader(f"local:{tmp_path / 'missing'}")
    assert loader(ft).finetune is not None  # a failed load leaves nothing behind to be handed out


def test_a_dtype_change_converts_every_weight_and_the_config():
    """``quiet_to(model, dtype)`` does what TransformerLens's ``to(dtype)`` does, without its quadratic loop."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sae_transfer.core.convert import quiet_to

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50, n_ctx=8,
                                  act_fn="gelu", normalization_type="LN", device="cpu")
    ours = quiet_to(HookedTransformer(cfg), torch.bfloat16)
    assert ours.cfg.dtype == torch.bfloat16
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    theirs = HookedTransformer(cfg)
    theirs.load_state_dict(quiet_to(ours, torch.float32).state_dict())
    theirs = theirs.to(torch.bfloat16)
    tokens = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(quiet_to(ours, torch.bfloat16)(tokens), theirs(tokens))


@pytest.mark.slow
def test_zoo_pair(smoke_card):
    pair = load_pair("zoo:base-s", "zoo:code@0", "zoo:base-s", zoo="smoke", device="cpu")
    assert pair.hook == smoke_card["saes"]["base-s"]["hook"]
    tokens = torch.tensor([[0, 10, 20, 30]])
    torch.testing.assert_close(pair.base(tokens), pair.finetune(tokens))  # step 0 is the base itself
    with pytest.raises(SpecError, match="finetune=.zoo:poetry.*its models are"):
        load_pair("zoo:base-s", "zoo:poetry", "zoo:base-s", zoo="smoke", device="cpu")


def test_sae_in_the_training_format_loads(tmp_path):
    """``save_model`` of a BatchTopK training SAE (architecture ``batchtopk``) loads as its inference form."""
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from sae_transfer.models.load import load_sae

    torch.manual_seed(0)
    cfg = BatchTopKTrainingSAEConfig(d_in=D, d_sae=64, k=4, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post"))
    trained = BatchTopKTrainingSAE(cfg)
    trained.save_model(str(tmp_path / "sae"))
    sae = load_sae(f"local:{tmp_path / 'sae'}", "smoke", "cpu")
    assert sae.cfg.d_sae == 64 and sae.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    # sae_lens folds decoder norms into the inference form: the directions are the trained ones
    cos = torch.nn.functional.cosine_similarity(sae.W_dec, trained.W_dec, dim=1)
    torch.testing.assert_close(cos, torch.ones(64), atol=1e-5, rtol=0)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cfg.json").write_text('{"architecture": "crosscoder", "d_in": 32}')
    with pytest.raises(SpecError, match=r"holds no sae_weights.safetensors \(found \['cfg.json'\]\)"):
        load_sae(f"local:{tmp_path / 'other'}", "smoke", "cpu")
    shutil.copy(tmp_path / "sae" / "sae_weights.safetensors", tmp_path / "other")
    with pytest.raises(SpecError, match="sae_lens cannot load it in its inference or training format "
                                        r"\(architecture 'crosscoder'"):
        load_sae(f"local:{tmp_path / 'other'}", "smoke", "cpu")
