"""The book's chapters and their parameters, and the checks that run on parameters before any kernel starts.

A chapter is a jupytext MyST notebook ``notebooks/<name>.md`` listed as ``book/chapters/<name>`` in
``_toc.yml``; the toc is the one ordered list of chapters. Its parameters are the fields of its study's ``Study``
dataclass (``sae_transfer.studies.<name>.study``): name, type, default, doc and check, declared there once. The
notebook's parameters cell is written from them (``parameters_cell``; a test holds the two equal).
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

import yaml

from sae_transfer.core import io
from sae_transfer.core.paths import PROJECT_ROOT, notebooks_dir, params_dir
from sae_transfer.studies.parameters import TYPES as _TYPES
from sae_transfer.studies.parameters import declared, fitted, parameters_cell, rule_of

#: Parameters the runner sets itself; never listed, never taken from the user.
RUNNER_PARAMS = ("run_dir",)

class ParameterError(ValueError):
    """Bad chapter name or parameter: the CLI prints its one line and exits with status 2."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    doc: str
    check: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Chapter:
    name: str
    title: str
    source: Path
    parameters: tuple[Parameter, ...]
    study: type | None = None  # the ``Study`` dataclass that declares the parameters

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}


def read_notebook(path: Path):
    """The jupytext MyST source as an in-memory nbformat notebook (what papermill executes)."""
    import jupytext

    nb = jupytext.read(path, fmt="md:myst")
    for cell in nb.cells:  # papermill expects every cell to carry a tags list
        cell.metadata.setdefault("tags", [])
    return nb


def study_class(name: str) -> type | None:
    """``sae_transfer.studies.<name>.study.Study``; None for an executed page that is not a chapter."""
    try:
        module = importlib.import_module(f"sae_transfer.studies.{name}.study")
    except ModuleNotFoundError as e:
        if e.name in (f"sae_transfer.studies.{name}", f"sae_transfer.studies.{name}.study"):
            return None
        raise
    return module.Study


def _parameters(study: type | None) -> tuple[Parameter, ...]:
    return tuple(Parameter(p.name, p.type, p.default, p.doc, p.check) for p in declared(study)) if study else ()


def chapter_names() -> list[str]:
    """Chapters in book order, from ``_toc.yml``."""
    toc = (PROJECT_ROOT / "_toc.yml").read_text()
    return re.findall(r"file:\s*book/chapters/([\w-]+)", toc)


def get_chapter(name: str) -> Chapter:
    names = chapter_names()
    if name not in names:
        raise ParameterError(f"unknown chapter {name!r}; valid chapters are {names}")
    return notebook_page(name)


@cache
def notebook_page(name: str) -> Chapter:
    """``notebooks/<name>.md`` as the runner executes it: a chapter, or an executed page that is not one (the
    introduction, the workshop page)."""
    source = notebooks_dir() / f"{name}.md"
    nb = read_notebook(source)
    title = next((line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if line.startswith("# ")), name)
    study = study_class(name)
    return Chapter(name, title, source, _parameters(study), study)


_PARAMETERS_CELL = re.compile(r"(```\{code-cell\} ipython3\n:tags: \[parameters\]\n\n)(.*?)(\n```)", re.S)


def declared_cell(name: str) -> str:
    """The parameters cell ``notebooks/<name>.md`` should hold: written from the chapter's ``Study``."""
    return parameters_cell(study_class(name), RUNNER_PARAMS)


def stale_parameter_cells() -> list[str]:
    """Chapters whose notebook's parameters cell differs from their ``Study`` (empty: in sync)."""
    out = []
    for name in chapter_names():
        m = _PARAMETERS_CELL.search((notebooks_dir() / f"{name}.md").read_text())
        if m is None or m.group(2).strip() != declared_cell(name):
            out.append(name)
    return out


def write_parameter_cells() -> list[str]:
    """Rewrite each chapter notebook's parameters cell from its ``Study``; returns the chapters rewritten."""
    written = []
    for name in stale_parameter_cells():
        path = notebooks_dir() / f"{name}.md"
        text = path.read_text()
        if _PARAMETERS_CELL.search(text) is None:
            raise ParameterError(f"{path}: no code cell tagged parameters to write the Study's parameters into")
        io.write_text_atomic(path, _PARAMETERS_CELL.sub(lambda m: m.group(1) + declared_cell(name) + m.group(3),
                                                        text, count=1))
        notebook_page.cache_clear()
        written.append(name)
    return written


def parameters_markdown() -> str:
    """The parameters page of the book: every chapter's parameters, from their ``Study`` dataclasses."""
    lines = ["# Parameters", "",
             "Every chapter's parameters, written from the `Study` dataclass that declares them (its type, default, "
             "doc and check); set them with `-p NAME VALUE`, a YAML file (`-f`) or a profile (`--profile`). A value "
             "that fails its check is refused in one line, with exit status 2, before any kernel starts.", ""]
    for c in all_chapters():
        lines += [f"## {c.title}", "", f"`python -m sae_transfer run {c.name}`, declared in "
                  f"`lib/{c.study.__module__.replace('.', '/')}.py`.", "",
                  "| parameter | default | what it is |", "|---|---|---|"]
        cell = lambda text: str(text).replace("|", "\\|")
        # three columns fit the text column: the type beside the name, the valid values after the doc
        lines += [f"| `{p.name}` ({p.type}) | `{cell(json.dumps(p.default))}` | {cell(p.doc)}"
                  + (f"; valid: {cell(rule_of(p.check))}" if rule_of(p.check) else "") + " |" for p in c.parameters]
        lines.append("")
    return "\n".join(lines)


def all_chapters() -> list[Chapter]:
    return [get_chapter(n) for n in chapter_names()]


def coerce(chapter: Chapter, name: str, value: Any) -> Any:
    """Check one value against the declared type; strings from the command line are parsed as YAML."""
    params = {p.name: p for p in chapter.parameters}
    if name not in params:
        raise ParameterError(f"unknown parameter {name!r} for chapter {chapter.name!r}; "
                             f"valid parameters are {sorted(params)}")
    p = params[name]
    if isinstance(value, str) and p.type != "str":
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    want = _TYPES[p.type]
    if isinstance(value, bool) and p.type in ("int", "float") or not isinstance(value, want):
        raise ParameterError(f"parameter {name!r} of chapter {chapter.name!r} must be {p.type}, "
                             f"got {value!r} ({type(value).__name__})")
    if p.type == "float":
        value = float(value)
    return value


def profiles() -> list[str]:
    return sorted(p.stem for p in (params_dir() / "book").glob("*.yaml"))


def _profile(profile: str) -> dict[str, Any]:
    path = params_dir() / "book" / f"{profile}.yaml"
    if not path.exists():
        raise ParameterError(f"unknown profile {profile!r}; valid profiles are {profiles()}")
    return read_yaml(path, "profile") or {}


def profile_params(profile: str, chapter: str) -> dict[str, Any]:
    return dict(_profile(profile).get(chapter) or {})


def profile_chapters(profile: str) -> tuple[str, ...]:
    """The chapters a profile's book holds (``chapters: [...]``), in book order; empty: every chapter. A real model
    family with one size has no second size for the sizes chapter, so its profile leaves that chapter out."""
    return book_chapters(_profile(profile).get("chapters") or [], f"profile {profile!r}")


def book_chapters(listed: Any, where: str) -> tuple[str, ...]:
    """A book's ``chapters: [...]`` (a profile's or a parameter file's), checked, in book order."""
    names = chapter_names()
    bad = [c for c in listed if c not in names] if isinstance(listed, list) else [listed]
    if bad:
        raise ParameterError(f"{where}: chapters={listed!r} must list chapters; valid chapters are {names}")
    return tuple(c for c in names if c in listed)


def profile_parts(profile: str) -> list:
    """Further parts of a profile's book: ``[{profile, caption}]``, each every chapter with another profile."""
    parts = _profile(profile).get("parts") or []
    if not isinstance(parts, list):
        raise ParameterError(f"profile {profile!r}: parts must be a list of {{profile, caption}} mappings")
    return parts


def read_yaml(path: Path, what: str) -> Any:
    try:
        return io.read_yaml(path, what)
    except ValueError as e:
        raise ParameterError(str(e)) from None


def file_params(path: Path, chapter: Chapter) -> dict[str, Any]:
    """This chapter's parameters from a file that is flat (``name: value``) or has one section per chapter.

    A key holding a mapping is a section (no chapter parameter is a mapping); a file with sections holds only
    sections, each named after a chapter.
    """
    data = read_yaml(path, "parameter file") or {}
    if not isinstance(data, dict):
        raise ParameterError(f"parameter file {str(path)!r} must hold a mapping of parameter names to values")
    data = {k: v for k, v in data.items() if k != "chapters"}  # which chapters a book holds (book_chapters)
    dict_params = {p.name for p in chapter.parameters if p.type == "dict"}
    sections = [k for k, v in data.items() if isinstance(v, dict) and k not in dict_params]
    if not sections:
        return data
    names = chapter_names()
    for key in data:
        if key not in sections:
            raise ParameterError(f"parameter file {str(path)!r} mixes sections ({sections[0]!r}) with a flat "
                                 f"parameter ({key!r}); put every parameter under its chapter's section")
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"parameter file {str(path)!r}: section {key!r} is not a chapter{hint}; "
                                 f"valid sections are {names}")
    return data.get(chapter.name) or {}


def resolve_params(chapter: Chapter, profile: str | None = None, files: list[Path] = (),
                   overrides: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """Defaults <- profile section <- each YAML file (flat, or with a section per chapter) <- ``-p`` pairs.

    Raises ParameterError (one line, naming the parameter) on any bad name, type or value.
    """
    params = chapter.defaults()
    layers = _layers(chapter, profile, files, overrides)
    for layer in layers:
        for name, value in layer.items():
            params[name] = coerce(chapter, name, value)
    for p in chapter.parameters:
        if p.check is not None:
            try:
                p.check(params[p.name])
            except ValueError as e:
                raise ParameterError(str(e)) from None
    if hasattr(chapter.study, "check"):  # checks across parameters, once each one is valid
        try:
            notes: list[str] = []
            left = set(params) - {name for layer in layers for name in layer}
            params = fitted(lambda p: chapter.study(**p).check(), params, left, notes)
            say_fitted(chapter.name, notes)
        except ValueError as e:
            raise ParameterError(str(e)) from None
    return params


def _layers(chapter: Chapter, profile: str | None, files, overrides) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = []
    if profile:
        layers.append(profile_params(profile, chapter.name))
    for f in files:
        layers.append(file_params(Path(f), chapter))
    layers.append(dict(overrides))
    return layers


def left_at_default(chapter: Chapter, profile: str | None = None, files: list[Path] = (),
                    overrides: list[tuple[str, str]] = ()) -> frozenset[str]:
    """The parameters no profile, file or ``-p`` gave: the ones a check may lower to fit the pair."""
    return frozenset(chapter.defaults()) - {name for layer in _layers(chapter, profile, files, overrides)
                                            for name in layer}


def say_fitted(chapter: str, notes: list[str]) -> None:
    """On stderr, each default that was lowered to fit (``studies.parameters.fitted``): the run goes on."""
    for note in notes:
        print(f"{chapter}: using {note}", file=sys.stderr)
