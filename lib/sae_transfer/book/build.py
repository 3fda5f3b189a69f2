"""Running every chapter and building the HTML book with Jupyter Book (Sphinx + myst-nb)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .chapters import all_chapters, resolve_params
from ..io import write_text_atomic
from ..paths import PROJECT_ROOT, book_dir, cache_dir
from ..zoo.build import build_zoo
from .runner import cached_results, run_chapter, source_fingerprint


def html_dir() -> Path:
    return book_dir() / "_build" / "html"


def run_all(profile: str, force: bool = False, device: str | None = None) -> list[dict]:
    """Run (or reuse) every chapter with ``profile``'s parameters; copy executed notebooks into the book."""
    chapters = all_chapters()
    params = {c.name: resolve_params(c, profile, overrides=[("device", device)]
                                     if device and "device" in c.defaults() else ())
              for c in chapters}  # every parameter of every chapter checked before anything heavy starts
    for zoo in sorted({p["zoo"] for p in params.values() if "zoo" in p}):
        print(f"zoo {zoo!r}: building what is missing", flush=True)
        build_zoo(zoo)
    out = []
    for c in chapters:
        run_dir = cache_dir() / "runs" / f"book-{profile}" / c.name
        results = None if force else cached_results(run_dir, source_fingerprint(c, params[c.name]))
        if results is None:
            print(f"chapter {c.name!r}: executing", flush=True)
            results = run_chapter(c, params[c.name], run_dir)
        else:
            print(f"chapter {c.name!r}: up to date, reusing {run_dir}", flush=True)
        dest = book_dir() / "chapters" / f"{c.name}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(dest, (run_dir / f"{c.name}.ipynb").read_text())
        out.append(results)
    write_status_page(profile, out)
    return out


def write_status_page(profile: str, results: list[dict]) -> None:
    """``book/status.md``: each chapter's run, from its results.json (generated, git-ignored)."""
    rows = ["| chapter | parameters | wall time | peak memory | device | commit | executed |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["meta"]
        params = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(m["params"].items()))
        rows.append(f"| [{m['title']}](chapters/{m['chapter']}.ipynb) | {params} | {m['wall_seconds']:.0f} s "
                    f"| {m['peak_rss_mb']:.0f} MB | {m['device']} | `{m['commit'][:12]}` | {m['started']} |")
    versions = results[0]["meta"]["versions"] if results else {}
    text = "\n".join([
        "# Status of this build", "",
        f"Every chapter below was executed by `python -m sae_transfer book --profile {profile}`; this table is "
        "written from each run's `results.json`, so it says what produced the pages you are reading.", "",
        *rows, "", "Package versions of the run:", "",
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
    t0 = time.perf_counter()
    run_all(profile, force=force, device=device)
    html = build_html()
    print(f"book built in {time.perf_counter() - t0:.0f} s: open {html / 'index.html'}", flush=True)
    return html
