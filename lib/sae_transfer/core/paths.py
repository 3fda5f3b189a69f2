"""Where the project, its caches and its runs live."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # lib/sae_transfer/core/ -> the checkout
CACHE_ENV = "SAE_TRANSFER_CACHE"


def cache_dir() -> Path:
    """Root of everything built or fetched: downloads, corpora, the zoo, chapter runs.

    ``$SAE_TRANSFER_CACHE`` overrides the default ``<project>/.cache`` (git-ignored).
    """
    return Path(os.environ.get(CACHE_ENV) or PROJECT_ROOT / ".cache").resolve()


def check_cache_writable() -> None:
    """One line, before any work, when the cache cannot be written: every command builds, fetches or records there."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as e:
        raise ValueError(f"cache directory {root} cannot be written ({e.strerror}); give a writable one with "
                         f"{CACHE_ENV}=DIR") from None


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"


def params_dir() -> Path:
    return PROJECT_ROOT / "params"


def book_dir() -> Path:
    return PROJECT_ROOT / "book"
