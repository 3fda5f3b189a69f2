"""The memory budget: parsing, the plan it gives a pass, chunked logit statistics against whole logits, and a
pass on a model with Gemma's vocabulary whose peak memory stays under its budget."""

import math
from pathlib import Path

import pytest
import torch

from sae_transfer.core.memory import PassShape, budget_bytes, check_memory, plan
from sae_transfer.core.provenance import proc_status_bytes
from sae_transfer.passes.sae_metrics import logit_stats, sae_batch, sae_pass


def _model(d_vocab=50, cap=-1.0, d_model=16, n_ctx=64):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=d_model, n_heads=2, d_head=d_model // 2, d_mlp=2 * d_model,
                                  d_vocab=d_vocab, n_ctx=n_ctx, act_fn="gelu", normalization_type="LN",
                                  output_logits_soft_cap=cap, init_weights=True, device="cpu")
    model = HookedTransformer(cfg)
    for p in model.parameters():  # logits with some spread, so CE and KL are not all alike
        p.data.normal_(0, 0.3)
    return model.eval()


def _sae(d_in, d_sae=64):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(
        hook_name="blocks.0.hook_resid_post")))
    for p in sae.parameters():
        p.data.normal_(0, 0.2)
    return sae


def test_memory_values_parse_or_fail_in_one_line():
    assert budget_bytes("8GB", "cpu") == 8 * 10**9
    assert budget_bytes("512MiB", "cpu") == 512 * 2**20
    assert 0 < budget_bytes("30%", "cpu") < budget_bytes("auto", "cpu") * 0.61 + 1
    for bad in ("", "lots", "0", "150%", "-1GB", "8 parsecs"):
        with pytest.raises(ValueError, match=r"^memory='.*': use 'auto', a size"):
            check_memory(bad)


def test_the_plan_fits_the_budget_and_refuses_what_cannot_fit():
    shape = PassShape(d_model=2304, d_mlp=9216, n_heads=8, d_vocab=256_000, d_sae=16_384, context=1024, act_bytes=4)
    roomy = plan(shape, batch_size=8, budget=40 * 2**30, device="cuda")
    assert roomy.micro_batch == 8 and roomy.estimate <= roomy.budget
    on_cpu = plan(shape, batch_size=8, budget=40 * 2**30)  # near CPU_TENSOR_BYTES a tensor: faster there
    assert on_cpu.micro_batch == 1 and on_cpu.logit_rows == 128
    tight = plan(shape, batch_size=8, budget=3 * 2**30, device="cuda")
    assert 1 <= tight.micro_batch < 8 and tight.estimate <= tight.budget
    assert tight.logit_rows * shape.logit_row_bytes() <= tight.budget // 4
    with pytest.raises(ValueError, match=r"memory='200MB' leaves .* batches of 8 windows of 1024 tokens, one window at a time, need about"):
        plan(shape, batch_size=8, budget=200 * 10**6, memory="200MB")


@pytest.mark.parametrize("cap", [-1.0, 2.0])
def test_chunked_logit_statistics_equal_whole_logits(cap):
    """CE and KL from final residuals in chunks of 7 positions against the model's own logits (soft cap on or off)."""
    model = _model(cap=cap)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50, (3, 12), generator=g)
    n = model.cfg.n_layers
    with torch.no_grad():
        clean = model(tokens, stop_at_layer=n)
        other = clean + 0.5 * torch.randn(clean.shape, generator=g)
        ce, kl = logit_stats(model, tokens, clean, {"other": other}, rows=7)
        lc = torch.log_softmax(model(tokens).float(), -1)
        lo = torch.log_softmax(model(other, start_at_layer=n).float(), -1)
    want_ce = -lc[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    assert torch.allclose(ce["clean"][:, :-1], want_ce, atol=1e-5) and (ce["clean"][:, -1] == 0).all()
    assert torch.allclose(ce["other"][:, :-1], -lo[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0], atol=1e-5)
    assert torch.allclose(kl["other"], (lc.exp() * (lc - lo)).sum(-1), atol=1e-5)
    assert kl["other"].min() > 0


def test_micro_batches_and_logit_chunks_do_not_change_the_metrics():
    from sae_transfer.core.memory import Plan
    from sae_transfer.passes.sae_accumulator import SAEMetrics

    model, sae = _model(), _sae(16)
    tokens = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # half the tokens outliers, so both subsets are exercised
        threshold = float(model(tokens, stop_at_layer=1).norm(dim=-1).median())
    results = []
    for p in (None, Plan(micro_batch=1, logit_rows=5, budget=0, estimate=0)):
        acc = SAEMetrics(16, 64, threshold)
        sae_batch(model, sae, "blocks.0.hook_resid_post", 1, tokens, threshold, acc, p)
        results.append(acc.result())
    whole, parts = results
    assert 0 < whole["outlier_frac"] < 1
    for subset in ("all", "kept"):
        for metric in ("ev_token", "ce_clean", "ce_spliced", "ce_zero", "kl", "kl_zero", "l0", "mse"):
            assert parts[subset][metric] == pytest.approx(whole[subset][metric], rel=1e-5), (subset, metric)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
def test_a_pass_on_a_256k_vocabulary_stays_under_its_budget():
    """Gemma's vocabulary on a small model: one batch of 8 x 128 tokens would hold 1 GiB per fp32 logit tensor
    and several of them; the pass stays within a 192 MiB budget on top of the loaded weights."""
    model, sae = _model(d_vocab=262_144, d_model=32, n_ctx=128), _sae(32)
    batches = [torch.randint(0, 262_144, (8, 128), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    before = proc_status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on is this pass's
    r = sae_pass(model, sae, "blocks.0.hook_resid_post", batches, math.inf, memory="192MiB")
    grown = proc_status_bytes("VmHWM") - before
    assert r["all"]["n_tokens"] == 2048 and r["all"]["ce_clean"] > 0
    assert grown <= 192 * 2**20, f"the pass grew the process by {grown / 2**20:.0f} MiB"


def test_logit_similarity_streams_over_the_vocabulary_and_equals_the_whole_computation():
    from sae_transfer.studies.features.measure import logit_similarity

    base, ft = _model(d_vocab=500), _model(d_vocab=500)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
    sae = _sae(16)
    streamed = logit_similarity(sae, base, ft, chunk_bytes=4 * 8 * 64 * 37)  # 37 tokens a chunk: a ragged end
    wd, ub, uf = sae.W_dec.detach().double(), base.W_U.detach().double(), ft.W_U.detach().double()
    a, b = wd @ ub, wd @ uf
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    whole = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    assert torch.allclose(torch.tensor(streamed["logit_sim"], dtype=torch.float64), whole, atol=1e-12)
    assert streamed["unembed_frobenius_ratio"] == pytest.approx(float((uf - ub).norm() / ub.norm()), rel=1e-12)
    assert 0.5 < float(whole.mean()) < 0.999  # the finetune's W_U moved, but not beyond recognition


def test_the_residual_pass_in_micro_batches_gives_the_same_results():
    from sae_transfer.core.memory import PassShape
    from sae_transfer.models.hooks import residual_hooks
    from sae_transfer.passes.accumulators import FeaturePairStats, ResidualSimilarity
    from sae_transfer.passes.stream import run_pass

    base, ft, sae = _model(), _model(), _sae(16)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    batches = [torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    hooks = residual_hooks(2)
    one_window = PassShape.of(base.cfg, 64, 16).stream_window_bytes(len(hooks))
    results = []
    for memory in ("auto", str(one_window + 1)):  # the second fits one window a forward pass
        accs = [ResidualSimilarity(h, 16) for h in hooks] + [FeaturePairStats(sae, hooks[1], top_k=2)]
        results.append(run_pass(base, ft, batches, hooks, accs, memory=memory))
    for whole, parts in zip(*results):
        for key in ("cos_mean", "rel_dist_mean", "by_batch_cos", "act_sim", "density_base"):
            if key in whole:
                assert parts[key] == pytest.approx(whole[key], rel=1e-5, nan_ok=True), key
        if "top_base" in whole:  # the same top contexts, by the same token indices (ties at zero aside)
            firing = [f for f, v in enumerate(whole["top_base"]["values"]) if min(v) > 0]
            assert len(firing) > 10
            assert [parts["top_base"]["tokens"][f] for f in firing] == [whole["top_base"]["tokens"][f] for f in firing]
    assert len(results[1][0]["by_batch_cos"]) == 3  # still one value a batch, not a micro-batch


_RELEASE_PROBE = """
import torch
from sae_transfer.core.provenance import proc_status_bytes
from sae_transfer.core.memory import release
before = proc_status_bytes("VmRSS")
held = [torch.ones(16_000) for _ in range(4_000)]  # 256 MB in 64 KB pieces: below glibc's mmap threshold
grown = proc_status_bytes("VmRSS") - before
del held
release()
print(grown, proc_status_bytes("VmRSS") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from /proc")
def test_release_hands_freed_heap_back_between_build_steps():
    """What a zoo build step freed must not stay resident under the next step's peak (a finetune left about 4 GB
    behind before the SAE trained next). In a fresh interpreter: in pytest's own process the allocation reuses
    whatever earlier tests freed, and the resident size need not grow at all."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RELEASE_PROBE], capture_output=True, text=True, check=True)
    grown, left = map(int, out.stdout.split())
    assert grown > 200e6
    assert left < 0.25 * grown


def test_the_cross_check_batch_follows_the_memory_budget():
    """run_evals holds its logits whole: a 200K-token vocabulary gets fewer windows a batch under a smaller budget,
    and a budget under one window is refused in one line."""
    from types import SimpleNamespace

    from sae_transfer.data.tokens import TokenSpec
    from sae_transfer.passes.sae_metrics import RUN_EVALS_LOGIT_COPIES, run_evals_batch

    base = torch.nn.Linear(2, 2)
    base.cfg = SimpleNamespace(d_model=512, d_mlp=2048, n_heads=8, d_vocab=200_000, dtype=torch.float32)
    pair = SimpleNamespace(base=base, sae=SimpleNamespace(cfg=SimpleNamespace(d_sae=4096)))
    spec = TokenSpec("zoo:prose", 1 << 16, 128, 16)
    logits = 128 * RUN_EVALS_LOGIT_COPIES * 4 * 200_000  # about 1 GB a window
    assert run_evals_batch(pair, spec, "64GB") == 16
    assert run_evals_batch(pair, spec, str(4 * logits + logits // 2)) == 4
    with pytest.raises(ValueError, match="memory='500MB' leaves"):
        run_evals_batch(pair, spec, "500MB")
