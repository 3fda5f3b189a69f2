"""Benchmark of the streaming pass (residual-activations chapter): memory flat in tokens, speed near bare forwards.

    python benchmarks/stream_pass.py --zoo default --tokens 32768

1. Peak memory: the pass over N and over 8N tokens, each in a fresh process; the peak resident memory may grow
   by at most 10%.
2. Throughput: the pass (both models, every residual hook, all accumulators) against two bare forward passes
   of the same models over the same tokens; the ratio should be at most 1.2.
Nothing is cached: each measurement computes. The figures are printed and written to
``benchmarks/results/stream_pass.json``, which the residual-activations chapter shows in its appendix.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def _setup(zoo: str, n_tokens: int, ctx: int, batch: int):
    from sae_transfer.data.tokens import TokenSpec, token_batches
    from sae_transfer.models.hooks import residual_hooks
    from sae_transfer.models.load import load_models
    from sae_transfer.passes.accumulators import ResidualSimilarity

    base, ft, tok, _ = load_models("zoo:base-s", "zoo:code", zoo, "cpu")
    spec = TokenSpec("zoo:code", n_tokens, ctx, batch)
    batches = list(token_batches(spec, tok, zoo))
    hooks = residual_hooks(base.cfg.n_layers)
    return base, ft, batches, hooks, lambda: [ResidualSimilarity(h, ctx) for h in hooks]


def one_pass(zoo: str, n_tokens: int, ctx: int, batch: int) -> dict:
    """Run the pass once in this process; report peak RSS."""
    from sae_transfer.core.provenance import peak_rss_mb
    from sae_transfer.passes.stream import run_pass

    base, ft, batches, hooks, accs = _setup(zoo, n_tokens, ctx, batch)
    before = peak_rss_mb()
    run_pass(base, ft, iter(batches), hooks, accs())
    return {"n_tokens": n_tokens, "peak_rss_mb": peak_rss_mb(), "rss_before_pass_mb": before}


@torch.no_grad()
def throughput(zoo: str, n_tokens: int, ctx: int, batch: int, repeats: int = 3) -> dict:
    from sae_transfer.passes.stream import run_pass

    base, ft, batches, hooks, accs = _setup(zoo, n_tokens, ctx, batch)
    run_pass(base, ft, iter(batches[:2]), hooks, accs())  # warm up

    def bare():
        for t in batches:
            base(t, return_type=None)
            ft(t, return_type=None)

    def full():
        run_pass(base, ft, iter(batches), hooks, accs())

    times = {}
    for name, fn in (("bare", bare), ("pass", full)):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    return {"bare_forwards_s": times["bare"], "pass_s": times["pass"], "ratio": times["pass"] / times["bare"],
            "tokens_per_s": n_tokens / times["pass"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="default")
    ap.add_argument("--tokens", type=int, default=32768, help="N; memory is also measured at 8N")
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--one-pass", type=int, help=argparse.SUPPRESS)  # child process mode
    a = ap.parse_args()
    if a.one_pass:
        print(json.dumps(one_pass(a.zoo, a.one_pass, a.context_size, a.batch_size)))
        return
    torch.set_num_threads(2)
    mem = []
    for n in (a.tokens, 8 * a.tokens):
        out = subprocess.run([sys.executable, __file__, "--zoo", a.zoo, "--one-pass", str(n), "--context-size",
                              str(a.context_size), "--batch-size", str(a.batch_size)], capture_output=True,
                             text=True, check=True, env={"TQDM_DISABLE": "1", **__import__("os").environ})
        mem.append(json.loads(out.stdout.strip().splitlines()[-1]))
    growth = mem[1]["peak_rss_mb"] / mem[0]["peak_rss_mb"] - 1
    t = throughput(a.zoo, a.tokens, a.context_size, a.batch_size)
    print(f"zoo {a.zoo}: base-s vs code, every residual hook, context {a.context_size}, batch {a.batch_size}, "
          f"{torch.get_num_threads()} threads")
    for m in mem:
        print(f"  peak RSS over {m['n_tokens']:>8,} tokens: {m['peak_rss_mb']:.0f} MB "
              f"(before the pass {m['rss_before_pass_mb']:.0f} MB)")
    print(f"  growth for 8x tokens: {100 * growth:+.1f}% (goal: at most +10%)")
    from sae_transfer.book.bench import write_record

    rows = [{"what": "streaming pass (memory)", "n_tokens": m["n_tokens"], "peak_rss_mb": m["peak_rss_mb"],
             "wall_s": None} for m in mem]
    rows += [{"what": "two bare forward passes", "n_tokens": a.tokens, "peak_rss_mb": None,
              "wall_s": t["bare_forwards_s"]},
             {"what": "streaming pass (time)", "n_tokens": a.tokens, "peak_rss_mb": None, "wall_s": t["pass_s"]}]
    out = write_record("stream_pass", rows, {"memory_growth_8x": growth, **t}, threads=torch.get_num_threads(),
                       zoo=a.zoo, context_size=a.context_size, batch_size=a.batch_size)
    print(f"  two bare forward passes: {t['bare_forwards_s']:.2f} s; streaming pass: {t['pass_s']:.2f} s; "
          f"ratio {t['ratio']:.2f} (goal: at most 1.2); {t['tokens_per_s']:,.0f} tokens/s")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
