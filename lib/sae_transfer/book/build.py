"""Running every chapter and building the HTML book with Jupyter Book (Sphinx + myst-nb)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from .chapters import all_chapters, resolve_params
from ..io import write_text_atomic
from ..paths import PROJECT_ROOT, book_dir, cache_dir
from ..zoo.build import build_zoo
from .preflight import preflight
from .runner import ChapterFailed, cached_results, run_chapter, source_fingerprint


def html_dir() -> Path:
    return book_dir() / "_build" / "html"


def run_all(profile: str, force: bool = False, device: str | None = None) -> tuple[list[dict], list[dict]]:
    """Run (or reuse) every chapter with ``profile``'s parameters and copy executed notebooks into the book.

    Every chapter runs even when one before it fails; a failed chapter's page becomes a short notice. Returns
    ``(results of the chapters that succeeded, failures)``, each failure ``{chapter, title, error}``.
    """
    chapters = all_chapters()
    params = {c.name: resolve_params(c, profile, overrides=[("device", device)]
                                     if device and "device" in c.defaults() else ())
              for c in chapters}  # every parameter of every chapter checked before anything heavy starts
    for zoo in sorted({p["zoo"] for p in params.values() if "zoo" in p}):
        print(f"zoo {zoo!r}: building what is missing", flush=True)
        build_zoo(zoo)
    for c in chapters:
        preflight(params[c.name], c.name)  # after the zoo is built: the models and SAEs named must exist
    done, failed = [], []
    for c in chapters:
        run_dir = cache_dir() / "runs" / f"book-{profile}" / c.name
        results = None if force else cached_results(run_dir, source_fingerprint(c, params[c.name]))
        try:
            if results is None:
                print(f"chapter {c.name!r}: executing", flush=True)
                results = run_chapter(c, params[c.name], run_dir)
            else:
                print(f"chapter {c.name!r}: up to date, reusing {run_dir}", flush=True)
        except ChapterFailed as e:
            print(f"chapter {c.name!r}: FAILED: {e}", flush=True)
            failed.append({"chapter": c.name, "title": c.title, "error": str(e)})
            _page(c.name, failed_notice(c.title, str(e)))
            continue
        _page(c.name, (run_dir / f"{c.name}.ipynb").read_text())
        done.append(results)
    write_status_page(profile, done, failed)
    return done, failed


def failed_notice(title: str, error: str) -> str:
    """A failed chapter's page: a one-cell notebook at the chapter's own path, so every link to it resolves."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# {title}\n\nThis chapter failed in this build; see the [status page](../status.md).\n\n"
        f"```text\n{error}\n```\n"))
    return nbformat.writes(nb)


def _page(name: str, notebook: str) -> None:
    """A chapter's page in the book: its executed notebook, or the notice that it failed."""
    write_text_atomic(book_dir() / "chapters" / f"{name}.ipynb", notebook)


def write_status_page(profile: str, results: list[dict], failed: list[dict] = ()) -> None:
    """``book/status.md``: each chapter's run, from its results.json, and every failure (generated, git-ignored)."""
    rows = ["| chapter | parameters | wall time | peak memory | device | commit | executed |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["meta"]
        params = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(m["params"].items()))
        rows.append(f"| [{m['title']}](chapters/{m['chapter']}.ipynb) | {params} | {m['wall_seconds']:.0f} s "
                    f"| {m['peak_rss_mb']:.0f} MB | {m['device']} | `{m['commit'][:12]}` | {m['started']} |")
    failures = []
    if failed:
        failures = ["## Failed chapters", "", "| chapter | error |", "|---|---|",
                    *[f"| [{f['title']}](chapters/{f['chapter']}.ipynb) | {f['error'].replace('|', '/')} |"
                      for f in failed], ""]
    versions = results[0]["meta"]["versions"] if results else {}
    text = "\n".join([
        "# Status of this build", "",
        f"Every chapter below was executed by `python -m sae_transfer book --profile {profile}`; this table is "
        "written from each run's `results.json`, so it says what produced the pages you are reading.", "",
        *rows, "", *failures, "Package versions of the run:", "",
        "| package | version |", "|---|---|", *[f"| {k} | {v} |" for k, v in versions.items()], ""])
    write_text_atomic(book_dir() / "status.md", text)


def build_html(strict: bool = True) -> Path:
    """``jupyter-book build`` of the project root into ``book/_build/html`` (warnings are errors)."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(PROJECT_ROOT), "--path-output",
           str(book_dir()), "--all"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}); see the warnings above")
    return html_dir()


def build_book(profile: str, force: bool = False, device: str | None = None) -> Path:
    """Every chapter, then the HTML. Raises ``ChapterFailed`` after building the book if any chapter failed."""
    t0 = time.perf_counter()
    _, failed = run_all(profile, force=force, device=device)
    html = build_html()
    print(f"book built in {time.perf_counter() - t0:.0f} s: open {html / 'index.html'}", flush=True)
    if failed:
        raise ChapterFailed(f"{len(failed)} of {len(all_chapters())} chapters failed "
                            f"({', '.join(f['chapter'] for f in failed)}); the book holds the others and "
                            f"{book_dir() / 'status.md'} lists the errors")
    return html
