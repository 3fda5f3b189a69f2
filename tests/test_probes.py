"""Probes and their metrics on planted data: a perfectly separable feature scores AUROC 1, rankings and
metrics agree with scikit-learn, folds keep pairs together, and last-token activations ignore padding."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sae_transfer.methods import probes
from sae_transfer.models.hooks import probe_hooks


def _planted(n=200, d=64, feature=7, seed=0):
    """Sparse non-negative 'SAE features' [n, d]; feature ``feature`` fires exactly on the positives."""
    rng = np.random.default_rng(seed)
    y = np.tile([1, 0], n // 2)
    F = rng.exponential(1.0, size=(n, d)) * (rng.random((n, d)) < 0.1)
    F[:, feature] = y * rng.uniform(1.0, 3.0, size=n)
    groups = np.repeat(np.arange(n // 2), 2)
    return F.astype(np.float32), y, groups


def test_a_planted_separable_feature_ranks_first_and_scores_auroc_1():
    F, y, groups = _planted()
    order, auroc = probes.rank_features(F[:100], y[:100])
    assert order[0] == 7 and auroc[7] == 1.0
    probe = probes.fit_sparse(F[:100], y[:100], groups[:100], 1, order)
    m = probes.bootstrap_metrics(y[100:], probe.predict_proba(F[100:]), n_boot=200)
    assert m["auroc"] == 1.0 and m["auroc_lo"] == 1.0 and m["accuracy"] == 1.0


def test_feature_ranking_uses_training_rows_only():
    F, y, groups = _planted()
    F_test = F.copy()
    F_test[100:, 3] = y[100:] * 10.0  # planted in the test rows only: invisible to a ranking on train
    order, _ = probes.rank_features(F_test[:100], y[:100])
    assert 3 not in order[:2]


def test_feature_auroc_matches_scikit_learn_with_ties():
    F, y, _ = _planted(seed=3)
    ours = probes.feature_auroc(F, y)
    for j in range(F.shape[1]):
        assert ours[j] == pytest.approx(roc_auc_score(y, F[:, j]), abs=1e-12)


def test_bootstrap_metrics_match_point_estimates_and_bracket_them():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 300), 0, 1)
    m = probes.bootstrap_metrics(y, p, n_boot=500, seed=0)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y))
    assert 0 <= m["auroc_lo"] < m["auroc"] < m["auroc_hi"] <= 1
    assert m["auroc_hi"] - m["auroc_lo"] < 0.2
    assert probes.bootstrap_metrics(y, p, n_boot=500, seed=0) == m  # seeded


def test_residual_probe_finds_the_planted_direction():
    rng = np.random.default_rng(0)
    n, d = 400, 32
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    y = np.tile([1, 0], n // 2)
    X = rng.normal(size=(n, d)) + np.outer(2 * y - 1, w) * 1.5
    probe = probes.fit_residual(X[:300], y[:300], np.repeat(np.arange(150), 2))
    assert roc_auc_score(y[300:], probe.predict_proba(X[300:])) > 0.95
    direction = probe.direction()
    assert direction @ w / np.linalg.norm(direction) > 0.9


def test_folds_never_split_a_pair():
    groups = np.repeat(np.arange(50), 2)
    for train, held in probes._folds(groups):
        assert not set(groups[train]) & set(groups[held])


def test_probe_hooks_and_bad_layers():
    assert probe_hooks(3) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre",
                                     "blocks.2.hook_resid_post"]
    assert probe_hooks(3, [1]) == ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_post"]
    with pytest.raises(ValueError, match="valid layers are 0..2"):
        probe_hooks(3, [5])


@pytest.mark.slow
def test_last_token_activations_ignore_padding(smoke_root):
    from sae_transfer.zoo import Zoo
    from sae_transfer.zoo.tokens import load_tokenizer

    model = Zoo.open("smoke").model("base-s")
    sae = Zoo.open("smoke").sae("base-s")
    tok = load_tokenizer(smoke_root / "data" / "tokenizer")
    hook = sae.cfg.metadata.hook_name
    texts = ["A much longer prompt, padded on the right in its batch: what is it?", "Let a = 3. What is a?",
             "A prompt of middle length: what is it?"]
    batched = probes.last_token_acts(model, tok, texts, [hook], sae, hook, batch_size=2)  # sorted, then unsorted
    assert batched[hook].shape == (3, model.cfg.d_model) and batched["sae"].shape == (3, sae.cfg.d_sae)
    for i, t in enumerate(texts):
        ids = torch.tensor([probes.prompt_ids(tok, t)])
        _, cache = model.run_with_cache(ids, names_filter=hook)
        np.testing.assert_allclose(batched[hook][i], cache[hook][0, -1].numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(batched["sae"][i], sae.encode(cache[hook][0, -1]).detach().numpy(), atol=1e-4)
