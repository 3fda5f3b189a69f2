"""Benchmark of ``python -m sae_transfer check``: how many tokens early stopping needs, whether it ever changes a
verdict, and how check's verdicts agree with the predict chapter's calibration of the same cases.

    python benchmarks/check.py --zoo default --predict-run .cache/runs/book-default/predict

Every saved checkpoint of every single-domain and mixed zoo finetune of ``zoo:base-s`` is checked on every zoo
dataset twice: with early stopping (the default) and measuring all ``--tokens``. The predict chapter measured the
same cases on other tokens (its ``n_tokens`` per case) and classified them with the same thresholds; the
agreement between the two is printed per finetune. Models load once per finetune (``--watch``'s path). The wall
time of one check from a cold cache, a whole process, is timed with ``farm-bench`` (see the README).

Writes ``benchmarks/results/check.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="default")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--context-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--predict-run", type=Path, help="a predict chapter run directory (its results.json)")
    a = ap.parse_args()

    from sae_transfer.book.bench import write_record
    from sae_transfer.check import CheckRequest, CheckSpec, run
    from sae_transfer.studies.predict import measure as predict
    from sae_transfer.zoo import Zoo

    torch.set_num_threads(2)
    zoo = Zoo.open(a.zoo)
    datasets = ("zoo:prose", "zoo:code", "zoo:math")
    calibration = {}
    if a.predict_run:  # the chapter's cases, classified as its calibration section does
        cases = json.loads((a.predict_run / "results.json").read_text())["tables"]["cases"]
        table = predict.calibration(cases).reset_index()
        calibration = {(r["name"], r["step"], f"zoo:{r['dataset']}"): r["verdict"] for _, r in table.iterrows()}
    rows = []
    for name in zoo.finetunes_of("zoo:base-s"):
        saved = zoo.checkpoints(f"zoo:{name}")
        series = tuple(f"zoo:{name}@{s}" for s in saved.steps if s > 0)
        runs = {}
        for early in (True, False):
            spec = CheckSpec(max_tokens=a.tokens, min_tokens=a.tokens // 2, context_size=a.context_size,
                             batch_size=a.batch_size, early_stop=early)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                runs[early] = run(CheckRequest("zoo:base-s", series, "zoo:base-s", datasets, zoo=a.zoo, spec=spec),
                                  Path(out))
            print(f"{name}: {len(series)} checkpoints x {len(datasets)} datasets, early stopping {early}: "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for e, f in zip(runs[True]["results"], runs[False]["results"]):
            key = (name, e["step"], e["dataset"])
            rows.append({"finetune": name, "step": e["step"], "dataset": e["dataset"].removeprefix("zoo:"),
                         "verdict": e["verdict"], "tokens": e["tokens"], "decided": e["decided"],
                         "verdict_all_tokens": f["verdict"], "decided_all_tokens": f["decided"],
                         "chapter_verdict": calibration.get(key), "seconds": e["seconds"],
                         "seconds_all_tokens": f["seconds"]})
    n = len(rows)
    same = sum(r["verdict"] == r["verdict_all_tokens"] for r in rows)
    stopped = [r["tokens"] for r in rows if r["tokens"] < a.tokens]
    compared = [r for r in rows if r["chapter_verdict"] is not None]
    agree = sum(r["verdict"] == r["chapter_verdict"] for r in compared)
    summary = {"cases": n, "early_equals_all_tokens": same, "stopped_early": len(stopped),
               "median_tokens": sorted(r["tokens"] for r in rows)[n // 2], "token_budget": a.tokens,
               "decided": sum(r["decided"] for r in rows), "chapter_cases": len(compared),
               "agree_with_chapter": agree,
               "seconds_early": sum(r["seconds"] for r in rows),
               "seconds_all_tokens": sum(r["seconds_all_tokens"] for r in rows)}
    for r in rows:
        print(f"{r['finetune']:>5} @{r['step']:<4} {r['dataset']:<6} {r['verdict']:<10} {r['tokens']:>6} tokens "
              f"{'decided' if r['decided'] else 'undecided':<9} all tokens: {r['verdict_all_tokens']:<10} "
              f"chapter: {r['chapter_verdict']}")
    print(json.dumps(summary, indent=1))
    write_record("check", rows, summary, torch.get_num_threads(), zoo=a.zoo, tokens=a.tokens,
                 context_size=a.context_size, batch_size=a.batch_size)


if __name__ == "__main__":
    main()
