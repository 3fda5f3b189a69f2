"""Accumulators for the streaming pass: small objects fed batch after batch, holding only running sums and
fixed-bin histograms, so memory never grows with the number of tokens.

Every accumulator has ``update(tokens, base, finetune)`` and ``result() -> dict`` of plain data. ``tokens`` is
[batch, pos]; ``base`` and ``finetune`` map hook names to activations [batch, pos, d].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Bins:
    """Fixed histogram bins on [lo, hi]; values outside land in the edge bins (counted, never dropped)."""

    lo: float
    hi: float
    n: int

    def edges(self) -> list[float]:
        return torch.linspace(self.lo, self.hi, self.n + 1).tolist()

    def counts(self, x: torch.Tensor) -> torch.Tensor:
        idx = ((x.double() - self.lo) / (self.hi - self.lo) * self.n).floor().clamp(0, self.n - 1).long()
        return torch.bincount(idx.flatten(), minlength=self.n)


COS_BINS = Bins(-1.0, 1.0, 200)
REL_BINS = Bins(0.0, 2.0, 200)
LOG_NORM_BINS = Bins(-2.0, 4.0, 240)


class ResidualSimilarity:
    """Base vs finetune residuals at one hook, token by token.

    Per token: cosine similarity, Euclidean distance ``||a - b||`` and relative distance ``||a - b|| / ||a||``
    (absolute distance is not comparable across models), and both norms. Position 0 (BOS) is kept apart: it
    dominates norms, so aggregates exclude it and report it separately.
    """

    def __init__(self, hook: str, context_size: int):
        self.hook = hook
        self.T = context_size
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
        self.n = 0
        self.sums = {k: 0.0 for k in ("cos", "cos2", "dist", "rel", "norm_base", "norm_ft")}
        self.pos = {k: z(context_size) for k in ("cos", "dist", "rel", "norm_base", "norm_ft")}
        self.pos_n = z(context_size)
        self.hist = {"cos": torch.zeros(COS_BINS.n, dtype=torch.long), "rel": torch.zeros(REL_BINS.n, dtype=torch.long),
                     "log10_norm_base": torch.zeros(LOG_NORM_BINS.n, dtype=torch.long),
                     "log10_norm_ft": torch.zeros(LOG_NORM_BINS.n, dtype=torch.long)}
        self.batch_means: list[float] = []  # one float per batch: bounded by the number of batches

    @torch.no_grad()
    def update(self, tokens: torch.Tensor, base: dict, finetune: dict) -> None:
        a, b = base[self.hook].float(), finetune[self.hook].float()  # [batch, pos, d]; sums below in fp64
        na, nb = a.norm(dim=-1), b.norm(dim=-1)  # [batch, pos]
        cos = (a * b).sum(-1) / (na * nb).clamp_min(1e-12)
        dist = (a - b).norm(dim=-1)
        rel = dist / na.clamp_min(1e-12)
        T = a.shape[1]
        per_token = {"cos": cos, "dist": dist, "rel": rel, "norm_base": na, "norm_ft": nb}
        for k, v in per_token.items():
            self.pos[k][:T] += v.sum(0).cpu()
        self.pos_n[:T] += a.shape[0]
        body = slice(1, None)  # aggregates exclude position 0
        c = cos[:, body]
        self.n += c.numel()
        self.sums["cos"] += float(c.sum())
        self.sums["cos2"] += float((c * c).sum())
        self.sums["dist"] += float(dist[:, body].sum())
        self.sums["rel"] += float(rel[:, body].sum())
        self.sums["norm_base"] += float(na[:, body].sum())
        self.sums["norm_ft"] += float(nb[:, body].sum())
        self.hist["cos"] += COS_BINS.counts(c).cpu()
        self.hist["rel"] += REL_BINS.counts(rel[:, body]).cpu()
        self.hist["log10_norm_base"] += LOG_NORM_BINS.counts(na[:, body].clamp_min(1e-12).log10()).cpu()
        self.hist["log10_norm_ft"] += LOG_NORM_BINS.counts(nb[:, body].clamp_min(1e-12).log10()).cpu()
        self.batch_means.append(float(c.mean()))

    def result(self) -> dict:
        if self.n == 0:
            raise ValueError(f"ResidualSimilarity({self.hook}): no tokens beyond position 0 were seen")
        n = self.n
        mean_cos = self.sums["cos"] / n
        pos_mean = {k: (v / self.pos_n.clamp_min(1)).tolist() for k, v in self.pos.items()}
        return {
            "hook": self.hook, "n_tokens": n,
            "cos_mean": mean_cos, "cos_std": max(self.sums["cos2"] / n - mean_cos**2, 0.0) ** 0.5,
            "dist_mean": self.sums["dist"] / n, "rel_dist_mean": self.sums["rel"] / n,
            "norm_base_mean": self.sums["norm_base"] / n, "norm_ft_mean": self.sums["norm_ft"] / n,
            "pos0": {k: v[0] for k, v in pos_mean.items()},
            "by_position": pos_mean,
            "by_batch_cos": self.batch_means,
            "hist": {k: v.tolist() for k, v in self.hist.items()},
            "bins": {"cos": COS_BINS.edges(), "rel": REL_BINS.edges(), "log10_norm": LOG_NORM_BINS.edges()},
        }
