"""Time the book end to end, from scratch and fully cached, on this machine.

    python benchmarks/time_book.py --profile smoke            # budget: 10 min from scratch
    python benchmarks/time_book.py --profile default          # budgets: 60 min from scratch, 3 min cached

From scratch means an empty cache (SAE_TRANSFER_CACHE pointed at a new directory): downloads, corpora,
tokenizer, every model and SAE, every chapter, the HTML. Prints wall times, the zoo's per-artifact build
times and each chapter's peak memory, then the budgets they are held against.

The project's machines differ in speed from day to day (the same kind measured 0.6 times as fast as another day's
on one day), so a time is quoted with the machine's speed: the best fp32 matmul GFLOP/s at the toy and real
models' MLP shapes (``forward.matmul_limit``), measured before and after the build, against the record
``benchmarks/forward.py`` keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from forward import matmul_limit  # benchmarks/forward.py, beside this script

#: The MLP shapes (rows, d_model, d_mlp) of the toy zoo's base-s and of SmolLM2-135M, at the rows
#: ``benchmarks/forward.py`` measures them at.
SHAPES = {"default: base-s": (2048, 256, 1024), "smollm2: smollm2": (1280, 576, 1536)}

# The default book holds the toy zoo and the real family (SmolLM2-135M), every chapter on each.
BUDGETS_MIN = {"smoke": {"scratch": 10, "cached": 3}, "default": {"scratch": 60, "cached": 3}}


def timed_book(profile: str, cache: Path, jobs: int | None = None) -> tuple[float, int]:
    """Wall seconds of ``book --profile profile`` and the peak of its processes' resident memory together (the
    book, its worker processes and their kernels, sampled each second: with ``--jobs`` above 1 no one process
    holds the book's peak)."""
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(cache), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "sae_transfer", "book", "--profile", profile]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd + (["--jobs", str(jobs)] if jobs else []), env=env, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(1)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return time.perf_counter() - t0, peak


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and every process under it, now."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def machine_speed() -> dict[str, float]:
    """The best fp32 matmul GFLOP/s at each of ``SHAPES``, on the threads the book's kernels get."""
    torch.set_num_threads(os.cpu_count() or 1)
    return {name: matmul_limit(*shape) for name, shape in SHAPES.items()}


def speed_line(speed: dict[str, float]) -> str:
    """The speed against ``benchmarks/results/forward.json``'s record, where it holds the same models."""
    record = Path(__file__).parent / "results" / "forward.json"
    rows = {r["model"]: r for r in json.loads(record.read_text())["rows"]} if record.exists() else {}
    said = []
    for name, gflops in speed.items():
        ref = rows.get(name, {}).get("matmul_limit_gflops")
        said.append(f"{name} {gflops:.0f} GFLOP/s" + (f" ({gflops / ref:.2f}x the record's {ref:.0f})" if ref else ""))
    measured = json.loads(record.read_text())["measured"][:10] if record.exists() else "none"
    return "fp32 matmul at the models' MLP shapes: " + ", ".join(said) + f" (record of {measured})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke", choices=sorted(BUDGETS_MIN))
    ap.add_argument("--cache", type=Path, help="cache directory to use (default: a new temporary one)")
    ap.add_argument("--jobs", type=int, help="the book's --jobs (default: its own)")
    args = ap.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="sae-transfer-bench-"))
    before = machine_speed()
    scratch, peak = timed_book(args.profile, cache, args.jobs)
    after = machine_speed()
    cached, _ = timed_book(args.profile, cache, args.jobs)
    print(f"profile {args.profile} on {os.cpu_count()} CPU cores, --jobs {args.jobs or 'default'}, cache {cache}")
    print(f"  machine before the build: {speed_line(before)}")
    print(f"  machine after the build:  {speed_line(after)}")
    print(f"  book from scratch: {scratch / 60:.1f} min (budget {BUDGETS_MIN[args.profile]['scratch']} min)")
    print(f"  book fully cached: {cached / 60:.1f} min (budget {BUDGETS_MIN[args.profile]['cached']} min)")
    print(f"  peak resident memory of the book's processes together, from scratch: {peak / 2**30:.1f} GiB")
    for results in sorted((cache / "runs").glob("book-*/*/results.json")):  # every part of the book
        meta = json.loads(results.read_text())["meta"]
        print(f"  {results.parent.parent.name} chapter {meta['chapter']}: {meta['wall_seconds']:.0f} s, "
              f"peak RSS {meta['peak_rss_mb']:.0f} MB")
    for card_path in sorted((cache / "zoo").glob("*/card.json")):
        zoo = json.loads(card_path.read_text())
        print(f"  zoo {zoo['profile']}: {card_path}")
        for name, m in zoo["models"].items():
            print(f"    model {name}: built in {m['train_seconds'] / 60:.1f} min")
        for name, s in zoo["saes"].items():
            print(f"    SAE {name}: trained in {s['train_seconds'] / 60:.1f} min")

if __name__ == "__main__":
    main()
