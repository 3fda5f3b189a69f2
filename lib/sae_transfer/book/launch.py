"""The notebooks a chapter page's launch button opens (Colab), committed under ``launch/`` at the path the button
builds: ``launch/<page>.ipynb``, e.g. ``launch/book/chapters/residuals.ipynb``.

The executed notebooks the book is built from are not in the repository, so the button needs copies that are: each
chapter's source (``notebooks/<chapter>.md``) as an output-free ``.ipynb``, with the parameters of the part of the
book the page belongs to, and a setup cell that installs the project and builds the zoo the parameters name in a
fresh runtime (and does nothing in the project's own environment). ``python -m sae_transfer launch`` writes them;
a test fails when they differ from what the sources would give.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import yaml

from sae_transfer.book.chapters import (chapter_names, get_chapter, profile_chapters, profile_params, profile_parts,
                                        profiles, read_notebook)
from sae_transfer.core.io import write_text_atomic
from sae_transfer.core.paths import PROJECT_ROOT

LAUNCH_DIR = PROJECT_ROOT / "launch"

#: The setup cell, after the parameters: it knows the zoo this notebook reads (``ZOO``, left out for a chapter with no
#: ``zoo`` parameter: the known answers read no model). The project installs editable from a clone (its parameter
#: profiles and zoo recipes live beside the package); ``SAE_TRANSFER_SOURCE`` names a checkout to install instead of
#: cloning (what the standalone test does).
HEADS = {True: """\
# Setup for a fresh runtime (Colab, a machine without the project): clone and install the project, then build the
# zoo these parameters name if it is missing. In the project's own environment there is nothing to install, and a
# book run (run_dir set) has built its zoo already.""", False: """\
# Setup for a fresh runtime (Colab, a machine without the project): clone and install the project. In the
# project's own environment there is nothing to install."""}
SETUP = '''
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("sae_transfer") is None:
    source = os.environ.get("SAE_TRANSFER_SOURCE") or os.path.abspath("sae-transfer")
    if not os.path.isdir(source):
        subprocess.run(["git", "clone", "--depth", "1", "{repository}", source], check=True)
    lock = os.path.join(source, "requirements.lock")  # the versions the book was built with
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", lock, "-e", source], check=True)
    sys.path.insert(0, os.path.join(source, "lib"))  # an editable install is on the path from the next start
    importlib.invalidate_caches()'''
ZOO = '''
if not run_dir:
    from sae_transfer.zoo import build_zoo

    build_zoo(zoo)'''


#: MyST that Colab would show as raw text, and what stands in its place: the book's glued values and figures
#: are named (the notebook computes them as it runs), citations keep their key, admonitions become a bold title.
PLAIN = (
    (re.compile(r"```\{glue:figure\} (\S+)\n(?::\w+: [^\n]*\n)*\n?(.*?)\n?```", re.S),
     lambda m: f"*Figure `{m[1]}`, computed when the notebook runs:* {m[2].strip()}"),
    (re.compile(r"```\{glue:(?:md)?\} (\S+)\n```"), lambda m: f"*(`{m[1]}`: computed when the notebook runs)*"),
    (re.compile(r":::\{admonition\} (.*)\n(?::\w+: .*\n)*"), lambda m: f"**{m[1]}**\n"),
    (re.compile(r"^:::$\n?", re.M), lambda m: ""),
    (re.compile(r"\{glue:(?:text|md)\}`([^`:]+)(?::[^`]*)?`"), lambda m: f"`{m[1]}`"),
    (re.compile(r"\{cite(?::[tp])?\}`([^`]+)`"), lambda m: f"[{m[1]}]"),
    (re.compile(r"\{doc\}`\.\./methods`"), lambda m: "the book's methods page"),
    (re.compile(r"\{doc\}`\.\./([^`]+)`"), lambda m: f"the book's page `{m[1]}`"),
)


def plain_markdown(text: str) -> str:
    """A chapter's MyST Markdown as Markdown that Colab renders (``PLAIN``)."""
    for pattern, replace in PLAIN:
        text = pattern.sub(replace, text)
    return text


def repository_url() -> str:
    """The project's repository, set once: ``repository.url`` in ``_config.yml`` (the book's buttons read it too)."""
    return yaml.safe_load((PROJECT_ROOT / "_config.yml").read_text())["repository"]["url"]


def clone_markdown() -> str:
    """The command that clones the project, as a Markdown code block (the workshop page shows it)."""
    return f"```bash\ngit clone {repository_url()} sae-transfer && cd sae-transfer\n```"


def pages() -> dict[str, tuple[str, str | None]]:
    """Every chapter page a project book can hold -> (chapter, the profile whose parameters it shows; None: the
    notebook's defaults). The main part's pages (``book/chapters/``) show the defaults; a further part's, its
    profile's."""
    out = {f"book/chapters/{c}": (c, None) for c in chapter_names()}
    for profile in profiles():
        for entry in profile_parts(profile):
            part = entry["profile"]
            chapters = profile_chapters(part) or tuple(chapter_names())
            out.update({f"book/{part}/{c}": (c, part) for c in chapters})
    return dict(sorted(out.items()))


def notebook(chapter: str, profile: str | None) -> str:
    """The launch copy of ``chapter`` with ``profile``'s parameters, as the text of an ``.ipynb``."""
    nb = read_notebook(get_chapter(chapter).source)
    at = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    cells = []
    if profile:
        values = profile_params(profile, chapter)
        cells.append(nbformat.v4.new_code_cell(
            f"# Parameters of this page's part of the book (profile {profile}); papermill -p replaces this cell\n"
            + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()),
            metadata={"tags": ["injected-parameters"]}))
    has_zoo = any(p.name == "zoo" for p in get_chapter(chapter).parameters)
    setup = HEADS[has_zoo] + SETUP.format(repository=repository_url()) + (ZOO if has_zoo else "")
    cells.append(nbformat.v4.new_code_cell(setup, metadata={"tags": ["setup"]}))
    nb.cells[at + 1:at + 1] = cells
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{chapter}-{i}"  # stable ids: the copies only change when their source does
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        else:
            cell.source = plain_markdown(cell.source)
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nbformat.writes(nb) + "\n"


def expected() -> dict[Path, str]:
    """Each launch copy's path and text, from the sources as they are now."""
    return {LAUNCH_DIR / f"{page}.ipynb": notebook(chapter, profile) for page, (chapter, profile) in pages().items()}


def write() -> list[Path]:
    """Write every launch copy (atomic) and remove copies of pages that no longer exist. Returns the paths."""
    want = expected()
    for path, text in want.items():
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text)
    for stale in set(LAUNCH_DIR.rglob("*.ipynb")) - set(want):
        stale.unlink()
    return sorted(want)


def out_of_date() -> list[str]:
    """Launch copies missing, stale or left over, relative to the project root (empty: in sync)."""
    want = expected()
    bad = [p for p, text in want.items() if not p.exists() or p.read_text() != text]
    bad += sorted(set(LAUNCH_DIR.rglob("*.ipynb")) - set(want))
    return [str(p.relative_to(PROJECT_ROOT)) for p in bad]
