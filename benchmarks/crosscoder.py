"""Crosscoder training: peak memory flat in the number of training tokens, and throughput.

Trains the diffing chapter's crosscoder (``crosscoder.fit``) on a synthetic stream of paired activations of the
zoo's width (d_model 256, 8x latents, k = 32) or the real family's (576, 8x, 32), at N and 4N tokens, each in a
fresh process, and prints each run's peak RSS growth over the process before training and its tokens per second.
The stream is synthetic so that only the crosscoder is measured (the models' forwards are the stream pass's,
benchmarked in ``stream_pass.py``).

    python benchmarks/crosscoder.py --d-model 256 --tokens 102400
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def one(d_model: int, tokens: int) -> dict:
    import torch

    from sae_transfer.core.provenance import proc_status_bytes
    from sae_transfer.methods.crosscoder import CrosscoderConfig, TrainConfig, fit

    torch.manual_seed(0)

    def batches():
        g = torch.Generator().manual_seed(1)
        while True:  # 2,032 tokens a batch, as 16 windows of 128 minus BOS
            base = torch.randn(2032, d_model, generator=g)
            yield torch.stack([base, base + 0.3 * torch.randn(2032, d_model, generator=g)], 1)

    before = proc_status_bytes("VmRSS")
    t0 = time.perf_counter()
    fit(CrosscoderConfig(d_model, 8 * d_model, 32), TrainConfig(tokens, 1024), batches)
    seconds = time.perf_counter() - t0
    peak = proc_status_bytes("VmHWM")
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_growth_mb": (peak - before) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=102_400)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.d_model, a.tokens)))
        return
    rows = []
    for n in (a.tokens, 4 * a.tokens):
        out = subprocess.run([sys.executable, __file__, "--one", "--d-model", str(a.d_model), "--tokens", str(n)],
                             capture_output=True, text=True, check=True, env={"TQDM_DISABLE": "1",
                                                                                "PATH": "/usr/bin:/bin"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"d_model {a.d_model}, {n:>9,} tokens: {r['seconds']:6.1f} s, {r['tokens_per_s']:8.0f} tokens/s, "
              f"peak growth {r['peak_growth_mb']:6.0f} MB", flush=True)
    ratio = rows[1]["peak_growth_mb"] / max(rows[0]["peak_growth_mb"], 1e-9)
    print(f"peak growth at 4x the tokens: {ratio:.2f}x (flat means about 1)")


if __name__ == "__main__":
    main()
