"""Model, SAE and dataset specs: the strings a user writes, parsed in one place into small frozen objects.

    model:    zoo:NAME[@STEP]     hub:ORG/NAME     local:PATH     (an existing directory alone means local:)
    SAE:      zoo:NAME            sae_lens:RELEASE:SAE_ID           local:PATH
    dataset:  zoo:DOMAIN[/SPLIT]  hub:NAME[:CONFIG]                 json:PATH     verses:LANG[/SPLIT]

Below the edge nobody tests a string's prefix: code asks a spec its ``source``. Specs still travel as their text
(``str(spec)``), which is what results, labels and cache keys hold, so ``parse`` is memoised and cheap. Parsing
checks syntax only; whether a zoo has the name or a directory holds weights is for the loaders' checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

MODEL_SOURCES = "zoo:NAME[@STEP], hub:ORG/NAME or local:PATH"
SAE_SOURCES = "zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH"
DATA_SOURCES = "zoo:DOMAIN[/SPLIT], verses:LANG[/SPLIT], hub:NAME[:CONFIG] or json:PATH"


class SpecError(ValueError):
    """A bad model, SAE, dataset, hook, dtype or device request; the message names the parameter."""


@dataclass(frozen=True)
class ModelSpec:
    """``source``: zoo, hub or local; ``ref``: the zoo model's name, the hub id or the directory; ``step``: a zoo
    finetune's checkpoint, None for its final weights."""

    text: str
    source: str
    ref: str
    step: int | None = None

    @property
    def is_zoo(self) -> bool:
        return self.source == "zoo"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SaeSpec:
    """``source``: zoo, sae_lens or local; ``ref``: the zoo SAE's name, ``RELEASE:SAE_ID`` or the directory."""

    text: str
    source: str
    ref: str

    @property
    def is_zoo(self) -> bool:
        return self.source == "zoo"

    @property
    def release(self) -> tuple[str, str]:
        """A sae_lens spec's (release, SAE id)."""
        release, _, sae_id = self.ref.partition(":")
        return release, sae_id

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class DataSpec:
    """``source``: zoo, verses, hub or json; ``ref``: the zoo domain or the verses' language (``split`` its held-out
    or train part, if named), the hub dataset (``config`` its configuration) or the file."""

    text: str
    source: str
    ref: str
    split: str | None = None
    config: str | None = None

    @property
    def is_zoo(self) -> bool:
        return self.source == "zoo"

    def with_split(self, split: str) -> DataSpec:
        """The same zoo domain's or language's ``split`` (``zoo:code`` -> ``zoo:code/train``); other sources, and
        a spec that already names its split, are returned as they are."""
        return (data_spec(f"{self.text}/{split}") if self.source in ("zoo", "verses") and self.split is None
                else self)

    def __str__(self) -> str:
        return self.text


def _split(text: str, kinds: tuple[str, ...], param: str, valid: str) -> tuple[str, str]:
    kind, sep, ref = str(text).partition(":")
    if sep and kind in kinds and ref:
        return kind, ref
    if "local" in kinds and Path(str(text)).is_dir():
        return "local", str(text)
    raise SpecError(f"{param}={text!r}: unknown source; use {valid}")


@cache
def model_spec(text: str, param: str = "model") -> ModelSpec:
    kind, ref = _split(text, ("zoo", "hub", "local"), param, MODEL_SOURCES)
    if kind != "zoo":
        return ModelSpec(str(text), kind, ref)
    name, _, step = ref.partition("@")
    if step and not step.isdigit():
        raise SpecError(f"{param}={text!r}: the step after @ must be a whole number")
    return ModelSpec(str(text), kind, name, int(step) if step else None)


@cache
def sae_spec(text: str, param: str = "sae") -> SaeSpec:
    kind, ref = _split(text, ("zoo", "sae_lens", "local"), param, SAE_SOURCES)
    if kind == "sae_lens" and ":" not in ref:
        raise SpecError(f"{param}={text!r}: a sae_lens SAE needs RELEASE:SAE_ID")
    return SaeSpec(str(text), kind, ref)


@cache
def data_spec(text: str, param: str = "dataset") -> DataSpec:
    kind, ref = _split(text, ("zoo", "verses", "hub", "json"), param, DATA_SOURCES)
    if kind in ("zoo", "verses"):
        domain, _, split = ref.partition("/")
        return DataSpec(str(text), kind, domain, split=split or None)
    if kind == "hub":
        name, _, config = ref.partition(":")
        return DataSpec(str(text), kind, name, config=config or None)
    return DataSpec(str(text), kind, ref)


def is_zoo(text: str) -> bool:
    """Whether a model, SAE or dataset spec names the zoo (the one prefix test, for code that holds only text)."""
    return str(text).partition(":")[0] == "zoo"
