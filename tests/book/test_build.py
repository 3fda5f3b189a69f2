"""The smoke book: built with warnings as errors, then every page opened in headless Chromium."""

import json
import os

import pytest

from tests.book import browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(smoke_card):
    from sae_transfer.book.build import Book, build_book

    return build_book(Book.from_profile("smoke"))


def test_book_pages_exist(html):
    for page in ("book/intro.html", "book/chapters/zoo.html", "book/chapters/residuals.html", "book/methods.html",
                 "book/status.html", "book/smollm2-smoke/zoo.html", "book/smollm2-smoke/answerability.html",
                 "book/chapters/diffing.html", "book/chapters/diffing-pages/index.html",
                 "book/smollm2-smoke/diffing-pages/index.html", "book/chapters/sizes.html",
                 "book/compare.html", "book/chapters/atlas.html", "book/smollm2-smoke/languages.html"):
        assert (html / page).exists(), page
    for page in ("sizes", "predict", "atlas"):  # one size of the real family: no sizes chapter; the rest not at CI
        assert not (html / "book" / "smollm2-smoke" / f"{page}.html").exists(), page
    import re

    status = re.sub(r"<[^>]+>", "", (html / "book" / "status.html").read_text())
    assert "python -m sae_transfer book --profile smoke" in status
    assert "zoo=&quot;smoke&quot;" in status or 'zoo="smoke"' in status
    assert "zoo=&quot;smollm2-smoke&quot;" in status or 'zoo="smollm2-smoke"' in status  # the real part ran


def test_the_comparison_page_reads_both_parts(html):
    import re

    from sae_transfer.book.compare import compare
    from sae_transfer.core.paths import cache_dir

    runs = cache_dir() / "runs"
    parts = {part: {c: json.loads((runs / f"book-{part}" / c / "results.json").read_text())
                    for c in ("residuals", "sae_metrics", "features")} for part in ("smoke", "smollm2-smoke")}
    rows = compare(parts)
    assert len(rows) >= 5  # both parts answered nearly every question
    text = re.sub(r"<[^>]+>", "", (html / "book" / "compare.html").read_text())
    agree = sum(r["agree"] for r in rows)
    assert f"{agree} of {len(rows)} comparisons agree" in text
    first = rows[0]["answers"]["smoke"][0]
    assert f"{first['code']:.3f} / {first['math']:.3f}" in text


def _visible(path) -> str:
    """A page's text as a reader sees it: scripts, styles and code blocks out, whitespace and apostrophes
    normalised."""
    import html as markup
    import re

    text = re.sub(r"(?s)<script.*?</script>|<style.*?</style>|<pre.*?</pre>|<nav.*?</nav>", " ", path.read_text())
    return " ".join(markup.unescape(re.sub(r"<[^>]+>", " ", text)).replace("\u2019", "'").split())


#: A verdict stated for a finetune: "the base SAE is broken (regular activation sim 0.450, under 0.7) on code".
VERDICT = r"\b(transfers|is degraded|is broken)(?: \([^()]*\))? on (\w+)"


def test_one_truth_one_verdict_a_finetune_and_counts_that_add_up(html):
    """#40: every verdict any page of a part states for a finetune is the same verdict (the introduction's, joined
    from the three criteria; a page that measures fewer says what they say in other words); the case counts add up;
    each part's pages carry their family in the title."""
    import re

    from sae_transfer.book.findings import family_name

    book = html / "book"
    parts = {"the toy zoo": [book / "chapters"], family_name("smollm2-smoke"): [book / "smollm2-smoke"]}
    intro = _visible(book / "intro.html")
    said: dict[tuple[str, str], set[str]] = {}
    for family, folders in parts.items():
        pages = {p: _visible(p) for folder in folders for p in folder.glob("*.html")}
        # the introduction's answer for this part: from its "On <family>:" to the next part's
        start = intro.find(f"On {family}:")
        ends = [i for f in parts if f != family and (i := intro.find(f"On {f}:", start + 1)) > start]
        pages[book / "intro.html"] = intro[start: min(ends, default=len(intro))] if start >= 0 else ""
        for page, text in pages.items():
            for verdict, name in re.findall(VERDICT, text):
                said.setdefault((family, name), set()).add(verdict)
            for n, a, b, c in re.findall(r"Over all (\d+) cases \([^()]*\), (\d+) transfer, (\d+) are degraded and "
                                         r"(\d+) broken", text) + \
                    re.findall(r"Of the (\d+) cases after step 0, the check command's thresholds call (\d+) "
                               r"transfers, (\d+) degraded and (\d+) broken", text):
                assert int(a) + int(b) + int(c) == int(n), (page.name, n, a, b, c)
        titles = {p.name: re.search(r"<title>(.*?)</title>", p.read_text()).group(1) for p in folders[0].glob("*.html")
                  if p.stem in ("residuals", "sae_metrics", "features")}
        assert titles and all(f": {family}" in t for t in titles.values()), titles
    assert said, "no verdict found on any page"
    assert {k: v for k, v in said.items() if len(v) > 1} == {}
    assert any(family == "the toy zoo" for family, _ in said)  # the toy zoo's finetunes have verdicts


def test_figures_stay_legible_at_the_column_width(html):
    """#40: no figure is wider than three panels (a row of six printed its ticks at 3 points once the page scaled
    it to the column): every PNG the smoke book's chapters saved, at its 150 dpi, is at most 13 inches wide."""
    from PIL import Image

    from sae_transfer.core.paths import cache_dir

    sizes = {p: Image.open(p).size for p in (cache_dir() / "runs").glob("book-*smoke/*/figures/*.png")}
    assert len(sizes) > 30
    assert {str(p): w / 150 for p, (w, h) in sizes.items() if w / 150 > 13} == {}


def _need_browser() -> None:
    """Skip where Chromium is missing; fail in CI, which installs it."""
    if not browser.available():
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run installs them)")
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")


@pytest.mark.browser
def test_pages_open_in_chromium_with_figures_and_glue(html, tmp_path):
    _need_browser()
    from selenium.webdriver.common.by import By

    from sae_transfer.core.paths import cache_dir

    runs = cache_dir() / "runs" / "book-smoke"
    results = {c: json.loads((runs / c / "results.json").read_text()) for c in ("zoo", "residuals", "answerability",
                                                                                  "sizes")}
    with browser.serve(html) as url, browser.browser(tmp_path / "profile") as driver:
        for page, title in [("book/intro.html", "Do SAEs trained on a base model"),
                            ("book/chapters/zoo.html", "The model zoo"),
                            ("book/chapters/residuals.html", "Residual activations"),
                            ("book/chapters/answerability.html", "Answerability probes"),
                            ("book/chapters/sizes.html", "Across model sizes"),
                            ("book/methods.html", "Methods and metrics"),
                            ("book/status.html", "Status of this build")]:
            driver.get(f"{url}/{page}")
            assert driver.title.startswith(title), (page, driver.title)
            images = driver.find_elements(By.CSS_SELECTOR, "main img, article img")
            for img in images:
                ok = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                assert ok, (page, img.get_attribute("src"))
            chapter = page.removeprefix("book/chapters/").removesuffix(".html")
            if chapter in results:
                assert len(images) >= len(results[chapter]["figures"])
                glued = driver.find_elements(By.CSS_SELECTOR, "span.pasted-text")
                # the zoo and residual pages' readings are glued Markdown, written from the results
                assert len(glued) >= {"zoo": 4, "residuals": 2, "sizes": 12}.get(chapter, 15)
                assert all(g.text.strip() and g.text.strip() not in ("nan", "None") for g in glued)
                body = driver.find_element(By.TAG_NAME, "body").text
                assert "Reproduce this chapter" in body
                # a glued value appears exactly as the chapter recorded it
                key = {"zoo": "ce_gain_code", "residuals": "cos_code_code", "answerability": "h_residual_in",
                       "sizes": "h_dce_transferred"}[chapter]
                assert f"{results[chapter]['numbers'][key]:.3f}" in body
                if chapter == "residuals":
                    assert f"code on code: mean cosine {results[chapter]['numbers'][key]:.3f}" in body


@pytest.mark.browser
def test_every_table_fits_the_text_column(html, tmp_path):
    """#40: no table of any page is wider than the text column (a wide one is split into several, each with its
    row labels), so no column hides in a scroll box or is cut from the PDF; and a split table's pieces are all in
    view, none below the output box's height limit."""
    _need_browser()
    pages = [p.relative_to(html) for p in sorted((html / "book").rglob("*.html"))
             if not any(d.endswith("-pages") for d in p.parent.parts)]  # the latent pages have their own layout
    wide, hidden, pieced = [], [], 0
    with browser.serve(html) as url, browser.browser(tmp_path / "profile") as driver:
        for page in pages:
            driver.get(f"{url}/{page}")
            # the theme puts a Markdown table in a scroll box narrower than the column: the table must fit both
            wide += [(str(page), *t) for t in driver.execute_script(
                "const column = (document.querySelector('article') || document.body).clientWidth;"
                "const room = t => Math.min(column, (t.closest('.pst-scrollable-table-container') || t).clientWidth);"
                "return Array.from(document.querySelectorAll('article table'))"
                "  .map(t => [t.scrollWidth, room(t), t.innerText.slice(0, 50)]).filter(t => t[0] > t[1] + 1);")]
            hidden += [(str(page), *t) for t in driver.execute_script(
                "return Array.from(document.querySelectorAll('div.table-pieces'))"
                "  .map(p => p.parentElement).map(b => [b.scrollHeight, b.clientHeight, b.innerText.slice(0, 50)])"
                "  .filter(b => b[0] > b[1] + 1);")]
            pieced += driver.execute_script("return document.querySelectorAll('div.table-pieces').length;")
    assert len(pages) > 20 and wide == []
    assert pieced > 0 and hidden == []


@pytest.mark.browser
def test_latent_pages_open_from_the_chapter_and_sort(html, tmp_path):
    _need_browser()
    from selenium.webdriver.common.by import By

    with browser.serve(html) as url, browser.browser(tmp_path / "profile") as driver:
        driver.get(f"{url}/book/chapters/diffing.html")
        assert driver.title.startswith("What the base SAE misses")
        driver.find_element(By.LINK_TEXT, "Open the latent pages").click()
        assert driver.current_url.endswith("/book/chapters/diffing-pages/index.html")
        rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) >= 60  # at least 20 latents for each of code, math and the twin
        # sorting by relative norm puts the rows in order
        driver.find_elements(By.TAG_NAME, "th")[3].click()
        norms = [float(r.find_elements(By.TAG_NAME, "td")[3].text) for r in
                 driver.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert norms == sorted(norms)
        hrefs = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "tbody a")]
        for href in hrefs[:: max(1, len(hrefs) // 6)]:
            driver.get(href)
            assert driver.title.startswith("latent ")
            contexts = driver.find_elements(By.CSS_SELECTOR, "div.ctx")
            assert contexts and contexts[0].find_elements(By.TAG_NAME, "mark")
            assert driver.find_elements(By.CSS_SELECTOR, "svg rect")


@pytest.mark.browser
def test_the_atlas_table_sorts_by_a_click_on_its_header(html, tmp_path):
    _need_browser()
    from selenium.webdriver.common.by import By

    with browser.serve(html) as url, browser.browser(tmp_path / "profile") as driver:
        driver.get(f"{url}/book/chapters/atlas.html")
        table = driver.find_element(By.CSS_SELECTOR, "table.sortable")
        headers = table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th")
        col = [h.text for h in headers].index("EV drop")

        def column() -> list[float]:
            return [float(r.find_elements(By.TAG_NAME, "td")[col].text)
                    for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        before = column()
        assert len(before) == 13 and before != sorted(before)  # shown in the atlas's order, not sorted
        headers[col].click()
        assert column() == sorted(before)
        headers[col].click()
        assert column() == sorted(before, reverse=True)


@pytest.mark.browser
def test_reader_pages_findings_boxes_interactive_figure_and_launch_links(html, tmp_path):
    """What #21 asks of the pages: the introduction states the findings (each chapter's box, linked) above an
    interactive summary figure that plotly draws offline; every chapter opens with its "In short" box, glued; every
    Colab button opens a notebook the repository holds."""
    _need_browser()
    from selenium.webdriver.common.by import By

    from sae_transfer.core.paths import PROJECT_ROOT, cache_dir

    runs = cache_dir() / "runs"
    with browser.serve(html) as url, browser.browser(tmp_path / "profile") as driver:
        driver.get(f"{url}/book/intro.html")
        found = driver.find_element(By.ID, "what-we-found")
        links = [a.get_attribute("href") for a in found.find_elements(By.CSS_SELECTOR, "li a")]
        assert any(h.endswith("/book/chapters/sae_metrics.html") for h in links), links
        assert any(h.endswith("/book/smollm2-smoke/sae_metrics.html") for h in links), links  # toy and real
        assert all(h.endswith(".html") for h in links), links  # resolved pages, not notebook files
        from sae_transfer.book.findings import verdict_text

        verdict = verdict_text({c: json.loads((runs / "book-smoke" / c / "results.json").read_text())
                                for c in ("sae_metrics", "features")})
        text = found.text.replace("\u2019", "'")  # Sphinx's smart quotes
        assert verdict.split("**")[0].replace("`", "").strip() in text  # the book's one verdict, read back
        box = json.loads((runs / "book-smoke" / "features" / "results.json").read_text())["numbers"]["in_short"]
        assert box.split("**")[0].replace("`", "").strip()[:60] in text
        # plotly (shipped in _static, no network) drew the summary: one marker per case and the seed's two stars
        points = driver.execute_script(
            "return document.querySelectorAll('.plotly-graph-div .scatterlayer path.point').length")
        from sae_transfer.book.build import Book

        held = [f"book-{p.profile}" for p in Book.from_profile("smoke").parts if p.holds("predict")]
        cases = sum(len(json.loads((runs / p / "predict" / "results.json").read_text())["tables"]["cases"])
                    for p in held)
        assert points == cases + 2, (points, cases)  # the seed's two stars
        assert driver.execute_script("return typeof Plotly") == "object"
        assert not driver.find_elements(By.CSS_SELECTOR, "a[href*='colab.research.google.com']")
        for part, chapters in (("chapters", ("zoo", "residuals", "sae_metrics", "features", "predict",
                                             "answerability", "diffing", "sizes", "atlas")),
                               ("smollm2-smoke", ("residuals", "sae_metrics"))):
            profile = "smoke" if part == "chapters" else part
            for chapter in chapters:
                driver.get(f"{url}/book/{part}/{chapter}.html")
                box = driver.find_element(By.CSS_SELECTOR, "div.admonition.in-short")
                said = json.loads((runs / f"book-{profile}" / chapter / "results.json").read_text())["numbers"]
                assert box.text.startswith("In short") and len(box.text) > 60, (part, chapter, box.text)
                shown = box.text.replace("\u2019", "'")  # Sphinx's smart quotes
                assert said["in_short"].replace("**", "").replace("`", "")[:40] in shown
                colab = [a.get_attribute("href") for a in
                         driver.find_elements(By.CSS_SELECTOR, "a[href*='colab.research.google.com']")]
                assert len(colab) == 1, (part, chapter, colab)
                target = colab[0].split("/blob/main/", 1)[1]
                assert target == f"launch/book/{part}/{chapter}.ipynb"
                assert (PROJECT_ROOT / target).is_file(), target
        # the methods page's formulas, typeset by the MathJax the build ships (no CDN)
        driver.get(f"{url}/book/methods.html")
        assert driver.execute_script("return document.querySelector('script[src*=\"MathJax.js\"]').src").startswith(url)
        import time

        for _ in range(40):
            typeset = driver.execute_script("return document.querySelectorAll('.MathJax_CHTML, .MathJax').length")
            if typeset:
                break
            time.sleep(0.25)
        assert typeset > 10, typeset
        driver.get(f"{url}/book/workshop.html")
        assert driver.title.startswith("Teaching with this book")
        assert driver.find_elements(By.CSS_SELECTOR, "details, .dropdown")  # solutions hidden until opened


def test_the_pdf_holds_every_page_and_its_figures(html, tmp_path):
    """The download PDF: printed from the single-page build, with the chapters' figures embedded."""
    import shutil
    import subprocess

    from sae_transfer.book.pdf import PDF_NAME, chromium
    from sae_transfer.core.paths import cache_dir

    if not (chromium() and shutil.which("pdftoppm") and shutil.which("pdfimages")):
        if os.environ.get("CI"):
            pytest.fail("chromium and poppler-utils must be installed in CI (.ci/run installs them)")
        pytest.skip("chromium or poppler-utils (pdftoppm, pdfimages) not installed")
    pdf = html / PDF_NAME
    assert pdf.is_file()
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages >= 30, pages
    listed = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    images = [line.split() for line in listed.splitlines()[2:] if line.strip()]
    figures = sum(len(json.loads(p.read_text())["figures"])
                  for p in (cache_dir() / "runs" / "book-smoke").glob("*/results.json"))
    big = [i for i in images if int(i[3]) >= 300 and int(i[4]) >= 150]  # width, height: figures, not icons
    assert len(big) >= figures, (len(big), figures)
    assert len({int(i[0]) for i in big}) >= 10  # spread over many pages, not one
    # pages render: the first page with a figure, as an image with ink on it
    page = int(big[0][0])
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", str(page), "-l", str(page), str(pdf),
                    str(tmp_path / "p")], check=True)
    png = next(tmp_path.glob("p*.png"))
    from PIL import Image

    pixels = list(Image.open(png).convert("L").getdata())
    assert sum(p < 200 for p in pixels) > 0.01 * len(pixels)
    # bookmarks: a reader of the PDF finds each chapter, of each part, by its title; the screen's toggles are not
    # printed (#40)
    xml = subprocess.run(["pdftohtml", "-xml", "-stdout", "-i", str(pdf)], capture_output=True, text=True,
                         check=True).stdout
    import re

    bookmarks = re.findall(r"<item page=\"\d+\">(.*?)</item>", xml)
    assert "Residual activations: the toy zoo" in bookmarks, bookmarks[:20]
    assert any(b.startswith("Residual activations: SmolLM2") for b in bookmarks), bookmarks[:20]
    # each part is a bookmark of its own with its chapters nested under it (_ext/print_parts.py)
    import xml.etree.ElementTree as ET

    def under(outline, title: str) -> list[str]:
        """The bookmarks nested under a bookmark ``title`` (its outline is the item's next sibling; the page's
        navigation may hold the same words as a bookmark with nothing under it)."""
        nested = []
        for tree in outline.iter("outline"):
            kids = list(tree)
            for item, nxt in zip(kids, kids[1:] + [None]):
                if item.tag == "item" and (item.text or "").strip().rstrip("#") == title and nxt is not None \
                        and nxt.tag == "outline":
                    nested += [(i.text or "").strip() for i in nxt.iter("item")]
        return nested

    root = ET.fromstring(xml)
    for part, chapter in (("Chapters", "Residual activations: the toy zoo"),
                          ("A real model at smoke size: SmolLM2-135M", "Residual activations: SmolLM2")):
        assert any((t or "").startswith(chapter) for t in under(root, part)), (part, under(root, part)[:10])
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Show code cell source" not in text


def test_a_chapter_dropped_from_a_book_leaves_no_page_behind(tmp_path):
    """An earlier build's page of a chapter the book no longer holds is cleared, with its HTML and static pages;
    the pages of the chapters it holds, and files the book did not write there, stay."""
    from sae_transfer.book.build import Book, Part, clear_dropped

    book = Book(tmp_path, (Part(None, "Chapters", "chapters", chapters=("residuals",)),), tmp_path / "runs", "cmd")
    html = book.html_dir / "book" / "chapters"
    written = [book.book_dir / "chapters" / "predict.ipynb", html / "predict.html", html / "diffing-pages" / "a.html",
               book.html_dir / "_sources" / "book" / "chapters" / "predict.ipynb"]
    written.append(book.book_dir / "compare.md")  # a book of one part has no comparison page
    kept = [book.book_dir / "chapters" / "residuals.ipynb", html / "residuals.html", html / "notes.txt"]
    for f in written + kept:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    gone = clear_dropped(book)
    assert sorted(gone) == sorted([*written[:2], written[2].parent, *written[3:]])
    assert not any(f.exists() for f in written) and all(f.exists() for f in kept)


def test_a_part_dropped_from_a_book_leaves_no_page_behind(tmp_path):
    """A further part gone from the book (its pages in ``book/<profile>/``) is cleared, and its folders with it where
    nothing else lies there; a folder that is no profile's, and a file the book did not write, stay."""
    from sae_transfer.book.build import Book, Part, clear_dropped

    book = Book(tmp_path, (Part(None, "Chapters", "chapters"), Part("smollm2-smoke", "Real", "smollm2-smoke")),
                tmp_path / "runs", "cmd")
    written = [book.book_dir / "smollm2" / "residuals.ipynb", book.html_dir / "book" / "smollm2" / "residuals.html",
               book.html_dir / "_sources" / "book" / "smollm2" / "residuals.ipynb",
               book.book_dir / "smoke" / "zoo.ipynb"]
    kept = [book.book_dir / "smollm2-smoke" / "residuals.ipynb", book.book_dir / "smoke" / "mine.md",
            book.book_dir / "notes" / "residuals.ipynb", book.book_dir / "chapters" / "zoo.ipynb",
            book.book_dir / "compare.md"]  # two parts: the comparison page stays
    for f in written + kept:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    gone = clear_dropped(book)
    folders = [book.book_dir / "smollm2", book.html_dir / "book" / "smollm2",
               book.html_dir / "_sources" / "book" / "smollm2"]
    assert sorted(gone) == sorted(written + folders)
    assert not any(f.exists() for f in written + folders) and all(f.exists() for f in kept)
