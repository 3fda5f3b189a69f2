"""Running every chapter and building the HTML book with Jupyter Book (Sphinx + myst-nb)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from .chapters import ParameterError, all_chapters, chapter_names, profile_parts, profiles, resolve_params
from ..io import write_text_atomic
from ..paths import PROJECT_ROOT, book_dir, cache_dir
from ..zoo.build import build_zoo
from .preflight import preflight
from .runner import ChapterFailed, cached_results, run_chapter, source_fingerprint


def html_dir() -> Path:
    return book_dir() / "_build" / "html"


@dataclass(frozen=True)
class Part:
    """A run of every chapter with one profile's parameters: the book's main part (pages in
    ``book/chapters/``) or a further part a profile lists under ``parts`` (pages in ``book/<profile>/``)."""

    profile: str
    caption: str
    pages: str  # directory under book/ that holds the part's pages

    def page(self, chapter: str) -> str:
        return f"book/{self.pages}/{chapter}"


def book_parts(profile: str) -> list[Part]:
    """The main part and every part the profile lists (``parts: [{profile, caption}]``), each checked."""
    parts = [Part(profile, "Chapters", "chapters")]
    for i, entry in enumerate(profile_parts(profile)):
        if not isinstance(entry, dict) or set(entry) != {"profile", "caption"}:
            raise ParameterError(f"profile {profile!r}: parts[{i}] must be a mapping with 'profile' and 'caption'")
        if entry["profile"] not in profiles() or entry["profile"] in (p.profile for p in parts):
            raise ParameterError(f"profile {profile!r}: parts[{i}].profile={entry['profile']!r} must be another "
                                 f"profile, listed once; valid profiles are {profiles()}")
        if profile_parts(entry["profile"]):
            raise ParameterError(f"profile {profile!r}: parts[{i}] names {entry['profile']!r}, which has parts of "
                                 "its own; a part is one profile's chapters")
        parts.append(Part(entry["profile"], str(entry["caption"]), entry["profile"]))
    return parts


def run_all(profile: str, force: bool = False, device: str | None = None) -> tuple[list[dict], list[dict]]:
    """Run (or reuse) every chapter of every part of ``profile`` and copy executed notebooks into the book.

    Every chapter runs even when one before it fails; a failed chapter's page becomes a short notice. Returns
    ``(results of the chapters that succeeded, failures)``, each failure ``{chapter, title, error, part}``.
    """
    chapters = all_chapters()
    parts = book_parts(profile)
    params = {(part, c.name): resolve_params(c, part.profile, overrides=[("device", device)]
                                             if device and "device" in c.defaults() else ())
              for part in parts for c in chapters}  # every parameter checked before anything heavy starts
    for zoo in sorted({p["zoo"] for p in params.values() if "zoo" in p}):
        print(f"zoo {zoo!r}: building what is missing", flush=True)
        build_zoo(zoo)
    for (part, name), p in params.items():
        preflight(p, name)  # after the zoo is built: the models and SAEs named must exist
    done, failed = [], []
    for part in parts:
        for c in chapters:
            p = params[(part, c.name)]
            run_dir = cache_dir() / "runs" / f"book-{part.profile}" / c.name
            results = None if force else cached_results(run_dir, source_fingerprint(c, p))
            try:
                if results is None:
                    print(f"chapter {c.name!r} ({part.profile}): executing", flush=True)
                    results = run_chapter(c, p, run_dir)
                else:
                    print(f"chapter {c.name!r} ({part.profile}): up to date, reusing {run_dir}", flush=True)
            except ChapterFailed as e:
                print(f"chapter {c.name!r} ({part.profile}): FAILED: {e}", flush=True)
                failed.append({"chapter": c.name, "title": c.title, "error": str(e), "page": part.page(c.name)})
                _page(part, c.name, failed_notice(c.title, str(e)))
                continue
            _page(part, c.name, (run_dir / f"{c.name}.ipynb").read_text())
            done.append({**results, "page": part.page(c.name)})
    write_toc(parts)
    write_status_page(profile, done, failed)
    return done, failed


def write_toc(parts: list[Part]) -> Path:
    """``book/_toc.yml``: the tracked ``_toc.yml`` (intro, the main part's chapters, reference pages) with a
    caption and every chapter for each further part, before the reference pages. What ``build_html`` builds."""
    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    extra = [{"caption": part.caption, "chapters": [{"file": part.page(c)} for c in chapter_names()]}
             for part in parts[1:]]
    toc["parts"] = toc["parts"][:-1] + extra + toc["parts"][-1:]
    path = book_dir() / "_toc.yml"
    write_text_atomic(path, "# Written by python -m sae_transfer book from the project's _toc.yml; do not edit.\n"
                      + yaml.safe_dump(toc, sort_keys=False))
    return path


def failed_notice(title: str, error: str) -> str:
    """A failed chapter's page: a one-cell notebook at the chapter's own path, so every link to it resolves."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# {title}\n\nThis chapter failed in this build; see the [status page](../status.md).\n\n"
        f"```text\n{error}\n```\n"))
    return nbformat.writes(nb)


def _page(part: Part, name: str, notebook: str) -> None:
    """A chapter's page in the book: its executed notebook, or the notice that it failed."""
    write_text_atomic(book_dir() / part.pages / f"{name}.ipynb", notebook)


def write_status_page(profile: str, results: list[dict], failed: list[dict] = ()) -> None:
    """``book/status.md``: each chapter's run, from its results.json, and every failure (generated, git-ignored)."""
    rows = ["| chapter | parameters | wall time | peak memory | device | commit | executed |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["meta"]
        params = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(m["params"].items()))
        rows.append(f"| [{m['title']}]({r['page'].removeprefix('book/')}.ipynb) | {params} | {m['wall_seconds']:.0f} s "
                    f"| {m['peak_rss_mb']:.0f} MB | {m['device']} | `{m['commit'][:12]}` | {m['started']} |")
    failures = []
    if failed:
        failures = ["## Failed chapters", "", "| chapter | error |", "|---|---|",
                    *[f"| [{f['title']}]({f['page'].removeprefix('book/')}.ipynb) | {f['error'].replace('|', '/')} |"
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
    toc = book_dir() / "_toc.yml"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(PROJECT_ROOT), "--path-output",
           str(book_dir()), "--all", "--toc", str(toc if toc.exists() else PROJECT_ROOT / "_toc.yml")]
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
