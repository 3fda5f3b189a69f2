"""How far a finetune's weights moved from its base's: the predict chapter's and the atlas's weight deviation."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch


def weight_deviation(base: Iterable[tuple[str, torch.Tensor]], finetune: Mapping[str, torch.Tensor],
                     n_layers: int) -> dict[str, float | list[float]]:
    """||W_ft - W_base|| / ||W_base|| over all parameters (``overall``) and per block (``per_layer``).

    ``base``: (name, tensor) pairs, one at a time (a model's ``named_parameters()``, or tensors read from disk one
    by one); ``finetune``: the finetune's parameters by the same names. Parameters only: buffers such as attention
    masks and -inf fill values are not weights. Sums in float64."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for k, w in base:
        w = w.detach()
        group = f"blocks.{k.split('.')[1]}" if k.startswith("blocks.") else "other"
        num[group] = num.get(group, 0.0) + float((finetune[k].detach().double() - w.double()).pow(2).sum())
        den[group] = den.get(group, 0.0) + float(w.double().pow(2).sum())
    return {"overall": math.sqrt(sum(num.values()) / sum(den.values())),
            "per_layer": [math.sqrt(num[f"blocks.{i}"] / den[f"blocks.{i}"]) for i in range(n_layers)]}
