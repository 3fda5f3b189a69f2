"""The one streaming pass the pair measurements share.

Base and finetune run on the same token batches; each batch's activations at the requested hooks go to the
accumulators (``accumulators.py``) and are dropped. Forward passes stop after the deepest hook. A batch goes
through the models in micro-batches of whole windows sized by the ``memory`` budget (``memory.py``).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from tqdm.auto import tqdm

from sae_transfer.core.memory import PassShape, budget_bytes, micro_batch
from sae_transfer.models.hooks import stop_layer


@torch.inference_mode()
def run_pass(base, finetune, batches: Iterable[torch.Tensor], hooks: list[str], accumulators: list,
             n_batches: int | None = None, desc: str = "stream", memory: str = "auto") -> list[dict]:
    """Feed every batch's activations at ``hooks`` of both models to ``accumulators``; return their results.

    ``batches`` yields token ids [batch, pos]. Memory: one micro-batch of activations per model at a time.
    """
    stop = stop_layer(hooks, base.cfg.n_layers)
    names = set(hooks)
    device = base.cfg.device
    d_sae = max([acc.sae.cfg.d_sae for acc in accumulators if hasattr(acc, "sae")], default=0)
    sizes: dict[tuple[int, int], int] = {}
    for tokens in tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False):
        B, T = tokens.shape
        if (B, T) not in sizes:
            shape = PassShape.of(base.cfg, d_sae, T)
            sizes[B, T] = micro_batch(shape.stream_window_bytes(len(hooks)), B, budget_bytes(memory, device),
                                      T, memory)
        for part in tokens.to(device).split(sizes[B, T]):
            _, cache_base = base.run_with_cache(part, names_filter=lambda n: n in names, stop_at_layer=stop,
                                                return_type=None)
            _, cache_ft = finetune.run_with_cache(part, names_filter=lambda n: n in names, stop_at_layer=stop,
                                                  return_type=None)
            for acc in accumulators:
                acc.update(part, cache_base, cache_ft)
            del cache_base, cache_ft
        for acc in accumulators:
            acc.end_batch()
    return [acc.result() for acc in accumulators]


def paired_activations(base, finetune, hook: str, batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Both models' activations at ``hook`` [n, 2, d_model] for each batch of token ids [B, T], BOS left out
    (``n = B * (T - 1)``): what a crosscoder trains on."""
    stop = stop_layer([hook], base.cfg.n_layers)
    for tokens in batches:
        # inference mode only around the forwards: a generator suspended inside the context would leave it on
        # for the training steps that consume what it yields
        with torch.inference_mode():
            acts = [_hook_acts(model, tokens, hook, stop) for model in (base, finetune)]
        yield torch.stack(acts, 1).clone()  # a normal tensor: training reads it


def _hook_acts(model, tokens: torch.Tensor, hook: str, stop: int | None) -> torch.Tensor:
    """[B * (T - 1), d] activations at ``hook``, BOS left out."""
    _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, stop_at_layer=stop,
                                    return_type=None)
    return cache[hook][:, 1:].flatten(0, 1).float().cpu()


def shuffled(batches: Iterable[torch.Tensor], buffer_tokens: int, batch_tokens: int,
             generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Mini-batches [batch_tokens, M, d] drawn from a shuffle buffer of about ``buffer_tokens`` activations
    refilled from ``batches`` ([n, M, d] each, consecutive tokens of a few windows): neighbouring tokens of one
    text would otherwise share every step. Memory: the buffer, never the stream."""
    buf: list[torch.Tensor] = []
    held = 0
    for b in batches:
        buf.append(b)
        held += len(b)
        if held < buffer_tokens:
            continue
        pool = torch.cat(buf)[torch.randperm(held, generator=generator)]
        cut = held // 2 // batch_tokens * batch_tokens or held // batch_tokens * batch_tokens
        yield from pool[:cut].split(batch_tokens)
        buf, held = [pool[cut:]], held - cut  # the rest mixes with what comes next
    if held:
        pool = torch.cat(buf)[torch.randperm(held, generator=generator)]
        yield from (p for p in pool.split(batch_tokens) if len(p) == batch_tokens or len(p) == held)
