"""Benchmark of ``python -m sae_transfer atlas`` against one ``check`` per finetune: the same numbers, fewer model
passes, less wall time.

    python benchmarks/atlas.py --zoo smoke --tokens 8192 --repeats 3
    python benchmarks/atlas.py --zoo smoke --only atlas     # one side alone, a whole process (to time from outside)
    python benchmarks/atlas.py --zoo smoke --only checks

Every saved checkpoint (step > 0) of every finetune of ``zoo:base-s`` is measured on one dataset: (A) as one atlas
with the local executor (a fresh out directory and base store each run: the base's pass is paid every time), and
(B) as N ``check`` processes, one per checkpoint, each loading the base and the checkpoint. A and B alternate; the
ratio is taken pair by pair. Before timing, the numbers of A and B are compared value by value.

Writes ``benchmarks/results/atlas.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PY = [sys.executable, "-m", "sae_transfer"]


def checkpoints(zoo: str) -> list[str]:
    from sae_transfer.check import watch_series
    from sae_transfer.zoo import Zoo

    z = Zoo.open(zoo)
    return [s for name in z.finetunes_of("zoo:base-s") if z.checkpoints(f"zoo:{name}") is not None
            for s in watch_series(f"zoo:{name}", zoo)]


def run_atlas(zoo: str, dataset: str, tokens: int, work: Path) -> tuple[float, Path]:
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "atlas.yaml"
    names = list(dict.fromkeys(s.split("@")[0] for s in checkpoints(zoo)))  # each finetune once, in order
    cfg.write_text(yaml.safe_dump({"base": "zoo:base-s", "saes": ["zoo:base-s"], "datasets": [dataset], "zoo": zoo,
                                   "finetunes": [{"checkpoints": n} for n in names], "check": {"tokens": tokens}}))
    t0 = time.perf_counter()
    subprocess.run([*PY, "atlas", "-f", str(cfg), "--out", str(work / "out"), "--store", str(work / "store")],
                   check=True, capture_output=True)
    return time.perf_counter() - t0, work / "out"


def run_checks(zoo: str, dataset: str, tokens: int, work: Path) -> tuple[float, list[Path]]:
    outs = []
    t0 = time.perf_counter()
    for i, ft in enumerate(checkpoints(zoo)):
        out = work / f"check-{i}"
        r = subprocess.run([*PY, "check", "--zoo", zoo, "--base", "zoo:base-s", "--sae", "zoo:base-s", "--finetune",
                            ft, "--dataset", dataset, "--tokens", str(tokens), "--out", str(out)],
                           capture_output=True)
        if r.returncode not in (0, 10, 11):
            raise RuntimeError(r.stderr.decode()[-2000:])
        outs.append(out)
    return time.perf_counter() - t0, outs


def compare(atlas_out: Path, check_outs: list[Path]) -> int:
    """The number of (finetune, metric) values compared; raises on the first that differs."""
    rows = {json.loads(line)["finetune"]: json.loads(line) for line in (atlas_out / "atlas.jsonl").read_text().splitlines()}
    n = 0
    for out in check_outs:
        (c,) = json.loads((out / "check.json").read_text())["results"]
        r = rows[c["finetune"]]
        for k, m in c["metrics"].items():
            if (r[k], r[f"{k}_lo"], r[f"{k}_hi"]) != (m["value"], m["lo"], m["hi"]):
                raise AssertionError(f"{c['finetune']} {k}: atlas {r[k]} against check {m['value']}")
            n += 1
        assert r["verdict"] == c["verdict"] and r["tokens"] == c["tokens"]
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="smoke")
    ap.add_argument("--dataset", default="zoo:code")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("atlas", "checks"))
    a = ap.parse_args()

    if a.only:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_atlas if a.only == "atlas" else run_checks
            print(f"{a.only}: {run(a.zoo, a.dataset, a.tokens, Path(tmp))[0]:.1f} s")
        return

    from sae_transfer.book.bench import write_record

    n = len(checkpoints(a.zoo))
    rows = []
    for rep in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t_atlas, out = run_atlas(a.zoo, a.dataset, a.tokens, Path(tmp) / "a")
            t_checks, outs = run_checks(a.zoo, a.dataset, a.tokens, Path(tmp) / "b")
            compared = compare(out, outs)
            summary = json.loads((out / "atlas.json").read_text())
        rows.append({"repeat": rep, "atlas_s": t_atlas, "checks_s": t_checks, "ratio": t_atlas / t_checks,
                     "values_equal": compared, "models_atlas": summary["models_loaded"], "models_checks": 2 * n,
                     "store_bytes": summary["store_bytes"], "slots": summary["slots"]})
        print(f"repeat {rep}: atlas {t_atlas:.1f} s, {n} checks {t_checks:.1f} s, ratio {t_atlas / t_checks:.2f}; "
              f"{compared} values equal; models loaded {summary['models_loaded']} against {2 * n}")
    med = {k: statistics.median(r[k] for r in rows) for k in ("atlas_s", "checks_s", "ratio")}
    print(f"median: atlas {med['atlas_s']:.1f} s, checks {med['checks_s']:.1f} s, ratio {med['ratio']:.2f} "
          f"(target <= 0.65); base store {rows[0]['store_bytes'] / 1e6:.1f} MB on disk")
    path = write_record("atlas", rows, {**med, "n_finetunes": n, "store_bytes": rows[0]["store_bytes"]},
                        threads=0, zoo=a.zoo, dataset=a.dataset, tokens=a.tokens)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
