"""Benchmark records: what the scripts in ``benchmarks/`` measured, on which machine, when and at which commit,
kept in ``benchmarks/results/<name>.json`` so that chapter appendices can show them."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from sae_transfer.core.io import write_json_atomic
from sae_transfer.core.paths import PROJECT_ROOT
from sae_transfer.core.provenance import git_commit
from sae_transfer.studies.known_answers.prose import trust
from sae_transfer.studies.known_answers.tables import breaking_words

RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def write_record(name: str, rows: list[dict], summary: dict[str, Any], threads: int, **setup: Any) -> Path:
    """Write ``rows`` (one dict per measurement) and ``summary`` with the machine, date and commit (atomic)."""
    path = RESULTS / f"{name}.json"
    write_json_atomic(path, {"rows": rows, "summary": summary, "setup": setup, "threads": threads,
                             "machine": f"{platform.machine()}, {os.cpu_count()} cores", "commit": git_commit(),
                             "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return path


def record_table(name: str, index: list[str], columns: dict[str, str], script: str):
    """The record's rows as a table (``columns`` renames and selects), with a "measured on" column; a one-row
    note naming ``script`` if it was never run."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return pd.DataFrame([{"note": f"not measured yet: run python {script}"}])
    rec = json.loads(path.read_text())
    dirty = " (uncommitted changes)" if rec["commit"].endswith("+dirty") else ""
    df = pd.DataFrame(rec["rows"])[list(columns)].rename(columns=columns)
    df["measured on"] = (f"{rec['machine']}, {rec['threads']} threads, {rec['measured'][:10]}, "
                         f"commit {rec['commit'][:10]}{dirty}")
    return df.set_index([columns.get(i, i) for i in index]).sort_index()


#: How each benchmark's record is shown in a chapter appendix: (index, column labels, the script to run).
TABLES = {
    "sae_metrics-smollm2": (["implementation", "n_tokens"], {
        "implementation": "implementation", "n_tokens": "tokens per model", "wall_s": "wall s (both models)",
        "tokens_per_s": "tokens/s", "peak_rss_mb": "peak RSS MB"}, "benchmarks/sae_metrics.py --zoo smollm2"),
    "memory": (["code", "case", "budget", "n_tokens"], {
        "code": "code", "case": "model", "budget": "memory", "n_tokens": "tokens per model", "vocab": "vocabulary",
        "weights_mb": "fp32 weights MB", "pass_mb": "the pass MB", "peak_over_weights": "(weights + pass) / weights",
        "wall_s": "wall s"}, "benchmarks/memory.py"),
    "forward": (["model"], {
        "model": "model", "tokens_per_forward": "tokens a forward", "matmul_limit_gflops": "matmul limit GFLOP/s",
        "forward_gflops": "forward GFLOP/s", "fraction_of_limit": "share of the limit",
        "forward_tokens_per_s": "tokens/s", "hf_over_tl_speed": "Hugging Face speed / TransformerLens"},
        "benchmarks/forward.py"),
    "stream_pass": (["what", "n_tokens"], {"what": "measurement", "n_tokens": "tokens", "wall_s": "wall s",
                                           "peak_rss_mb": "peak RSS MB"}, "benchmarks/stream_pass.py"),
    "sae_metrics": (["implementation", "n_tokens"], {
        "implementation": "implementation", "n_tokens": "tokens per model", "wall_s": "wall s (both models)",
        "tokens_per_s": "tokens/s", "peak_rss_mb": "peak RSS MB"}, "benchmarks/sae_metrics.py"),
}


def _record(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def speed_and_memory_text() -> str:
    """The SAE-metric appendix's reading of the speed, memory and forward records, whichever exist."""
    out = []
    for name, what in (("sae_metrics", "the zoo's pair"), ("sae_metrics-smollm2", "the real family's pair")):
        if rec := _record(name):
            sm = rec["summary"]
            before = (f", {sm['speedup_over_before_at_N']:.2f} times as fast as the code before the memory budget"
                      if "speedup_over_before_at_N" in sm else "")
            out.append(f"On {what}, this pass computed the metrics `run_evals` computes {sm['speedup_at_N']:.2f} times "
                       f"as fast at N tokens and {sm['speedup_at_8N']:.2f} times at 8N (goal: 2){before}; its peak "
                       f"memory changed by {100 * sm['ours_memory_growth_8x']:+.1f}% from N to 8N tokens "
                       f"(`run_evals`: {100 * sm['run_evals_memory_growth_8x']:+.1f}%).")
    if rec := _record("memory"):
        sm = rec["summary"]
        before = [f"{case} {sm[f'{case}_before_over_weights']:.1f}x" for case in ("zoo", "real", "large-vocab")
                  if f"{case}_before_over_weights" in sm]
        out.append(f"With `memory` set to the fp32 weights of the two models and the SAE, weights and pass together "
                   f"came to at most {sm['max_peak_over_weights_budgeted']:.2f} times those weights (goal: 3), on a "
                   f"model with a 262,144-token vocabulary as on the zoo"
                   + (" and the real family" if "real_peak_8x_tokens" in sm else "")
                   + (f"; before the budget existed the same passes came to {', '.join(before)} the weights."
                      if before else "."))
    if rec := _record("forward"):
        parts = [f"{r['model']} {100 * r['fraction_of_limit']:.0f}%" for r in rec["rows"]]
        hf = [r for r in rec["rows"] if r.get("hf_over_tl_speed")]
        out.append("A TransformerLens forward pass reaches this share of the machine's matmul limit on the model's own "
                   f"shapes: {', '.join(parts)}."
                   + "".join(f" Hugging Face's forward of {r['model']} runs {r['hf_over_tl_speed']:.2f} times as fast "
                             f"through the blocks (the last block's input within {r['hf_max_abs_diff']:.1e} of a "
                             f"largest |residual| of {r['resid_max_abs']:.0f})." for r in hf))
    if not out:
        return "No benchmark has been recorded on this checkout yet: run the scripts in `benchmarks/`."
    return " ".join(out)


def benchmark_table(name: str):
    """The last record of ``benchmarks/<name>.py`` as the chapter appendix shows it."""
    index, columns, script = TABLES[name]
    return record_table(name, index, columns, script)


def workshop(name: str = "workshop") -> tuple[dict[str, Any], dict[str, str], pd.DataFrame]:
    """From ``benchmarks/workshop.py``'s record: the workshop page's numbers (``total_min``, ``zoo_min``,
    ``chapters_min``, ``peak_gb``, ``slowest_chapter``, ``slowest_chapter_s``, ``machine``, ``measured``), each
    chapter's "In short" from that run (the exercises' solutions) and the steps in the order they ran. One-line
    error if it was never run."""
    rec = _record(name)
    if rec is None:
        raise FileNotFoundError(f"benchmarks/results/{name}.json is missing: run python benchmarks/workshop.py")
    sm = rec["summary"]
    numbers = {k: sm[k] for k in ("total_min", "zoo_min", "chapters_min", "slowest_chapter", "slowest_chapter_s")}
    numbers.update({"peak_gb": sm["peak_rss_mb"] / 1024, "machine": rec["machine"], "measured": rec["measured"][:10]})
    steps = pd.DataFrame([{"step": r["step"], "wall s": r["wall_s"], "peak RSS MB": r["peak_rss_mb"]}
                          for r in rec["rows"]]).set_index("step")
    return numbers, {r["chapter"]: r["in_short"] for r in rec["rows"] if r.get("in_short")}, steps


def known_answers_text(labels: tuple[str, ...], similarity: bool = False, name: str = "known_answers-full") -> str:
    """Where the truth is known, what ``labels`` (of kept, shifted, lost, new) were worth: each one's precision and
    recall at the known-answers chapter's default difficulty and the easiest difficulty on each sweep at which its
    precision fell below 0.9; with ``similarity``, the AUROC of activation similarity for changed features. Read
    from ``benchmarks/known_answers.py --size full``'s record, so a chapter on any pair can say how far its
    labels can be trusted; a sentence naming the script when it was never run."""
    rec = _record(name)
    if rec is None:
        return (f"How far these labels can be trusted is measured where the truth is known: run "
                f"`python benchmarks/known_answers.py --size {name.rsplit('-', 1)[-1]}`.")
    h, points = rec["summary"]["headline"], {row["label"]: row for row in rec["summary"]["breaking_points"]}
    said = []
    for lab in labels:
        verdict = trust(h, lab)
        if f"{lab}_precision" not in h:
            said.append(f"*{lab}* was never given")
            continue
        p = f"{h[f'{lab}_precision']:.2f}" + (f" [{h[f'{lab}_precision_lo']:.2f}, {h[f'{lab}_precision_hi']:.2f}]"
                                              if f"{lab}_precision_lo" in h else "")
        said.append(f"*{lab}* had precision {p} and recall {h[f'{lab}_recall']:.2f} ({verdict})"
                    + ("" if verdict.startswith("too few") else ", " + breaking_words(points[lab])))
    auc = (f" Activation similarity told truly changed features from kept ones with AUROC {h['auroc']:.2f}"
           + (f" [{h['auroc_lo']:.2f}, {h['auroc_hi']:.2f}]." if "auroc_lo" in h else ".")) if similarity else ""
    return (f"Where the truth is known (the known-answers chapter, at {h['share']:.0%} of {h['n_features']} features "
            f"changed and shifts of {h['angle']:g}°, recorded by `benchmarks/known_answers.py` on "
            f"{rec['measured'][:10]}): " + "; ".join(said) + "." + auc)
