"""Peak memory of loading a model pair from local directories, against the weights it ends with.

    python benchmarks/load_memory.py [--zoo smollm2-smoke] [--model smollm2] [--finetune code] [--work DIR]
                                     [--before OLD/lib] [--synthetic]

Two pairs, each loaded as every chapter loads it (``models.load.load_models``) in a fresh process whose libraries
are imported beforehand so that their code is not counted: a user's, as local directories (the built zoo's
Hugging Face directory of ``--model``, and a copy of it in ``--work`` as its finetune: the same bytes in another
file, as a finetune's would be, so no page is shared; converted, logits checked), and the zoo's own
(``zoo:MODEL``, ``zoo:FINETUNE``); with ``--synthetic`` a third, a Gemma-3-style pair with Gemma's vocabulary of
262,144 tokens and a small body (``tests/own_models.py``, width 256: 0.27 GB of weights a model, most of it the
embedding), as local directories. Needs the zoo built (``python -m sae_transfer zoo build --profile ZOO``). Reported: the fp32 weights of the pair; what loading adds to the process's resident memory at its
peak (VmHWM) and once done; and the peak over the weights. ``--before`` runs the same load against another
checkout's ``lib`` (e.g. a ``git worktree`` of the commit before) for a before/after table. Writes
``benchmarks/results/load_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CASE = r"""
import json, sys
import torch, transformer_lens, transformers  # imported before the baseline: their code is not the load's
from sae_transfer.models.load import load_models

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

start = rss("VmRSS:")
base, ft, tok, _ = load_models(sys.argv[1], sys.argv[2], zoo=sys.argv[3], device="cpu")
weights = sum(p.numel() * p.element_size() for m in (base, ft) for p in m.parameters())
print(json.dumps({"weights": weights, "peak": rss("VmHWM:") - start, "after": rss("VmRSS:") - start}))
"""


def run_case(lib: Path, base: str, finetune: str, zoo: str) -> dict:
    from sae_transfer.core.paths import CACHE_ENV, cache_dir

    # the other checkout reads this one's zoo
    env = {**os.environ, "PYTHONPATH": str(lib), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", CACHE_ENV: str(cache_dir())}
    out = subprocess.run([sys.executable, "-c", CASE, base, finetune, zoo], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="smollm2-smoke")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--finetune", default="code")
    ap.add_argument("--work", type=Path, default=None, help="where the finetune's copy goes (default: a temp dir)")
    ap.add_argument("--before", type=Path, default=None, help="another checkout's lib directory, for an A/B")
    ap.add_argument("--synthetic", action="store_true", help="also a Gemma-3-style pair with a 262K vocabulary")
    args = ap.parse_args()

    from sae_transfer.zoo.store import Zoo

    base = Zoo.open(args.zoo).root / "models" / args.model / "hf"
    if not base.is_dir():
        raise SystemExit(f"--model={args.model!r}: {base} is not built (only a pretrained zoo model has one)")
    here = Path(__file__).resolve().parents[1] / "lib"
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        finetune = Path(tmp) / "ft"
        shutil.copytree(base, finetune)
        pairs = {"local directories": (f"local:{base}", f"local:{finetune}"),
                 "zoo models": (f"zoo:{args.model}", f"zoo:{args.finetune}")}
        if args.synthetic:
            sys.path.insert(0, str(here.parent))
            from tests.own_models import make_pair

            make_pair(Path(tmp) / "gemma3", "gemma3", "blocks.1.hook_resid_post", d_model=256)
            pairs["262K vocabulary"] = (f"local:{tmp}/gemma3/base", f"local:{tmp}/gemma3/ft")
        libs = {"this checkout": here, **({"before": args.before.resolve()} if args.before else {})}
        rows = [{"pair": pair, "code": code, **run_case(lib, *specs, args.zoo)}
                for pair, specs in pairs.items() for code, lib in libs.items()]
    import torch

    from sae_transfer.book.bench import write_record
    from sae_transfer.models.load import LOAD_OVERHEAD

    mb = lambda b: f"{b / 2**20:,.0f} MB"  # noqa: E731
    print(f"{args.zoo}: {args.model} and {args.finetune}, fp32, CPU, {os.cpu_count()} cores, one run each")
    print(f"{'pair':18s} {'code':14s} {'weights':>9s} {'peak added':>11s} {'after':>9s} {'peak / weights':>15s} "
          f"{'load / its weights':>19s}")
    for r in rows:
        r["overhead"] = (r["peak"] - r["after"]) / (r["weights"] / 2)
        print(f"{r['pair']:18s} {r['code']:14s} {mb(r['weights']):>9s} {mb(r['peak']):>11s} {mb(r['after']):>9s} "
              f"{r['peak'] / r['weights']:>14.2f}x {r['overhead']:>18.2f}x")
    worst = max(r["overhead"] for r in rows if r["pair"] != "zoo models" and r["code"] == "this checkout")
    print(f"the loader assumes a checkpoint's load takes {LOAD_OVERHEAD}x its weights beyond them; measured at most "
          f"{worst:.2f}x" + ("" if worst <= LOAD_OVERHEAD else ": RAISE LOAD_OVERHEAD"))
    write_record("load_memory", rows, {"load_overhead_measured": round(worst, 3),
                                       "load_overhead_assumed": LOAD_OVERHEAD}, torch.get_num_threads(),
                 zoo=args.zoo, model=args.model, finetune=args.finetune)


if __name__ == "__main__":
    main()
