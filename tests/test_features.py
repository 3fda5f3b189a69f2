"""Feature transfer: per-feature statistics against direct computation, groups, logit similarity, drift."""

import math
from types import SimpleNamespace

import pytest
import torch

from sae_transfer.passes.accumulators import FeaturePairStats
from sae_transfer.passes.feature_groups import select_groups
from sae_transfer.studies.features.drift import direction_drift
from sae_transfer.studies.features.measure import group_summary, logit_similarity


class _ReluSAE:
    """The part of an sae_lens SAE that FeaturePairStats uses: a fixed ReLU encoder."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g)
        self.b_enc = -0.5 * torch.ones(d_sae)
        self.W_dec = torch.randn(d_sae, d_in, generator=g)
        self.cfg = SimpleNamespace(d_sae=d_sae, d_in=d_in)
        self.dtype = torch.float32

    def encode(self, x):
        return torch.relu(x @ self.W_enc + self.b_enc)


def _stats(a, b, sae, k=0, threshold=math.inf, split=2):
    acc = FeaturePairStats(sae, "h", threshold, k)
    for i in range(0, len(a), split):
        acc.update(None, {"h": a[i:i + split]}, {"h": b[i:i + split]})
        acc.end_batch()
    return acc.result()


def test_pair_statistics_match_direct_computation():
    g = torch.Generator().manual_seed(1)
    sae = _ReluSAE(6, 10)
    a = torch.randn(5, 7, 6, generator=g)
    b = a + 0.7 * torch.randn(5, 7, 6, generator=g)
    r = _stats(a, b, sae, k=4)
    fx = sae.encode(a)[:, 1:].flatten(0, 1).double()  # position 0 (BOS) left out
    fy = sae.encode(b)[:, 1:].flatten(0, 1).double()
    assert r["n_tokens"] == 5 * 6
    for f in range(10):
        x, y = fx[:, f], fy[:, f]
        if x.std() == 0 or y.std() == 0:
            assert math.isnan(r["act_sim"][f])
            continue
        assert r["act_sim"][f] == pytest.approx(torch.corrcoef(torch.stack([x, y]))[0, 1].item(), abs=1e-9)
    assert r["density_base"] == pytest.approx((fx > 1e-10).double().mean(0).tolist())
    assert r["max_finetune"] == pytest.approx(fy.max(0).values.tolist())
    err = ((fx + 1e-10).log10() - (fy + 1e-10).log10()).abs().mean(0)
    assert r["act_error"] == pytest.approx(err.tolist())
    # the running top-k is the top-k over all tokens, with global token indices (window * ctx + position)
    f = int(torch.tensor(r["density_base"]).argmax())
    full = sae.encode(a)[..., f].flatten().clone()
    full[torch.arange(5) * 7] = -1  # BOS never counts
    vals, idx = full.topk(4)
    assert r["top_base"]["values"][f] == pytest.approx(vals.tolist(), abs=1e-6)
    assert r["top_base"]["tokens"][f] == idx.tolist()


def test_identical_models_give_similarity_one_for_every_live_feature():
    g = torch.Generator().manual_seed(2)
    sae = _ReluSAE(6, 12)
    a = torch.randn(4, 9, 6, generator=g)
    r = _stats(a, a.clone(), sae)
    sims = torch.tensor(r["act_sim"])
    live = torch.tensor(r["density_base"]) > 0
    assert live.any() and torch.allclose(sims[live & ~sims.isnan()], torch.ones(1, dtype=sims.dtype), atol=1e-9)
    assert r["constant_base"] == r["constant_finetune"] == int(sims.isnan().sum())  # counted, not dropped
    assert max(r["act_error"]) == 0.0


def test_outliers_are_left_out():
    sae = _ReluSAE(4, 5)
    a = torch.randn(2, 5, 4)
    b = a.clone()
    b[0, 3] *= 100  # one huge token in the finetune
    r = _stats(a, b, sae, threshold=float(a.norm(dim=-1).max()) * 2)
    assert r["n_outliers"] == 1 and r["n_tokens"] == 2 * 4 - 1


def test_groups_are_seeded_samples_of_the_right_pools():
    db = [0.0, 0.0, 1e-3, 1e-2, 0.5, 1e-3, 1e-4]
    df = [1e-3, 0.0, 0.0, 1e-2, 0.5, 2e-3, 1e-3]
    sel = {"density_base": db, "density_finetune": df}
    g = select_groups(sel, n_regular=10, n_dead=10, seed=0)
    assert g == {"regular": [3, 5, 6], "dead_in_base": [0], "dead_in_finetune": [2]}
    small = select_groups(sel, n_regular=2, n_dead=1, seed=0)
    assert len(small["regular"]) == 2 and set(small["regular"]) <= {3, 5, 6}
    assert small == select_groups(sel, n_regular=2, n_dead=1, seed=0)
    scores = {"act_sim": [0.5, float("nan"), 0.1, 0.9, 0.95, 0.2, 0.85], "logit_sim": [1.0] * 7,
              "act_error": [0.0] * 7, "density_base": db, "density_finetune": df, "max_base": [1.0] * 7,
              "max_finetune": [1.0] * 7}
    t = group_summary(scores, g)
    assert t.loc["regular", "share above 0.8"] == pytest.approx(2 / 3)
    assert t.loc["regular", "activation sim (mean)"] == pytest.approx((0.9 + 0.2 + 0.85) / 3)


def test_logit_similarity_and_drift_of_identical_models_are_one():
    g = torch.Generator().manual_seed(3)
    sae = _ReluSAE(8, 16)
    model = SimpleNamespace(W_U=torch.randn(8, 30, generator=g))
    r = logit_similarity(sae, model, model, chunk_bytes=4 * 8 * 16 * 7)  # 7 tokens a chunk
    assert r["unembed_frobenius_ratio"] == 0.0
    assert r["logit_sim"] == pytest.approx([1.0] * 16)
    moved = SimpleNamespace(W_U=model.W_U + 0.5 * torch.randn(8, 30, generator=g))
    r2 = logit_similarity(sae, model, moved)
    assert max(r2["logit_sim"]) < 1 and r2["unembed_frobenius_ratio"] > 0.1
    d = direction_drift(sae, sae)
    assert d["decoder_cos"] == pytest.approx([1.0] * 16) and d["encoder_cos"] == pytest.approx([1.0] * 16)


@pytest.mark.slow
def test_zoo_model_against_itself_gives_similarity_one(smoke_card):
    """``code@0`` holds the base's own weights: every live feature has activation similarity 1."""
    from sae_transfer.models.pairs import PairSetup
    from sae_transfer.studies.features.measure import FeatureStudy, measure

    study = FeatureStudy(n_select=1024, n_tokens=2048, context_size=64, batch_size=8, n_regular=50, n_dead=10,
                         outliers="2x", dataset="zoo:code")
    r = measure(PairSetup("zoo:base-s", "zoo:base-s", zoo="smoke", device="cpu"), ["zoo:code@0"], study)["zoo:code@0"]
    sims = torch.tensor(r["scores"]["act_sim"], dtype=torch.float64)
    live = torch.tensor(r["scores"]["density_base"]) > 0
    assert live.sum() > 100
    assert torch.allclose(sims[live & ~sims.isnan()], torch.ones(1, dtype=torch.float64), atol=1e-6)
    assert r["unembed_frobenius_ratio"] == 0.0
    assert r["groups"]["dead_in_base"] == [] and r["groups"]["dead_in_finetune"] == []


def test_a_batch_of_outliers_only_is_skipped_and_a_pass_of_them_is_one_clear_error():
    g = torch.Generator().manual_seed(2)
    sae = _ReluSAE(6, 10)
    a = torch.randn(4, 5, 6, generator=g)
    b = a.clone()
    b[2:] *= 100  # the finetune's last two windows: every token far over the threshold
    r = _stats(a, b, sae, k=2, threshold=10.0)
    assert r["n_tokens"] == 2 * 4 and r["n_outliers"] == 2 * 4
    with pytest.raises(ValueError, match="every token measured at h was an outlier .* use outliers='none'"):
        _stats(a * 100, b, sae, threshold=10.0)
