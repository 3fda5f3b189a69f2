"""How specs become labels and glue-name suffixes: one slugifier for the whole package."""

from __future__ import annotations


def short(spec: str) -> str:
    """``zoo:code`` -> ``code``; ``local:/x/y`` -> ``/x/y``; a spec without a source is returned as is."""
    return spec.split(":", 1)[-1]


def slug(*parts: str) -> str:
    """A glue-safe name: the short forms of ``parts`` joined by ``_``, every other character ``_``."""
    name = "_".join(short(p) for p in parts)
    return "".join(c if c.isalnum() else "_" for c in name)


def pct(x: float) -> str:
    """A percentage already scaled to 0-100, as prose prints it: ``42%``."""
    return f"{x:.0f}%"
