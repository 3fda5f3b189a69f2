import pytest

from sae_transfer.zoo.recipe import load_recipe, parse_recipe


def test_shipped_profiles_parse():
    for profile in ("smoke", "default"):
        r = load_recipe(profile)
        assert {"base-s", "base-m", "code", "math"} <= set(r.models)
        assert r.models["code"].parent == "base-s"
        assert r.models["code"].checkpoint_steps()[-1] == r.models["code"].steps
        assert {"base-s", "base-m", "code"} <= set(r.saes)


@pytest.mark.parametrize("raw, message", [
    ({"modles": {}}, "unknown key(s) ['modles']"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"poetry": 1.0}, "n_layers": 1, "d_model": 8,
                       "n_heads": 1, "d_mlp": 8}}}, "valid domains are ['prose', 'code', 'math']"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "parent": "zz"}}}, "valid parents are ['a']"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}}}}, "needs n_layers"),
    ({"saes": {"s": {"model": "x", "hook": "h", "d_sae": 8, "training_tokens": 1, "l1": 1.0}}}, "valid models"),
    ({"models": {"a": {"steps": 1, "lr": 1.0, "mix": {"code": 1.0}, "n_layers": 1, "d_model": 8, "n_heads": 1,
                       "d_mlp": 8}},
      "saes": {"s": {"model": "a", "hook": "h", "d_sae": 8, "training_tokens": 1, "architecture": "batchtopk",
                     "l1": 1.0}}}, "needs k for architecture 'batchtopk'"),
])
def test_bad_recipes_name_the_key(raw, message):
    with pytest.raises(ValueError, match=None) as e:
        parse_recipe(raw, "t")
    assert message in str(e.value)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match=r"valid profiles are \['default', 'smoke'\]"):
        load_recipe("huge")
