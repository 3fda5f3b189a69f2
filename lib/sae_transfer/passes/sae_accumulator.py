"""The SAE-metric accumulator: one model's clean, spliced and zero-ablated passes with one SAE, as running sums
over all tokens and over non-outliers, plus a few numbers a batch for intervals over token batches.

A batch may arrive in parts (``start_batch``, ``add_part`` per micro-batch of whole windows, ``end_batch``): the
micro-batch is a memory matter (``memory.py``), the batch the statistical unit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sae_transfer.passes.accumulators import ACT_BINS, DENSE, FIRING


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
    def batch_sums(x, feats, x_hat, ce, ce_valid, kl, center) -> dict[str, Any] | None:
        """One batch's (or part of a batch's) contribution: x, x_hat [n, d_in]; feats [n, d_sae]; ce: {clean,
        spliced, zero} [n]; ce_valid [n] (positions with a next token); kl: {spliced, zero} [n]; center [d_in],
        the whole batch's mean of x over this subset. None for an empty subset."""
        n = x.shape[0]
        if n == 0:
            return None
        x, x_hat = x.float(), x_hat.float()
        fire = feats > FIRING
        # Counted and summed in fp32 (exact counts below 2**24 tokens a part, and several times faster than bool
        # or fp64 reductions over [n, d_sae]); the running sums across batches are fp64.
        fires = fire.float().sum(0)  # [d_sae]
        rss = (x - x_hat).pow(2).sum(-1)
        nx, nxh = x.norm(dim=-1), x_hat.norm(dim=-1)
        # The per-token definition centres on the batch's mean per dimension (SAELens's "legacy" explained
        # variance, Kissane et al.'s definition); the pooled ones centre over all tokens, from sum_x at the end.
        batch_var = (x - center).pow(2).sum(-1)
        f64 = torch.float64
        s = {"l0": fires.sum(dtype=f64), "rss": rss.sum(dtype=f64), "sq_norm": nx.pow(2).sum(dtype=f64),
             "cos": ((x * x_hat).sum(-1) / (nx * nxh).clamp_min(1e-12)).sum(dtype=f64),
             "norm_ratio": (nxh / torch.where(nx < 1e-4, torch.ones_like(nx), nx)).sum(dtype=f64),
             "ev_token": (1 - rss / batch_var).sum(dtype=f64)}
        s.update({f"ce_{k}": ce[k][ce_valid].sum(dtype=f64) for k in ("clean", "spliced", "zero")})
        s.update({f"kl_{k}": kl[k].sum(dtype=f64) for k in ("spliced", "zero")})
        return {"n": n, "n_ce": int(ce_valid.sum()), "s": {k: float(v) for k, v in s.items()},
                "sum_x": x.sum(0, dtype=f64).cpu(), "fires": fires.long().cpu(),
                "act_sum": feats.float().sum(0).double().cpu(), "hist": ACT_BINS.counts(feats[fire].log10()).cpu()}

    @staticmethod
    def merge(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
        """The sums of two parts of one batch."""
        if a is None or b is None:
            return a if b is None else b
        return {"n": a["n"] + b["n"], "n_ce": a["n_ce"] + b["n_ce"], "s": {k: v + b["s"][k] for k, v in a["s"].items()},
                **{k: a[k] + b[k] for k in ("sum_x", "fires", "act_sum", "hist")}}

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


def metrics_of_sums(totals: np.ndarray, sum_x: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of ``CI_METRICS`` from summed batches: ``totals`` [..., 2 + len(BATCH_SUMS)], ``sum_x``
    [..., d_in] (one row per bootstrap resample)."""

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
        # Resamples in groups, so that sum_x[idx] [group, batches, d_in] stays near 16 MiB: one group of all
        # 1,000 resamples took 131 MB at 64 batches of a 256-wide model, growing with the number of batches.
        group = max(1, (16 << 20) // (8 * sum_x.shape[0] * sum_x.shape[1]))
        res = bootstrap((np.arange(len(per_batch)),), statistic, n_resamples=n_boot, method="percentile",
                        vectorized=True, batch=group, random_state=np.random.default_rng(seed))
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
        # Residual norms at the hook: position 0 (BOS) apart from the rest, so a page can say how this model's
        # BOS compares (small models: smaller than average; billion-parameter ones: hundreds of times larger).
        self.norms = {"bos_sum": 0.0, "n_bos": 0, "rest_sum": 0.0, "n_rest": 0, "rest_max": 0.0}

    @torch.no_grad()
    def update(self, x, feats, x_hat, outlier, ce: dict[str, torch.Tensor], kl: dict[str, torch.Tensor]) -> None:
        """One whole batch: x, x_hat [B, T, d_in]; feats [B, T, d_sae]; outlier [B, T] bool; ce: {clean, spliced,
        zero} [B, T] (the last position is ignored); kl: {spliced, zero} [B, T]."""
        self.start_batch(x, outlier)
        self.add_part(x, feats, x_hat, outlier, ce, kl)
        self.end_batch()

    @torch.no_grad()
    def start_batch(self, x, outlier) -> None:
        """Open a batch that arrives in parts (micro-batches of whole windows): x [B, T, d_in] and outlier [B, T]
        of the whole batch fix the centres of its per-token explained variance."""
        flat, out = x.flatten(0, 1).float(), outlier.flatten()
        self._centers = (flat.mean(0), flat[~out].mean(0) if not out.all() else None)
        self._any_outlier = bool(out.any())
        self._parts: list = [None, None]
        self.n_outliers += int(out.sum())
        self.n_outliers_pos0 += int(outlier[:, 0].sum())
        norms = x.float().norm(dim=-1)  # [B, T]
        rest = norms[:, 1:]
        self.norms["bos_sum"] += float(norms[:, 0].sum(dtype=torch.float64))
        self.norms["n_bos"] += norms.shape[0]
        self.norms["rest_sum"] += float(rest.sum(dtype=torch.float64))
        self.norms["n_rest"] += rest.numel()
        self.norms["rest_max"] = max(self.norms["rest_max"], float(rest.max()) if rest.numel() else 0.0)

    @torch.no_grad()
    def add_part(self, x, feats, x_hat, outlier, ce: dict[str, torch.Tensor], kl: dict[str, torch.Tensor]) -> None:
        """Windows of the open batch, shaped as in ``update``."""
        valid = torch.ones_like(outlier)
        valid[:, -1] = False
        flat = lambda t: t.flatten(0, 1)
        x, feats, x_hat, out, valid = flat(x), flat(feats), flat(x_hat), outlier.flatten(), valid.flatten()
        ce = {k: v.flatten() for k, v in ce.items()}
        kl = {k: v.flatten() for k, v in kl.items()}
        every = _Subset.batch_sums(x, feats, x_hat, ce, valid, kl, self._centers[0])
        if not self._any_outlier:
            kept = every  # the usual case in small models: no outliers in the batch, the same sums
        else:
            keep = ~out
            kept = _Subset.batch_sums(x[keep], feats[keep], x_hat[keep], {k: v[keep] for k, v in ce.items()},
                                      valid[keep], {k: v[keep] for k, v in kl.items()}, self._centers[1])
        self._parts = [_Subset.merge(self._parts[0], every), _Subset.merge(self._parts[1], kept)]

    def end_batch(self) -> None:
        self.all.add(self._parts[0])
        self.kept.add(self._parts[1])
        self._parts = [None, None]

    def result(self) -> dict[str, Any]:
        n = self.all.n
        return {"threshold": self.threshold if math.isfinite(self.threshold) else None,
                "outlier_frac": self.n_outliers / n if n else 0.0,
                "outliers_at_pos0": self.n_outliers_pos0,
                "norms": {"bos": self.norms["bos_sum"] / max(self.norms["n_bos"], 1),
                          "mean": self.norms["rest_sum"] / max(self.norms["n_rest"], 1),
                          "max": self.norms["rest_max"]},
                "all": self.all.result(self.d_sae), "kept": self.kept.result(self.d_sae)}
