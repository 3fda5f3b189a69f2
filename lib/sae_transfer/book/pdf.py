"""The book as one PDF, for download and print: Jupyter Book's single-page HTML, printed by headless Chromium.

Jupyter Book's own ``pdfhtml`` builder does the same through pyppeteer, which downloads its own Chromium (no network
here); ``pdflatex`` needs a TeX installation of a gigabyte. Chromium is already what the browser test uses, from
Debian. Where it is missing the PDF is skipped with a one-line note (``build.build_book``), and the HTML book is
unaffected.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
PDF_NAME = "sae-transfer-book.pdf"


def chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def print_pdf(single: Path, html_dir: Path) -> Path | None:
    """Print the single-page build ``single`` (``book/_build/singlehtml``) to ``<html_dir>/PDF_NAME``. None, said in
    one line, when Chromium writes nothing."""
    # The one page is the root document (book/intro.html), whose links to figures and styles Sphinx writes as if it
    # sat at the top of the build: give them what they point at, beside it.
    page = single / "book" / "intro.html"
    for name in ("_images", "_static"):
        link = page.parent / name
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(single / name, target_is_directory=True)
    out = html_dir / PDF_NAME
    with tempfile.TemporaryDirectory() as tmp:
        printed = Path(tmp) / PDF_NAME
        # The virtual-time budget lets the page's scripts (plotly's figures, MathJax) finish before printing.
        proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               f"--user-data-dir={tmp}/profile", "--no-pdf-header-footer",
                               # bookmarks from the headings: each chapter's title names its part's models
                               "--generate-pdf-document-outline",
                               "--virtual-time-budget=20000", f"--print-to-pdf={printed}", page.as_uri()],
                              capture_output=True, text=True, timeout=600)
        if not printed.exists():
            said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"PDF not written: Chromium exited {proc.returncode} ({said})", flush=True)
            return None
        html_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(printed, out)
    return out
