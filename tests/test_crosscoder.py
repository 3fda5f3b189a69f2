"""The crosscoder on constructed cases: two "models" that share a sparse dictionary and differ by one planted
direction; the shuffle buffer; the classes of the diffing chapter on hand-made results."""

import math

import numpy as np
import pytest
import torch

from sae_transfer.methods import crosscoder_classes as dc
from sae_transfer.methods.crosscoder import (CrosscoderConfig, TrainConfig, decoder_cosines, fit, fvu,
                                            relative_norms)
from sae_transfer.methods.crosscoder_stats import CrosscoderStats, refit_decoders
from sae_transfer.passes.stream import shuffled

D, N_FEAT = 64, 48


def _planted(seed: int = 1, n: int = 2048):
    """Batches [n, 2, D]: 48 shared features (same directions in both models), each firing on 5% of tokens, and
    one planted direction that fires on 5% of tokens in the finetune only."""
    g = torch.Generator().manual_seed(0)
    U = torch.nn.functional.normalize(torch.randn(N_FEAT, D, generator=g), dim=1)
    p = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)

    def batches():
        gg = torch.Generator().manual_seed(seed)
        while True:
            c = (torch.rand(n, N_FEAT, generator=gg) < 0.05) * (0.5 + torch.rand(n, N_FEAT, generator=gg))
            cp = (torch.rand(n, generator=gg) < 0.05) * (0.5 + torch.rand(n, generator=gg))
            xb = c @ U
            yield torch.stack([xb, xb + cp[:, None] * p], 1)
    return U, p, batches


@pytest.fixture(scope="module")
def planted():
    torch.set_num_threads(1)
    U, p, batches = _planted()
    # k = 3 is below the mean number of active directions (3.45): with slack, a latent can split the planted
    # direction with a shared one; at or under it each direction gets a latent of its own
    cc, log = fit(CrosscoderConfig(D, 128, 3), TrainConfig(600_000, 512, lr=1e-3, dead_tokens=20_000), batches)
    return cc, log, U, p, batches


def test_planted_direction_comes_out_finetune_only(planted):
    cc, log, U, p, _ = planted
    rel = relative_norms(cc.W_dec)
    ft_dirs = torch.nn.functional.normalize(cc.W_dec.detach()[:, 1], dim=-1)
    j = int((ft_dirs @ p).argmax())
    assert float(ft_dirs[j] @ p) > 0.95
    assert float(rel[j]) >= dc.FT_ONLY


def test_shared_features_stay_shared(planted):
    cc, _, U, p, _ = planted
    rel, dcos = relative_norms(cc.W_dec), decoder_cosines(cc.W_dec)
    base_dirs = torch.nn.functional.normalize(cc.W_dec.detach()[:, 0], dim=-1)
    best = (base_dirs @ U.T).max(0)  # per true feature, its closest latent
    found = best.values > 0.9
    assert int(found.sum()) >= 40
    latents = best.indices[found]
    assert bool(((rel[latents] >= dc.SHARED[0]) & (rel[latents] <= dc.SHARED[1])).all())
    assert float(dcos[latents].min()) > 0.95


def test_reconstruction_and_latent_scaling(planted):
    cc, log, U, p, batches = planted
    x = next(batches())
    assert fvu(cc, x).max() < 0.05
    assert log["tokens"] == 600_000 // 512 * 512
    stats = CrosscoderStats(cc, "h", top_k=2)
    acts = x[:2040].view(40, 51, 2, D)  # 40 "windows" of 51 positions; position 0 is left out as BOS
    stats.update(None, {"h": acts[:, :, 0]}, {"h": acts[:, :, 1]})
    res = stats.result()
    assert res["n_tokens"] == 40 * 50
    ft_dirs = torch.nn.functional.normalize(cc.W_dec.detach()[:, 1], dim=-1)
    j = int((ft_dirs @ p).argmax())
    beta = np.asarray(res["beta"])  # [m, s, latent]
    # along the planted latent's finetune decoder, the finetune's activation is explained, the base's not at all
    assert beta[1, 1, j] == pytest.approx(1.0, abs=0.15)
    assert abs(beta[0, 1, j]) < 0.1
    assert max(res["fvu"]) < 0.05
    assert res["top_tokens"][j][0] % 51 != 0


def test_least_squares_decoders_find_what_each_model_holds(planted):
    cc, _, U, p, batches = planted
    stats = CrosscoderStats(cc, "h", top_k=0)
    for _, x in zip(range(4), batches()):
        acts = x[:2040].view(40, 51, 2, D)
        stats.update(None, {"h": acts[:, :, 0]}, {"h": acts[:, :, 1]})
    refit = refit_decoders([stats])  # [d_sae, 2, D]
    ft_dirs = torch.nn.functional.normalize(cc.W_dec.detach()[:, 1], dim=-1)
    j = int((ft_dirs @ p).argmax())
    norms = refit[j].norm(dim=-1)
    # the planted latent: nothing of it in the base's activations, all of it along p in the finetune's
    assert float(norms[0] / norms[1]) < 0.05
    assert float(torch.nn.functional.cosine_similarity(refit[j, 1], p, dim=0)) > 0.95
    # shared latents: the same direction in both models, as the data were built
    base_dirs = torch.nn.functional.normalize(refit[:, 0], dim=-1)
    best = (base_dirs @ U.T).max(0)
    shared = best.indices[best.values > 0.9]
    assert len(shared) >= 40
    assert float(torch.nn.functional.cosine_similarity(refit[shared, 0], refit[shared, 1], dim=-1).min()) > 0.95


def test_shuffle_buffer_keeps_every_token_once():
    g = torch.Generator().manual_seed(0)
    batches = [torch.arange(i * 100, (i + 1) * 100).float().view(100, 1, 1).expand(100, 2, 3) for i in range(10)]
    out = torch.cat(list(shuffled(iter(batches), 300, 50, g)))
    assert sorted(out[:, 0, 0].tolist()) == list(range(1000))
    assert out[:50, 0, 0].tolist() != list(range(50))  # mixed


def test_running_out_of_text_is_one_clear_error():
    _, _, batches = _planted()
    few = lambda: (b for _, b in zip(range(3), batches()))  # noqa: E731
    with pytest.raises(ValueError, match="train_tokens asks for 100000"):
        fit(CrosscoderConfig(D, 64, 3), TrainConfig(100_000, 512), few)


def _result(rel, dcos, sae_match_cos, match, act_sim, db, dft, beta=None):
    n = len(rel)
    # by default each model's activation is explained along its own side's decoder only: specific latents stay so
    beta = beta if beta is not None else np.eye(2)[:, :, None].repeat(n, 2).tolist()
    return {"latents": {"rel_norm": rel, "decoder_cos": dcos, "sae_match_cos": sae_match_cos},
            "features": {"match": match, "match_cos": [0.95] * len(match), "act_sim": act_sim, "density_base": db,
                         "density_finetune": dft},
            "data": {"zoo:code": {"density": [0.01] * (n - 1) + [0.0], "beta": beta}}}


def test_classes_follow_their_stated_thresholds():
    rel = [0.5, 0.05, 0.95, 0.8, 0.5]  # shared, base-only, finetune-only, between, dead (never fires)
    res = _result(rel, [0.99, 0.5, 0.5, 0.5, 0.99], [0.9, 0.9, 0.3, 0.9, 0.9],
                  match=[0, 0, 0, 1, 2], act_sim=[0.9, 0.5, 0.9, 0.9, math.nan],
                  db=[0.01, 0.01, 0.01, 0.01, 0.0], dft=[0.01, 0.01, 0.0001, 0.01, 0.0])
    classes = dc.latent_classes(res)
    assert classes == ["shared", "base-only", "finetune-only", "between", "dead"]
    # kept; shifted (activations decorrelated); lost (1% of its base rate); unmatched (a latent "between");
    # silent in the base
    assert dc.feature_classes(res, classes) == ["kept", "shifted", "lost", "unmatched", None]
    assert dc.new_latents(res, classes).tolist() == [False, False, True, False, False]
    # the finetune-only latent explains the base's activation as much as the finetune's: flagged, not new
    beta = np.ones((2, 2, 5))
    res_flag = _result(rel, [0.99] * 5, [0.3] * 5, [0] * 5, [0.9] * 5, [0.01] * 5, [0.01] * 5, beta.tolist())
    assert dc.flagged(res_flag, classes).tolist() == [False, True, True, False, False]
    assert not dc.new_latents(res_flag, classes).any()
    s = dc.shares(res)
    assert s["live latents"] == 4 and s["new latents"] == 1 and s["kept share"] == pytest.approx(0.25)
