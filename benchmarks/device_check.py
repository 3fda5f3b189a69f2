"""Run the measuring code of every chapter on an accelerator and on the CPU, and compare the results.

    python benchmarks/device_check.py --zoo smoke --device cuda

Measurement results are cached by model, SAE and tokens, not by device, so a GPU run and a CPU run must agree.
This checks that they do, with nothing cached: the SAE-metric pass (base and code finetune), the residual
similarity and per-feature statistics of the streaming pass, logit similarity, weight deviation, the STS, and a
few steps of SAE fine-tuning on the device. Prints the largest relative difference per quantity and exits 1 if
one exceeds the tolerance (TF32 matmuls are turned off, so float32 agrees closely).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch


def _flat(obj, prefix=""):
    """(name, float) leaves of nested dicts and lists of numbers."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}{k}.")
    elif isinstance(obj, list | tuple):
        if obj and all(isinstance(v, int | float) for v in obj):
            yield prefix[:-1], torch.tensor(obj, dtype=torch.float64)
        else:
            for i, v in enumerate(obj):
                yield from _flat(v, f"{prefix}{i}.")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield prefix[:-1], torch.tensor([float(obj)], dtype=torch.float64)


def compare(a, b) -> dict[str, float]:
    """Largest relative difference per leaf (NaN where both are NaN counts as equal)."""
    fb = dict(_flat(b))
    out = {}
    for k, x in _flat(a):
        y = fb[k]
        both_nan = x.isnan() & y.isnan()
        diff = ((x - y).abs() / (y.abs().clamp_min(1e-3)))[~both_nan]
        out[k] = float(diff.max()) if len(diff) else 0.0
    return out


def measure(device: str, zoo: str, n_tokens: int) -> dict:
    from sae_transfer.accumulators import ResidualSimilarity
    from sae_transfer.datasets import TokenSpec, token_batches
    from sae_transfer.features import FeaturePairStats, logit_similarity
    from sae_transfer.models import load_pair
    from sae_transfer.predict import demo_windows, sts, weight_deviation
    from sae_transfer.sae_metrics import sae_pass
    from sae_transfer.stream import run_pass

    pair = load_pair("zoo:base-s", "zoo:code", "zoo:base-s", zoo=zoo, device=device)
    ctx = 64
    spec = TokenSpec("zoo:code", n_tokens, ctx, 8)
    batches = list(token_batches(spec, pair.tokenizer, zoo))
    out = {"sae_base": sae_pass(pair.base, pair.sae, pair.hook, batches, threshold=math.inf),
           "sae_finetune": sae_pass(pair.finetune, pair.sae, pair.hook, batches, threshold=math.inf)}
    for r in (out["sae_base"], out["sae_finetune"]):
        for sub in ("all", "kept"):
            r[sub].pop("act_hist")  # bin edges can flip a value between neighbouring bins
    sim, feats = run_pass(pair.base, pair.finetune, iter(batches), [pair.hook],
                          [ResidualSimilarity(pair.hook, ctx), FeaturePairStats(pair.sae, pair.hook, math.inf, 3)])
    out["residual_cos"] = sim["cos_mean"]
    out["features"] = {k: feats[k] for k in ("act_sim", "density_base", "density_finetune", "act_error")}
    out["logit_sim"] = logit_similarity(pair.sae, pair.base, pair.finetune)
    out["weight_deviation"] = weight_deviation(pair.base, pair.finetune)
    demos = demo_windows(("code",), 8, 40, zoo)
    queries = torch.cat(list(token_batches(TokenSpec("zoo:math", 8 * 24, 24, 8, seed=1), pair.tokenizer, zoo)))
    s = sts(pair.base, pair.sae, pair.hook, demos, queries, n_shift=30)
    out["sts"] = {k: s[k] for k in ("sts_icl", "sts_act")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="smoke")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    on_device = measure(a.device, a.zoo, a.tokens)
    t_dev = time.perf_counter() - t0
    t0 = time.perf_counter()
    on_cpu = measure("cpu", a.zoo, a.tokens)
    t_cpu = time.perf_counter() - t0
    diffs = compare(on_device, on_cpu)
    worst = sorted(diffs.items(), key=lambda kv: -kv[1])
    print(f"{a.device}: {t_dev:.1f} s, cpu: {t_cpu:.1f} s, {len(diffs)} quantities compared")
    for k, v in worst[:12]:
        print(f"  {v:.2e}  {k}")
    # A few steps of SAE fine-tuning on the device (sae_lens's trainer, the features chapter's recovery path).
    from sae_transfer.zoo.build import load_zoo_model, token_streams, zoo_dir
    from sae_transfer.zoo.recipe import load_recipe
    from sae_transfer.zoo.sae import finetune_sae

    root = zoo_dir(load_recipe(a.zoo).profile)
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = finetune_sae(root / "saes" / "base-s", load_zoo_model(root, "code", a.device),
                             token_streams(root / "data", "train", 64)["prose"], 8192, 3e-4, 0, Path(tmp),
                             a.device, batch_tokens=1024, n_checkpoints=1)
        print(f"SAE fine-tuning on {a.device}: checkpoints at {[c['tokens'] for c in ckpts]} tokens")
    bad = [k for k, v in diffs.items() if v > a.tolerance]
    if bad:
        print(f"FAIL: {len(bad)} quantities differ by more than {a.tolerance}: {bad[:10]}")
        sys.exit(1)
    print(f"OK: every quantity within {a.tolerance} relative")


if __name__ == "__main__":
    main()
