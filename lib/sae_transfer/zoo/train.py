"""Pretraining and finetuning the zoo's small TransformerLens models, and their held-out loss."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from sae_transfer.zoo.tokens import TokenStream


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    seconds: float = 0.0


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 10% of peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def autocast(precision: str, device: torch.device):
    """The forward and backward passes' context for a zoo ``precision`` (``zoo.recipe.PRECISIONS``)."""
    if precision == "bf16-mixed" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn("zoo precision bf16-mixed on a CPU without bf16 units: training runs slower than in fp32 "
                      "here (a copy of the recipe with precision: fp32 is faster, and builds models of its own)",
                      stacklevel=2)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def tl_loss(model, tokens: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Mean next-token CE of a HookedTransformer on ``tokens`` [batch, ctx]: its logits in ``precision``, the loss
    from them in fp32 (in fp32, exactly ``model(tokens, return_type="loss")``)."""
    from transformer_lens.utils import lm_cross_entropy_loss

    with autocast(precision, tokens.device):
        logits = model(tokens, return_type="logits")  # [batch, ctx, vocab]
    return lm_cross_entropy_loss(logits.float(), tokens)


def hf_loss(model, tokens: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Mean next-token CE of a Hugging Face causal LM on ``tokens`` [batch, ctx], as ``tl_loss`` (in fp32, exactly
    ``model(input_ids=tokens, labels=tokens).loss``: its own loss function, which upcasts the logits)."""
    with autocast(precision, tokens.device):
        logits = model(input_ids=tokens).logits  # [batch, ctx, vocab]
    return model.loss_function(logits=logits, labels=tokens, vocab_size=model.config.vocab_size)


def train_lm(model, streams: dict[str, TokenStream], mix: dict[str, float], steps: int, batch_size: int,
             lr: float, seed: int, warmup: int = 50, weight_decay: float = 0.1,
             on_step: Callable[[int], None] | None = None, desc: str = "train",
             loss_of: Callable | None = None, precision: str = "fp32") -> TrainLog:
    """Train every parameter of ``model`` with AdamW on windows drawn from ``streams`` in proportion ``mix``.

    ``on_step(step)`` runs after each optimiser step (1-based), e.g. to save checkpoints. ``loss_of(model, tokens,
    precision)``: ``tl_loss`` (default) or ``hf_loss``. ``precision``: the passes' (``autocast``); weights,
    gradients, AdamW's state and the loss stay fp32.
    """
    loss_of = loss_of or tl_loss
    if set(mix) - set(streams):
        raise ValueError(f"mix names domains {sorted(set(mix) - set(streams))} that have no stream")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    domains = [d for d in mix if mix[d] > 0]
    weights = np.array([mix[d] for d in domains], dtype=float)
    weights /= weights.sum()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    device = next(model.parameters()).device
    log = TrainLog()
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, unit="step", leave=False)
    for step in bar:
        counts = rng.multinomial(batch_size, weights)
        tokens = torch.cat([streams[d].sample(int(c), rng) for d, c in zip(domains, counts) if c > 0]).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        loss = loss_of(model, tokens, precision)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.tokens_seen += tokens.numel()
        if step % 10 == 0 or step == steps - 1:
            log.steps.append(step + 1)
            log.loss.append(loss.item())
            bar.set_postfix(loss=f"{log.loss[-1]:.3f}")
        if on_step is not None:
            on_step(step + 1)
    log.seconds = time.perf_counter() - t0
    model.eval()
    return log


@torch.no_grad()
def heldout_ce(model, stream: TokenStream, n_windows: int, logits_bytes: int = 1 << 28) -> float:
    """Mean next-token cross-entropy (nats, fp32) over the first ``n_windows`` held-out windows, in batches whose
    fp32 logits [batch, ctx, vocab] fit in ``logits_bytes`` (32 windows for the toy models, fewer for real ones)."""
    device = next(model.parameters()).device
    batch_size = max(1, min(32, logits_bytes // (stream.ctx * model.cfg.d_vocab * 4)))
    total, count = 0.0, 0
    for tokens in stream.sequential(batch_size, n_windows):
        per_token = model(tokens.to(device), return_type="loss", loss_per_token=True)  # [batch, ctx-1]
        total += float(per_token.float().sum())
        count += per_token.numel()
    return total / count
