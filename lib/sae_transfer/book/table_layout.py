"""How a table fits the page: a DataFrame wider than the book's text column is shown as several tables of
consecutive columns, each repeating the row labels, so every cell is on screen and in the PDF (a scroll box hides
the right-hand columns, and print cuts them). Headers read as words (``tokens_seen`` as "tokens seen"), truth
values as yes/no. Only what the page shows changes: ``results.json`` and the CSV keep the table whole.

The width is estimated from characters, the way a browser sets these tables in the book's font
(``tests/book/test_build.py`` measures the built smoke book in Chromium and holds every table to the column).
"""

from __future__ import annotations

import math

import pandas as pd

#: Significant digits a table cell shows unless its table asks for others.
DIGITS = 3

#: The box a chapter's output sits in, at the widths the book is read at (661 px of the 740 px column at a 1280 px
#: window), less a margin for the estimate (a table estimated at 700 px measured 723 in Chromium).
COLUMN_PX = 610
#: Per character of a cell, and per cell for its padding, in the book's table font.
CHAR_PX, PAD_PX = 8.2, 20


def _width(values) -> int:
    """Characters of the widest of ``values`` (a header of several words may wrap onto two lines)."""
    out = 0
    for v in values:
        words = str(v).split()
        text = str(v)
        if len(words) > 1:  # a header wraps at its middle space at most
            half = len(text) // 2
            cut = min((i for i, c in enumerate(text) if c == " "), key=lambda i: abs(i - half))
            text = max(text[:cut], text[cut + 1:], key=len)
        out = max(out, len(text))
    return out


def column_px(df: pd.DataFrame, shown: dict) -> dict:
    """Estimated pixels of each column of ``df`` as shown (``shown``: column -> formatted values)."""
    header = lambda c: list(c) if isinstance(c, tuple) else [c]  # noqa: E731 - a column of several levels
    return {c: PAD_PX + CHAR_PX * max(_width(header(c)), _width(shown[c])) for c in df.columns}


def index_px(df: pd.DataFrame) -> float:
    levels = df.index.to_frame(index=False)
    return sum(PAD_PX + CHAR_PX * max(_width([name or ""]), _width(levels[name].astype(str)))
               for name in levels.columns)


def cell(value, digits: int = DIGITS) -> str:
    """A cell as shown: a float to ``digits`` significant digits (a whole part never cut: 1,234 and 0.612, not
    1.23e+03; under 0.001 the shortest of fixed and exponent form, 0.0003 or 3e-05), an integer with thousands
    separators, missing as blank, anything else as its text. NumPy scalars read as their Python values."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or math.isinf(value):
        return f"{value:g}"
    if abs(value) < 1e-3:
        return f"{value:.{digits}g}"
    return f"{value:,.{max(digits - 1 - math.floor(math.log10(abs(value))), 0)}f}"


def in_words(df: pd.DataFrame, column: float = COLUMN_PX) -> pd.DataFrame:
    """Headers and index names in words, truth values as yes/no, and row labels of several levels that would take
    more than half the column turned, from the innermost, into columns (every piece of a split table repeats its
    row labels)."""
    words = lambda name: name.replace("_", " ") if isinstance(name, str) else name  # noqa: E731
    out = df
    while out.index.nlevels > 1 and index_px(out) > column / 2:
        out = out.reset_index(level=out.index.nlevels - 1)
    out = out.rename(columns=words)
    out.index = out.index.set_names([words(n) for n in out.index.names])
    for c in out.columns:
        if out[c].dtype == bool:
            out[c] = out[c].map({True: "yes", False: "no"})
    return out


def pieces(df: pd.DataFrame, formatted: pd.DataFrame, column: float = COLUMN_PX) -> list[list]:
    """The columns of ``df`` in groups of consecutive columns, each group with the row labels narrower than
    ``column`` (a column wider alone gets a group of its own). ``formatted``: ``df``'s cells as shown."""
    widths = column_px(df, {c: formatted[c].tolist() for c in df.columns})
    room = max(column - index_px(df), 0)
    groups, current, used = [], [], 0.0
    for c in df.columns:
        if current and used + widths[c] > room:
            groups.append(current)
            current, used = [], 0.0
        current.append(c)
        used += widths[c]
    return groups + [current] if current or not groups else groups  # a table of no columns is one piece
