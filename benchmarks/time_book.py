"""Time the book end to end, from scratch and fully cached, on this machine.

    python benchmarks/time_book.py --profile smoke            # budget: 10 min from scratch
    python benchmarks/time_book.py --profile default          # budgets: 60 min from scratch, 3 min cached

From scratch means an empty cache (SAE_TRANSFER_CACHE pointed at a new directory): downloads, corpora,
tokenizer, every model and SAE, every chapter, the HTML. Prints wall times, the zoo's per-artifact build
times and each chapter's peak memory, then the budgets they are held against.
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

# The default book holds the toy zoo and the real family (SmolLM2-135M), every chapter on each.
BUDGETS_MIN = {"smoke": {"scratch": 10, "cached": 3}, "default": {"scratch": 60, "cached": 3}}


def timed_book(profile: str, cache: Path) -> float:
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(cache), "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sae_transfer", "book", "--profile", profile], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke", choices=sorted(BUDGETS_MIN))
    ap.add_argument("--cache", type=Path, help="cache directory to use (default: a new temporary one)")
    args = ap.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="sae-transfer-bench-"))
    scratch = timed_book(args.profile, cache)
    cached = timed_book(args.profile, cache)
    print(f"profile {args.profile} on {os.cpu_count()} CPU cores, cache {cache}")
    print(f"  book from scratch: {scratch / 60:.1f} min (budget {BUDGETS_MIN[args.profile]['scratch']} min)")
    print(f"  book fully cached: {cached / 60:.1f} min (budget {BUDGETS_MIN[args.profile]['cached']} min)")
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
