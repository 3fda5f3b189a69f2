"""The book's chapters and their parameters, and the checks that run on parameters before any kernel starts.

A chapter is a jupytext MyST notebook ``notebooks/<name>.md`` listed as ``book/chapters/<name>`` in
``_toc.yml``; the toc is the one ordered list of chapters. Its parameters are the annotated assignments of the
cell tagged ``parameters``, read with papermill's own inspection (name, type, default, the comment as doc).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

import yaml

from .. import answerable, io
from ..datasets import TokenSpec, check_token_spec
from ..memory import check_memory
from ..models import check_dtype, parse_spec, resolve_device
from ..outliers import Outliers
from ..paths import PROJECT_ROOT, notebooks_dir, params_dir
from ..zoo.recipe import load_recipe

#: Parameters the runner sets itself; never listed, never taken from the user.
RUNNER_PARAMS = ("run_dir",)

_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str, "bool": bool,
                                              "list": list, "dict": dict}


class ParameterError(ValueError):
    """Bad chapter name or parameter: the CLI prints its one line and exits with status 2."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    doc: str


@dataclass(frozen=True)
class Chapter:
    name: str
    title: str
    source: Path
    parameters: tuple[Parameter, ...]

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}


def read_notebook(path: Path):
    """The jupytext MyST source as an in-memory nbformat notebook (what papermill executes)."""
    import jupytext

    nb = jupytext.read(path, fmt="md:myst")
    for cell in nb.cells:  # papermill expects every cell to carry a tags list
        cell.metadata.setdefault("tags", [])
    return nb


def _parameters(nb) -> tuple[Parameter, ...]:
    from papermill.inspection import _infer_parameters  # papermill's own parser of the parameters cell

    out = []
    for p in _infer_parameters(nb):
        if p.name in RUNNER_PARAMS:
            continue
        if p.inferred_type_name not in _TYPES:
            raise ParameterError(f"{p.name}: annotate it with one of {sorted(_TYPES)} in the parameters cell")
        out.append(Parameter(p.name, p.inferred_type_name, yaml.safe_load(p.default), p.help.strip()))
    return tuple(out)


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
    return Chapter(name, title, source, _parameters(nb))


def all_chapters() -> list[Chapter]:
    return [get_chapter(n) for n in chapter_names()]


# ----------------------------------------------------------------------------------- value checks

def _as_parameter_check(check: Callable[[Any], Any], prefix: str = "", each: bool = False):
    """A lib validator (raising ValueError with one clear line) as a parameter check; ``each``: per list item."""
    def run(value) -> None:
        for v in (value if each else [value]):
            try:
                check(v)
            except ValueError as e:
                raise ParameterError(f"{prefix}{e}") from None
    return run


def _zoo_recipe(value: str) -> None:
    load_recipe(value)


def _device(value: str) -> None:
    resolve_device(value)


def _dtype(value: str) -> None:
    check_dtype(value)


def _model_spec(name: str):
    def check(value: str) -> None:
        parse_spec(value, name)
    return check


def _sae_spec(value: str) -> None:
    parse_spec(value, "sae", sae=True)


def _outliers(value: str) -> None:
    Outliers.parse(value)


def _dataset(value: str) -> None:
    check_token_spec(TokenSpec(value, 1, 2, 1))


def _answerable(check: str):
    def run(value) -> None:
        getattr(answerable, check)(value)
    return run


def _probe_sizes(name: str):
    def check(value: int) -> None:
        answerable.check_sizes(**{"n_train": 4, "n_test": 4, name: value})
    return check


def _layers(value: list) -> None:
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in value):
        raise ValueError(f"layers={value!r}: block indices (integers >= 0); [] for every block")


def _ks(value: list) -> None:
    if not value or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
        raise ValueError(f"ks={value!r}: a non-empty list of positive feature counts, e.g. [1, 2, 5, 10, 20, 50]")


def _check_positive(name: str, allow_zero: bool = False, least: int = 1):
    def check(value: int) -> None:
        if allow_zero and value < 0:
            raise ParameterError(f"{name}={value} must be a non-negative integer")
        if not allow_zero and value < least:
            raise ParameterError(f"{name}={value} must be an integer of at least {least}"
                                 + (" (BOS and one token)" if name == "context_size" else ""))
    return check


def _check_positive_float(name: str):
    def check(value: float) -> None:
        if not value > 0 or value != value or value == float("inf"):
            raise ParameterError(f"{name}={value} must be a positive, finite number")
    return check


def _non_empty(name: str):
    def check(value: list) -> None:
        if not value:
            raise ParameterError(f"{name}=[]: give at least one")
    return check


def _all(*checks):
    def run(value) -> None:
        for check in checks:
            check(value)
    return run


#: Checks by parameter name, shared by every chapter that has a parameter of that name.
VALUE_CHECKS: dict[str, Callable[[Any], None]] = {
    "zoo": _as_parameter_check(_zoo_recipe, "zoo: "), "device": _as_parameter_check(_device),
    "dtype": _as_parameter_check(_dtype), "base": _as_parameter_check(_model_spec("base")),
    "finetunes": _all(_non_empty("finetunes"), _as_parameter_check(_model_spec("finetunes"), each=True)),
    "datasets": _all(_non_empty("datasets"), _as_parameter_check(_dataset, "datasets: ", each=True)),
    "sae": _as_parameter_check(_sae_spec), "outliers": _as_parameter_check(_outliers),
    "dataset": _as_parameter_check(lambda v: v == "" or _dataset(v), "dataset: "),
    "layers": _as_parameter_check(_layers), "memory": _as_parameter_check(check_memory),
    "ks": _as_parameter_check(_ks),
    **{n: _as_parameter_check(_probe_sizes(n)) for n in ("n_train", "n_test")},
    "context_size": _check_positive("context_size", least=2),
    "domains": _all(_non_empty("domains"), _as_parameter_check(_answerable("check_domains"))),
    "sae_finetune_lr": _check_positive_float("sae_finetune_lr"), "lr": _check_positive_float("lr"),
    "twin": _as_parameter_check(lambda v: v == "" or _model_spec("twin")(v)),
    "second_sae": _as_parameter_check(lambda v: v == "" or parse_spec(v, "second_sae", sae=True)),
    "base_data": _as_parameter_check(_dataset, "base_data: "),
    **{n: _as_parameter_check(_model_spec(n)) for n in ("small", "large")},
    **{n: _as_parameter_check(lambda v, n=n: parse_spec(v, n, sae=True)) for n in ("small_sae", "large_sae")},
    **{n: _as_parameter_check(_dataset, f"{n}: ") for n in ("steer_from", "steer_to")},
    "stitch_tokens": _check_positive("stitch_tokens", least=4096),
    "sae_checkpoints": _check_positive("sae_checkpoints", least=2),
    "stitch_lr": _check_positive_float("stitch_lr"),
    **{n: _check_positive(n) for n in ("n_tokens", "batch_size", "checkpoint_tokens", "n_select",
                                       "n_regular", "n_dead", "recovery_tokens", "n_show", "n_shift",
                                       "sts_examples", "demo_tokens", "n_boot", "max_tokens",
                                       "context_chars", "train_tokens", "expansion", "k", "batch_tokens",
                                       "top_k", "probe_k")},
    **{n: _check_positive(n, allow_zero=True) for n in ("check_tokens", "sae_finetune_tokens", "n_checkpoints",
                                                        "sae_tokens")},
}


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
    listed = _profile(profile).get("chapters") or []
    names = chapter_names()
    bad = [c for c in listed if c not in names] if isinstance(listed, list) else [listed]
    if bad:
        raise ParameterError(f"profile {profile!r}: chapters={listed!r} must list chapters; valid chapters are {names}")
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
    layers: list[dict[str, Any]] = []
    if profile:
        layers.append(profile_params(profile, chapter.name))
    for f in files:
        layers.append(file_params(Path(f), chapter))
    layers.append(dict(overrides))
    for layer in layers:
        for name, value in layer.items():
            params[name] = coerce(chapter, name, value)
    for name, check in VALUE_CHECKS.items():
        if name in params:
            check(params[name])
    return params
