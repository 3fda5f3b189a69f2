"""Accumulators for the streaming pass: small objects fed batch after batch, holding only running sums and
fixed-bin histograms, so memory never grows with the number of tokens.

The pair accumulators (``ResidualSimilarity``, ``FeaturePairStats``) have ``update(tokens, base, finetune)``,
fed by ``stream.run_pass``: ``tokens`` is [batch, pos]; ``base`` and ``finetune`` map hook names to activations
[batch, pos, d]. A batch may arrive in several updates (micro-batches of whole windows, a memory matter);
``end_batch()`` closes it, so whatever is kept per batch (for intervals) is per statistical batch.
``sae_accumulator.SAEMetrics`` (one model's clean and intervened passes) uses the bins and thresholds defined
here. Each has ``result() -> dict`` of plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


#: A feature fires on a token when its activation exceeds this (the seed's density threshold).
FIRING = 1e-10
#: Features firing on more than this fraction of tokens are "dense".
DENSE = 0.1
#: log10 of nonzero feature activations; the edge bins also count values beyond them.
ACT_BINS = Bins(-6.0, 4.0, 200)
#: log10(density + 1e-10) per feature, the seed's density plots (dead features land at -10).
DENSITY_BINS = Bins(-10.0, 0.0, 100)
#: Bands of base log10 density that colour the parallel-coordinates plot; "regular" is the seed's [-5, -1].
DENSITY_BANDS = (("dead", -math.inf, -9.9), ("rare", -9.9, -5.0), ("regular", -5.0, -1.0), ("dense", -1.0, 0.1))


#: log10(activation + EPS) in the seed's activation error.
EPS = 1e-10
#: Regular features: log10 density in [-5, -1] in both models (the seed's band).
REGULAR = (-5.0, -1.0)


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
        self._batch = [0.0, 0]  # the open batch's cosine sum and count (a batch may arrive in micro-batches)

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
        self._batch = [self._batch[0] + float(c.sum()), self._batch[1] + c.numel()]

    def end_batch(self) -> None:
        """Close the batch ``update`` has been fed (whole or in micro-batches)."""
        if self._batch[1]:
            self.batch_means.append(self._batch[0] / self._batch[1])
        self._batch = [0.0, 0]

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


# ------------------------------------------------------------------------------------------ features

class FeaturePairStats:
    """Per-feature statistics of one SAE on base (x) and finetune (y) activations of the same tokens.

    ``update(tokens, base, finetune)`` as every streaming-pass accumulator. Position 0 (BOS) and tokens where
    either model's residual norm exceeds ``threshold`` (outliers) are left out. Memory: O(d_sae * top_k),
    whatever the number of tokens. ``keep_batches``: also keep each batch's sums (``batch_moments``, one
    [7, d_sae] fp64 tensor a batch, rows ``BATCH_ROWS``; ``batch_n``, its token count) for intervals over token
    batches: memory then grows with the number of batches, never with the number of tokens.
    """

    SUMS = ("x", "y", "xx", "yy", "xy", "log_err")
    BATCH_ROWS = ("x", "y", "xx", "yy", "xy", "fires_x", "fires_y")

    def __init__(self, sae, hook: str, threshold: float = math.inf, top_k: int = 0, keep_batches: bool = False):
        self.sae, self.hook, self.threshold, self.k = sae, hook, threshold, top_k
        self.keep_batches = keep_batches
        self.batch_moments: list[torch.Tensor] = []
        self.batch_n: list[int] = []
        self._batch: tuple[int, torch.Tensor | None] = (0, None)  # the open batch's token count and moments
        d = sae.cfg.d_sae
        self.n = 0
        self.n_outliers = 0
        self.tokens_seen = 0  # global index of the next token, outliers included: contexts are found by it
        self.s = {k: torch.zeros(d, dtype=torch.float64) for k in self.SUMS}
        self.fires = {m: torch.zeros(d, dtype=torch.long) for m in ("x", "y")}
        self.max = {m: torch.zeros(d, dtype=torch.float64) for m in ("x", "y")}
        self.top = {m: RunningTopK(d, top_k) for m in ("x", "y")}

    @torch.no_grad()
    def update(self, tokens, base: dict, finetune: dict) -> None:
        a, b = base[self.hook], finetune[self.hook]  # [B, T, d_model]
        B, T = a.shape[:2]
        idx = self.tokens_seen + torch.arange(B * T)
        self.tokens_seen += B * T
        keep = (a.float().norm(dim=-1) <= self.threshold) & (b.float().norm(dim=-1) <= self.threshold)
        self.n_outliers += int((~keep[:, 1:]).sum())
        keep[:, 0] = False  # BOS: features that fire only there correlate perfectly and say nothing about text
        keep = keep.flatten().cpu()
        if not keep.any():  # every token of this part an outlier: nothing to add (``result`` says if none ever was)
            return
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
        if self.keep_batches:
            moments = torch.stack([x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0),
                                   (fx > FIRING).sum(0).double(), (fy > FIRING).sum(0).double()])
            n, m = self._batch
            self._batch = (n + fx.shape[0], moments if m is None else m + moments)
        for m, f in (("x", fx), ("y", fy)):
            self.fires[m] += (f > FIRING).sum(0)
            self.max[m] = torch.maximum(self.max[m], f.double().max(0).values)
            if self.k:
                self.top[m].update(f, idx)

    def end_batch(self) -> None:
        """Close the batch ``update`` has been fed (whole or in micro-batches)."""
        if self.keep_batches and self._batch[1] is not None:
            self.batch_n.append(self._batch[0])
            self.batch_moments.append(self._batch[1])
        self._batch = (0, None)

    def result(self) -> dict[str, Any]:
        """Per-feature lists [d_sae] (plain floats; NaN where a correlation is undefined)."""
        n, s = self.n, self.s
        if n == 0:
            raise ValueError(f"every token measured at {self.hook} was an outlier (a residual norm over "
                             f"{self.threshold:.4g} in the base or the finetune) or the position-0 token: no feature "
                             "statistic is left; use outliers='none' or a larger multiple such as '10x'")
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
                out[f"top_{name}"] = {"values": self.top[m].values.tolist(), "tokens": self.top[m].index.tolist()}
        return out


class RunningTopK:
    """The ``k`` largest activations of each feature and the global index of their token, over a stream."""

    def __init__(self, d: int, k: int):
        self.k = k
        self.values = torch.full((d, k), -1.0)
        self.index = torch.full((d, k), -1, dtype=torch.long)

    def update(self, f: torch.Tensor, idx: torch.Tensor) -> None:
        """``f`` [n, d] activations of the tokens whose global indices are ``idx`` [n]."""
        k = min(self.k, len(f))
        vals, pos = f.float().T.topk(k, dim=1)
        v = torch.cat([self.values, vals], 1)
        i = torch.cat([self.index, idx[pos]], 1)
        best = v.topk(self.k, dim=1).indices
        self.values, self.index = v.gather(1, best), i.gather(1, best)
