"""How specs become labels and glue-name suffixes: one slugifier for the whole package.

A run of the command line records the paths as the user wrote them (``run.json``'s ``names``, read by
``book.report.Report``), so that a page says ``ft`` where the kernel loads ``local:/home/me/models/ft``; glue
names (``slug``) are made from the specs themselves, so the numbers' names do not depend on how a path was
written.
"""

from __future__ import annotations

_written: dict[str, str] = {}


def use_names(names: dict[str, str]) -> None:
    """Label the specs in ``names`` (``{spec: as written}``) by what the user wrote; replaces earlier names."""
    _written.clear()
    _written.update(names)


def short(spec: str) -> str:
    """``zoo:code`` -> ``code``; ``local:/x/y`` -> ``/x/y``, or the path as the user wrote it (``use_names``);
    a spec without a source is returned as is."""
    return _written.get(spec) or spec.split(":", 1)[-1]


def slug(*parts: str) -> str:
    """A glue-safe name: the specs' references joined by ``_``, every other character ``_``."""
    name = "_".join(p.split(":", 1)[-1] for p in parts)
    return "".join(c if c.isalnum() else "_" for c in name)


def pct(x: float) -> str:
    """A percentage already scaled to 0-100, as prose prints it: ``42%``."""
    return f"{x:.0f}%"
