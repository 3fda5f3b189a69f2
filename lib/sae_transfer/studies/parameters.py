"""How a chapter declares a parameter: once, as a field of its ``Study`` dataclass, with a default, a one-line doc
and a check.

Everything else is derived from the fields: the notebook's parameters cell (``parameters_cell``, written by
``python -m sae_transfer launch`` and held by a test), the types and checks of ``run``/``book`` (``-p``, YAML files,
profiles), the ``list`` command and the parameters page of the book. A check takes the value and raises
``ValueError`` with one line naming the parameter and what is valid; it runs before any kernel starts.

The checks several chapters' parameters share (model specs, datasets, sizes, ...) live here.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping

from sae_transfer.core.memory import check_memory
from sae_transfer.core.specs import DATA_SOURCES
from sae_transfer.data import answerable, verses
from sae_transfer.data.tokens import TokenSpec, check_token_spec
from sae_transfer.models.load import check_dtype, parse_spec, resolve_device
from sae_transfer.passes.outliers import Outliers
from sae_transfer.zoo.recipe import load_recipe

TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str, "bool": bool,
                                             "list": list, "dict": dict}


class Unfit(ValueError):
    """A value too large for the pair, the data or the memory, and ``fits``, the largest that fits (None: none
    does). A parameter left at its default is then set to ``fits`` (``fitted``); one the user set is refused."""

    def __init__(self, message: str, param: str, fits: Any = None):
        super().__init__(message)
        self.param, self.fits = param, fits


def fitted(check: Callable[[dict[str, Any]], None], params: dict[str, Any], left: set[str] | frozenset[str],
           notes: list[str]) -> dict[str, Any]:
    """``params`` once ``check(params)`` passes, each parameter it finds ``Unfit`` set to the largest value that
    fits when the user ``left`` it at its default (a line for each in ``notes``); raises as ``check`` does for a
    value the user gave, or where nothing fits."""
    left = set(left)
    while True:
        try:
            check(params)
            return params
        except Unfit as e:
            if e.fits is None or e.param not in left:
                raise
            left.discard(e.param)  # lowered once: if that does not fit either, it is refused
            notes.append(f"{e.param}={e.fits} (its default {params[e.param]} does not fit: {e})")
            params = {**params, e.param: e.fits}


def param(default: Any, doc: str, check: Callable[[Any], None] | None = None):
    """A chapter parameter: a keyword-only dataclass field holding its ``doc`` and ``check``."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Declared:
    """One parameter as every derived view reads it."""

    name: str
    type: str
    default: Any
    doc: str
    check: Callable[[Any], None] | None


def declared(study: type) -> tuple[Declared, ...]:
    """The parameters of a ``Study`` dataclass, in declaration order."""
    out = []
    for f in dataclasses.fields(study):
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind not in TYPES:
            raise TypeError(f"{study.__module__}.{f.name}: annotate it with one of {sorted(TYPES)}")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out.append(Declared(f.name, kind, default, f.metadata.get("doc", ""), f.metadata.get("check")))
    return tuple(out)


def _literal(value: Any) -> str:
    """Python source for a default, strings in double quotes as the notebooks write them."""
    return json.dumps(value) if isinstance(value, (str, list, dict)) else repr(value)


def parameters_cell(study: type, runner_params: tuple[str, ...] = ("run_dir",)) -> str:
    """The source of the notebook's parameters cell: one annotated assignment per parameter, its doc as comment."""
    lines = [f"{p.name}: {p.type} = {_literal(p.default)}  # {p.doc}" for p in declared(study)]
    return "\n".join(lines + [f'{r}: str = ""  # set by the runner' for r in runner_params])


class Config:
    """A measurement's configuration (what its cache key holds), built by keyword from a chapter's parameters:
    ``FeatureStudy.of(globals(), top_k=3)`` in a notebook takes each field of that name, lists as tuples."""

    @classmethod
    def of(cls, params: Mapping[str, Any], **extra: Any):
        names = {f.name for f in dataclasses.fields(cls)}
        values = {**{k: v for k, v in params.items() if k in names}, **extra}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# ------------------------------------------------------------------------------------------ checks

def rule(text: str):
    """Give a check the words the parameters page shows for it."""
    def mark(check: Callable[[Any], None]) -> Callable[[Any], None]:
        check.rule = text
        return check
    return mark


def rule_of(check: Callable[[Any], None] | None) -> str:
    return getattr(check, "rule", "") if check else ""


def each(check: Callable[[Any], None], name: str, non_empty: bool = True) -> Callable[[list], None]:
    """``check`` on every item of a list (and, with ``non_empty``, at least one item)."""
    def run(values: list) -> None:
        if non_empty and not values:
            raise ValueError(f"{name}=[]: give at least one")
        for v in values:
            check(v)
    return rule(f"{'a non-empty list, each ' if non_empty else 'each '}{rule_of(check)}")(run)


def optional(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """``check``, except that the empty string means "none" and passes."""
    return rule(f"empty for none, or {rule_of(check)}")(lambda v: None if v == "" else check(v))


def prefixed(check: Callable[[Any], None], prefix: str) -> Callable[[Any], None]:
    def run(value) -> None:
        try:
            check(value)
        except ValueError as e:
            raise ValueError(f"{prefix}{e}") from None
    return rule(rule_of(check))(run)


def model(name: str) -> Callable[[str], None]:
    """A model spec (``core.specs``), a ``local:`` directory that exists."""
    return rule("a model spec: zoo:NAME[@STEP], hub:ORG/NAME or local:DIR")(lambda v: parse_spec(v, name) and None)


def sae(name: str) -> Callable[[str], None]:
    return rule("an SAE spec: zoo:NAME, sae_lens:RELEASE:ID or local:DIR")(
        lambda v: parse_spec(v, name, sae=True) and None)


def dataset(name: str) -> Callable[[str], None]:
    return rule(f"a dataset: {DATA_SOURCES}")(
        prefixed(lambda v: check_token_spec(TokenSpec(v, 1, 2, 1)), f"{name}: "))


def positive(name: str, least: int = 1) -> Callable[[int], None]:
    def check(value: int) -> None:
        if value < least:
            raise ValueError(f"{name}={value} must be an integer of at least {least}"
                             + (" (BOS and one token)" if name == "context_size" else ""))
    return rule(f"an integer >= {least}")(check)


def non_negative(name: str) -> Callable[[int], None]:
    def check(value: int) -> None:
        if value < 0:
            raise ValueError(f"{name}={value} must be a non-negative integer")
    return rule("an integer >= 0")(check)


def positive_float(name: str) -> Callable[[float], None]:
    def check(value: float) -> None:
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"{name}={value} must be a positive, finite number")
    return rule("a positive, finite number")(check)


def between(name: str, lo: float, hi: float) -> Callable[[float], None]:
    def check(value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"{name}={value!r}: use a number in [{lo:g}, {hi:g}]")
    return rule(f"a number in [{lo:g}, {hi:g}]")(check)


def verse_language(name: str) -> Callable[[str], None]:
    return rule(f"a language of the parallel verses: {', '.join(verses.TRANSLATIONS)}")(
        lambda v: verses.check_language(v, name))


@rule("block indices (integers >= 0); [] for every block")
def block_indices(value: list) -> None:
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in value):
        raise ValueError(f"layers={value!r}: block indices (integers >= 0); [] for every block")


@rule("a non-empty list of positive integers")
def feature_counts(value: list) -> None:
    if not value or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
        raise ValueError(f"ks={value!r}: a non-empty list of positive feature counts, e.g. [1, 2, 5, 10, 20, 50]")


def probe_size(name: str) -> Callable[[int], None]:
    return rule("a positive multiple of 4")(lambda v: answerable.check_sizes(**{"n_train": 4, "n_test": 4, name: v}))


@rule(f"a non-empty list of {', '.join(answerable.DOMAINS)}")
def domains(value: list) -> None:
    each(lambda v: None, "domains")(value)
    answerable.check_domains(value)


@rule("a zoo profile of params/zoo/ or a recipe path")
def zoo_recipe(value: str) -> None:
    prefixed(load_recipe, "zoo: ")(value)


@rule("auto, cpu, cuda or cuda:N")
def device(value: str) -> None:
    resolve_device(value)


@rule("none, a multiple of the mean norm (2x) or a norm (289)")
def outliers(value: str) -> None:
    Outliers.parse(value)


dtype = rule("float32, bfloat16 or float16")(check_dtype)
memory = rule("auto, a size (8GB) or a share (30%)")(check_memory)
MEMORY_DOC = "memory a step may take beyond the weights, loading included: auto (half of what is free), 8GB, 30%"
