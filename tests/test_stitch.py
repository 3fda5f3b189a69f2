"""The stitch on constructed cases, the SAE collapse against mapping activations explicitly, and the sizes
chapter's accumulators against direct computation."""

import copy

import numpy as np
import pytest
import torch

from sae_transfer.passes.accumulators import RunningTopK
from sae_transfer.methods.stitch_stats import FeatureCorrelation, LayerCKA, StitchQuality
from sae_transfer.methods.stitch import Stitch, StitchConfig, collapse_sae, fit_stitch, map_direction
from sae_transfer.studies.sizes.train import tokens_to_reach

D_S, D_L = 12, 20


def _stream(n_batches: int, d: int, f, seed: int = 1, n: int = 512, mean_scale: float = 3.0):
    """Batches [n, d + d_out] of correlated activations with a large mean (as residual streams have) and their
    image under ``f``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    mix = q @ torch.diag(torch.linspace(0.5, 2.0, d)) @ q.T  # correlated, singular values 0.5 to 2
    mean = mean_scale * torch.randn(d, generator=g)

    def batches():
        gb = torch.Generator().manual_seed(seed + 1)
        for _ in range(n_batches):
            a = torch.randn(n, d, generator=gb) @ mix + mean
            yield torch.cat([a, f(a)], 1)
    return batches


def test_a_model_stitched_to_itself_recovers_the_identity():
    st, log = fit_stitch(D_S, D_S, StitchConfig(120_000, batch_tokens=256, lr=3e-3), _stream(300, D_S, lambda a: a))
    for direction in ("up", "down"):
        P, c = st.affine(direction)
        assert torch.allclose(P, torch.eye(D_S), atol=0.05), direction
        assert c.abs().max() < 0.15
    assert log["up"][-1] < 1e-2 and log["cycle_small"][-1] < 1e-2


def test_a_known_random_affine_map_is_recovered():
    g = torch.Generator().manual_seed(0)
    A, b = torch.randn(D_S, D_L, generator=g) / D_S ** 0.5, torch.randn(D_L, generator=g)
    batches = _stream(400, D_S, lambda a: a @ A + b)
    st, _ = fit_stitch(D_S, D_L, StitchConfig(150_000, batch_tokens=256, lr=3e-3), batches)
    P, c = st.affine("up")
    assert (P - A).abs().max() < 0.06
    assert (c - b).abs().max() < 0.1
    q = StitchQuality(st)
    for x in batches():
        q.update(x[:, :D_S], x[:, D_S:])
    r = q.result()
    # b lies in a D_S-dimensional subspace of R^D_L, so down(b) can recover a exactly too
    assert r["ev_up"] > 0.999 and r["ev_down"] > 0.999


def test_the_stream_running_out_is_one_clear_error():
    with pytest.raises(ValueError, match=r"ran out after .*\(stitch_tokens\)"):
        fit_stitch(D_S, D_S, StitchConfig(100_000, batch_tokens=256), _stream(3, D_S, lambda a: a))


def _random_stitch(seed: int = 0) -> Stitch:
    torch.manual_seed(seed)
    st = Stitch(D_S, D_L)
    with torch.no_grad():
        st.up.bias.normal_()
        st.down.bias.normal_()
        st.scale.copy_(torch.tensor([0.7, 1.9]))
        st.mean.normal_()
    return st


def _sae(arch: str, apply_b_dec: bool):
    from sae_lens import SAE

    cfg = {"architecture": arch, "d_in": D_S, "d_sae": 40, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": apply_b_dec, "metadata": {"hook_name": "blocks.1.hook_resid_pre"}}
    sae = SAE.from_dict(cfg)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        if arch == "jumprelu":
            sae.threshold.uniform_(0, 0.5)
    return sae.eval()


@pytest.mark.parametrize("arch,apply_b_dec", [("standard", True), ("standard", False), ("jumprelu", True)])
def test_the_collapsed_sae_equals_mapping_the_activations(arch, apply_b_dec):
    small, st = _sae(arch, apply_b_dec), _random_stitch()
    big = collapse_sae(small, st, "blocks.3.hook_resid_pre")
    assert big.cfg.d_in == D_L and big.cfg.metadata.hook_name == "blocks.3.hook_resid_pre"
    b = 3 * torch.randn(256, D_L)
    with torch.no_grad():
        f_big = big.encode(b)
        f_explicit = small.encode(st.map(b, "down"))
        assert (f_explicit > 0).float().mean() > 0.1  # the comparison is not between two zero tensors
        assert torch.allclose(f_big, f_explicit, atol=1e-3, rtol=1e-4)
        assert torch.allclose(big.decode(f_big), st.map(small.decode(f_explicit), "up"), atol=1e-3, rtol=1e-4)


def test_a_width_mismatch_is_refused():
    with pytest.raises(ValueError, match="the SAE reads width 12 but the stitch maps from width 20"):
        collapse_sae(_sae("standard", True), Stitch(D_L, D_S), "blocks.0.hook_resid_pre")


def test_a_mapped_direction_has_the_asked_norm_and_ignores_the_offset():
    st = _random_stitch()
    v = torch.randn(D_S)
    out = map_direction(v, st, 5.0)
    P, _ = st.affine("up")
    assert float(out.norm()) == pytest.approx(5.0)
    assert float(torch.nn.functional.cosine_similarity(out, v @ P, dim=0)) == pytest.approx(1.0, abs=1e-6)


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_streamed_cka_equals_the_whole_computation_and_is_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(900, 8, generator=g) @ torch.randn(8, 8, generator=g) + 5
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    rotated = 3 * x @ q + 1
    noise = torch.randn(900, 6, generator=g)
    acc = LayerCKA(["a"], ["same", "noise"])
    for i in range(0, 900, 128):
        acc.update({"a": x[i:i + 128]}, {"same": rotated[i:i + 128], "noise": noise[i:i + 128]})
    r = acc.result()[0]
    assert r[0] == pytest.approx(1.0, abs=1e-6)
    assert r[1] == pytest.approx(_linear_cka(x.numpy().astype(float), noise.numpy().astype(float)), rel=1e-5)
    assert r[1] < 0.1


def test_feature_correlations_equal_numpy_and_dead_features_correlate_with_nothing():
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(500, 6, generator=g))
    b = torch.cat([a[:, :3] * 2 + 0.1 * torch.rand(500, 3, generator=g), torch.relu(torch.randn(500, 3, generator=g)),
                   torch.zeros(500, 1)], 1)
    acc = FeatureCorrelation(6, 7)
    for i in range(0, 500, 64):
        acc.update(a[i:i + 64], b[i:i + 64])
    c = acc.matrix().numpy()
    full = np.corrcoef(a.numpy().T, b.numpy().T)[:6, 6:]
    assert np.allclose(c[:, :6], full[:, :6], atol=1e-9)
    assert (c[:, 6] == 0).all()
    r = acc.result()
    assert r["partner_a"][:3] == [0, 1, 2] and min(r["corr_a"][:3]) > 0.95
    assert r["density_b"][6] == 0


def test_running_top_k_keeps_the_largest_with_their_token_indices():
    f = torch.tensor([[0.0, 1.0], [3.0, 0.5], [2.0, 4.0], [1.0, 0.0]])
    top = RunningTopK(2, 2)
    top.update(f[:2], torch.tensor([0, 1]))
    top.update(f[2:], torch.tensor([2, 3]))
    assert top.values.tolist() == [[3.0, 2.0], [4.0, 1.0]]
    assert top.index.tolist() == [[1, 2], [2, 0]]


def test_tokens_to_reach_interpolates_between_checkpoints():
    assert tokens_to_reach([0, 100, 200], [0.5, 0.7, 0.9], 0.8) == pytest.approx(150.0)
    assert tokens_to_reach([100, 200], [0.85, 0.9], 0.8) == 100.0
    assert tokens_to_reach([100, 200], [0.5, 0.6], 0.8) is None


def test_sizes_refuses_other_tokenizers_and_missing_layers_before_any_weights(tmp_path, smoke_card):
    from sae_lens import SAE

    from sae_transfer.models.load import SpecError
    from sae_transfer.studies.sizes.measure import check_inputs
    from sae_transfer.zoo import Zoo

    tok = copy.deepcopy(Zoo.open("smoke").tokenizer)  # the zoo's own object is shared within the process
    tok.add_tokens(["<an-extra-token>"])
    tok.save_pretrained(tmp_path / "other")
    with pytest.raises(SpecError, match="have different tokenizers .* stitching needs token-aligned streams"):
        check_inputs("zoo:base-m", "zoo:base-m", f"local:{tmp_path / 'other'}", "zoo:base-s", "", "smoke")
    deep = SAE.from_dict({"architecture": "standard", "d_in": 64, "d_sae": 8, "dtype": "float32", "device": "cpu",
                          "metadata": {"hook_name": "blocks.7.hook_resid_pre"}})
    deep.save_model(str(tmp_path / "deep"))
    with pytest.raises(SpecError, match=r"reads 'blocks.7.hook_resid_pre' but small='zoo:base-s' has 2 blocks"):
        check_inputs("zoo:base-m", "zoo:base-m", "zoo:base-s", f"local:{tmp_path / 'deep'}", "", "smoke")


def test_stitch_quality_intervals_resample_batches_and_bracket_the_estimate():
    """The maps' explained variance gets a 95% interval from resampled batches: around the estimate, narrower the
    more batches agree, none under four batches."""
    torch.manual_seed(0)
    a = torch.randn(4096, 8)
    b = a @ torch.randn(8, 12) + 0.5 * torch.randn(4096, 12)  # a noisy linear map up
    st, _ = fit_stitch(8, 12, StitchConfig(n_tokens=4096, batch_tokens=256, lr=1e-2), lambda: [torch.cat([a, b], 1)])
    q = StitchQuality(st)
    for x, y in zip(a.split(512), b.split(512)):
        q.update(x, y)
    r = q.result()
    lo, hi = r["ci"]["ev_up"]
    assert lo <= r["ev_up"] <= hi and 0 < hi - lo < 0.2
    assert r["ci"]["ev_down"][0] <= r["ev_down"] <= r["ci"]["ev_down"][1]
    few = StitchQuality(st)
    for x, y in zip(a[:1536].split(512), b[:1536].split(512)):
        few.update(x, y)
    assert few.result()["ci"] == {} and np.isfinite(few.result()["ev_up"])
