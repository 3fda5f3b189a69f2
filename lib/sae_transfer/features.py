"""Which of the base SAE's features keep their meaning in the finetune: per-feature scores, streamed.

Both models read the same token batches; the base SAE encodes each model's activation at its hook, and every
feature's statistics go to running sums (fp64, [d_sae] each) and a running top-k of its activations, so every
feature is scored in constant memory.

Feature groups are chosen on a *selection* split of tokens and scored on a disjoint *evaluation* split (the seed
chose and scored on different samples by accident; here it is on purpose).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .sae_metrics import FIRING

#: log10(activation + EPS) in the seed's activation error.
EPS = 1e-10
#: Regular features: log10 density in [-5, -1] in both models (the seed's band).
REGULAR = (-5.0, -1.0)


class FeaturePairStats:
    """Per-feature statistics of one SAE on base (x) and finetune (y) activations of the same tokens.

    ``update(tokens, base, finetune)`` as every streaming-pass accumulator; tokens where either model's residual
    norm exceeds ``threshold`` (outliers) are left out. Memory: O(d_sae * top_k), whatever the number of tokens.
    """

    SUMS = ("x", "y", "xx", "yy", "xy", "log_err")

    def __init__(self, sae, hook: str, threshold: float = math.inf, top_k: int = 0):
        self.sae, self.hook, self.threshold, self.k = sae, hook, threshold, top_k
        d = sae.cfg.d_sae
        self.n = 0
        self.n_outliers = 0
        self.tokens_seen = 0  # global index of the next token, outliers included: contexts are found by it
        self.s = {k: torch.zeros(d, dtype=torch.float64) for k in self.SUMS}
        self.fires = {m: torch.zeros(d, dtype=torch.long) for m in ("x", "y")}
        self.max = {m: torch.zeros(d, dtype=torch.float64) for m in ("x", "y")}
        self.top = {m: (torch.full((d, top_k), -1.0), torch.full((d, top_k), -1, dtype=torch.long))
                    for m in ("x", "y")}

    @torch.no_grad()
    def update(self, tokens, base: dict, finetune: dict) -> None:
        a, b = base[self.hook], finetune[self.hook]  # [B, T, d_model]
        B, T = a.shape[:2]
        idx = self.tokens_seen + torch.arange(B * T)
        self.tokens_seen += B * T
        keep = ((a.float().norm(dim=-1) <= self.threshold) & (b.float().norm(dim=-1) <= self.threshold)).flatten()
        keep = keep.cpu()
        self.n_outliers += int((~keep).sum())
        fx = self.sae.encode(a.to(self.sae.dtype)).flatten(0, 1).cpu()[keep]  # [n, d_sae]
        fy = self.sae.encode(b.to(self.sae.dtype)).flatten(0, 1).cpu()[keep]
        idx = idx[keep]
        self.n += fx.shape[0]
        x, y = fx.double(), fy.double()
        s = self.s
        s["x"] += x.sum(0)
        s["y"] += y.sum(0)
        s["xx"] += (x * x).sum(0)
        s["yy"] += (y * y).sum(0)
        s["xy"] += (x * y).sum(0)
        s["log_err"] += ((x + EPS).log10() - (y + EPS).log10()).abs().sum(0)
        for m, f in (("x", fx), ("y", fy)):
            self.fires[m] += (f > FIRING).sum(0)
            self.max[m] = torch.maximum(self.max[m], f.double().max(0).values)
            if self.k:
                self._merge_top(m, f, idx)

    def _merge_top(self, m: str, f: torch.Tensor, idx: torch.Tensor) -> None:
        k = min(self.k, f.shape[0])
        vals, pos = f.T.topk(k, dim=1)  # [d_sae, k]
        old_v, old_i = self.top[m]
        v = torch.cat([old_v, vals.float()], 1)
        i = torch.cat([old_i, idx[pos]], 1)
        best = v.topk(self.k, dim=1).indices
        self.top[m] = (v.gather(1, best), i.gather(1, best))

    def result(self) -> dict[str, Any]:
        """Per-feature lists [d_sae] (plain floats; NaN where a correlation is undefined)."""
        n, s = self.n, self.s
        if n == 0:
            raise ValueError("FeaturePairStats: every token was an outlier or no batch was seen")
        mx, my = s["x"] / n, s["y"] / n
        vx, vy = s["xx"] / n - mx**2, s["yy"] / n - my**2
        cov = s["xy"] / n - mx * my
        const = (vx <= 1e-20) | (vy <= 1e-20)
        act_sim = torch.where(const, torch.full_like(cov, float("nan")), cov / (vx * vy).clamp_min(1e-40).sqrt())
        out = {
            "n_tokens": n, "n_outliers": self.n_outliers,
            "act_sim": act_sim.tolist(),
            "constant_base": int((vx <= 1e-20).sum()), "constant_finetune": int((vy <= 1e-20).sum()),
            "density_base": (self.fires["x"].double() / n).tolist(),
            "density_finetune": (self.fires["y"].double() / n).tolist(),
            "max_base": self.max["x"].tolist(), "max_finetune": self.max["y"].tolist(),
            "mean_base": mx.tolist(), "mean_finetune": my.tolist(),
            "act_error": (s["log_err"] / n).tolist(),
        }
        if self.k:
            for m, name in (("x", "base"), ("y", "finetune")):
                v, i = self.top[m]
                out[f"top_{name}"] = {"values": v.tolist(), "tokens": i.tolist()}
        return out
