"""The notebooks the Colab buttons open: committed under launch/, in sync with notebooks/ and the profiles."""

import json

from sae_transfer.book import launch
from sae_transfer.book.parts import Book, book_parts
from sae_transfer.book.chapters import chapter_names


def test_launch_notebooks_are_in_sync_with_the_sources():
    stale = launch.out_of_date()
    assert not stale, f"launch/ is out of date ({stale[:3]}...): run python -m sae_transfer launch and commit it"


def test_every_chapter_page_of_the_project_books_has_a_launch_notebook():
    pages = launch.pages()
    for profile in ("default", "smoke"):
        for part in book_parts(profile):
            for chapter in chapter_names():
                if part.holds(chapter):
                    assert part.page(chapter) in pages, (profile, part.page(chapter))
    assert "book/smollm2/sizes" not in pages  # the real family's parts leave the sizes chapter out


def test_a_part_page_runs_with_its_profile_and_sets_itself_up():
    nb = json.loads(launch.notebook("residuals", "smollm2"))
    tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    injected, setup = nb["cells"][at + 1], nb["cells"][at + 2]
    assert "injected-parameters" in tags[at + 1] and 'zoo = "smollm2"' in "".join(injected["source"])
    assert "setup" in tags[at + 2]
    source = "".join(setup["source"])
    assert launch.repository_url() in source and "SAE_TRANSFER_SOURCE" in source and "build_zoo(zoo)" in source
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    assert nb["metadata"]["kernelspec"]["name"] == "python3"  # Colab and a fresh venv have no project kernel
    main = json.loads(launch.notebook("residuals", None))  # the main part's page: the notebook's own defaults
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in main["cells"])


def test_the_repository_is_named_once():
    from sae_transfer.core.paths import PROJECT_ROOT

    url = launch.repository_url()
    assert url.startswith("https://")
    hits = [p for p in (PROJECT_ROOT / "lib").rglob("*.py") if url in p.read_text()]
    assert hits == [], hits  # the library reads it from _config.yml
    assert Book.from_profile("smoke").root == PROJECT_ROOT


def test_launch_notebooks_are_plain_markdown_colab_renders():
    """#40: no MyST role or directive reaches Colab, which would show it as text; the glued values are named."""
    import re

    import nbformat

    from sae_transfer.book import launch

    for path, text in launch.expected().items():
        markdown = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells if c.cell_type == "markdown")
        assert not re.search(r"\{glue|\{cite|\{doc\}|^:::|```\{", markdown, re.M), path
        # nothing but the MyST is lost: every heading and every prose line of the source is still there
        source = launch.get_chapter(path.stem).source.read_text()
        headings = re.findall(r"^#+ .*$", source, re.M)
        assert [h for h in headings if h in markdown.splitlines()] == headings, path
    figure = "```{glue:figure} cka\n:name: fig-x\n\nA caption\non two lines.\n```\n\nAfter it.\n\n```{glue:} t\n```\nEnd."
    assert launch.plain_markdown(figure) == ("*Figure `cka`, computed when the notebook runs:* A caption\non two "
                                             "lines.\n\nAfter it.\n\n*(`t`: computed when the notebook runs)*\nEnd.")
    residuals = launch.plain_markdown("at {glue:text}`summary_where` {cite:t}`kutsyk2025saetransfer`\n"
                                      ":::{admonition} In short\n:class: note\n\n```{glue:md} in_short\n```\n:::\n")
    assert residuals == ("at `summary_where` [kutsyk2025saetransfer]\n**In short**\n\n*(`in_short`: computed when "
                         "the notebook runs)*\n")
