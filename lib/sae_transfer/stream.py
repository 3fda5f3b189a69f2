"""The one streaming pass the pair measurements share.

Base and finetune run on the same token batches; each batch's activations at the requested hooks go to the
accumulators (``accumulators.py``) and are dropped. Forward passes stop after the deepest hook.
"""

from __future__ import annotations

from typing import Iterable

import torch
from tqdm.auto import tqdm

from .hooks import stop_layer


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
