"""Groups of an SAE's features chosen by how often they fire in two models: the ones every study that
scores features by group shows (regular, dead in one model only)."""

from __future__ import annotations

import torch

from sae_transfer.passes.accumulators import REGULAR


def select_groups(selection: dict, n_regular: int, n_dead: int, seed: int) -> dict[str, list[int]]:
    """Feature groups from the selection split's densities, each a seeded sample of at most the given count.

    ``regular``: log10 density in [-5, -1] in both models; ``dead_in_base`` / ``dead_in_finetune``: never fire
    in that model, fire in the other ("exclusively dead")."""
    db = torch.tensor(selection["density_base"])
    df = torch.tensor(selection["density_finetune"])
    lb, lf = (db + 1e-10).log10(), (df + 1e-10).log10()
    lo, hi = REGULAR
    pools = {"regular": ((lb >= lo) & (lb <= hi) & (lf >= lo) & (lf <= hi)),
             "dead_in_base": (db == 0) & (df > 0), "dead_in_finetune": (df == 0) & (db > 0)}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, mask in pools.items():
        idx = mask.nonzero().flatten()
        n = n_regular if name == "regular" else n_dead
        pick = idx[torch.randperm(len(idx), generator=g)[:n]] if len(idx) > n else idx
        out[name] = sorted(pick.tolist())
    return out
