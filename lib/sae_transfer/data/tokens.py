"""Token batches for measurements: a zoo split or a text dataset, cut into BOS-led windows.

A dataset spec is a string, so it fits a parameter file:

    zoo:DOMAIN[/SPLIT]    a zoo corpus (prose, code, math), held-out split unless ``/train`` is given: its tokens
                          for the zoo's models, its text (tokenized by the model's tokenizer) for any other
    hub:NAME[:CONFIG]     a Hugging Face dataset with a ``text`` column, streamed (GPU users with hub access)
    json:PATH             a local JSON-lines file with a ``text`` field (same code path as ``hub:``)
    verses:LANG[/SPLIT]   parallel verses in one language (``data.verses``), held-out chapters unless ``/train``
                          is given: a JSON-lines file the project writes, read as ``json:`` is
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from sae_transfer.core.specs import DATA_SOURCES, DataSpec, data_spec, is_zoo
from sae_transfer.data import verses
from sae_transfer.zoo.data import DOMAINS, LANGUAGES, SPLITS
from sae_transfer.zoo.store import Zoo

SOURCES = DATA_SOURCES


@dataclass(frozen=True)
class TokenSpec:
    """What to measure on: ``n_tokens`` tokens in windows of ``context_size``, ``batch_size`` windows a batch."""

    dataset: str
    n_tokens: int
    context_size: int
    batch_size: int
    seed: int = 0
    skip: int = 0  # windows of the seeded order passed over first: disjoint splits of one dataset

    def n_windows(self) -> int:
        return -(-self.n_tokens // self.context_size)

    def n_batches(self) -> int:
        return -(-self.n_windows() // self.batch_size)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def each(cls, datasets: list[str], n_tokens: int, context_size: int, batch_size: int,
             seed: int = 0) -> list["TokenSpec"]:
        """One spec per dataset, all of the same size and order."""
        return [cls(d, n_tokens, context_size, batch_size, seed) for d in datasets]

    def after(self, n_tokens: int) -> "TokenSpec":
        """The next ``n_tokens`` of the same dataset and order, disjoint from this spec's windows."""
        return TokenSpec(self.dataset, n_tokens, self.context_size, self.batch_size, self.seed,
                         self.skip + self.n_windows())


def check_token_spec(spec: TokenSpec) -> None:
    """Cheap checks with one-line errors naming the parameter, before any model loads."""
    d = data_spec(spec.dataset)
    if d.is_zoo and (d.ref not in DOMAINS + tuple(LANGUAGES) or (d.split and d.split not in SPLITS)):
        raise ValueError(f"dataset={spec.dataset!r}: valid zoo datasets are "
                         f"{[f'zoo:{d}' for d in DOMAINS + tuple(LANGUAGES)]} (optionally /train or /heldout; "
                         "a language where the zoo's recipe adds it)")
    if d.source == "verses" and (d.ref not in verses.TRANSLATIONS or (d.split and d.split not in SPLITS)):
        raise ValueError(f"dataset={spec.dataset!r}: valid verse datasets are "
                         f"{[f'verses:{lang}' for lang in verses.TRANSLATIONS]} (optionally /train or /heldout)")
    for name in ("n_tokens", "context_size", "batch_size"):
        if getattr(spec, name) < (2 if name == "context_size" else 1):
            raise ValueError(f"{name}={getattr(spec, name)} must be positive (context_size at least 2)")


def _records(path: Path, dataset: str) -> Iterator[str]:
    """The ``text`` of each record of a JSON-lines file, each line checked: one JSON object with a ``text``
    string. An error names the file (through ``dataset``) and the line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f"dataset={dataset!r}: line {number} is not JSON ({e.msg} at column {e.colno}); "
                                 "give one JSON object with a 'text' field per line") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                found = (f"'text' is {type(record['text']).__name__}" if isinstance(record, dict) and "text" in record
                         else f"it has {sorted(record) if isinstance(record, dict) else type(record).__name__}")
                raise ValueError(f"dataset={dataset!r}: records need a 'text' string; line {number}: {found}")
            yield record["text"]


def check_dataset_source(dataset: str) -> None:
    """A ``json:`` file exists and every line of it is a JSON object with a ``text`` string (a read of the whole
    file, before any model loads: a bad line found halfway through a pass would waste the pass)."""
    d = data_spec(dataset)
    if d.source != "json":
        return
    path = Path(d.ref)
    if not path.is_file():
        raise ValueError(f"dataset={dataset!r}: {'is a directory' if path.is_dir() else 'no such file'}; "
                         "give a JSON-lines file with a 'text' field per line")
    if next(iter(_records(path, dataset)), None) is None:
        raise ValueError(f"dataset={dataset!r} is empty; give a JSON-lines file with a 'text' field per line")
    for _ in _records(path, dataset):
        pass


def _windows(texts: Iterable[str], tokenizer, context_size: int, want: int) -> list[list[int]]:
    """Up to ``want`` windows of ``context_size`` tokens cut from ``texts`` in order, each led by the tokenizer's
    BOS (a model without one reads windows of text alone)."""
    bos = tokenizer.bos_token_id
    body = context_size - (bos is not None)
    rows, buf = [], []
    for text in texts:
        buf.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        while len(buf) >= body and len(rows) < want:
            rows.append(([bos] if bos is not None else []) + buf[:body])
            buf = buf[body:]
        if len(rows) == want:
            break
    return rows


def _text_path(d: DataSpec, zoo: str) -> Path | None:
    """The JSON-lines file behind a dataset read as text: the ``json:`` file, the zoo domain's text, the verses of
    a language; None for a hub dataset."""
    if d.source == "json":
        return Path(d.ref)
    if d.source == "zoo":
        return Zoo.open(zoo).text_file(d.ref, d.split or "heldout")
    if d.source == "verses":
        return verses.text_file(d.ref, d.split or "heldout")
    return None


def windows_available(spec: TokenSpec, tokenizer, zoo: str = "default") -> int | None:
    """How many of the ``skip + n_windows`` windows ``spec`` reads a ``json:`` file, a language's verses, or a zoo
    domain's text read by another tokenizer, holds (tokenized here, before any model loads); None for a hub
    dataset, which is streamed and shows its length only as it is read."""
    path = _text_path(data_spec(spec.dataset), zoo)
    if path is None:
        return None
    texts = _records(path, spec.dataset)
    return len(_windows(texts, tokenizer, spec.context_size, spec.skip + spec.n_windows()))


def check_text_holds(spec: TokenSpec, tokenizer, zoo: str = "default", asked: str = "n_tokens") -> None:
    """The text behind ``spec`` holds the windows it asks for (``asked`` names the parameters they come from)."""
    got = windows_available(spec, tokenizer, zoo)
    if got is not None and got < spec.skip + spec.n_windows():
        usable = max(got - spec.skip, 0)
        fix = f"use {asked} <= {usable * spec.context_size} or give more text" if usable else "give more text"
        raise ValueError(f"{asked}={spec.n_tokens} needs {spec.n_windows()} windows of {spec.context_size} tokens "
                         f"but dataset={spec.dataset!r} holds {usable}; {fix}")


def zoo_stream(spec: TokenSpec, zoo: str, asked: str = "n_tokens"):
    """The zoo token stream behind ``spec``, after checking that it holds the windows ``spec`` asks for
    (``asked`` names the parameters they come from in the error)."""
    d = data_spec(spec.dataset)
    domain, split = d.ref, d.split
    handle = Zoo.open(zoo)
    handle.check_domain(domain)
    if spec.context_size > handle.recipe.context_size:
        raise ValueError(f"context_size={spec.context_size} exceeds the zoo models' "
                         f"n_ctx={handle.recipe.context_size}")
    stream = handle.streams(split or "heldout", spec.context_size)[domain]
    available = stream.n_windows()
    if spec.skip + spec.n_windows() > available:
        raise ValueError(f"{asked}={spec.n_tokens} needs {spec.n_windows()} windows of {spec.context_size} tokens "
                         f"but {spec.dataset} holds {available - spec.skip}"
                         f"{f' after the {spec.skip} set aside' if spec.skip else ''}; "
                         f"use {asked} <= {(available - spec.skip) * spec.context_size}")
    return stream


def _zoo_windows(spec: TokenSpec, zoo: str) -> torch.Tensor:
    stream = zoo_stream(spec, zoo)
    available = stream.n_windows()
    # A seeded choice of windows, the same for every model measured on this spec.
    order = np.random.default_rng(spec.seed).permutation(available)[spec.skip: spec.skip + spec.n_windows()]
    return torch.cat(list(stream.sequential(1 << 16)))[torch.from_numpy(np.sort(order))]


def _text_windows(spec: TokenSpec, tokenizer, zoo: str = "default") -> torch.Tensor:
    from datasets import load_dataset

    d = data_spec(spec.dataset)
    check_dataset_source(spec.dataset)
    path = _text_path(d, zoo)  # the zoo's text for a model with its own tokenizer, a json: file, verses
    if path is not None:
        ds = load_dataset("json", data_files=str(path), split="train", streaming=True)
    else:
        ds = load_dataset(d.ref, d.config, split="train", streaming=True)
    ds = ds.shuffle(seed=spec.seed, buffer_size=1000) if d.source == "hub" else ds
    rows = _windows((item["text"] for item in ds), tokenizer, spec.context_size, spec.skip + spec.n_windows())
    rows = rows[spec.skip:]
    if len(rows) < spec.n_windows():
        raise ValueError(f"dataset={spec.dataset!r} holds only {len(rows) * spec.context_size} tokens; "
                         f"n_tokens={spec.n_tokens} asked for more")
    return torch.tensor(rows, dtype=torch.long)


def token_windows(spec: TokenSpec, tokenizer=None, zoo: str = "default") -> torch.Tensor:
    """Every window of ``spec`` [n_windows, context_size], each starting with the tokenizer's BOS (where it has
    one). One rule for ``zoo:DOMAIN``: the zoo's token stream for a model that shares the zoo's tokenizer, and the
    zoo's text of that domain, tokenized by the model's own tokenizer, for any other model."""
    check_token_spec(spec)
    if is_zoo(spec.dataset) and Zoo.open(zoo).shares_tokenizer(tokenizer):
        return _zoo_windows(spec, zoo)
    return _text_windows(spec, tokenizer, zoo)


def token_batches(spec: TokenSpec, tokenizer=None, zoo: str = "default") -> Iterator[torch.Tensor]:
    """Yield batches [<= batch_size, context_size] of token ids, every window starting with BOS."""
    windows = token_windows(spec, tokenizer, zoo)
    for i in range(0, len(windows), spec.batch_size):
        yield windows[i:i + spec.batch_size]


def interleaved_batches(specs: list[TokenSpec], tokenizer=None, zoo: str = "default") -> Iterator[torch.Tensor]:
    """The batches of several specs in turn (one of each while each lasts), so that every part of a training run
    sees every dataset."""
    streams = [token_batches(s, tokenizer, zoo) for s in specs]
    while streams:
        for it in list(streams):
            tokens = next(it, None)
            if tokens is None:
                streams.remove(it)
            else:
                yield tokens
