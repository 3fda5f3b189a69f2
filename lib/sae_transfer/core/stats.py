"""Correlations across cases with bootstrap intervals: what the predict chapter and the STS claim report."""

from __future__ import annotations

import math

import numpy as np


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's r needs)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else float("nan")


def correlate(x, y, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Pearson and Spearman r of two per-case vectors, each with a 95% percentile bootstrap interval over cases
    (resamples where either side is constant give no correlation and are left out of the interval)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    rng = np.random.default_rng(seed)
    out = {"n": int(len(x))}
    for name, fn in (("pearson", _pearson), ("spearman", lambda a, b: _pearson(_rank(a), _rank(b)))):
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, len(x), len(x))
            r = fn(x[i], y[i])
            if not math.isnan(r):
                boots.append(r)
        out[name] = fn(x, y)
        out[f"{name}_lo"], out[f"{name}_hi"] = (np.percentile(boots, [2.5, 97.5]).tolist() if boots
                                                else [float("nan")] * 2)
    return out
