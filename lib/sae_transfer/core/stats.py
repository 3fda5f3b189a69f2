"""Bootstrap intervals: correlations across cases (the predict chapter and the STS claim), and shares of items
(features) with their paired differences (the chapters across architectures and languages)."""

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


def share_interval(hits, n_boot: int, seed: int) -> dict:
    """The share of ``hits`` (booleans, one per item) that are true, with a 95% percentile bootstrap interval over
    items: ``{"share", "ci": [lo, hi], "n"}``. A constant sample's interval is the constant itself."""
    from scipy.stats import bootstrap

    hits = np.asarray(hits, dtype=float)
    if len(hits) == 0:
        return {"share": float("nan"), "ci": [float("nan")] * 2, "n": 0}
    if hits.min() == hits.max():
        return {"share": float(hits[0]), "ci": [float(hits[0])] * 2, "n": int(len(hits))}
    res = bootstrap((hits,), np.mean, n_resamples=n_boot, method="percentile",
                    random_state=np.random.default_rng(seed))
    return {"share": float(hits.mean()), "ci": [float(x) for x in res.confidence_interval], "n": int(len(hits))}


def paired_difference(a, b, n_boot: int, seed: int) -> dict:
    """share(a) - share(b) over the same items (booleans or numbers), with a 95% paired bootstrap interval (items
    resampled once for both): ``{"difference", "ci": [lo, hi]}``."""
    from scipy.stats import bootstrap

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(a.mean() - b.mean())
    if (a - b).min() == (a - b).max():
        return {"difference": d, "ci": [d, d]}
    res = bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True, vectorized=True,
                    n_resamples=n_boot, method="percentile", random_state=np.random.default_rng(seed))
    return {"difference": d, "ci": [float(x) for x in res.confidence_interval]}
