import pytest

from sae_transfer.core.io import read_yaml
from sae_transfer.core.paths import params_dir
from sae_transfer.zoo.recipe import load_recipe, parse_recipe


def test_shipped_profiles_parse():
    for profile in ("smoke", "default"):
        r = load_recipe(profile)
        assert {"base-s", "code", "math"} <= set(r.models)
        assert r.models["code"].parent == "base-s"
        assert r.models["code"].checkpoint_steps()[-1] == r.models["code"].steps
        assert {"base-s", "code"} <= set(r.saes)


@pytest.mark.parametrize("raw, message", [
    ({"modles": {}}, "unknown key(s) ['modles']"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"poetry": 1.0}, "n_layers": 1, "d_model": 8,
                       "n_heads": 1, "d_mlp": 8}}}, "valid domains are ['prose', 'code', 'math']"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "parent": "zz"}}}, "valid parents are ['a']"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}}}}, "needs n_layers"),
    ({"saes": {"s": {"model": "x", "hook": "blocks.0.hook_resid_pre", "d_sae": 8, "training_tokens": 1, "l1": 1.0}}}, "valid models"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "n_layers": 1, "d_model": 8, "n_heads": 1,
                       "d_mlp": 8}},
      "saes": {"s": {"model": "a", "hook": "blocks.0.hook_resid_pre", "d_sae": 8, "training_tokens": 1, "architecture": "batchtopk",
                     "l1": 1.0}}}, "needs k for architecture 'batchtopk'"),
])
def test_bad_recipes_name_the_key(raw, message):
    with pytest.raises(ValueError, match=None) as e:
        parse_recipe(raw, "t")
    assert message in str(e.value)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid profiles are \['default', 'smoke', 'smollm2', 'smollm2-smoke'\]"):
        load_recipe("huge")


TOY = {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "n_layers": 1, "d_model": 8, "n_heads": 1, "d_mlp": 8}


@pytest.mark.parametrize("models, message", [
    ({"r": {"pretrained": "gpt-9"}}, "valid pretrained models are ['smollm2-135m-instruct']"),
    ({"r": {"pretrained": "smollm2-135m-instruct", "n_layers": 2}}, "it takes no ['n_layers']"),
    ({"r": {"pretrained": "smollm2-135m-instruct"}, "t": TOY}, "one zoo holds one tokenizer"),
])
def test_bad_pretrained_recipes_name_the_key(models, message):
    with pytest.raises(ValueError) as e:
        parse_recipe({"models": models}, "t")
    assert message in str(e.value)


def test_real_family_recipes_parse():
    for profile in ("smollm2", "smollm2-smoke"):
        r = load_recipe(profile)
        assert r.pretrained == "smollm2-135m-instruct"
        assert r.root("code").name == r.root("math").name == "smollm2"
        assert r.saes["smollm2"].normalize == "expected_average_only_in"


@pytest.mark.parametrize("data, mix, message", [
    ({}, {"fr": 1.0}, "valid domains are ['prose', 'code', 'math'] (add ['fr'] to data.languages"),
    ({"languages": ["klingon"]}, {"code": 1.0}, "data.languages=['klingon']; give a list of distinct languages"),
    ({"languages": "fr"}, {"code": 1.0}, "data.languages='fr'"),
    ({"languages": ["fr", "fr"]}, {"code": 1.0}, "distinct"),
])
def test_languages_are_checked_and_a_mix_names_one_only_where_added(data, mix, message):
    with pytest.raises(ValueError) as e:
        parse_recipe({"data": data, "models": {"a": {**TOY, "mix": mix}}}, "t")
    assert message in str(e.value)


def test_a_language_keys_the_toy_tokenizer_but_only_the_real_models_that_read_it():
    """A toy zoo's tokenizer is trained on every domain, so a language changes every artifact; a real family's
    tokenizer is the model's, so adding French leaves the models that never read it (and their SAEs) as built."""
    from sae_transfer.zoo.fingerprints import data_fingerprint, model_fingerprint, sae_fingerprint

    toy = {"models": {"a": TOY}}
    plain, french = parse_recipe(toy, "t"), parse_recipe({**toy, "data": {"languages": ["fr"]}}, "t")
    assert french.domains == ("prose", "code", "math", "fr")
    assert model_fingerprint(plain, "a") != model_fingerprint(french, "a")
    real = load_recipe("smollm2")
    assert "fr" in real.data.languages and real.models["french"].mix == {"fr": 1.0}
    raw = read_yaml(params_dir() / "zoo" / "smollm2.yaml", "zoo recipe")
    del raw["data"]["languages"], raw["models"]["french"]
    without = parse_recipe(raw, "smollm2")
    assert data_fingerprint(without) != data_fingerprint(real)  # the corpora themselves differ
    for name in ("smollm2", "code"):
        assert model_fingerprint(real, name) == model_fingerprint(without, name)
    assert model_fingerprint(real, "french") != model_fingerprint(real, "code")
    assert sae_fingerprint(real, "smollm2") == sae_fingerprint(without, "smollm2")


def test_toy_fingerprints_are_unchanged_by_the_fields_real_families_added():
    """Recorded when pretrained models, SAE input scaling and BOS exclusion were added: a toy zoo built before
    them must stay current (rebuilding the default zoo costs 20 minutes). A deliberate change updates these. The
    default zoo since trains in bf16-mixed precision: the same recipe in fp32 keeps the recorded fingerprints."""
    from dataclasses import replace

    from sae_transfer.zoo.fingerprints import data_fingerprint, model_fingerprint, sae_fingerprint

    shipped = load_recipe("default")
    fp32 = replace(shipped, precision="fp32")
    assert model_fingerprint(fp32, "code") == "9fe8926ae3d00e2a" != model_fingerprint(shipped, "code")
    assert sae_fingerprint(fp32, "base-s") == "cbed12bee46afa95" != sae_fingerprint(shipped, "base-s")
    assert data_fingerprint(fp32) == data_fingerprint(shipped) == "39ed346ea6434a61"


@pytest.mark.parametrize("models, message", [
    ({"a": {**TOY, "blocks": "mamba"}}, "models.a.blocks='mamba': valid are ['gpt2', 'llama']"),
    ({"a": TOY, "b": {"parent": "a", "steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "blocks": "llama"}},
     "a finetune keeps its parent's blocks"),
])
def test_bad_blocks_name_the_key(models, message):
    with pytest.raises(ValueError) as e:
        parse_recipe({"models": models}, "t")
    assert message in str(e.value)


def test_llama_blocks_build_a_rotary_rmsnorm_gated_model_that_reads_like_any_zoo_model():
    """The architectures section's second model: the same shapes, tokenizer and hooks, another kind of block."""
    import torch

    from sae_transfer.zoo.build import architecture
    from sae_transfer.zoo.store import new_model

    recipe = parse_recipe({"models": {"g": {**TOY, "n_heads": 2, "d_model": 16, "d_mlp": 32},
                                      "l": {**TOY, "n_heads": 2, "d_model": 16, "d_mlp": 32, "blocks": "llama"}}}, "t")
    gpt2, llama = (architecture(recipe, recipe.models[n], 50) for n in ("g", "l"))
    assert (gpt2["act_fn"], gpt2["normalization_type"], gpt2["positional_embedding_type"]) == ("gelu", "LN", "standard")
    assert "gated_mlp" not in gpt2 and "rotary_dim" not in gpt2  # arch.json of the zoo's models as it was
    assert (llama["act_fn"], llama["normalization_type"], llama["positional_embedding_type"], llama["gated_mlp"],
            llama["rotary_dim"]) == ("silu", "RMS", "rotary", True, 8)
    g, m = new_model(gpt2), new_model(llama)
    assert "pos_embed.W_pos" in g.state_dict() and "pos_embed.W_pos" not in m.state_dict()
    assert "blocks.0.mlp.W_gate" in m.state_dict()
    tokens = torch.randint(0, 50, (2, 12))
    _, cache = m.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    assert cache["blocks.0.hook_resid_post"].shape == (2, 12, 16)


def test_precision_is_checked_and_keys_what_trains_in_it():
    from sae_transfer.zoo.fingerprints import model_fingerprint, sae_fingerprint

    with pytest.raises(ValueError, match=r"precision='fp16'; valid are \['fp32', 'bf16-mixed'\]"):
        parse_recipe({"models": {"a": TOY}, "precision": "fp16"}, "t")
    raw = {"models": {"a": TOY, "b": {"parent": "a", "steps": 1, "lr": 1.0, "mix": {"code": 1.0}}},
           "saes": {"s": {"model": "a", "hook": "blocks.0.hook_resid_pre", "d_sae": 8, "training_tokens": 1,
                          "l1": 1.0}}}
    fp32, implicit, bf16 = (parse_recipe({**raw, **extra}, "t") for extra in
                            ({"precision": "fp32"}, {}, {"precision": "bf16-mixed"}))
    assert implicit.precision == "fp32" and bf16.precision == "bf16-mixed"
    for name in ("a", "b"):  # fp32 keys what it always did; bf16 models are other models
        assert model_fingerprint(fp32, name) == model_fingerprint(implicit, name) != model_fingerprint(bf16, name)
    assert sae_fingerprint(fp32, "s") != sae_fingerprint(bf16, "s")
    real = {"r": {"pretrained": "smollm2-135m-instruct"}}
    # a pretrained root is converted, not trained: its precision changes nothing of it
    assert (model_fingerprint(parse_recipe({"models": real}, "t"), "r")
            == model_fingerprint(parse_recipe({"models": real, "precision": "bf16-mixed"}, "t"), "r"))
    assert load_recipe("default").precision == load_recipe("smollm2").precision == "bf16-mixed"
    assert load_recipe("smoke").precision == "fp32"
