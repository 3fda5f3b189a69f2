"""What each zoo artifact's fingerprint is made of. An artifact is current when the fingerprint stored beside
it equals the one its recipe gives now; the builder and the store both ask here, so they cannot disagree."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sae_transfer.core.io import fingerprint, sha256_file, write_json_atomic
from sae_transfer.zoo.data import SOURCES_TABLE, language_sources
from sae_transfer.zoo.pretrained import PRETRAINED
from sae_transfer.zoo.recipe import ZooRecipe


def _pretrained(recipe: ZooRecipe) -> dict:
    """What a pretrained root adds to every fingerprint of its zoo: the pinned weights. Empty for toy zoos, so
    their fingerprints are what they were before pretrained models existed."""
    if recipe.pretrained is None:
        return {}
    source = PRETRAINED[recipe.pretrained]
    return {"pretrained": {"name": recipe.pretrained, "sha256": source.wheel.sha256, "gguf": source.gguf}}


def _precision(recipe: ZooRecipe) -> dict:
    """What a zoo trained in another precision than fp32 adds to its models' and SAEs' fingerprints. Empty for
    fp32, so fingerprints are what they were before zoos could train in bf16."""
    return {} if recipe.precision == "fp32" else {"precision": recipe.precision}


def data_fingerprint(recipe: ZooRecipe, languages: tuple[str, ...] | None = None) -> str:
    """The zoo's corpora and tokenizer; with ``languages``, as if the recipe added only those (what a model that
    never read the others depends on)."""
    languages = recipe.data.languages if languages is None else languages
    data = asdict(recipe.data)
    data["max_chars"] = {d: n for d, n in (data["max_chars"] or {}).items()
                         if d not in recipe.data.languages or d in languages} or None
    data["languages"] = list(languages)
    if not languages:
        del data["languages"]  # a field zoos without other languages never had: their fingerprints stay
    return fingerprint({"data": data, "seed": recipe.seed, "python": sys.version.split()[0],
                        "sources": SOURCES_TABLE + language_sources(languages), "v": 1, **_pretrained(recipe)})


def _languages_read(recipe: ZooRecipe, name: str) -> tuple[str, ...]:
    """The languages a model's weights depend on: in a toy zoo all of the recipe's (its tokenizer is trained on
    them); in a pretrained model's zoo, whose tokenizer is the model's, those it and its ancestors trained on, so
    that adding a language leaves the models that never read it as they were."""
    if recipe.pretrained is None:
        return recipe.data.languages
    read, m = set(), recipe.models[name]
    while m is not None:
        read |= set(m.mix)
        m = recipe.models[m.parent] if m.parent else None
    return tuple(lang for lang in recipe.data.languages if lang in read)


def model_fingerprint(recipe: ZooRecipe, name: str) -> str:
    m = asdict(recipe.models[name])
    for key in ("pretrained", "seed", "blocks"):
        if m[key] is None:
            del m[key]  # fields older models never had: their fingerprints stay what they were
    parent = model_fingerprint(recipe, m["parent"]) if m["parent"] else None
    trained = {} if m.get("pretrained") else _precision(recipe)  # a pretrained root is converted, not trained
    data = data_fingerprint(recipe, _languages_read(recipe, name))
    return fingerprint({"model": m, "parent": parent, "data": data, "seed": recipe.seed,
                        "ctx": recipe.context_size, "v": 1, **trained})


def sae_fingerprint(recipe: ZooRecipe, name: str) -> str:
    s = asdict(recipe.saes[name])
    if s["normalize"] == "none":
        del s["normalize"]  # a field toy SAEs never had
    if s["seed"] is None:
        del s["seed"]
    # v2: SAE training seeded (v1 SAEs depended on the process's random state before training)
    extra = {"exclude_bos": True} if recipe.pretrained else {}
    return fingerprint({"sae": s, "model": model_fingerprint(recipe, s["model"]), "seed": recipe.seed, "v": 2,
                        **extra, **_precision(recipe)})


def card_fingerprint(recipe: ZooRecipe) -> str:
    return fingerprint({"models": {n: model_fingerprint(recipe, n) for n in recipe.models},
                        "saes": {n: sae_fingerprint(recipe, n) for n in recipe.saes},
                        "eval_windows": recipe.eval_windows, "dead_windows": recipe.dead_windows, "v": 1})


RECORD = "fingerprint.json"


def read_record(path: Path) -> dict | None:
    """An artifact's ``fingerprint.json`` (its recipe fingerprint and, since v2, every file's size and sha256);
    None when it is missing or does not parse (then the artifact is rebuilt)."""
    try:
        return json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None


def stored_fingerprint(path: Path) -> str | None:
    record = read_record(path)
    return record.get("fingerprint") if record else None


#: Files of an artifact that log how it was built (wall times, temp paths): recorded and checked like the rest,
#: but not part of its content digest, so a rebuild that gives the same weights gives the same measurement keys.
LOGS = ("train_log.json", "train_info.json", "data_card.json", "runner_cfg.json")


def write_record(path: Path, fp: str, canonical: bool = True) -> None:
    """Written last into a finished artifact: its fingerprint and the size and sha256 of every file in it. Its
    JSON files are first rewritten with sorted keys (``canonical``): sae_lens writes an SAE's config in an order
    that varies between processes, which would give one SAE two digests."""
    if canonical:
        for f in sorted(path.rglob("*.json")):
            if f.name != RECORD:
                write_json_atomic(f, json.loads(f.read_text()))  # sorted keys
    files = {str(f.relative_to(path)): [f.stat().st_size, sha256_file(f)]
             for f in sorted(path.rglob("*")) if f.is_file() and f.name != RECORD}
    write_json_atomic(path / RECORD, {"fingerprint": fp, "files": files})


def _loads(f: Path) -> bool:
    """Whether a file of an artifact recorded before sizes and hashes were (v1) reads back whole."""
    try:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            load_file(str(f))
        elif f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".npy":
            np.load(f, mmap_mode="r")[-1:].copy()
        return True
    except Exception:  # noqa: BLE001 - any failure to read back means damaged
        return False


def damaged_files(path: Path) -> list[str]:
    """Files of a built artifact that are missing or differ from what was recorded at build time. A v1 record
    (no file list) is checked by reading every file back, and upgraded to v2 when all read."""
    record = read_record(path)
    if record is None:
        return [RECORD]
    if "files" not in record:
        bad = [str(f.relative_to(path)) for f in sorted(path.rglob("*")) if f.is_file() and not _loads(f)]
        if not bad:
            write_record(path, record["fingerprint"], canonical=False)
        return bad
    bad = []
    for rel, (size, digest) in record["files"].items():
        f = path / rel
        if not f.is_file() or f.stat().st_size != size or sha256_file(f) != digest:
            bad.append(rel)
    return bad


#: Files whose sha256 matched their build record in this process, by (path, size, mtime): each is hashed once.
_VERIFIED: set[tuple[str, int, int]] = set()


def check_file(path: Path, rel: str, profile: str = "") -> None:
    """Before loading one file of an artifact: it exists, has its recorded size and, the first time this process
    opens it, its recorded sha256 (a file overwritten with other bytes of the same size is never used)."""
    record = read_record(path) or {}
    want = record.get("files", {}).get(rel)
    f = path / rel
    rebuild = (f"run: python -m sae_transfer zoo build{f' --profile {profile}' if profile else ''} "
               "(it rebuilds what is damaged)")
    if not f.is_file() or (want is not None and f.stat().st_size != want[0]):
        got = f"{f.stat().st_size} bytes" if f.is_file() else "missing"
        raise ValueError(f"zoo file {f} is damaged ({got}, {want[0] if want else '?'} bytes at build time); "
                         f"{rebuild}")
    st = f.stat()
    stamp = (str(f), st.st_size, st.st_mtime_ns)
    if want is None or stamp in _VERIFIED:
        return
    if sha256_file(f) != want[1]:
        raise ValueError(f"zoo file {f} differs from what was built (sha256 of its {st.st_size} bytes); {rebuild}")
    _VERIFIED.add(stamp)


def content_digest(path: Path) -> str | None:
    """A hash of every file's recorded sha256: what a measurement of this artifact is keyed by, beside its recipe
    (``check_file`` holds the files to the record). None for an artifact that is not built."""
    record = read_record(path)
    if not record:
        return None
    files = {rel: v for rel, v in (record.get("files") or {}).items() if Path(rel).name not in LOGS}
    return fingerprint(files or record.get("fingerprint"))


def is_current(path: Path, fp: str) -> bool:
    """Built from this recipe and whole: every file as it was written (damaged artifacts are rebuilt)."""
    if stored_fingerprint(path) != fp:
        return False
    bad = damaged_files(path)
    if bad:
        warnings.warn(f"zoo artifact {path} is damaged ({', '.join(bad[:3])}); rebuilding it", stacklevel=2)
    return not bad
