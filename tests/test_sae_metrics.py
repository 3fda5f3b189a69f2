"""SAE metrics: the accumulator against direct computation on whole tensors, the outlier rule, the resumed forward
pass against a hooked one, and the streamed metrics against ``sae_lens.evals.run_evals`` on a zoo pair."""

import math

import pytest
import torch

from sae_transfer.models.hooks import resume_layer
from sae_transfer.passes.accumulators import FIRING
from sae_transfer.passes.outliers import Outliers
from sae_transfer.passes.sae_accumulator import SAEMetrics
from sae_transfer.passes.sae_metrics import _final_resid, density_comparison


def test_outlier_rules_parse_and_resolve():
    assert Outliers.parse("none").threshold(lambda: 1 / 0) == math.inf  # the mean norm is never computed
    assert Outliers.parse("2x").threshold(lambda: 150.0) == 300.0
    assert Outliers.parse("2.5X").threshold(lambda: 2.0) == 5.0
    assert Outliers.parse("289").threshold(lambda: 1 / 0) == 289.0
    for bad in ("", "x", "-3x", "0", "inf", "lots"):
        with pytest.raises(ValueError, match="outliers="):
            Outliers.parse(bad)


def _fake_batch(g, B=3, T=6, d=8, d_sae=16, V=11):
    x = torch.randn(B, T, d, generator=g) * 3 + 1
    feats = torch.relu(torch.randn(B, T, d_sae, generator=g) - 0.5)
    x_hat = x + 0.5 * torch.randn(B, T, d, generator=g)
    tokens = torch.randint(0, V, (B, T), generator=g)
    logits = {k: torch.randn(B, T, V, generator=g) for k in ("clean", "spliced", "zero")}
    return x, feats, x_hat, tokens, logits


def _ce_kl(logits, tokens):
    """Direct CE and KL(clean || intervened) from whole logit tensors [B, T, V]: the reference."""
    logp = {k: torch.log_softmax(v, -1) for k, v in logits.items()}
    ce = {}
    for k, lp in logp.items():
        ce[k] = torch.zeros(tokens.shape)
        ce[k][:, :-1] = -lp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    p = logp["clean"].exp()
    return ce, {k: (p * (logp["clean"] - logp[k])).sum(-1) for k in ("spliced", "zero")}


def _feed(acc, x, feats, x_hat, tokens, logits, outlier):
    ce, kl = _ce_kl(logits, tokens)
    acc.update(x, feats, x_hat, outlier, ce, kl)
    return ce, kl


def test_a_batch_in_parts_sums_to_the_whole_batch():
    """Micro-batches (a memory matter) give the metrics of the whole batch, the per-token explained variance
    included: it centres on the whole batch's mean, outliers or not."""
    g = torch.Generator().manual_seed(3)
    x, feats, x_hat, tokens, logits = _fake_batch(g, B=4)
    ce, kl = _ce_kl(logits, tokens)
    outlier = torch.zeros(tokens.shape, dtype=torch.bool)
    outlier[2, 1] = True
    whole, parts = SAEMetrics(8, 16, 5.0), SAEMetrics(8, 16, 5.0)
    whole.update(x, feats, x_hat, outlier, ce, kl)
    parts.start_batch(x, outlier)
    for sl in (slice(0, 1), slice(1, 3), slice(3, 4)):
        parts.add_part(x[sl], feats[sl], x_hat[sl], outlier[sl], {k: v[sl] for k, v in ce.items()},
                       {k: v[sl] for k, v in kl.items()})
    parts.end_batch()
    a, b = whole.result(), parts.result()
    for subset in ("all", "kept"):
        for metric in ("ev_token", "ev_global", "l0", "mse", "ce_clean", "kl", "ce_recovered"):
            assert b[subset][metric] == pytest.approx(a[subset][metric], rel=1e-6), (subset, metric)
    assert len(parts.all.per_batch) == 1 and b["outlier_frac"] == a["outlier_frac"]


def test_accumulator_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    batches = [_fake_batch(g) for _ in range(2)]
    acc = SAEMetrics(8, 16, math.inf)
    ces, kls = [], []
    for x, feats, x_hat, tokens, logits in batches:
        ce, kl = _feed(acc, x, feats, x_hat, tokens, logits, torch.zeros(tokens.shape, dtype=torch.bool))
        ces.append(ce)
        kls.append(kl)
    r = acc.result()["all"]
    X = torch.cat([b[0] for b in batches]).flatten(0, 1).double()
    F = torch.cat([b[1] for b in batches]).flatten(0, 1).double()
    XH = torch.cat([b[2] for b in batches]).flatten(0, 1).double()
    rss = (X - XH).pow(2).sum(-1)
    assert r["n_tokens"] == 36
    assert r["r2_pooled"] == pytest.approx(float(1 - rss.sum() / (X - X.mean()).pow(2).sum()), rel=1e-6)
    assert r["ev_global"] == pytest.approx(float(1 - rss.sum() / (X - X.mean(0)).pow(2).sum()), rel=1e-6)
    per_batch = [1 - (b[0] - b[2]).flatten(0, 1).double().pow(2).sum(-1)
                 / (b[0].flatten(0, 1).double() - b[0].flatten(0, 1).double().mean(0)).pow(2).sum(-1) for b in batches]
    assert r["ev_token"] == pytest.approx(torch.cat(per_batch).mean().item(), rel=1e-6)
    assert r["mse"] == pytest.approx(rss.mean().item(), rel=1e-6)
    assert r["cos"] == pytest.approx(torch.nn.functional.cosine_similarity(X, XH).mean().item(), rel=1e-6)
    # CE over positions with a next token only; KL over every position
    ce_clean = torch.cat([c["clean"][:, :-1].flatten() for c in ces])
    assert r["ce_clean"] == pytest.approx(ce_clean.mean().item(), rel=1e-6)
    tok, lg = batches[0][3], batches[0][4]["clean"]
    assert ces[0]["clean"][1, 2].item() == pytest.approx(
        torch.nn.functional.cross_entropy(lg[1, 2:3], tok[1, 3:4]).item(), rel=1e-5)
    assert r["kl"] == pytest.approx(torch.cat([k["spliced"].flatten() for k in kls]).mean().item(), rel=1e-6)
    p, q = torch.softmax(lg[0, 1], -1), torch.softmax(batches[0][4]["spliced"][0, 1], -1)
    assert kls[0]["spliced"][0, 1].item() == pytest.approx((p * (p / q).log()).sum().item(), rel=1e-4)
    assert r["delta_ce"] == pytest.approx(r["ce_spliced"] - r["ce_clean"])
    assert r["ce_recovered"] == pytest.approx((r["ce_zero"] - r["ce_spliced"]) / (r["ce_zero"] - r["ce_clean"]))
    # densities, L0 and the activation histogram are one count seen three ways
    density = (F > FIRING).double().mean(0)
    assert r["density"] == pytest.approx(density.tolist())
    assert r["l0"] == pytest.approx(density.sum().item())
    assert sum(r["act_hist"]) + r["zero_acts"] == 36 * 16
    assert r["dead_frac"] == pytest.approx((density == 0).double().mean().item())
    assert r["mean_act"] == pytest.approx(F.mean(0).tolist())


def test_outlier_mask_drives_every_metric():
    g = torch.Generator().manual_seed(1)
    x, feats, x_hat, tokens, logits = _fake_batch(g)
    outlier = torch.zeros(tokens.shape, dtype=torch.bool)
    outlier[:, 0] = True  # BOS, as in large models
    outlier[1, 3] = True
    acc = SAEMetrics(8, 16, 5.0)
    _feed(acc, x, feats, x_hat, tokens, logits, outlier)
    res = acc.result()
    keep = ~outlier
    assert res["outlier_frac"] == pytest.approx(4 / 18) and res["outliers_at_pos0"] == 3
    assert res["kept"]["n_tokens"] == 14 and res["all"]["n_tokens"] == 18
    assert res["kept"]["l0"] == pytest.approx((feats[keep] > FIRING).sum(-1).double().mean().item())
    assert res["kept"]["mse"] == pytest.approx((x - x_hat)[keep].pow(2).sum(-1).mean().item(), rel=1e-6)
    assert res["kept"]["l0"] != pytest.approx(res["all"]["l0"])


def test_density_comparison():
    base = {"density": [0.0, 1e-3, 1e-2, 0.5]}
    assert density_comparison(base, base)["pearson_log_density"] == pytest.approx(1.0)
    moved = density_comparison(base, {"density": [0.0, 0.0, 1e-2, 0.5]})
    assert moved["dead_base"] == 0.25 and moved["dead_finetune"] == 0.5 and moved["dead_both"] == 0.25
    assert math.isnan(density_comparison(base, {"density": [0.1] * 4})["pearson_log_density"])  # never dropped


@pytest.mark.slow
def test_resumed_forward_equals_hooked_forward(smoke_card):
    from sae_transfer.models.load import load_models

    model, _, _, _ = load_models("zoo:base-s", "zoo:code", "smoke", "cpu")
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    for hook in ("blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"):
        assert resume_layer(hook, model.cfg.positional_embedding_type) == 1
        act = torch.randn(2, 16, model.cfg.d_model, generator=torch.Generator().manual_seed(1))
        fast = _final_resid(model, hook, 1, tokens, act)
        slow = _final_resid(model, hook, None, tokens, act)
        assert torch.allclose(fast, slow, atol=1e-4)
    assert resume_layer("blocks.1.hook_mlp_out", "standard") is None
    assert resume_layer("hook_embed", "standard") is None
    assert resume_layer("blocks.1.hook_resid_pre", "shortformer") is None


@pytest.mark.slow
def test_outliers_keep_their_activation_when_splicing(smoke_card):
    """With every token an outlier, neither intervention changes anything."""
    from sae_transfer.data.tokens import TokenSpec, token_batches
    from sae_transfer.models.load import load_pair
    from sae_transfer.passes.sae_metrics import sae_pass

    pair = load_pair("zoo:base-s", "zoo:code", "zoo:base-s", zoo="smoke", device="cpu")
    spec = TokenSpec("zoo:prose", 512, 64, 4)
    r = sae_pass(pair.base, pair.sae, pair.hook, token_batches(spec, pair.tokenizer, "smoke"), threshold=0.0)
    assert r["outlier_frac"] == 1.0 and r["kept"] == {"n_tokens": 0}
    assert r["all"]["ce_spliced"] == pytest.approx(r["all"]["ce_clean"], abs=1e-5)
    assert r["all"]["ce_zero"] == pytest.approx(r["all"]["ce_clean"], abs=1e-5)
    assert r["all"]["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_streamed_metrics_agree_with_run_evals(smoke_card):
    """The issue's cross-check: L0, explained variance (per token) and CE with and without the SAE."""
    from sae_transfer.models.pairs import PairSetup
    from sae_transfer.passes.sae_metrics import cross_check

    rows = cross_check(PairSetup("zoo:base-s", "zoo:base-s", zoo="smoke", device="cpu"), "zoo:code", "zoo:prose",
                       2048, 64, 8)
    assert {r["model"] for r in rows} == {"base", "finetune"}
    by = {(r["model"], r["metric"]): r for r in rows}
    for model in ("base", "finetune"):
        for metric in ("l0", "ev_token", "ce_clean", "ce_spliced", "ce_zero", "kl", "ev_global", "dead_frac"):
            r = by[(model, metric)]
            assert r["ours"] == pytest.approx(r["sae_lens"], rel=1e-4, abs=1e-6), (model, metric)
    assert by[("base", "l0")]["ours"] > 0


def _subset(n_batches: int, seed: int = 0):
    from sae_transfer.passes.sae_accumulator import _Subset

    sub = _Subset(4, 8)
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        x = torch.randn(16, 4, generator=g)
        ce = {k: torch.rand(16, generator=g) + j for j, k in enumerate(("clean", "spliced", "zero"))}
        sub.add(_Subset.batch_sums(x, torch.rand(16, 8, generator=g), x + 0.3 * torch.randn(16, 4, generator=g), ce,
                                   torch.ones(16, dtype=torch.bool), {k: torch.rand(16, generator=g)
                                                                      for k in ("spliced", "zero")}, x.mean(0)))
    return sub.result(8)


def test_intervals_over_token_batches_hold_the_estimate_and_narrow_with_more_batches():
    few, many = _subset(8), _subset(128)
    for metric in ("delta_ce", "ce_recovered", "ev_token", "ev_global", "kl"):
        for r in (few, many):
            lo, hi = r["ci"][metric]
            assert lo < r[metric] < hi, (metric, lo, r[metric], hi)
        assert many["ci"][metric][1] - many["ci"][metric][0] < 0.5 * (few["ci"][metric][1] - few["ci"][metric][0])
    assert _subset(8)["ci"] == few["ci"]  # seeded: the same batches give the same interval
    assert _subset(3)["ci"] == {}  # too few batches to resample


def test_the_verdict_paragraph_is_written_from_the_results_for_any_finetunes():
    from sae_transfer.studies.sae_metrics.tables import describe

    def r(ev, delta_ce=0.1):
        return {"kept": {"ev_token": ev, "ce_recovered": 0.9, "l0": 10.0, "kl": 0.1, "delta_ce": delta_ce,
                         "ci": {"ev_token": [ev - 0.01, ev + 0.01]}}}

    results = {"base": {"json:a.jsonl": r(0.80), "zoo:code": r(0.70), "zoo:math": r(0.30)},
               "finetunes": {"local:/x/ft-a": {"json:a.jsonl": r(0.79, -0.05)}, "hub:org/ft-b": {"zoo:code": r(0.30)}}}
    text = describe(results, [("local:/x/ft-a", "json:a.jsonl"), ("hub:org/ft-b", "zoo:code")])
    assert ("On `/x/ft-a`, on a.jsonl, the base SAE **reconstructs as well as on the base (EV drop 0.010, CE "
            "recovered drop 0.000, within `check`'s thresholds)**") in text["verdicts"]
    assert ("On `org/ft-b`, on code, the base SAE **reconstructs far worse than on the base (EV drop 0.400, over "
            "0.2)**") in text["verdicts"]
    assert "0.790 (0.780 to 0.800) against 0.800 (0.790 to 0.810)" in text["verdicts"]
    assert text["verdicts"].startswith("Intervals in parentheses are 95% intervals over token batches.")
    assert "It transfers least to `org/ft-b` (a drop in explained variance of 0.400)" in text["verdicts"]
    assert "*lowers* the loss of `/x/ft-a` (delta CE -0.050)" in text["prose_ce"]
    poor = describe({**results, "finetunes": {"zoo:m": {"zoo:math": r(0.31)}}}, [("zoo:m", "zoo:math")])
    assert "the base SAE **explains little even on the base, and about as little**" in poor["verdicts"]


def test_the_page_and_check_give_one_verdict_for_the_same_numbers():
    """The SAE-metric page's word for a pair is ``check``'s class on the two criteria the page measures, with the
    one that decided it, in reconstruction words (the verdict, which adds the features' criterion, is the book's
    and ``check``'s): a finetune whose EV holds but whose CE loss recovered drops reconstructs worse on both."""
    import numpy as np

    from sae_transfer.core import verdict as V

    base = {"ev_token": 0.80, "ce_recovered": 0.95}
    assert V.pair_words(base, {"ev_token": 0.795, "ce_recovered": 0.92}) == \
        "reconstructs worse than on the base (CE recovered drop 0.030, over 0.02)"
    rng = np.random.default_rng(0)
    for _ in range(500):
        ft = {"ev_token": float(rng.uniform(0.3, 0.8)), "ce_recovered": float(rng.uniform(0.7, 0.95))}
        drops = {"ev_drop": base["ev_token"] - ft["ev_token"], "ce_recovered_drop": base["ce_recovered"] -
                 ft["ce_recovered"]}
        checked = V.classify({**drops, "regular_act_sim": 1.0})["verdict"]  # what check says, features aside
        assert V.pair_words(base, ft).startswith(V.RECONSTRUCTION[checked])
