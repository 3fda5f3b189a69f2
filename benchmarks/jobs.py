"""A book's chapters, HTML and PDF from a cold measurement cache, its zoos built, with ``--jobs`` N against 1.

    python benchmarks/jobs.py --profile smoke --jobs 2 --repeats 1

Each run gets a new cache directory holding links to one built copy of the zoos (built first, once, with the
book's default jobs) and the downloads, so every chapter and measurement is computed again and nothing else is:
what ``--jobs`` changes. Runs go in turn (N, 1, N, 1, ...), so a drift in the machine's speed reaches both; the
ratio is taken pair by pair. Prints each run's wall time and the peak resident memory of the book's processes
together, then the median ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from time_book import machine_speed, speed_line, timed_book  # benchmarks/time_book.py, beside this script


def linked_cache(built: Path) -> Path:
    """A new cache directory that shares ``built``'s zoos and downloads and nothing else."""
    cache = Path(tempfile.mkdtemp(prefix="sae-transfer-jobs-"))
    for name in ("zoo", "downloads"):
        (cache / name).symlink_to(built / name)
    if (built / "file-hashes.json").exists():  # the digests of the zoos' large files, memoised by size and time
        shutil.copyfile(built / "file-hashes.json", cache / "file-hashes.json")
    return cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--jobs", type=int, default=2, help="the --jobs to hold against 1")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs")
    ap.add_argument("--zoo-cache", type=Path, help="a cache whose zoos are built (default: build them in a new one)")
    args = ap.parse_args()
    built = args.zoo_cache or Path(tempfile.mkdtemp(prefix="sae-transfer-zoos-"))
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(built), "TQDM_DISABLE": "1"}
    for zoo in zoos_of(args.profile):
        subprocess.run([sys.executable, "-m", "sae_transfer", "zoo", "build", "--profile", zoo], env=env,
                       check=True, stdout=subprocess.DEVNULL)
    print(f"profile {args.profile} on {os.cpu_count()} CPU cores; machine: {speed_line(machine_speed())}")
    ratios = []
    for i in range(args.repeats):
        pair = {}
        for jobs in (args.jobs, 1):
            cache = linked_cache(built)
            pair[jobs], peak = timed_book(args.profile, cache, jobs)
            print(f"  run {i + 1}, --jobs {jobs}: {pair[jobs]:.0f} s, peak resident memory of the book's processes "
                  f"together {peak / 2**30:.1f} GiB", flush=True)
            shutil.rmtree(cache)
        ratios.append(pair[args.jobs] / pair[1])
    print(f"  --jobs {args.jobs} against --jobs 1, wall time: median ratio {statistics.median(ratios):.2f} over "
          f"{len(ratios)} pair(s) ({', '.join(f'{r:.2f}' for r in ratios)})")


def zoos_of(profile: str) -> list[str]:
    """The zoos a book profile's parts read: each part's ``zoo`` (every chapter of a part reads one zoo)."""
    from sae_transfer.book.chapters import profile_params
    from sae_transfer.book.parts import book_parts

    zoos = []
    for part in book_parts(profile):
        zoo = profile_params(part.profile, "zoo").get("zoo")
        if zoo and zoo not in zoos:
            zoos.append(zoo)
    return zoos


if __name__ == "__main__":
    main()
