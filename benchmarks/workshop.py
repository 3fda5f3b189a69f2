"""What a workshop laptop needs: the smoke zoo from scratch, then every chapter of the smoke profile, each timed.

    python benchmarks/workshop.py              # a new, empty cache: what a laptop sees the first time
    python benchmarks/workshop.py --cache DIR  # an existing cache (downloads and zoo reused if there)

Each step is a separate process, as a participant would run it (`zoo build`, then `run CHAPTER --profile smoke`);
its wall time and the peak resident memory of the step (the command and the kernel it starts) are recorded, with
each chapter's "In short" (the exercises' solutions quote them). The workshop page of the book shows the record:
``benchmarks/results/workshop.json``.
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


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the process tree's largest process) of one command; raises on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024  # ru_maxrss: KB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, help="cache directory (default: a new temporary one)")
    a = ap.parse_args()

    from sae_transfer.book.bench import write_record
    from sae_transfer.book.chapters import chapter_names, profile_chapters

    cache = a.cache or Path(tempfile.mkdtemp(prefix="sae-transfer-workshop-"))
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(cache), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    py = [sys.executable, "-m", "sae_transfer"]
    rows = []
    seconds, rss = timed([*py, "zoo", "build", "--profile", "smoke"], env)
    rows.append({"step": "zoo build --profile smoke", "chapter": "", "wall_s": seconds, "peak_rss_mb": rss})
    print(f"smoke zoo: {seconds:.0f} s, {rss:.0f} MB", file=sys.stderr)
    for name in profile_chapters("smoke") or chapter_names():
        out = cache / "runs" / "workshop" / name
        seconds, rss = timed([*py, "run", name, "--profile", "smoke", "--out", str(out)], env)
        results = json.loads((out / "results.json").read_text())
        kernel = results["meta"]["peak_rss_mb"]
        rows.append({"step": f"run {name} --profile smoke", "chapter": name, "wall_s": seconds,
                     "peak_rss_mb": max(rss, kernel), "in_short": results["numbers"].get("in_short", "")})
        print(f"{name}: {seconds:.0f} s, {max(rss, kernel):.0f} MB", file=sys.stderr)
    summary = {"total_min": sum(r["wall_s"] for r in rows) / 60,
               "zoo_min": rows[0]["wall_s"] / 60,
               "chapters_min": sum(r["wall_s"] for r in rows[1:]) / 60,
               "slowest_chapter": max(rows[1:], key=lambda r: r["wall_s"])["chapter"],
               "slowest_chapter_s": max(r["wall_s"] for r in rows[1:]),
               "peak_rss_mb": max(r["peak_rss_mb"] for r in rows), "fresh_cache": a.cache is None}
    print(json.dumps(summary, indent=1))
    import torch

    write_record("workshop", rows, summary, torch.get_num_threads(), profile="smoke")


if __name__ == "__main__":
    main()
