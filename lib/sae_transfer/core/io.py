"""Atomic writes and content fingerprints: nothing half-written is ever mistaken for complete."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
from filelock import FileLock


def json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a sibling temp file, then rename over ``path`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; on success it replaces ``final`` in one rename.

    One writer at a time holds ``final``'s lock (another process building it waits), so the ``.tmp-*`` directories
    it clears are those of a build that was killed, never one in progress.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(final.parent / f".{final.name}.lock"):
        for stale in final.parent.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
        try:
            yield tmp
            old = final.with_name(f".old-{final.name}-{os.getpid()}") if final.exists() else None
            if old is not None:
                os.replace(final, old)
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def fingerprint(obj: Any) -> str:
    """Short stable hash of a JSON-able object (recipes, parameters, file digests)."""
    blob = json.dumps(obj, sort_keys=True, default=json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _UniqueKeys(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *defaults``: the keys beside it override the merged ones, by design
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


@functools.lru_cache(maxsize=256)
def _parsed_yaml(text: str) -> Any:
    """YAML ``text`` parsed, memoised by the text itself: the pure-Python parser takes 5 ms for a zoo recipe, which
    every model's and SAE's cache key reads (10 of the 68 s of the smoke book's predict chapter)."""
    return yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 - a SafeLoader


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content, or a one-line ``ValueError`` naming ``what`` it is, the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory; give a YAML file")
    try:
        return copy.deepcopy(_parsed_yaml(path.read_text()))  # a copy: callers may change what they read
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{what} {str(path)!r} is not valid YAML: "
                         f"{getattr(e, 'problem', None) or type(e).__name__}{where}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {str(path)!r} cannot be read: {e}") from None


#: Written into every directory the project makes for its output (a run, a book, a check): a directory that holds
#: files but not this one is the user's, and the project never deletes or overwrites it.
MARKER = ".sae-transfer"


def mark_ours(directory: Path) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / MARKER).write_text("This directory was written by sae_transfer; it may replace what is here.\n")


def foreign_file(directory: Path, legacy: Callable[[Path], bool] = lambda d: False) -> str | None:
    """The first file of ``directory`` the project did not write, or None: it is missing, empty, marked as the
    project's, or ``legacy`` recognises it as written by a version from before the marker."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    entries = sorted(p.name for p in directory.iterdir())
    if not entries or MARKER in entries or legacy(directory):
        return None
    return entries[0]
