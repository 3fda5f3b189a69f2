"""Benchmark of the SAE-metrics pass against ``sae_lens.evals.run_evals``: speed, and memory as tokens grow 8x.

    python benchmarks/sae_metrics.py --zoo default --tokens 16384
    python benchmarks/sae_metrics.py --zoo smollm2 --tokens 2048     # the real family (built with its zoo)

Both implementations compute, for the zoo's base and its first finetune with the base SAE on the same windows,
L0, explained variance, MSE, cosine, norm ratio, clean / spliced / zero-ablated CE, KL and feature densities;
ours also computes pooled R², outlier masks and both subsets, activation histograms and per-feature means.
Each (implementation, N) runs in a fresh process, so its peak resident memory (VmHWM) is its own; nothing is
cached. The goals: ours at least twice as fast, and its peak memory within 10% as tokens grow from N to 8N.
``--before OLD/lib`` also times another checkout's pass (the code before a change) on the same tokens.

The figures are printed and written to ``benchmarks/results/sae_metrics[-ZOO].json`` (no suffix for the default
zoo), which the SAE-metrics chapter shows in its appendix (with the machine, date and commit they were measured
on).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch


def child(impl: str, zoo: str, n_tokens: int, ctx: int, batch: int) -> dict:
    """Measure one implementation over both models, in this process."""
    import math

    from sae_transfer.core.provenance import peak_rss_mb
    from sae_transfer.data.tokens import TokenSpec, token_batches
    from sae_transfer.models.load import load_pair
    from sae_transfer.passes.sae_metrics import sae_pass
    from sae_transfer.zoo.sae import run_evals_on_windows
    from sae_transfer.zoo.store import Zoo

    torch.set_num_threads(2)
    root = next(iter(Zoo.open(zoo).recipe.models))  # the zoo's base (a toy zoo's base-s, a real family's model)
    finetune = Zoo.open(zoo).finetunes_of(root)[0]
    pair = load_pair(f"zoo:{root}", f"zoo:{finetune}", f"zoo:{root}", zoo=zoo, device="cpu")
    windows = torch.cat(list(token_batches(TokenSpec("zoo:prose", n_tokens, ctx, batch), pair.tokenizer, zoo)))
    windows = windows[: len(windows) - len(windows) % batch]
    before = peak_rss_mb()
    t0 = time.perf_counter()
    for model in (pair.base, pair.finetune):
        if impl == "ours":
            sae_pass(model, pair.sae, pair.hook, windows.split(batch), math.inf)
        else:
            run_evals_on_windows(pair.sae, model, windows, batch)
    wall = time.perf_counter() - t0
    return {"implementation": impl, "n_tokens": int(windows.numel()), "wall_s": wall,
            "tokens_per_s": 2 * windows.numel() / wall, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="default")
    ap.add_argument("--tokens", type=int, default=16384, help="N; everything is also measured at 8N")
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--before", default="", help="another checkout's lib directory: its pass is timed too")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        impl, n = a.child.split(":")
        print(json.dumps(child(impl, a.zoo, int(n), a.context_size, a.batch_size)))
        return
    env = {**os.environ, "TQDM_DISABLE": "1"}
    rows = []
    for n in (a.tokens, 8 * a.tokens):
        for impl in ("ours", "run_evals", *(["ours (before)"] if a.before else [])):
            child_env = {**env, "PYTHONPATH": a.before} if impl == "ours (before)" else env
            out = subprocess.run([sys.executable, __file__, "--zoo", a.zoo, "--child", f"{impl.split()[0]}:{n}",
                                  "--context-size", str(a.context_size), "--batch-size", str(a.batch_size)],
                                 capture_output=True, text=True, check=True, env=child_env)
            rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "implementation": impl})
            r = rows[-1]
            print(f"{impl:>9} {r['n_tokens']:>8,} tokens x 2 models: {r['wall_s']:7.1f} s "
                  f"({r['tokens_per_s']:,.0f} tokens/s), peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    by = {(r["implementation"], r["n_tokens"]): r for r in rows}
    n1, n8 = rows[0]["n_tokens"], rows[-1]["n_tokens"]
    summary = {
        "speedup_at_N": by[("run_evals", n1)]["wall_s"] / by[("ours", n1)]["wall_s"],
        "speedup_at_8N": by[("run_evals", n8)]["wall_s"] / by[("ours", n8)]["wall_s"],
        "ours_memory_growth_8x": by[("ours", n8)]["peak_rss_mb"] / by[("ours", n1)]["peak_rss_mb"] - 1,
        "run_evals_memory_growth_8x": by[("run_evals", n8)]["peak_rss_mb"] / by[("run_evals", n1)]["peak_rss_mb"] - 1,
    }
    if a.before:
        summary["speedup_over_before_at_N"] = by[("ours (before)", n1)]["wall_s"] / by[("ours", n1)]["wall_s"]
        summary["speedup_over_before_at_8N"] = by[("ours (before)", n8)]["wall_s"] / by[("ours", n8)]["wall_s"]
    from sae_transfer.book.bench import write_record

    out = write_record("sae_metrics" + ("" if a.zoo == "default" else f"-{a.zoo}"), rows, summary, threads=2, zoo=a.zoo, context_size=a.context_size,
                       batch_size=a.batch_size)
    print(f"speedup over run_evals: {summary['speedup_at_N']:.2f}x at N, {summary['speedup_at_8N']:.2f}x at 8N "
          "(goal: at least 2)")
    print(f"peak memory growth N -> 8N: ours {100 * summary['ours_memory_growth_8x']:+.1f}% (goal: at most +10%), "
          f"run_evals {100 * summary['run_evals_memory_growth_8x']:+.1f}%")
    if a.before:
        print(f"speedup over the code in {a.before}: {summary['speedup_over_before_at_N']:.2f}x at N, "
              f"{summary['speedup_over_before_at_8N']:.2f}x at 8N")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
