"""Running every chapter and building the HTML book with Jupyter Book (Sphinx + myst-nb)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import nbformat
import yaml

from sae_transfer.book import assets
from sae_transfer.book.chapters import (ParameterError, all_chapters, chapter_names, notebook_page,
                                        parameters_markdown, profiles)
from sae_transfer.book.compare import page as compare_page
from sae_transfer.book.findings import family_name
from sae_transfer.book.parts import Book, Part
from sae_transfer.book.pdf import chromium, print_pdf
from sae_transfer.book.preflight import preflight
from sae_transfer.book.runner import (ChapterFailed, cached_results, ensure_kernel, run_chapter,
                                     source_fingerprint)
from sae_transfer.book.tasks import chapter_task
from sae_transfer.book.status import write_status_page
from sae_transfer.core.io import write_text_atomic
from sae_transfer.core.paths import PROJECT_ROOT
from sae_transfer.core.specs import is_zoo
from sae_transfer.core.workers import check_jobs, default_jobs, run_graph
from sae_transfer.zoo.plan import build_zoos

@contextmanager
def _naming(part: Part, chapter: str) -> Iterator[None]:
    """A parameter's one-line error, led by where it was given: the book's files or profile, and the section."""
    try:
        yield
    except ValueError as e:
        where = (f"{', '.join(repr(str(f)) for f in part.files)}" if part.files else f"profile {part.profile!r}")
        raise ParameterError(f"{where}, section {chapter!r}: {e}") from None


def run_all(book: Book, force: bool = False, device: str | None = None,
            jobs: int | None = None) -> tuple[list[dict], list[dict]]:
    """Run (or reuse) every chapter of every part of ``book`` and copy executed notebooks into it, ``jobs`` chapters
    at once (``core.workers``; default: ``default_jobs``); the zoos they read are built first (``zoo.plan``).

    Every chapter runs even when one before it fails; a failed chapter's page becomes a short notice. Returns
    ``(results of the chapters that succeeded, failures)``, each failure ``{chapter, title, error, page}``.
    """
    jobs = default_jobs(device) if jobs is None else jobs
    check_jobs(jobs)
    chapters = [c for c in all_chapters() if book.holds(c.name)]
    params, names, left = {}, {}, {}
    for part in book.parts:  # all checked before any heavy work
        for c in (c for c in chapters if part.holds(c.name)):
            with _naming(part, c.name):
                params[(part, c.name)], names[(part, c.name)], left[(part, c.name)] = book.params(part, c, device)
    zoos = sorted({p["zoo"] for (_, name), p in params.items() if "zoo" in p and needs_zoo(name, p)})
    if zoos:
        print(f"zoo {', '.join(map(repr, zoos))}: building what is missing", flush=True)
        build_zoos(zoos)
    for (part, name), p in params.items():
        with _naming(part, name):
            # after the zoo is built: the models and SAEs named must exist
            params[(part, name)] = preflight(p, name, left[(part, name)])
    book.prepare()
    ensure_kernel()  # once, here: kernels started at once must not each install it
    outcomes, todo = {}, {}
    for part in book.parts:
        for c in (c for c in chapters if part.holds(c.name)):
            p, run_dir = params[(part, c.name)], book.run_dir(part, c.name)
            label, written = _label(book, part, c.name), names[(part, c.name)]
            results = None if force else cached_results(run_dir, source_fingerprint(c, p, written))
            if results is None:
                todo.setdefault(part, []).append(chapter_task(label, c, p, run_dir, written, progress=jobs == 1))
            else:
                print(f"{label}: up to date, reusing {run_dir}", flush=True)
                outcomes[label] = (results, None)
    # The parts' chapters in turn: a small model's chapter beside a large one's rather than two large ones at once.
    outcomes |= run_graph([t for row in zip_longest(*todo.values()) for t in row if t], jobs, desc="chapters")
    done, failed = [], []
    for part in book.parts:
        for c in (c for c in chapters if part.holds(c.name)):
            results, error = outcomes[_label(book, part, c.name)]
            p, run_dir = params[(part, c.name)], book.run_dir(part, c.name)
            if error is not None:
                failed.append({"chapter": c.name, "title": c.title, "error": error, "page": part.page(c.name)})
                _page(book, part, c.name, failed_notice(_titled(c.title, book, p), error))
                continue
            _page(book, part, c.name, _retitle((run_dir / f"{c.name}.ipynb").read_text(), c.title,
                                               _titled(c.title, book, p)))
            done.append({**results, "page": part.page(c.name), "part": part.caption})
    if len(book.parts) > 1:
        runs = {part.caption: {r["meta"]["chapter"]: r for r in done if r["part"] == part.caption}
                for part in book.parts}
        zoo = lambda chapters: next((r["meta"]["params"]["zoo"] for r in chapters.values()  # noqa: E731
                                     if "zoo" in r["meta"]["params"]), None)
        names = [family_name(zoo(chapters)) if zoo(chapters) else caption for caption, chapters in runs.items()]
        by_part = dict(zip(names if len(set(names)) == len(names) else list(runs), runs.values()))
        write_text_atomic(book.book_dir / "compare.md", compare_page(by_part))
    if book.root == PROJECT_ROOT:
        failed += run_pages(book, done)
    if book.root == PROJECT_ROOT:
        write_text_atomic(book.book_dir / "parameters.md", parameters_markdown())
    write_toc(book)
    write_status_page(book, done, failed)
    return done, failed


def _label(book: Book, part: Part, chapter: str) -> str:
    """What the build's output calls a chapter run: with its part's profile in a book of several."""
    return f"chapter {chapter!r}" + (f" ({part.profile})" if len(book.parts) > 1 else "")


#: The toc's part that tells how to use the project (static pages under ``book/using/`` and the parameters page).
USING = "Using the project"

#: Pages of the project's book that are executed notebooks but not chapters (``notebooks/<name>.md``): the
#: introduction reads every chapter run of the book, the workshop page the workshop benchmark's record.
PAGES = (("intro", "Introduction"), ("workshop", "Teaching with this book"))


def run_pages(book: Book, done: list[dict]) -> list[dict]:
    """Execute ``PAGES`` after every chapter (again whenever a chapter run changed) into ``book/<name>.ipynb``.
    Returns their failures, each page replaced by a notice."""
    runs: dict[str, dict[str, dict]] = {}
    for r in done:
        runs.setdefault(r["part"], {})[r["meta"]["chapter"]] = {
            "run_dir": r["meta"]["run_dir"], "page": r["page"].removeprefix("book/") + ".ipynb",
            "fingerprint": r["meta"]["fingerprint"]}
    failed = []
    for name, title in PAGES:
        page, params, run_dir = notebook_page(name), {"runs": runs}, book.run_dir(book.parts[0], name)
        try:
            if cached_results(run_dir, source_fingerprint(page, params)) is None:
                print(f"page {name!r}: executing", flush=True)
                run_chapter(page, params, run_dir)
            text = (run_dir / f"{name}.ipynb").read_text()
        except ChapterFailed as e:
            print(f"page {name!r}: FAILED: {e}", flush=True)
            failed.append({"chapter": name, "title": title, "error": str(e), "page": f"book/{name}"})
            text = failed_notice(title, str(e), "status.md")
        write_text_atomic(book.book_dir / f"{name}.ipynb", text)
    return failed


def write_toc(book: Book) -> Path:
    """``book/_toc.yml``: the tracked ``_toc.yml`` (intro, the main part's chapters, reference pages) with a
    caption and every chapter for each further part, before the reference pages. What ``build_html`` builds."""
    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    # The chapters the book does not hold are left out of it, and a book of parameter files has no workshop page
    # (its introduction is written by ``prepare``).
    pages = {f"book/{name}" for name, _ in PAGES if name != "intro"} if book.root != PROJECT_ROOT else set()
    held = lambda f: not f.startswith("book/chapters/") or book.parts[0].holds(f.removeprefix("book/chapters/"))
    if book.root != PROJECT_ROOT:  # how to use the project is the project's book's part, not a user's
        pages |= {e["file"] for part in toc["parts"] if part["caption"] == USING for e in part["chapters"]}
    for part in toc["parts"]:
        part["chapters"] = [e for e in part["chapters"] if e["file"] not in pages and held(e["file"])]
    toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    extra = [{"caption": part.caption, "chapters": [{"file": part.page(c)} for c in chapter_names()
                                                    if part.holds(c)]}
             for part in book.parts[1:]]
    if extra:
        extra.append({"caption": "Compared", "chapters": [{"file": "book/compare"}]})
    at = next((i for i, part in enumerate(toc["parts"]) if part["caption"] in (USING, "Reference")), len(toc["parts"]))
    toc["parts"] = toc["parts"][:at] + extra + toc["parts"][at:]  # further parts right after the main part's
    path = book.book_dir / "_toc.yml"
    write_text_atomic(path, "# Written by python -m sae_transfer book from the project's _toc.yml; do not edit.\n"
                      + yaml.safe_dump(toc, sort_keys=False))
    return path


def failed_notice(title: str, error: str, status: str = "../status.md") -> str:
    """A failed chapter's page: a one-cell notebook at the chapter's own path, so every link to it resolves."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# {title}\n\nThis page failed in this build; see the [status page]({status}).\n\n"
        f"```text\n{error}\n```\n"))
    return nbformat.writes(nb)


def _titled(title: str, book: Book, params: dict) -> str:
    """A chapter's title as its page gives it: in a book of several parts, with the models it ran on (both parts
    hold every chapter, and a reader must tell "Residual activations" on the toy zoo from SmolLM2's)."""
    if len(book.parts) < 2 or "zoo" not in params:
        return title
    return f"{title}: {family_name(params['zoo'])}"


def _retitle(notebook: str, title: str, new: str) -> str:
    """``notebook`` (JSON) with its first heading ``# title`` made ``# new``."""
    if new == title:
        return notebook
    nb = nbformat.reads(notebook, as_version=4)
    for cell in (c for c in nb.cells if c.cell_type == "markdown"):
        lines = cell.source.split("\n")
        if f"# {title}" in lines:
            lines[lines.index(f"# {title}")] = f"# {new}"
            cell.source = "\n".join(lines)
            break
    return nbformat.writes(nb)


def _page(book: Book, part: Part, name: str, notebook: str) -> None:
    """A chapter's page in the book: its executed notebook, or the notice that it failed. A further part's figure
    labels take the part's name, so one book can hold the same chapter twice (Sphinx labels are global)."""
    if part.pages != "chapters":
        notebook = notebook.replace(":name: fig-", f":name: {part.pages}-fig-")
    write_text_atomic(book.root / f"{part.page(name)}.ipynb", notebook)


def jupyter_book(book: Book, builder: str = "html", strict: bool = True) -> Path:
    """``jupyter-book build`` of the book's root into ``book/_build/<builder>`` (warnings are errors when
    ``strict``), with MathJax inside it (``assets``). Raises RuntimeError if the build fails."""
    assets.plotly_js(book.root)
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(book.root), "--path-output",
           str(book.book_dir), "--all", "--toc", str(book.book_dir / "_toc.yml"), "--builder", builder]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=book.root, stdout=None if builder == "html" else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}); see the warnings above")
    out = book.book_dir / "_build" / builder
    assets.mathjax(out)
    return out


def build_html(book: Book, strict: bool = True) -> Path:
    """The HTML book, ``book/_build/html``, with plotly.js and MathJax inside it."""
    return jupyter_book(book, "html", strict)


def copy_pages(book: Book) -> list[Path]:
    """Static pages a chapter wrote beside its notebook (``<run>/pages/``, e.g. the diffing chapter's latent pages)
    go next to the chapter's HTML page as ``<chapter>-pages/``, where the chapter links to them; Sphinx never sees
    them. Returns the directories copied."""
    out = []
    for part in book.parts:
        for name in chapter_names():
            src = book.run_dir(part, name) / "pages"
            if part.holds(name) and src.is_dir():
                dest = book.html_dir / part.static_pages(name)
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(src, dest)
                out.append(dest)
    return out


def clear_dropped(book: Book) -> list[Path]:
    """Removes what an earlier build wrote for a chapter the book no longer holds (``_page``, its HTML,
    ``copy_pages``), and only that: Sphinx never deletes an output, so the old page would stay readable. A chapter
    is dropped when its part no longer holds it, or when a further part is gone from the book altogether (its pages
    lie in ``book/<profile>/`` for one of the project's profiles); a folder left empty goes too, and so does the
    comparison page in a book of one part. Returns the paths."""
    held = {part.pages for part in book.parts}
    gone_parts = [Part(p, "", p) for p in profiles() if p not in held]
    gone = []
    for part in [*book.parts, *gone_parts]:
        for name in (n for n in chapter_names() if part not in book.parts or not part.holds(n)):
            page = Path(part.page(name))  # under the root and under the HTML alike
            gone += _remove([book.root / f"{page}.ipynb", book.html_dir / f"{page}.html",
                             book.html_dir / "_sources" / f"{page}.ipynb", book.html_dir / part.static_pages(name)])
        if part not in book.parts:
            gone += _remove([path for path in (book.root / part.folder, book.html_dir / part.folder,
                                               book.html_dir / "_sources" / part.folder)
                             if path.is_dir() and not any(path.iterdir())])
    if len(book.parts) == 1:  # ``run_all`` writes the comparison page for a book of several parts
        gone += _remove([book.book_dir / "compare.md", book.html_dir / "book" / "compare.html",
                         book.html_dir / "_sources" / "book" / "compare.md"])
    return gone


def _remove(paths: list[Path]) -> list[Path]:
    """Removes each of ``paths`` that exists (a folder with what it holds); returns those it removed."""
    gone = []
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        gone.append(path)
    return gone


def needs_zoo(chapter: str, params: dict) -> bool:
    """Whether a chapter run reads its zoo: the zoo page does, and so does any run one of whose specs names it (a
    book of ``local:`` models and ``json:`` text never builds a zoo)."""
    values = [v for value in params.values() for v in (value if isinstance(value, list) else [value])]
    return chapter == "zoo" or any(isinstance(v, str) and is_zoo(v) for v in values)


def build_book(book: Book, force: bool = False, device: str | None = None, jobs: int | None = None) -> Path:
    """Every chapter (``jobs`` at once), then the HTML and its PDF. Raises ``ChapterFailed`` after building the
    book if any chapter failed."""
    t0 = time.perf_counter()
    done, failed = run_all(book, force=force, device=device, jobs=jobs)
    clear_dropped(book)
    html = build_html(book)
    copy_pages(book)
    if chromium():  # the single page is built only to be printed
        print_pdf(jupyter_book(book, "singlehtml", strict=False), book.html_dir)
    else:
        print("PDF skipped: no Chromium found (apt-get install chromium)", flush=True)
    print(f"book built in {time.perf_counter() - t0:.0f} s: open {html / 'index.html'}", flush=True)
    if failed:
        raise ChapterFailed(f"{len(failed)} of {len(done) + len(failed)} chapters failed "
                            f"({', '.join(f['page'].removeprefix('book/') for f in failed)}); the book holds the "
                            f"others and {book.book_dir / 'status.md'} lists the errors")
    return html
