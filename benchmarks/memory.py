"""Peak memory of the SAE-metric pass against the weights it holds: bounded by the ``memory`` budget, whatever the
vocabulary and the number of tokens.

    python benchmarks/memory.py --zoo default [--real-zoo smollm2] [--before PATH_TO_OLD_CHECKOUT/lib]

Cases, each in a fresh process (its resident-memory peak, VmHWM, is its own): the zoo's base and code finetune
with the base SAE; the real family's (when ``--real-zoo`` names a built one); and a constructed model with
Gemma's 256K-token vocabulary (random weights, d_model 256, so that the vocabulary dominates the weights). Each
case runs the pass over both models, as the chapter does, at N and 8N tokens, once with ``memory`` set to the
fp32 weights of the models and the SAE (the pass may add as much again) and once at the default (``auto``).

Reported: the fp32 weights, what the pass adds to the process's resident memory at its peak (VmHWM after the
models are loaded, the libraries imported beforehand so that their code is not counted), and weights plus pass
over the weights. The goal: at most 3x the weights with the budget set, the same at N and 8N tokens. ``--before`` runs the same
cases against another checkout's ``lib`` (the code before the budget existed) for a before/after table. Writes
``benchmarks/results/memory.json``, shown in the SAE-metrics chapter's appendix.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

VOCAB = 262_144


def _large_vocab_pair():
    """Base, "finetune" (every weight moved a little) and SAE of Gemma's vocabulary on a small body."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=4, d_model=256, n_heads=4, d_head=64, d_mlp=1024, d_vocab=VOCAB,
                                  n_ctx=128, act_fn="gelu", normalization_type="LN", device="cpu")
    base, ft = HookedTransformer(cfg).eval(), HookedTransformer(cfg).eval()
    with torch.no_grad():
        for p, q in zip(base.parameters(), ft.parameters()):
            q.copy_(p + 0.01 * torch.randn_like(p))
    sae = StandardSAE(StandardSAEConfig(d_in=256, d_sae=2048, metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post")))
    return base, ft, sae, "blocks.1.hook_resid_post", None


def child(case: str, zoo: str, n_tokens: int, ctx: int, batch: int, budget: str) -> dict:
    import sae_lens  # noqa: F401
    import scipy.stats  # noqa: F401  (imported by the pass's intervals: libraries are not the pass's memory)
    import transformer_lens  # noqa: F401

    from sae_transfer.core.provenance import proc_status_bytes
    from sae_transfer.passes.sae_metrics import sae_pass

    torch.set_num_threads(2)
    rss0 = proc_status_bytes("VmRSS")
    if case == "large-vocab":
        base, ft, sae, hook, tok = _large_vocab_pair()
    else:
        from sae_transfer.models.load import load_pair
        from sae_transfer.zoo.store import Zoo

        root = next(iter(Zoo.open(zoo).recipe.models))
        ft_name = Zoo.open(zoo).finetunes_of(root)[0]
        pair = load_pair(f"zoo:{root}", f"zoo:{ft_name}", f"zoo:{root}", zoo=zoo, device="cpu")
        base, ft, sae, hook, tok = pair.base, pair.finetune, pair.sae, pair.hook, pair.tokenizer
    weights = sum(p.numel() * 4 for m in (base, ft, sae) for p in m.parameters())
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(0, base.cfg.d_vocab, (n_tokens // ctx, ctx), generator=g)
    if tok is not None and tok.bos_token_id is not None:
        windows[:, 0] = tok.bos_token_id
    kwargs = {}
    if "memory" in inspect.signature(sae_pass).parameters:
        kwargs["memory"] = str(weights) if budget == "weights" else budget
    rss1 = proc_status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
    t0 = time.perf_counter()
    for model in (base, ft):
        sae_pass(model, sae, hook, windows.split(batch), math.inf, **kwargs)
    wall = time.perf_counter() - t0
    peak = proc_status_bytes("VmHWM")
    return {"case": case, "budget": budget if kwargs else "none (before)", "n_tokens": int(windows.numel()),
            "vocab": base.cfg.d_vocab, "weights_mb": weights / 2**20, "loaded_mb": (rss1 - rss0) / 2**20,
            "pass_mb": (peak - rss1) / 2**20, "peak_mb": (weights + peak - rss1) / 2**20,
            "peak_over_weights": (weights + peak - rss1) / weights, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="default")
    ap.add_argument("--real-zoo", default="", help="a built real family (e.g. smollm2); empty: skip it")
    ap.add_argument("--tokens", type=int, default=4096, help="N; everything is also measured at 8N")
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--before", default="", help="another checkout's lib directory, measured the same way")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        case, zoo, n, budget = a.child.split("|")
        print(json.dumps(child(case, zoo, int(n), a.context_size, a.batch_size, budget)))
        return
    cases = [("zoo", a.zoo), *([("real", a.real_zoo)] if a.real_zoo else []), ("large-vocab", a.zoo)]
    libs = [("after", str(Path(__file__).resolve().parents[1] / "lib"))] + ([("before", a.before)] if a.before else [])
    rows = []
    for code, lib in libs:
        env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": lib}
        for case, zoo in cases:
            for n in (a.tokens, 8 * a.tokens):
                for budget in (("weights", "auto") if code == "after" else ("auto",)):
                    out = subprocess.run([sys.executable, __file__, "--child", f"{case}|{zoo}|{n}|{budget}",
                                          "--context-size", str(a.context_size), "--batch-size", str(a.batch_size)],
                                         capture_output=True, text=True, env=env)
                    if out.returncode:
                        print(out.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(f"{code} {case} at {n} tokens failed")
                    r = {"code": code, **json.loads(out.stdout.strip().splitlines()[-1])}
                    rows.append(r)
                    print(f"{code:>6} {case:>11} vocab {r['vocab']:>7,} {r['n_tokens']:>6,} tokens, memory "
                          f"{r['budget']:>13}: weights {r['weights_mb']:7.0f} MB, the pass {r['pass_mb']:7.0f} MB, "
                          f"together {r['peak_over_weights']:5.2f}x the weights ({r['wall_s']:.0f} s)", flush=True)
    budgeted = [r for r in rows if r["code"] == "after" and r["budget"] == "weights"]
    summary = {"max_peak_over_weights_budgeted": max(r["peak_over_weights"] for r in budgeted)}
    for case, _ in cases:
        rs = sorted((r for r in budgeted if r["case"] == case), key=lambda r: r["n_tokens"])
        summary[f"{case}_peak_8x_tokens"] = rs[1]["peak_mb"] / rs[0]["peak_mb"] - 1
        before = [r for r in rows if r["code"] == "before" and r["case"] == case]
        if before:
            summary[f"{case}_before_over_weights"] = max(r["peak_over_weights"] for r in before)
    from sae_transfer.book.bench import write_record

    path = write_record("memory", rows, summary, threads=2, zoo=a.zoo, real_zoo=a.real_zoo,
                        context_size=a.context_size, batch_size=a.batch_size)
    print(f"largest peak with memory = the weights: {summary['max_peak_over_weights_budgeted']:.2f}x the weights "
          "(goal: at most 3x)")
    for case, _ in cases:
        print(f"{case}: peak N -> 8N tokens {100 * summary[f'{case}_peak_8x_tokens']:+.1f}%"
              + (f"; before the budget {summary[f'{case}_before_over_weights']:.2f}x the weights"
                 if f"{case}_before_over_weights" in summary else ""))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
