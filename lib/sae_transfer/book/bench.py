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

from ..io import write_json_atomic
from ..paths import PROJECT_ROOT
from .provenance import git_commit

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
    "stream_pass": (["what", "n_tokens"], {"what": "measurement", "n_tokens": "tokens", "wall_s": "wall s",
                                           "peak_rss_mb": "peak RSS MB"}, "benchmarks/stream_pass.py"),
    "sae_metrics": (["implementation", "n_tokens"], {
        "implementation": "implementation", "n_tokens": "tokens per model", "wall_s": "wall s (both models)",
        "tokens_per_s": "tokens/s", "peak_rss_mb": "peak RSS MB"}, "benchmarks/sae_metrics.py"),
}


def benchmark_table(name: str):
    """The last record of ``benchmarks/<name>.py`` as the chapter appendix shows it."""
    index, columns, script = TABLES[name]
    return record_table(name, index, columns, script)
