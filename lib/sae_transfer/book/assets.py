"""What the built book carries so it reads the same without network (a workshop room, a sandbox, the PDF):
plotly.js for the interactive figures, and MathJax for the formulas of the methods page.

plotly.js comes from the installed plotly package (already a dependency of sae_lens). MathJax 2.7 is fetched by
package name, like the zoo's data: the ``jupyter-server-mathjax`` wheel, pinned by sha256 and never installed,
whose ``static/`` directory is MathJax. ``_config.yml`` points ``mathjax_path`` at ``_static/mathjax``.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import plotly

from sae_transfer.core.paths import cache_dir
from sae_transfer.zoo.data import PypiSource

MATHJAX = PypiSource("jupyter-server-mathjax", "0.2.6", "jupyter_server_mathjax-0.2.6-py3-none-any.whl",
                     "416389dde2010df46d5fbbb7adb087a5607111070af65a1445391040f2babb5e",
                     "BSD-3-Clause (MathJax itself: Apache-2.0)")
_STATIC = "jupyter_server_mathjax/static/"


def plotly_js(source_root: Path) -> Path:
    """Put plotly.js into the book's ``_static/`` before the build (Jupyter Book adds every script there)."""
    static = source_root / "_static"
    static.mkdir(exist_ok=True)
    dest = static / "plotly.min.js"
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", dest)
    return dest


def mathjax(html_dir: Path) -> Path:
    """Unpack MathJax into ``<html_dir>/_static/mathjax`` after a build (once per cache, then copied)."""
    unpacked = cache_dir() / "downloads" / f"mathjax-{MATHJAX.version}"
    if not (unpacked / "MathJax.js").exists():
        wheel = MATHJAX.fetch(cache_dir() / "downloads")
        tmp = unpacked.with_name(unpacked.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(_STATIC) and not name.endswith("/"):
                    out = tmp / name.removeprefix(_STATIC)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
        shutil.rmtree(unpacked, ignore_errors=True)
        tmp.rename(unpacked)
    dest = html_dir / "_static" / "mathjax"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(unpacked, dest)
    return dest
