"""Executing one chapter with papermill into a run directory.

A run directory holds ``run.json`` (what was asked), the executed ``<chapter>.ipynb``, ``figures/``, tables
as CSV and, only after a successful run, ``results.json`` (every number the chapter reports, its parameters,
package versions, commit, device, wall time, peak memory). A failed run keeps its partial notebook for
inspection and never leaves a ``results.json``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .chapters import Chapter, read_notebook
from ..io import fingerprint, sha256_file, write_json_atomic, write_text_atomic
from ..paths import PROJECT_ROOT, cache_dir
from ..zoo.store import Zoo
from .provenance import device_description, git_commit, package_versions
from .report import NUMBERS_FILE

KERNEL_NAME = "sae-transfer"
RESULTS_FILE = "results.json"


class ChapterFailed(RuntimeError):
    """A cell raised: the message names the chapter, the cell and the exception."""


def ensure_kernel() -> str:
    """Register this interpreter's kernel under the fixed name the runner asks papermill for."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL_NAME not in specs or not _kernel_is_this_python(Path(specs[KERNEL_NAME])):
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, display_name="Python (sae-transfer)", prefix=sys.prefix)
    return KERNEL_NAME


def _kernel_is_this_python(spec_dir: Path) -> bool:
    try:
        argv = json.loads((spec_dir / "kernel.json").read_text())["argv"]
    except (OSError, KeyError, ValueError):
        return False
    return Path(argv[0]).resolve() == Path(sys.executable).resolve()


def source_fingerprint(chapter: Chapter, params: dict[str, Any]) -> str:
    """Changes when the notebook, the library code, benchmark records, the parameters or the zoo change."""
    # Benchmark records are shown in chapter appendices, so a new record reruns the chapter.
    lib = sorted((PROJECT_ROOT / "lib").rglob("*.py"))
    lib += sorted((PROJECT_ROOT / "benchmarks" / "results").glob("*.json"))
    zoo_card = None
    if "zoo" in params:
        card = Zoo.open(params["zoo"]).root / "card.json"
        zoo_card = json.loads(card.read_text()).get("fingerprint") if card.exists() else None
    return fingerprint({"notebook": sha256_file(chapter.source), "params": params, "zoo": zoo_card,
                        "lib": [(str(p.relative_to(PROJECT_ROOT)), sha256_file(p)) for p in lib]})


def default_run_dir(chapter: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return cache_dir() / "runs" / chapter / stamp


def command_line(chapter: Chapter, params: dict[str, Any]) -> str:
    """The one command that reproduces this run: every non-default parameter spelled out."""
    defaults = chapter.defaults()
    parts = ["python", "-m", "sae_transfer", "run", chapter.name]
    for k, v in sorted(params.items()):
        if defaults.get(k) != v:
            parts += ["-p", k, v if isinstance(v, str) else json.dumps(v)]
    return shlex.join(parts)


def cached_results(run_dir: Path, fp: str) -> dict | None:
    path = Path(run_dir) / RESULTS_FILE
    if path.exists():
        results = json.loads(path.read_text())
        if results.get("meta", {}).get("fingerprint") == fp:
            return results
    return None


def run_chapter(chapter: Chapter, params: dict[str, Any], run_dir: Path | None = None,
                progress: bool = True) -> dict:
    """Execute ``chapter`` with already-validated ``params``; return the results written to results.json."""
    import papermill as pm

    run_dir = Path(run_dir or default_run_dir(chapter.name)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (RESULTS_FILE, NUMBERS_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    fp = source_fingerprint(chapter, params)
    commit = git_commit()
    command = command_line(chapter, params)
    write_json_atomic(run_dir / "run.json", {"chapter": chapter.name, "params": params, "command": command,
                                             "commit": commit})
    out_nb = run_dir / f"{chapter.name}.ipynb"
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(read_notebook(chapter.source), str(out_nb),
                            parameters={**params, "run_dir": str(run_dir)}, kernel_name=ensure_kernel(),
                            cwd=str(run_dir), progress_bar=progress, language="python")
    except pm.PapermillExecutionError as e:
        raise ChapterFailed(f"chapter {chapter.name!r} failed in cell {e.cell_index} "
                            f"(execution count {e.exec_count}): {e.ename}: {e.evalue}; "
                            f"partial notebook kept at {out_nb}") from None
    wall = time.perf_counter() - t0
    numbers_path = run_dir / NUMBERS_FILE
    if not numbers_path.exists():
        raise ChapterFailed(f"chapter {chapter.name!r} ran but never called Report.save(); "
                            f"notebook kept at {out_nb}")
    recorded = json.loads(numbers_path.read_text())
    meta = {
        "chapter": chapter.name, "title": chapter.title, "params": params, "command": command,
        "commit": commit, "versions": package_versions(), "device": device_description(params.get("device")),
        "started": started, "wall_seconds": wall, "peak_rss_mb": recorded["kernel"].get("peak_rss_mb"),
        "peak_cuda_mb": recorded["kernel"].get("peak_cuda_mb"), "fingerprint": fp, "run_dir": str(run_dir),
    }
    # Provenance goes into the notebook too, so a downloaded .ipynb still says how it was made.
    import nbformat

    nb = nbformat.read(out_nb, as_version=4)
    nb.metadata["sae_transfer"] = meta
    write_text_atomic(out_nb, nbformat.writes(nb))
    results = {"meta": meta, "numbers": recorded["numbers"], "tables": recorded["tables"],
               "figures": recorded["figures"]}
    write_json_atomic(run_dir / RESULTS_FILE, results)
    return results
