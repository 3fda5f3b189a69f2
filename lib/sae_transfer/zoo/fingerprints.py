"""What each zoo artifact's fingerprint is made of. An artifact is current when the fingerprint stored beside
it equals the one its recipe gives now; the builder and the store both ask here, so they cannot disagree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..io import fingerprint
from .data import SOURCES_TABLE
from .recipe import ZooRecipe


def data_fingerprint(recipe: ZooRecipe) -> str:
    return fingerprint({"data": recipe.data, "seed": recipe.seed, "python": sys.version.split()[0],
                        "sources": SOURCES_TABLE, "v": 1})


def model_fingerprint(recipe: ZooRecipe, name: str) -> str:
    m = recipe.models[name]
    parent = model_fingerprint(recipe, m.parent) if m.parent else None
    return fingerprint({"model": m, "parent": parent, "data": data_fingerprint(recipe), "seed": recipe.seed,
                        "ctx": recipe.context_size, "v": 1})


def sae_fingerprint(recipe: ZooRecipe, name: str) -> str:
    s = recipe.saes[name]
    # v2: SAE training seeded (v1 SAEs depended on the process's random state before training)
    return fingerprint({"sae": s, "model": model_fingerprint(recipe, s.model), "seed": recipe.seed, "v": 2})


def card_fingerprint(recipe: ZooRecipe) -> str:
    return fingerprint({"models": {n: model_fingerprint(recipe, n) for n in recipe.models},
                        "saes": {n: sae_fingerprint(recipe, n) for n in recipe.saes},
                        "eval_windows": recipe.eval_windows, "dead_windows": recipe.dead_windows, "v": 1})


def stored_fingerprint(path: Path) -> str | None:
    f = path / "fingerprint.json"
    return json.loads(f.read_text())["fingerprint"] if f.exists() else None


def is_current(path: Path, fp: str) -> bool:
    return stored_fingerprint(path) == fp
