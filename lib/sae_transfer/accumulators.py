"""Accumulators for the streaming pass: small objects fed batch after batch, holding only running sums and
fixed-bin histograms, so memory never grows with the number of tokens.

The pair accumulators (``ResidualSimilarity``, ``FeaturePairStats``) have ``update(tokens, base, finetune)``,
fed by ``stream.run_pass``: ``tokens`` is [batch, pos]; ``base`` and ``finetune`` map hook names to activations
[batch, pos, d]. ``SAEMetrics`` is fed one model's clean and intervened passes by ``sae_metrics.sae_pass``.
Each has ``result() -> dict`` of plain data.
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


# ------------------------------------------------------------------------------------------ SAE metrics

def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


class _Subset:
    """Running sums over one subset of tokens (all, or non-outliers)."""

    def __init__(self, d_in: int, d_sae: int):
        f64 = dict(dtype=torch.float64)
        self.n = 0  # tokens
        self.n_ce = 0  # tokens with a next token (CE); KL and the rest count all tokens
        self.s: dict[str, float] = {k: 0.0 for k in (
            "l0", "rss", "sq_norm", "cos", "norm_ratio", "ev_token", "ce_clean", "ce_spliced", "ce_zero",
            "kl_spliced", "kl_zero")}
        self.sum_x = torch.zeros(d_in, **f64)
        self.fires = torch.zeros(d_sae, dtype=torch.long)
        self.act_sum = torch.zeros(d_sae, **f64)
        self.hist = torch.zeros(ACT_BINS.n, dtype=torch.long)
        # Each batch's scalar sums and sum_x [d_in], kept for intervals over token batches (a few numbers a
        # batch: the running sums above stay the only per-feature state).
        self.per_batch: list[tuple[list[float], torch.Tensor]] = []

    @staticmethod
    def batch_sums(x, feats, x_hat, ce, ce_valid, kl) -> dict[str, Any] | None:
        """One batch's contribution: x, x_hat [n, d_in]; feats [n, d_sae]; ce: {clean, spliced, zero} [n];
        ce_valid [n] (positions with a next token); kl: {spliced, zero} [n]. None for an empty subset."""
        n = x.shape[0]
        if n == 0:
            return None
        x, x_hat = x.float(), x_hat.float()
        fire = feats > FIRING
        rss = (x - x_hat).pow(2).sum(-1)
        nx, nxh = x.norm(dim=-1), x_hat.norm(dim=-1)
        # The per-token definition centres on this batch's mean per dimension (SAELens's "legacy" explained
        # variance, Kissane et al.'s definition); the pooled ones centre over all tokens, from sum_x at the end.
        batch_var = (x - x.mean(0)).pow(2).sum(-1)
        f64 = torch.float64
        s = {"l0": fire.sum(), "rss": rss.sum(dtype=f64), "sq_norm": nx.pow(2).sum(dtype=f64),
             "cos": ((x * x_hat).sum(-1) / (nx * nxh).clamp_min(1e-12)).sum(dtype=f64),
             "norm_ratio": (nxh / torch.where(nx < 1e-4, torch.ones_like(nx), nx)).sum(dtype=f64),
             "ev_token": (1 - rss / batch_var).sum(dtype=f64)}
        s.update({f"ce_{k}": ce[k][ce_valid].sum(dtype=f64) for k in ("clean", "spliced", "zero")})
        s.update({f"kl_{k}": kl[k].sum(dtype=f64) for k in ("spliced", "zero")})
        return {"n": n, "n_ce": int(ce_valid.sum()), "s": {k: float(v) for k, v in s.items()},
                "sum_x": x.sum(0, dtype=f64).cpu(), "fires": fire.sum(0).cpu(),
                "act_sum": feats.sum(0, dtype=f64).cpu(), "hist": ACT_BINS.counts(feats[fire].log10()).cpu()}

    def add(self, b: dict[str, Any] | None) -> None:
        if b is None:  # an empty subset still takes its batch's place, so two models' batches stay paired
            return self.per_batch.append(([0.0] * (2 + len(BATCH_SUMS)), torch.zeros_like(self.sum_x)))
        self.n += b["n"]
        self.n_ce += b["n_ce"]
        for k, v in b["s"].items():
            self.s[k] += v
        self.sum_x += b["sum_x"]
        self.per_batch.append(([float(b["n"]), float(b["n_ce"]), *(b["s"][k] for k in BATCH_SUMS)], b["sum_x"]))
        self.fires += b["fires"]
        self.act_sum += b["act_sum"]
        self.hist += b["hist"]

    def result(self, d_sae: int) -> dict[str, Any]:
        if self.n == 0:
            return {"n_tokens": 0}
        n, s = self.n, self.s
        d = self.sum_x.numel()
        mean_x = self.sum_x / n
        var_dim = s["sq_norm"] / n - float(mean_x.pow(2).sum())  # per-dimension means, summed over dims
        var_pooled = s["sq_norm"] / n - d * float(mean_x.mean()) ** 2  # one scalar mean over tokens and dims
        mse = s["rss"] / n
        ce = {k: s[f"ce_{k}"] / max(self.n_ce, 1) for k in ("clean", "spliced", "zero")}
        kl = {k: s[f"kl_{k}"] / n for k in ("spliced", "zero")}
        density = (self.fires.double() / n)
        return {
            "n_tokens": n,
            "l0": s["l0"] / n, "l0_frac": s["l0"] / n / d_sae,
            "ce_clean": ce["clean"], "ce_spliced": ce["spliced"], "delta_ce": ce["spliced"] - ce["clean"],
            "ce_zero": ce["zero"],
            "ce_recovered": _ratio(ce["zero"] - ce["spliced"], ce["zero"] - ce["clean"]),
            "kl": kl["spliced"], "kl_zero": kl["zero"], "kl_score": _ratio(kl["zero"] - kl["spliced"], kl["zero"]),
            "r2_pooled": 1 - mse / var_pooled if var_pooled > 0 else float("nan"),
            "ev_global": 1 - mse / var_dim if var_dim > 0 else float("nan"),
            "ev_token": s["ev_token"] / n,
            "mse": mse, "cos": s["cos"] / n, "norm_ratio": s["norm_ratio"] / n,
            "mean_norm": (s["sq_norm"] / n) ** 0.5,
            "dead_frac": float((self.fires == 0).double().mean()),
            "dense_frac": float((density > DENSE).double().mean()),
            "density": density.tolist(),
            "mean_act": (self.act_sum / n).tolist(),
            "act_hist": self.hist.tolist(),
            "zero_acts": n * d_sae - int(self.fires.sum()),
            "ci": batch_intervals(self.per_batch),
        }


#: The per-batch sums kept for intervals, after (n, n_ce).
BATCH_SUMS = ("l0", "rss", "sq_norm", "ev_token", "ce_clean", "ce_spliced", "ce_zero", "kl_spliced", "kl_zero")
#: Metrics given a 95% interval over token batches.
CI_METRICS = ("l0", "delta_ce", "ce_recovered", "ev_token", "ev_global", "kl")


def metrics_of_sums(totals: "np.ndarray", sum_x: "np.ndarray") -> dict[str, "np.ndarray"]:
    """The metrics of ``CI_METRICS`` from summed batches: ``totals`` [..., 2 + len(BATCH_SUMS)], ``sum_x``
    [..., d_in] (one row per bootstrap resample)."""
    import numpy as np

    t = {k: totals[..., i] for i, k in enumerate(("n", "n_ce", *BATCH_SUMS))}
    n, n_ce = t["n"], np.maximum(t["n_ce"], 1)
    ce = {k: t[f"ce_{k}"] / n_ce for k in ("clean", "spliced", "zero")}
    var_dim = t["sq_norm"] / n - ((sum_x / n[..., None]) ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"l0": t["l0"] / n, "delta_ce": ce["spliced"] - ce["clean"],
                "ce_recovered": (ce["zero"] - ce["spliced"]) / (ce["zero"] - ce["clean"]),
                "ev_token": t["ev_token"] / n, "ev_global": 1 - (t["rss"] / n) / var_dim, "kl": t["kl_spliced"] / n}


def batch_intervals(per_batch: list, n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals of ``CI_METRICS`` from resampling whole token batches with replacement
    (``scipy.stats.bootstrap``): what the measured tokens can resolve. Empty with fewer than 4 batches."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(per_batch) < 4:
        return {}
    totals = np.array([b[0] for b in per_batch])  # [batches, 2 + len(BATCH_SUMS)]
    sum_x = torch.stack([b[1] for b in per_batch]).numpy()  # [batches, d_in]
    out = {}
    for metric in CI_METRICS:
        def statistic(idx, axis=-1):
            idx = idx.astype(int)
            return metrics_of_sums(totals[idx].sum(-2), sum_x[idx].sum(-2))[metric]
        res = bootstrap((np.arange(len(per_batch)),), statistic, n_resamples=n_boot, method="percentile",
                        vectorized=True, random_state=np.random.default_rng(seed))
        lo, hi = res.confidence_interval
        if np.isfinite(lo) and np.isfinite(hi):
            out[metric] = [float(lo), float(hi)]
    return out


class SAEMetrics:
    """Every metric of one model with one SAE, from running sums over batches (see the module docstring)."""

    def __init__(self, d_in: int, d_sae: int, threshold: float):
        self.d_sae = d_sae
        self.threshold = threshold
        self.all = _Subset(d_in, d_sae)
        self.kept = _Subset(d_in, d_sae)
        self.n_outliers = 0
        self.n_outliers_pos0 = 0

    @torch.no_grad()
    def update(self, x, feats, x_hat, outlier, ce: dict[str, torch.Tensor], kl: dict[str, torch.Tensor]) -> None:
        """x, x_hat [B, T, d_in]; feats [B, T, d_sae]; outlier [B, T] bool; ce: {clean, spliced, zero} [B, T]
        (the last position is ignored); kl: {spliced, zero} [B, T]."""
        valid = torch.ones_like(outlier)
        valid[:, -1] = False
        flat = lambda t: t.flatten(0, 1)
        x, feats, x_hat, out, valid = flat(x), flat(feats), flat(x_hat), outlier.flatten(), valid.flatten()
        ce = {k: v.flatten() for k, v in ce.items()}
        kl = {k: v.flatten() for k, v in kl.items()}
        self.n_outliers += int(out.sum())
        self.n_outliers_pos0 += int(outlier[:, 0].sum())
        every = _Subset.batch_sums(x, feats, x_hat, ce, valid, kl)
        self.all.add(every)
        if not out.any():
            self.kept.add(every)  # the usual case in small models: no outliers, the same sums
            return
        keep = ~out
        self.kept.add(_Subset.batch_sums(x[keep], feats[keep], x_hat[keep], {k: v[keep] for k, v in ce.items()},
                                         valid[keep], {k: v[keep] for k, v in kl.items()}))

    def result(self) -> dict[str, Any]:
        n = self.all.n
        return {"threshold": self.threshold if math.isfinite(self.threshold) else None,
                "outlier_frac": self.n_outliers / n if n else 0.0,
                "outliers_at_pos0": self.n_outliers_pos0,
                "all": self.all.result(self.d_sae), "kept": self.kept.result(self.d_sae)}


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
        keep = (a.float().norm(dim=-1) <= self.threshold) & (b.float().norm(dim=-1) <= self.threshold)
        self.n_outliers += int((~keep[:, 1:]).sum())
        keep[:, 0] = False  # BOS: features that fire only there correlate perfectly and say nothing about text
        keep = keep.flatten().cpu()
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
            self.batch_n.append(fx.shape[0])
            self.batch_moments.append(torch.stack([x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0),
                                                   (fx > FIRING).sum(0).double(), (fy > FIRING).sum(0).double()]))
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
