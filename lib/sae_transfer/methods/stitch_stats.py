"""Streaming accumulators of two stitched models (``stitched_pair``): linear CKA between every pair of layers of the
two, a stitch's reconstruction quality, the correlation of every pair of features of two SAEs. Each keeps sums of
fixed size, never the tokens."""

from __future__ import annotations

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
    variance ``1 - SSE / total`` each way."""

    def __init__(self, st):
        self.st = st
        self.n = 0
        self.se = {"up": 0.0, "down": 0.0}
        self.sum = {"source": 0, "target": 0}
        self.sq = {"source": 0.0, "target": 0.0}

    @torch.no_grad()
    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.float(), b.float()
        self.n += len(a)
        self.se["up"] += float((self.st.map(a, "up") - b).double().pow(2).sum())
        self.se["down"] += float((self.st.map(b, "down") - a).double().pow(2).sum())
        for side, x in (("source", a), ("target", b)):
            self.sum[side] = self.sum[side] + x.double().sum(0)
            self.sq[side] += float(x.double().pow(2).sum())

    def result(self) -> dict[str, float]:
        total = {s: self.sq[s] - float(self.sum[s].pow(2).sum()) / self.n for s in self.sq}
        return {"n_tokens": self.n, "mse_up": self.se["up"] / self.n, "mse_down": self.se["down"] / self.n,
                "ev_up": 1 - self.se["up"] / total["target"], "ev_down": 1 - self.se["down"] / total["source"]}


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

