"""The streaming pass and its accumulators: exact on hand-made tensors, constant memory by construction."""

import pytest
import torch

from sae_transfer.data.tokens import TokenSpec, check_token_spec
from sae_transfer.models.hooks import stop_layer
from sae_transfer.passes.accumulators import COS_BINS, Bins, ResidualSimilarity


def test_bins_count_everything_including_outliers():
    b = Bins(0.0, 1.0, 4)
    assert b.counts(torch.tensor([-5.0, 0.1, 0.3, 0.6, 0.99, 7.0])).tolist() == [2, 1, 1, 2]


def test_residual_similarity_matches_direct_computation():
    torch.manual_seed(0)
    a = torch.randn(3, 5, 8)
    b = a + 0.3 * torch.randn(3, 5, 8)
    acc = ResidualSimilarity("h", 5)
    acc.update(None, {"h": a[:2]}, {"h": b[:2]})  # two batches, uneven
    acc.end_batch()
    acc.update(None, {"h": a[2:]}, {"h": b[2:]})
    acc.end_batch()
    r = acc.result()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    rel = (a - b).norm(dim=-1) / a.norm(dim=-1)
    assert r["n_tokens"] == 3 * 4  # position 0 excluded
    assert r["cos_mean"] == pytest.approx(cos[:, 1:].mean().item(), abs=1e-6)
    assert r["rel_dist_mean"] == pytest.approx(rel[:, 1:].mean().item(), abs=1e-6)
    assert r["pos0"]["cos"] == pytest.approx(cos[:, 0].mean().item(), abs=1e-6)
    assert r["by_position"]["dist"][3] == pytest.approx((a - b)[:, 3].norm(dim=-1).mean().item(), abs=1e-5)
    assert sum(r["hist"]["cos"]) == 12 and len(r["by_batch_cos"]) == 2


def test_a_batch_fed_in_micro_batches_is_one_batch():
    torch.manual_seed(1)
    a = torch.randn(4, 6, 8)
    b = a + 0.5 * torch.randn(4, 6, 8)
    whole, parts = ResidualSimilarity("h", 6), ResidualSimilarity("h", 6)
    whole.update(None, {"h": a}, {"h": b})
    whole.end_batch()
    for i in (0, 1, 3):
        parts.update(None, {"h": a[i:i + 2 if i == 1 else i + 1]}, {"h": b[i:i + 2 if i == 1 else i + 1]})
    parts.end_batch()
    rw, rp = whole.result(), parts.result()
    assert len(rp["by_batch_cos"]) == 1 and rp["by_batch_cos"][0] == pytest.approx(rw["by_batch_cos"][0], rel=1e-6)
    assert rp["cos_mean"] == pytest.approx(rw["cos_mean"], rel=1e-6)


def test_identical_activations_give_cosine_one_distance_zero():
    a = torch.randn(2, 4, 16)
    acc = ResidualSimilarity("h", 4)
    acc.update(None, {"h": a}, {"h": a.clone()})
    r = acc.result()
    assert r["cos_mean"] == pytest.approx(1.0, abs=1e-6) and r["dist_mean"] == 0 and r["rel_dist_mean"] == 0
    assert r["hist"]["cos"][-1] == 6 and len(r["hist"]["cos"]) == COS_BINS.n


def test_stop_layer():
    assert stop_layer(["blocks.1.hook_resid_post"], 4) == 2
    assert stop_layer(["blocks.0.hook_resid_pre", "blocks.3.hook_resid_post"], 4) is None
    assert stop_layer(["ln_final.hook_normalized"], 4) is None


@pytest.mark.parametrize("spec, message", [
    (TokenSpec("zoo:poetry", 10, 8, 2), "valid zoo datasets are ['zoo:prose', 'zoo:code', 'zoo:math', 'zoo:fr', 'zoo:es']"),
    (TokenSpec("wiki", 10, 8, 2), "unknown source; use zoo:DOMAIN[/SPLIT], verses:LANG[/SPLIT], hub:NAME[:CONFIG] or json:PATH"),
    (TokenSpec("verses:klingon", 10, 8, 2), "valid verse datasets are ['verses:en', 'verses:en-kjv'"),
    (TokenSpec("verses:fr/test", 10, 8, 2), "(optionally /train or /heldout)"),
    (TokenSpec("zoo:code", 0, 8, 2), "n_tokens=0 must be positive"),
])
def test_bad_token_specs(spec, message):
    with pytest.raises(ValueError) as e:
        check_token_spec(spec)
    assert message in str(e.value)


@pytest.mark.slow
def test_pass_on_zoo_pairs(smoke_card):
    from sae_transfer.models.pairs import PairSetup
    from sae_transfer.studies.residuals.measure import by_hook, measure

    spec = TokenSpec("zoo:code", 4096, 64, 16)
    setup = PairSetup("zoo:base-s", zoo="smoke", device="cpu")
    same = by_hook(measure(setup, ["zoo:code@0"], [spec]))[("zoo:code@0", "zoo:code")]
    moved = by_hook(measure(setup, ["zoo:code"], [spec]))[("zoo:code", "zoo:code")]
    assert list(same) == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    for r in same.values():
        assert r["cos_mean"] == pytest.approx(1.0, abs=1e-5) and r["rel_dist_mean"] < 1e-5
    last = moved["blocks.1.hook_resid_post"]
    assert last["n_tokens"] == (4096 // 64) * 63
    assert 0 < last["cos_mean"] < 0.999 and last["rel_dist_mean"] > 0.01
    # finetuning moves the later layers more than the embeddings
    assert moved["blocks.0.hook_resid_pre"]["cos_mean"] > last["cos_mean"]


def test_json_dataset_windows(tmp_path):
    import json

    from sae_transfer.data.tokens import token_batches
    from sae_transfer.zoo.tokens import train_tokenizer

    tok = train_tokenizer({"prose": ["hello world, this is text. " * 40] * 4}, 300, tmp_path / "t", seed=0)
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"text": "hello world, this is text. " * 30}) for _ in range(5)))
    batches = list(token_batches(TokenSpec(f"json:{path}", 160, 16, 4), tok))
    assert [b.shape for b in batches] == [(4, 16), (4, 16), (2, 16)]
    assert all((b[:, 0] == tok.bos_token_id).all() for b in batches)
