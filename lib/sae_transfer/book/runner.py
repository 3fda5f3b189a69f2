"""Executing one chapter with papermill into a run directory.

A run directory holds ``run.json`` (what was asked), the executed ``<chapter>.ipynb``, ``figures/``, tables
as CSV and ``results.json`` (every number the chapter reports, its parameters, package versions, commit,
device, wall time, peak memory). A run executes in a fresh directory that replaces the run directory when it
ends, so a run directory never mixes two runs' files; a failed run holds its partial notebook and no
``results.json``, and goes beside a successful run (``<run>.failed``) rather than over it. One run at a time per
run directory (a lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sae_transfer.book.chapters import Chapter, ParameterError, read_notebook
from sae_transfer.book.report import NUMBERS_FILE
from sae_transfer.core.io import fingerprint, foreign_file, mark_ours, sha256_file, write_json_atomic, write_text_atomic
from sae_transfer.core.paths import PROJECT_ROOT, cache_dir
from sae_transfer.core.provenance import device_description, git_commit, package_versions
from sae_transfer.zoo.store import Zoo

KERNEL_NAME = "sae-transfer"
RESULTS_FILE = "results.json"


class ChapterFailed(RuntimeError):
    """A cell raised: the message names the chapter, the cell and the exception."""


#: The kernel logs only errors: its "running over TCP without encryption" warning (a local kernel on loopback)
#: would otherwise open every run's output.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


def ensure_kernel() -> str:
    """Register this interpreter's kernel under the fixed name the runner asks papermill for."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    specs = manager.find_kernel_specs()
    if KERNEL_NAME not in specs or not _kernel_is_ours(Path(specs[KERNEL_NAME])):
        from ipykernel.kernelspec import write_kernel_spec

        with tempfile.TemporaryDirectory() as tmp:
            spec = write_kernel_spec(Path(tmp) / KERNEL_NAME, extra_arguments=KERNEL_ARGS,
                                     overrides={"display_name": "Python (sae-transfer)"})
            manager.install_kernel_spec(str(spec), KERNEL_NAME, prefix=sys.prefix, replace=True)
    return KERNEL_NAME


def _kernel_is_ours(spec_dir: Path) -> bool:
    try:
        argv = json.loads((spec_dir / "kernel.json").read_text())["argv"]
    except (OSError, KeyError, ValueError):
        return False
    return Path(argv[0]).resolve() == Path(sys.executable).resolve() and argv[-len(KERNEL_ARGS):] == KERNEL_ARGS


def source_fingerprint(chapter: Chapter, params: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """Changes when the notebook, the library code, benchmark records, the parameters, the names the pages give
    them (``preflight.written_names``) or the zoo change."""
    # Benchmark records are shown in chapter appendices, so a new record reruns the chapter.
    lib = sorted((PROJECT_ROOT / "lib").rglob("*.py"))
    lib += sorted((PROJECT_ROOT / "benchmarks" / "results").glob("*.json"))
    zoo_card = None
    if "zoo" in params:
        card = Zoo.open(params["zoo"]).root / "card.json"
        zoo_card = json.loads(card.read_text()).get("fingerprint") if card.exists() else None
    return fingerprint({"notebook": sha256_file(chapter.source), "params": params, "zoo": zoo_card,
                        **({"names": names} if names else {}),
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


def _legacy_output(directory: Path) -> bool:
    """Output of a version that wrote no marker: a run (``run.json``), a check (``check.json``) or a book of
    parameter files (its toc says who wrote it)."""
    toc = directory / "book" / "_toc.yml"
    return ((directory / "run.json").is_file() or (directory / "check.json").is_file()
            or (toc.is_file() and toc.read_text(errors="replace").startswith("# Written by python -m sae_transfer")))


def check_out_dir(out: Path) -> Path:
    """``--out`` as an absolute directory path that can be created, and that holds nothing the project did not
    write (it is replaced, or written into); one-line ``ParameterError`` otherwise."""
    if str(out).strip() in ("", "."):
        raise ParameterError("--out is empty; give a directory for the run (or leave --out out for the default)")
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {str(out)!r} is a file; give a directory")
    if (name := foreign_file(out, _legacy_output)) is not None:
        raise ParameterError(f"--out {str(out)!r} holds files this project did not write (first: {name!r}); "
                             "give a new or empty directory, or one a run of this project wrote")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ParameterError(f"--out {str(out)!r} cannot be created: {str(parent)!r} is not a writable directory")
    return out


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` for one run: a second run into the same directory is refused, not interleaved."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ParameterError(f"--out {str(out)!r} is in use by another run; wait for it to finish or choose "
                                 "another --out") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _replace_dir(new: Path, final: Path) -> None:
    """Put the finished run ``new`` at ``final``; whatever was there goes (never mixed with the new files)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def failed_dir(final: Path) -> Path:
    """Where a failed run into ``final`` is kept: ``final`` itself, unless it holds a successful run (then
    ``<final>.failed`` beside it, replacing an earlier failure of ours there)."""
    if not (final / RESULTS_FILE).exists():
        return final
    beside = final.with_name(f"{final.name}.failed")
    if foreign_file(beside, _legacy_output) is not None:
        raise ParameterError(f"the failed run cannot be kept at {str(beside)!r}: it holds files this project did "
                             "not write")
    return beside


def run_chapter(chapter: Chapter, params: dict[str, Any], run_dir: Path | None = None,
                progress: bool = True, names: dict[str, str] | None = None) -> dict:
    """Execute ``chapter`` with already-validated ``params``; return the results written to results.json.
    ``names``: ``{spec: as the user wrote it}``, what the pages call those models and files.

    The run executes in a fresh directory beside ``run_dir`` that then replaces it, so ``run_dir`` holds one
    run's files and never a mix. A failure is kept with its partial notebook and no ``results.json``: in
    ``run_dir``, or in ``<run_dir>.failed`` when ``run_dir`` holds a successful run, which stays as it was. Two
    runs into one ``run_dir`` at once: the second is refused.
    """
    final = check_out_dir(Path(run_dir) if run_dir is not None else default_run_dir(chapter.name))
    with run_lock(final):
        for stale in final.parent.glob(f".tmp-{final.name}-*"):  # left by a killed run; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
        try:
            results = _execute(chapter, params, work, final, progress, names or {})
        except BaseException as e:
            # The failed run's own files (run.json, the partial notebook) are kept whole and never mixed with
            # another run's: in place of an earlier failure, or beside an earlier success, which stays intact (a
            # full disk or a bad parameter must not cost the last good run).
            kept = failed_dir(final)
            _replace_dir(work, kept)
            if isinstance(e, ChapterFailed):
                raise ChapterFailed(str(e).replace(str(work), str(kept))) from None
            raise
        _replace_dir(work, final)
    return results


def _execute(chapter: Chapter, params: dict[str, Any], run_dir: Path, final: Path, progress: bool,
             names: dict[str, str]) -> dict:
    import papermill as pm

    fp = source_fingerprint(chapter, params, names)
    commit = git_commit()
    command = command_line(chapter, params)
    mark_ours(run_dir)
    write_json_atomic(run_dir / "run.json", {"chapter": chapter.name, "params": params, "command": command,
                                             "commit": commit, "names": names})
    out_nb = run_dir / f"{chapter.name}.ipynb"
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(read_notebook(chapter.source), str(out_nb),
                            parameters={**params, "run_dir": str(run_dir)}, kernel_name=ensure_kernel(),
                            cwd=str(run_dir), progress_bar=progress, language="python",
                            # a batch run keeps no IPython history: kernels at once would share its sqlite file
                            extra_arguments=["--HistoryManager.enabled=False"])
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
        "peak_cuda_mb": recorded["kernel"].get("peak_cuda_mb"), "fingerprint": fp, "run_dir": str(final),
        **({"names": names} if names else {}),
    }
    # Provenance goes into the notebook too, so a downloaded .ipynb still says how it was made.
    import nbformat

    nb = nbformat.read(out_nb, as_version=4)
    nb.metadata["sae_transfer"] = meta
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:  # the Reproduce box says it better, and this names a scratch directory
            tags.append("remove-cell")
        elif "parameters" in tags:
            tags.append("hide-input")  # the defaults, one click away
    write_text_atomic(out_nb, nbformat.writes(nb))
    results = {"meta": meta, "numbers": recorded["numbers"], "tables": recorded["tables"],
               "figures": recorded["figures"], **({"absent": recorded["absent"]} if "absent" in recorded else {})}
    write_json_atomic(run_dir / RESULTS_FILE, results)
    return results
