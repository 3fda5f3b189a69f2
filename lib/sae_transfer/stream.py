"""The one streaming pass every measuring chapter shares.

Base and finetune run on the same token batches; each batch's activations at the requested hooks go to the
accumulators and are dropped. Forward passes stop after the deepest hook. Results are cached on disk by a
fingerprint of (models, hooks, tokens, accumulators), so rebuilding the book does not recompute them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from .io import fingerprint, write_json_atomic
from .paths import cache_dir


def stop_layer(hooks: Iterable[str], n_layers: int) -> int | None:
    """The block index after which no requested hook fires (None: run the whole model)."""
    layers = []
    for h in hooks:
        parts = h.split(".")
        if parts[0] != "blocks" or not parts[1].isdigit():
            return None  # hook_embed is before block 0, ln_final and unembed need the whole model
        layers.append(int(parts[1]) + 1)
    deepest = max(layers)
    return None if deepest >= n_layers else deepest


@torch.no_grad()
def run_pass(base, finetune, batches: Iterable[torch.Tensor], hooks: list[str], accumulators: list,
             n_batches: int | None = None, desc: str = "stream") -> list[dict]:
    """Feed every batch's activations at ``hooks`` of both models to ``accumulators``; return their results.

    ``batches`` yields token ids [batch, pos]. Memory: one batch of activations per model at a time.
    """
    stop = stop_layer(hooks, base.cfg.n_layers)
    names = set(hooks)
    device = base.cfg.device
    for tokens in tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False):
        tokens = tokens.to(device)
        _, cache_base = base.run_with_cache(tokens, names_filter=lambda n: n in names, stop_at_layer=stop,
                                            return_type=None)
        _, cache_ft = finetune.run_with_cache(tokens, names_filter=lambda n: n in names, stop_at_layer=stop,
                                              return_type=None)
        for acc in accumulators:
            acc.update(tokens, cache_base, cache_ft)
        del cache_base, cache_ft
    return [acc.result() for acc in accumulators]


def cached(kind: str, key: dict, compute: Callable[[], dict]) -> dict:
    """``compute()``'s result, stored under ``<cache>/measure/<kind>-<fingerprint(key)>.json`` (atomic write)."""
    path = cache_dir() / "measure" / f"{kind}-{fingerprint(key)}.json"
    if path.exists():
        return json.loads(path.read_text())["result"]
    result = compute()
    write_json_atomic(path, {"key": key, "result": result})
    return result


def model_identity(spec: str, zoo: str) -> dict:
    """What identifies a model's weights in a cache key: the spec, plus the zoo's fingerprint for zoo models."""
    if spec.startswith("zoo:"):
        from .zoo.build import model_fingerprint
        from .zoo.recipe import load_recipe

        name = spec[4:].partition("@")[0]
        return {"spec": spec, "zoo": model_fingerprint(load_recipe(zoo), name)}
    return {"spec": spec, "path": str(Path(spec.partition(":")[2]).resolve()) if spec.startswith("local:") else None}
