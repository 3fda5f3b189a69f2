"""What a chapter reports: numbers, tables and figures, each glued for the book and recorded for results.json.

Used inside chapter notebooks::

    rep = Report(run_dir)
    rep.reproduce()                          # the "Reproduce this chapter" box
    rep.number("ce_base_prose", 3.21)        # prose: {glue:text}`ce_base_prose:.2f`
    rep.figure("loss_curves", fig, "...")    # page: ```{glue:figure} loss_curves```
    rep.interactive("loss_live", plotly_fig, "loss_curves")  # the same figure to hover and zoom, PNG kept
    rep.save()                               # last cell: numbers for the runner's results.json

The runner writes ``run.json`` (parameters, command) into the run directory before execution and turns the
saved ``numbers.json`` into ``results.json`` after a successful run.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from sae_transfer.book import table_layout
from sae_transfer.book.bench import benchmark_table
from sae_transfer.core import labels
from sae_transfer.core.io import write_json_atomic
from sae_transfer.core.memory import budget_bytes, gib
from sae_transfer.core.provenance import peak_rss_mb
from sae_transfer.models.load import resolve_device

NUMBERS_FILE = "numbers.json"

#: Why a figure along finetuning is missing, for a pair given without a series of checkpoints.
NO_CHECKPOINTS = ("No finetune given here has a series of saved checkpoints (a `local:` or `hub:` finetune is one "
                  "model), so there is no curve along finetuning to draw.")


class Report:
    def __init__(self, run_dir: str | Path | None = None):
        # Outside the runner (a notebook opened by hand) results go to a scratch directory.
        self.run_dir = Path(run_dir) if run_dir else Path.cwd() / "scratch-run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "figures").mkdir(exist_ok=True)
        run_file = self.run_dir / "run.json"
        self.run = json.loads(run_file.read_text()) if run_file.exists() else {}
        labels.use_names(self.run.get("names", {}))  # pages say "ft" where the user wrote local:ft
        self.numbers: dict[str, float | int | str] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.figures: dict[str, dict[str, str]] = {}
        self.absent: dict[str, str] = {}

    # ------------------------------------------------------------------ recording
    def number(self, name: str, value: Any) -> Any:
        """Record and glue one scalar. Non-finite floats are refused: a NaN in prose is a bug upstream."""
        from myst_nb import glue

        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"report number {name!r} is {value}; refusing to publish a non-finite value")
        self._claim(name)
        self.numbers[name] = value
        glue(name, value, display=False)
        return value

    def absent_figure(self, name: str, reason: str) -> None:
        """In the place of figure ``name``, which this pair's data cannot give (no saved checkpoints, no SAE
        fine-tuned): the reason, in italics, under the figure's caption. The page states what is missing and why,
        and the book's build never meets a key that was not glued."""
        from IPython.display import Markdown
        from myst_nb import glue

        self._claim(name)
        self.absent[name] = reason
        glue(name, Markdown(f"*{reason}*"), display=False)

    def figure_when(self, data: Any, name: str, draw, caption: str, absent: str) -> None:
        """Figure ``name`` drawn from ``data`` (``draw(data)``) when there is any, else its reason (``absent``): one
        call for a section that some pairs cannot fill."""
        if data:
            self.figure(name, draw(data), caption)
        else:
            self.absent_figure(name, absent)

    def findings(self, ok: bool, absent: str, tables: dict, figures: dict) -> None:
        """A method's findings: tables ``{name: (make, significant digits)}`` and figures ``{name: (draw, caption)}``, made
        only when ``ok`` (the method worked on this data); otherwise each place holds ``absent``, so nothing a
        method that failed produced is shown as a finding."""
        for name, (make, digits) in tables.items():
            if ok:
                self.table(name, make(), digits)
            else:
                self.absent_figure(name, absent)
        for name, (draw, caption) in figures.items():
            if ok:
                self.figure(name, draw(), caption)
            else:
                self.absent_figure(name, absent)

    def benchmarks(self, records: dict[str, str], ours: bool, digits: int = 2) -> None:
        """Glue each ``{name: record}``: the last table of ``benchmarks/<record>.py`` when the run's models are
        the project's own (``ours``: a zoo base), which that benchmark measured. For anyone else's models its
        place says so: a user's book does not quote the project's figures as if they described the user's pair."""
        for name, record in records.items():
            if ours:
                self.table(name, benchmark_table(record), digits)
            else:
                self.absent_figure(name, f"Not shown: `benchmarks/{record}.py` measured the project's own models on "
                                         "its machine, not this pair; this run's own memory is stated above.")

    def this_run(self, memory: str, device: str) -> str:
        """Glue ``this_run``: the kernel's peak memory so far (weights included) and the budget ``memory`` gave
        each pass beyond the weights here. Returns the sentence. Like the run's wall time, this describes the run,
        not the models: it is glued for the page but not recorded among the results (two runs of the same inputs
        give the same ``results.json`` numbers); ``meta`` holds the kernel's final peak."""
        from IPython.display import Markdown
        from myst_nb import glue

        budget = budget_bytes(memory, resolve_device(device))
        text = (f"This run's kernel peaked at {gib(peak_rss_mb() * 2**20)} of resident memory by the end of its "
                f"measurements, the models' weights included; `memory={memory!r}` allowed each pass "
                f"{gib(budget)} beyond the weights on this machine.")
        glue("this_run", Markdown(text), display=False)
        return text

    def text(self, name: str, markdown: str) -> None:
        """Record and glue a paragraph written from results (``{glue:md}`name``` on the page), for prose that
        must read right for any model: which models, how many, which one transfers least."""
        from IPython.display import Markdown
        from myst_nb import glue

        self._claim(name)
        self.numbers[name] = markdown
        glue(name, Markdown(markdown), display=False)

    def texts(self, prefix: str, paragraphs: dict[str, str]) -> None:
        for key, markdown in paragraphs.items():
            self.text(f"{prefix}_{key}", markdown)

    def _claim(self, name: str) -> None:
        """Numbers, tables and figures share one glue namespace: a name used twice would break the book."""
        if name in self.numbers or name in self.tables or name in self.figures or name in self.absent:
            raise ValueError(f"report name {name!r} recorded twice (numbers, tables and figures share names)")

    def headline(self, values: dict[str, Any]) -> dict[str, Any]:
        """Record every entry of a flat dict (a study's ``headline``) under its own name; returns the dict, for
        prose written from the same numbers."""
        for key, value in values.items():
            self.number(key, value)
        return values

    def numbers_from(self, prefix: str, values: dict[str, Any]) -> None:
        """Record every entry of a flat dict as ``<prefix>_<key>``."""
        for key, value in values.items():
            self.number(f"{prefix}_{key}".replace("-", "_").replace("/", "_").replace("@", "_"), value)

    def table(self, name: str, df, digits: int = table_layout.DIGITS, sortable: bool = False):
        """Record a pandas DataFrame (as records, and CSV in the run directory) and glue it for the page,
        numbers shown to ``digits`` significant digits (``table_layout.cell``), missing cells blank, numbers
        right-aligned and text left, headers in words; a table wider than the text column is shown as several of
        consecutive columns, each with the row labels (``table_layout``). ``sortable``: a click on a header sorts the
        rows (``_static/sortable-tables.js``; the table is then shown whole, its row labels as columns). Returns the
        first styled table."""
        from IPython.display import HTML
        from myst_nb import glue

        self._claim(name)
        self.tables[name] = json.loads(df.reset_index().to_json(orient="records"))
        df.to_csv(self.run_dir / f"{name}.csv")
        shown = table_layout.in_words(df.reset_index() if sortable else df)
        cell = lambda v: table_layout.cell(v, digits)  # noqa: E731
        formatted = pd.DataFrame({c: shown[c].map(cell) for c in shown.columns}, index=shown.index)
        groups = [list(shown.columns)] if sortable else table_layout.pieces(shown, formatted)
        styled = [self._styled(shown[group], cell) for group in groups]
        if sortable:
            styled = [s.hide(axis="index").set_table_attributes('class="sortable"') for s in styled]
        # a split table's pieces are shown whole, one under another (``table-pieces``: the stylesheet lifts the output
        # box's height limit, which would hide the later pieces in a scroll box)
        glue(name, styled[0] if len(styled) == 1 else
             HTML('<div class="table-pieces">' + "".join(s.to_html() for s in styled) + "</div>"), display=False)
        return styled[0]

    @staticmethod
    def _styled(df, cell):
        styled = df.style.format(cell)
        if df.index.is_unique and df.columns.is_unique:  # Styler can address cells of unique labels only
            numeric = [c for c in df.columns if df[c].dtype.kind in "iufc"]
            styled = (styled.set_properties(subset=numeric, **{"text-align": "right"})
                      .set_properties(subset=[c for c in df.columns if c not in numeric], **{"text-align": "left"})
                      .set_table_styles([{"selector": "th.col_heading", "props": "text-align: right;"}]))
        return styled

    def figure(self, name: str, fig, caption: str = "") -> None:
        """Save ``fig`` as PNG and SVG in ``<run_dir>/figures`` and glue it (``{glue:figure}`` on the page)."""
        import matplotlib.pyplot as plt
        from IPython.display import Image
        from myst_nb import glue

        self._claim(name)
        paths = {}
        for ext in ("png", "svg"):
            path = self.run_dir / "figures" / f"{name}.{ext}"
            fig.savefig(path, dpi=150 if ext == "png" else None, bbox_inches="tight")
            paths[ext] = str(path.relative_to(self.run_dir))
        self.figures[name] = {"caption": caption, **paths}
        plt.close(fig)
        # The page shows the very PNG that was saved, whatever matplotlib backend the kernel runs.
        glue(name, Image(filename=str(self.run_dir / paths["png"])), display=False)

    def interactive(self, name: str, fig, static: str) -> None:
        """Glue a plotly ``fig`` for the HTML page (hover, zoom), with the already recorded figure ``static`` as its
        PNG for every other output (PDF, a notebook viewer). The HTML is saved beside the PNG; it loads plotly.js
        from the page, which the book ships in ``_static`` so it works offline."""
        from myst_nb import glue

        self._claim(name)
        html = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plotly-{name}",
                           config={"displaylogo": False, "responsive": True})
        path = self.run_dir / "figures" / f"{name}.html"
        path.write_text(html)
        self.figures[name] = {"caption": self.figures[static]["caption"], "html": str(path.relative_to(self.run_dir)),
                              "png": self.figures[static]["png"]}
        glue(name, _Interactive(html, (self.run_dir / self.figures[static]["png"]).read_bytes()), display=False)

    # ------------------------------------------------------------------ page elements
    def reproduce(self) -> None:
        """Show the exact command and parameters that produced this page (from the runner's run.json)."""
        from IPython.display import Markdown, display

        if not self.run:
            display(Markdown("*Executed outside the runner: no reproduction record.*"))
            return
        params = "\n".join(f"{k}: {json.dumps(v)}" for k, v in sorted(self.run["params"].items()))
        display(Markdown(
            ":::{admonition} Reproduce this chapter\n:class: tip\n"
            f"```bash\n{self.run['command']}\n```\n"
            f"with these parameters (commit `{self.run.get('commit', 'unknown')[:12]}`):\n"
            f"```yaml\n{params}\n```\n:::\n"))

    # ------------------------------------------------------------------ end of run
    def save(self) -> Path:
        """Write what was recorded, plus this kernel's peak memory, for the runner to finish into results.json."""
        extra: dict[str, Any] = {"peak_rss_mb": peak_rss_mb()}
        try:
            import torch

            if torch.cuda.is_available():
                extra["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        except ImportError:
            pass
        path = self.run_dir / NUMBERS_FILE
        write_json_atomic(path, {"numbers": self.numbers, "tables": self.tables, "figures": self.figures,
                                 "kernel": extra, **({"absent": self.absent} if self.absent else {})})
        return path


class _Interactive:
    """A glued output with two renderings: the plotly div for HTML pages, the PNG for everything else (myst-nb
    picks per builder by MIME priority)."""

    def __init__(self, html: str, png: bytes):
        self.html, self.png = html, png

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html, "image/png": base64.b64encode(self.png).decode()}
