"""Unit tests of the chapter across languages' statistics: per-feature correlations, the classes, the shares and
their intervals, the pooled verse activations (on the smoke zoo's base-s), and its checks at the edge."""

import numpy as np
import pytest
import torch

from sae_transfer.studies.languages import measure as M
from sae_transfer.studies.languages import tables
from sae_transfer.studies.languages.study import Study


def test_pearson_columns_matches_numpy_and_is_nan_for_a_constant_column():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(50, 3, generator=g), torch.rand(50, 3, generator=g)
    b[:, 1] = 2 * a[:, 1] + 1
    a[:, 2] = 0.0
    r = M.pearson_columns(a, b)
    assert r[0] == pytest.approx(np.corrcoef(a[:, 0], b[:, 0])[0, 1])
    assert r[1] == pytest.approx(1.0)
    assert np.isnan(r[2])


def test_derangement_moves_every_verse_and_is_seeded():
    p = M.derangement(100, 3)
    assert sorted(p) == list(range(100)) and not (p == np.arange(100)).any()
    assert (p == M.derangement(100, 3)).all()


def _side(rate_a, rate_b, corr):
    return {"rate": {"en": rate_a, "fr": rate_b}, "corr": corr}


def test_classes_follow_rates_and_correlation():
    side = _side([0.5, 0.5, 0.5, 0.0, 0.0, 0.3], [0.4, 0.4, 0.0, 0.2, 0.0, 0.3], [0.9, 0.1, None, None, None, None])
    c = M.classes(side, "en", "fr", min_rate=0.01, general_corr=0.5)
    assert [M.CLASSES[i] for i in c] == ["general", "shared, uncorrelated", "base language only",
                                         "new language only", "silent", "shared, uncorrelated"]


def _study(**kw):
    base = dict(base_text="zoo:prose", new_text="zoo:fr", base_language="en", new_language="fr", ceiling="",
                n_tokens=1024, n_verses=64, context_size=32, batch_size=4, outliers="2x", min_rate=0.01,
                general_corr=0.5, transfer_corr=0.7, n_boot=200, seed=0)
    return M.LanguagesStudy(**{**base, **kw})


def test_shares_pair_the_features_and_count_what_was_planted():
    rng = np.random.default_rng(0)
    n = 400
    rate = [0.3] * n
    before = _side(rate, rate, [0.9] * 100 + [0.1] * 300)  # 25% general on the base
    after = _side(rate, rate, [0.9] * 200 + [0.1] * 200)  # 50% after
    for side in (before, after):
        side["corr_shuffled"] = list(rng.uniform(-0.1, 0.1, n))
    stats = {"before": before, "after": after, "transfer": {"en": [0.8] * n, "fr": [0.8] * 50 + [0.2] * 350}}
    s = M.shares(stats, _study())
    assert s["n_alive"] == n
    assert s["classes"]["before"]["general"]["share"] == pytest.approx(0.25)
    assert s["classes"]["after"]["general"]["share"] == pytest.approx(0.5)
    assert s["general"]["before"]["shuffled"]["share"] == 0.0
    change = s["general_change"]
    assert change["difference"] == pytest.approx(0.25) and change["ci"][0] > 0.15
    assert s["transfer"]["general"]["n"] == 100 and s["transfer"]["general"]["fr"]["share"] == pytest.approx(0.5)
    assert s["transfer"]["general"]["en"]["share"] == 1.0
    assert s["moved"]["general"] == 100  # every general feature stays general


def test_readings_follow_the_intervals():
    h = {"general_change": 0.1, "general_change_lo": 0.05, "general_change_hi": 0.15}
    assert tables.change_reading(h).startswith("10.0 points more (95% interval 5.0 to 15.0)")
    h.update(general_change=-0.01, general_change_lo=-0.03, general_change_hi=0.02)
    assert tables.change_reading(h).startswith("as many")
    h = {"general_before": 0.02, "general_before_lo": 0.0, "general_before_hi": 0.03, "general_before_floor": 0.01,
         "general_before_floor_hi": 0.02, "ceiling": False, "lang_base": "English"}
    assert tables.general_reading(h).startswith("no more than the floor")


@pytest.mark.slow
def test_verse_activations_are_the_largest_per_text_whatever_the_batching(smoke_card):
    from sae_transfer.zoo.store import Zoo

    zoo = Zoo.open("smoke")
    model, sae = zoo.model("base-s"), zoo.sae("base-s")
    texts = ["In the beginning God created the heaven and the earth.", "Jesus wept.",
             "Au commencement, Dieu créa les cieux et la terre."]
    both = M.verse_activations(model, sae, sae.cfg.metadata.hook_name, zoo.tokenizer, texts, 64)
    for i, t in enumerate(texts):
        alone = M.verse_activations(model, sae, sae.cfg.metadata.hook_name, zoo.tokenizer, [t], 64)
        assert torch.allclose(both[i], alone[0], atol=1e-4)
        ids = [zoo.tokenizer.bos_token_id] + zoo.tokenizer(t, add_special_tokens=False)["input_ids"]
        _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=sae.cfg.metadata.hook_name)
        want = sae.encode(cache[sae.cfg.metadata.hook_name])[0, 1:].amax(0)  # BOS left out
        assert torch.allclose(alone[0], want, atol=1e-4)


def test_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="ceiling="):
        Study(ceiling="en").check()
    with pytest.raises(ValueError, match="base_language"):
        Study(new_language="en").check()
    with pytest.raises(ValueError, match="n_tokens=64"):
        M.check_inputs("zoo:french", _study(n_tokens=64))
    with pytest.raises(ValueError, match="new_text"):
        M.check_inputs("zoo:french", _study(new_text="zoo:klingon"))
    with pytest.raises(ValueError, match=r"n_verses=100000: the held-out chapters hold \d+ verses"):
        M.check_inputs("zoo:french", _study(n_verses=100000))
