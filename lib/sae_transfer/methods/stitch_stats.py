"""Streaming accumulators of two stitched models (``stitched_pair``): linear CKA between every pair of layers of the
two, a stitch's reconstruction quality, the correlation of every pair of features of two SAEs. Each keeps sums of
fixed size, never the tokens."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class LayerCKA:
    """Linear CKA (Kornblith et al. 2019) between each source-model hook and each target-model hook on the same
    tokens: ``||Ac^T Bc||_F^2 / (||Ac^T Ac||_F ||Bc^T Bc||_F)`` with ``Ac``, ``Bc`` the centred activations
    [n, d]. Kept as sums (``A^T B`` [d_a, d_b] per pair, fp64), so it streams; 1 for maps that are a rotation and
    scale of each other, 0 for unrelated ones."""

    def __init__(self, source: list[str], target: list[str]):
        self.source, self.target = source, target
        self.n = 0
        self.sum: dict[str, torch.Tensor] = {}
        self.gram: dict[str, torch.Tensor] = {}
        self.cross: dict[tuple[str, str], torch.Tensor] = {}

    def update(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
        """``a[hook]`` [n, d] of the source model, ``b[hook]`` [n, d] of the target, the same n tokens."""
        xs = {**{("s", h): a[h].double() for h in self.source}, **{("l", h): b[h].double() for h in self.target}}
        self.n += len(next(iter(xs.values())))
        for (side, h), x in xs.items():
            key = f"{side}:{h}"
            self.sum[key] = self.sum.get(key, 0) + x.sum(0)
            self.gram[key] = self.gram.get(key, 0) + x.T @ x
        for hs in self.source:
            for hl in self.target:
                self.cross[hs, hl] = self.cross.get((hs, hl), 0) + xs["s", hs].T @ xs["l", hl]

    def _centred(self, m: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
        return m - torch.outer(sa, sb) / self.n

    def result(self) -> list[list[float]]:
        """[len(source)][len(target)]"""
        norm = {k: self._centred(g, self.sum[k], self.sum[k]).norm() for k, g in self.gram.items()}
        return [[float(self._centred(self.cross[hs, hl], self.sum[f"s:{hs}"], self.sum[f"l:{hl}"]).pow(2).sum()
                       / (norm[f"s:{hs}"] * norm[f"l:{hl}"])) for hl in self.target] for hs in self.source]


class StitchQuality:
    """The maps' errors in raw units over held-out tokens: MSE (per token, summed over dimensions) and explained
    variance ``1 - SSE / total`` each way, with 95% intervals from resampling whole batches (each ``update``)."""

    def __init__(self, st):
        self.st = st
        self.n = 0
        self.se = {"up": 0.0, "down": 0.0}
        self.sum = {"source": 0, "target": 0}
        self.sq = {"source": 0.0, "target": 0.0}
        self.batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per update: scalars, sum_a, sum_b

    @torch.no_grad()
    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.float(), b.float()
        self.n += len(a)
        se_up = float((self.st.map(a, "up") - b).double().pow(2).sum())
        se_down = float((self.st.map(b, "down") - a).double().pow(2).sum())
        self.se["up"] += se_up
        self.se["down"] += se_down
        sq = {}
        for side, x in (("source", a), ("target", b)):
            self.sum[side] = self.sum[side] + x.double().sum(0)
            sq[side] = float(x.double().pow(2).sum())
            self.sq[side] += sq[side]
        self.batches.append((np.array([len(a), se_up, se_down, sq["source"], sq["target"]]),
                             a.double().sum(0).numpy(), b.double().sum(0).numpy()))

    def result(self) -> dict[str, Any]:
        total = {s: self.sq[s] - float(self.sum[s].pow(2).sum()) / self.n for s in self.sq}
        return {"n_tokens": self.n, "mse_up": self.se["up"] / self.n, "mse_down": self.se["down"] / self.n,
                "ev_up": 1 - self.se["up"] / total["target"], "ev_down": 1 - self.se["down"] / total["source"],
                "ci": self.intervals()}

    def intervals(self, n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
        """95% percentile intervals of ``ev_up`` and ``ev_down`` over resampled batches; empty under 4 batches."""
        from scipy.stats import bootstrap

        if len(self.batches) < 4:
            return {}
        scalars = np.stack([b[0] for b in self.batches])  # [batches, 5]
        sums = {"source": np.stack([b[1] for b in self.batches]), "target": np.stack([b[2] for b in self.batches])}
        out = {}
        for name, col, side in (("ev_up", 1, "target"), ("ev_down", 2, "source")):
            sq_col = 3 if side == "source" else 4

            def statistic(idx, axis=-1, col=col, side=side, sq_col=sq_col):
                idx = idx.astype(int)
                t = scalars[idx].sum(-2)  # [..., 5]
                s = sums[side][idx].sum(-2)  # [..., d]
                total = t[..., sq_col] - (s ** 2).sum(-1) / t[..., 0]
                return 1 - t[..., col] / total

            res = bootstrap((np.arange(len(self.batches)),), statistic, n_resamples=n_boot, method="percentile",
                            vectorized=True, batch=50, random_state=np.random.default_rng(seed))
            out[name] = [float(x) for x in res.confidence_interval]
        return out


class FeatureCorrelation:
    """Pearson correlation of every feature of SAE ``a`` with every feature of SAE ``b`` on the same tokens, from
    sums (``F_a^T F_b`` [d_a, d_b], fp64): for each feature its best partner and that correlation, and each
    feature's firing density. A feature that never fires correlates with nothing (0). The cross sums are fixed in
    size but [d_a, d_b] fp64: 16 MB for the zoo's SAEs, 2 GB for two SAEs of 16K features."""

    def __init__(self, d_a: int, d_b: int):
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
        self.n = 0
        self.sa, self.sb, self.qa, self.qb = z(d_a), z(d_b), z(d_a), z(d_b)
        self.fa, self.fb = z(d_a), z(d_b)
        self.cross = z(d_a, d_b)

    def update(self, fa: torch.Tensor, fb: torch.Tensor) -> None:
        """``fa`` [n, d_a], ``fb`` [n, d_b] feature activations of the same n tokens."""
        a, b = fa.double(), fb.double()
        self.n += len(a)
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.qa += a.pow(2).sum(0)
        self.qb += b.pow(2).sum(0)
        self.fa += (a > 0).sum(0)
        self.fb += (b > 0).sum(0)
        self.cross += a.T @ b

    def matrix(self) -> torch.Tensor:
        n = self.n
        cov = self.cross / n - torch.outer(self.sa, self.sb) / n ** 2
        sd_a = (self.qa / n - (self.sa / n) ** 2).clamp_min(0).sqrt()
        sd_b = (self.qb / n - (self.sb / n) ** 2).clamp_min(0).sqrt()
        den = torch.outer(sd_a, sd_b)
        return torch.where(den > 0, cov / den.clamp_min(1e-30), torch.zeros_like(cov))

    def result(self) -> dict[str, list]:
        c = self.matrix()
        best_a, best_b = c.max(1), c.max(0)
        return {"n_tokens": self.n, "density_a": (self.fa / self.n).tolist(), "density_b": (self.fb / self.n).tolist(),
                "corr_a": best_a.values.tolist(), "partner_a": best_a.indices.tolist(),
                "corr_b": best_b.values.tolist(), "partner_b": best_b.indices.tolist()}

