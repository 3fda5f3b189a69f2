"""What a book is: its parts (a profile's or a user's parameter files, each the chapters it holds), where it is
built and where its chapter runs live. ``build`` runs and builds it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sae_transfer.book.chapters import (ParameterError, all_chapters, book_chapters, chapter_names,
                                        left_at_default, profile_chapters, profile_parts, profiles, read_yaml,
                                        resolve_params)
from sae_transfer.book.preflight import absolute_paths, written_names
from sae_transfer.core.io import mark_ours, write_text_atomic
from sae_transfer.core.paths import PROJECT_ROOT, cache_dir

#: What a book's source tree holds besides its pages: configuration, stylesheet, script and the static pages every
#: book has.
STATIC = ("_config.yml", "_toc.yml", "_static/sae-transfer.css", "_static/sortable-tables.js", "_ext/launch_pages.py",
          "_ext/print_parts.py", "book/methods.md", "book/bibliography.md", "book/references.bib")


@dataclass(frozen=True)
class Part:
    """A run of every chapter with one set of parameters: a profile's (``params/book/<profile>.yaml``) or a user's
    parameter files. The main part's pages go to ``book/chapters/``, a further part's to ``book/<profile>/``."""

    profile: str | None
    caption: str
    pages: str  # directory under book/ that holds the part's pages
    files: tuple[Path, ...] = ()
    chapters: tuple[str, ...] = ()  # the chapters the part holds (its profile's ``chapters``, or the sections of
    # its parameter files), in book order; empty: every chapter

    @property
    def folder(self) -> Path:
        """The folder of the part's pages, relative to the book's root (and to its HTML root)."""
        return Path("book") / self.pages

    def page(self, chapter: str) -> str:
        return f"{self.folder.as_posix()}/{chapter}"

    def static_pages(self, chapter: str) -> str:
        """Where ``copy_pages`` puts a chapter's static pages, relative to the HTML root: beside its page."""
        return f"{self.page(chapter)}-pages"

    def holds(self, chapter: str) -> bool:
        return not self.chapters or chapter in self.chapters


@dataclass(frozen=True)
class Book:
    """Where a book is built (``root``: _config.yml, the toc, book/), its parts, where their chapter runs live and
    the command that builds it (for the status page)."""

    root: Path
    parts: tuple[Part, ...]
    runs: Path
    command: str

    @classmethod
    def from_profile(cls, profile: str) -> "Book":
        """The project's own book: ``profile`` and every part it lists, built in the project tree."""
        return cls(PROJECT_ROOT, tuple(book_parts(profile)), cache_dir() / "runs",
                   f"python -m sae_transfer book --profile {profile}")

    @classmethod
    def from_files(cls, files: list[Path], out: Path, written_out: str | None = None) -> "Book":
        """A book of the user's own parameter files (flat, or a section per chapter), built in ``out`` with
        its runs beside it; its pages give the command as the user wrote it (``written_out``: ``--out`` so)."""
        command = ("python -m sae_transfer book " + " ".join(f"-f {f}" for f in files)
                   + f" --out {written_out or out}")
        files = tuple(Path(f).resolve() for f in files)
        for f in files:
            data = read_yaml(f, "parameter file")
            if not data or not isinstance(data, dict):
                raise ParameterError(f"parameter file {str(f)!r} {'is empty' if not data else 'is not a mapping'}; "
                                     "give parameters (name: value) or one section per chapter (residuals: {...})")
        sections = {k for f in files for k, v in read_yaml(f, "parameter file").items() if isinstance(v, dict)}
        chapters = tuple(c for c in chapter_names() if c in sections) if sections else ()
        listed = [c for f in files for c in book_chapters(read_yaml(f, "parameter file").get("chapters") or [],
                                                          f"parameter file {str(f)!r}")]
        chapters = tuple(c for c in chapter_names() if c in listed) if listed else chapters
        return cls(Path(out).resolve(), (Part(None, "Chapters", "chapters", files, chapters),),
                   Path(out).resolve() / "runs", command)

    def holds(self, chapter: str) -> bool:
        """Whether any part holds ``chapter``."""
        return any(part.holds(chapter) for part in self.parts)

    @property
    def book_dir(self) -> Path:
        return self.root / "book"

    @property
    def html_dir(self) -> Path:
        return self.book_dir / "_build" / "html"

    def run_dir(self, part: Part, chapter: str) -> Path:
        return self.runs / (f"book-{part.profile}" if part.profile else "book") / chapter

    def params(self, part: Part, chapter, device: str | None = None) -> tuple[dict, dict[str, str], frozenset[str]]:
        """The chapter's parameters as the kernel needs them, ``{spec: as written}`` for the pages, and the
        parameters left at their defaults."""
        overrides = [("device", device)] if device and "device" in chapter.defaults() else []
        params = resolve_params(chapter, part.profile, list(part.files), overrides)
        left = left_at_default(chapter, part.profile, list(part.files), overrides)
        return (absolute_paths(params), written_names(params), left) if part.files else (params, {}, left)

    def prepare(self) -> None:
        """A book outside the project gets the project's configuration and reference pages, and an introduction
        of its own that lists the chapters it holds and the command that built it."""
        if self.root == PROJECT_ROOT:
            return
        mark_ours(self.root)
        for rel in STATIC:
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PROJECT_ROOT / rel, dest)
        titles = {c.name: c.title for c in all_chapters()}
        listed = [f"1. [{titles[c]}](chapters/{c}.ipynb)" for c in chapter_names() if self.holds(c)]
        write_text_atomic(self.book_dir / "intro.md", "\n".join([
            "# Do SAEs trained on a base model still work on its finetunes?", "",
            f"This book was built from your parameter files by `{self.command}`. Each chapter opens with the exact "
            "command and parameters that produced it; the [status page](status.md) lists every run, and the "
            "[methods page](methods.md) defines every metric.", "", *listed, ""]))


def book_parts(profile: str) -> list[Part]:
    """The main part and every part the profile lists (``parts: [{profile, caption}]``), each checked."""
    parts = [Part(profile, "Chapters", "chapters", chapters=profile_chapters(profile))]
    for i, entry in enumerate(profile_parts(profile)):
        if not isinstance(entry, dict) or set(entry) != {"profile", "caption"}:
            raise ParameterError(f"profile {profile!r}: parts[{i}] must be a mapping with 'profile' and 'caption'")
        if entry["profile"] not in profiles() or entry["profile"] in (p.profile for p in parts):
            raise ParameterError(f"profile {profile!r}: parts[{i}].profile={entry['profile']!r} must be another "
                                 f"profile, listed once; valid profiles are {profiles()}")
        if profile_parts(entry["profile"]):
            raise ParameterError(f"profile {profile!r}: parts[{i}] names {entry['profile']!r}, which has parts of "
                                 "its own; a part is one profile's chapters")
        parts.append(Part(entry["profile"], str(entry["caption"]), entry["profile"],
                          chapters=profile_chapters(entry["profile"])))
    return parts
