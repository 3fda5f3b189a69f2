"""Each method's labels scored against the planted truth, with 95% bootstrap intervals (``scipy.stats.bootstrap``,
percentile, resampling the scored items: features, latents, matched pairs).

A learnt direction *is* a true feature when its cosine with that feature's direction is at least ``MATCHED``
(its best match by absolute cosine, as sae_lens's synthetic evals match latents to features). Only matched base-SAE
features are scored: an SAE feature that is no true feature has no true fate (how many are matched is reported).

What each true class should be labelled (``EXPECTED``): the diffing chapter calls a feature *shifted* when its
finetune direction moved *or* its activations decorrelated, so a rarer feature (same direction, fewer tokens)
should be labelled shifted; lost should be lost; kept should be kept.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

import numpy as np
import torch

from sae_transfer.data.synthetic import CHANGED, TRUE_CLASSES, PlantedPair
from sae_transfer.methods.crosscoder_classes import FEATURE_CLASSES, LATENT_CLASSES

MATCHED = 0.9
EXPECTED = {"kept": "kept", "shifted": "shifted", "rarer": "shifted", "lost": "lost"}
#: The labels scored per class, in order.
LABELS = ("kept", "shifted", "lost")


def sae_digest(sae) -> str:
    """sha256 of an SAE's weights (a cache key part: the same weights, the same scores)."""
    h = hashlib.sha256()
    for k, v in sorted(sae.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def best_match(W: torch.Tensor, D: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``W`` [n, d], the row of ``D`` [m, d] with the largest absolute cosine: (index [n],
    cosine [n])."""
    a = torch.nn.functional.normalize(W.detach().float(), dim=-1)
    b = torch.nn.functional.normalize(D.detach().float(), dim=-1)
    best = (a @ b.T).abs().max(1)
    return best.indices.numpy(), best.values.numpy()


def interval(data: tuple[np.ndarray, ...], statistic: Callable, n_boot: int, seed: int) -> dict[str, Any]:
    """``{"value", "lo", "hi", "n"}``: ``statistic(*data)`` on the items and its 95% percentile interval over
    items resampled with replacement (paired across ``data``, ``scipy.stats.bootstrap``'s resamples). A resample
    where the statistic is undefined (a precision with nothing labelled) is left out of the percentiles; lo and hi
    are None where more than a tenth of them are, or with fewer than two items."""
    import warnings

    from scipy.stats import bootstrap

    n = len(data[0])
    value = _num(statistic(*data)) if n else None
    lo = hi = None
    if n >= 2 and value is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate or undefined resamples: handled below
            res = bootstrap(data, lambda *d, axis=-1: statistic(*d), paired=True, vectorized=True,
                            n_resamples=n_boot, method="percentile", random_state=np.random.default_rng(seed))
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        if np.isfinite(dist).mean() >= 0.9:
            lo, hi = (_num(q) for q in np.nanpercentile(dist, [2.5, 97.5]))
    return {"value": value, "lo": lo, "hi": hi, "n": n}


def _num(x) -> float | None:
    x = float(np.asarray(x))
    return x if math.isfinite(x) else None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(-1) / den.sum(-1)


def precision_recall(pred: np.ndarray, expected: np.ndarray, label: str, n_boot: int, seed: int) -> dict:
    """Precision and recall of ``label`` over items whose predicted and expected labels are ``pred``,
    ``expected`` [n] (strings)."""
    p, e = (pred == label).astype(float), (expected == label).astype(float)
    both = p * e
    return {"precision": interval((both, p), _ratio, n_boot, seed),
            "recall": interval((both, e), _ratio, n_boot, seed), "n_pred": int(p.sum()), "n_true": int(e.sum())}


def matched_cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """The absolute cosines of the one-to-one matching of ``a`` [n, d] and ``b`` [m, d] rows that maximises
    their sum (Hungarian): what sae_lens's ``mean_correlation_coefficient`` averages."""
    from scipy.optimize import linear_sum_assignment

    from sae_lens.util import cosine_similarities

    c = cosine_similarities(a.detach().float(), b.detach().float()).abs().numpy()
    rows, cols = linear_sum_assignment(1 - c)
    return c[rows, cols]


def mcc(a: torch.Tensor, b: torch.Tensor, n_boot: int, seed: int) -> dict:
    """sae_lens's MCC of ``a`` against ``b`` (the mean of ``matched_cosines``: a test holds it equal to
    ``sae_lens.synthetic.mean_correlation_coefficient``), with an interval over its matched pairs."""
    return interval((matched_cosines(a, b),), lambda x: x.mean(-1), n_boot, seed)


def score(pair: PlantedPair, sae, cc, ev: dict, labels: dict, n_boot: int, seed: int) -> dict:
    """Every score of one case (plain data): which SAE features are true ones (``matched``), MCC of the SAE and
    of each side of the crosscoder, the diffing feature classes per true class (``features``, ``confusion``),
    the crosscoder's "new" latents (``new``), its latent classes per true class (``latent_confusion``), and
    the AUROC of activation similarity for true kept against true changed (``auroc``)."""
    truth = np.array(pair.truth)
    base = pair.base_features
    in_ft = np.flatnonzero(pair.in_ft.numpy())
    idx, cos = best_match(sae.W_dec, pair.D_base[base])
    true_of_sae = truth[np.array(base)[idx]]
    matched = cos >= MATCHED
    out: dict[str, Any] = {"matched": {"sae_features": int(matched.sum()), "of": len(cos)}}
    out.update(_labels(true_of_sae, matched, labels["feature_classes"], n_boot, seed))

    refit = ev["refit"]  # [d_cc, 2, d]
    classes = np.array(labels["latent_classes"])
    live = classes != "dead"
    ft_side = np.asarray(ev["latents"]["rel_norm"]) >= 0.5
    i_ft, c_ft = best_match(refit[:, 1], pair.D_ft[in_ft])
    i_b, c_b = best_match(refit[:, 0], pair.D_base[base])
    latent_truth = np.where(ft_side, truth[in_ft[i_ft]], truth[np.array(base)[i_b]])
    latent_truth = np.where(np.where(ft_side, c_ft, c_b) >= MATCHED, latent_truth, "none")
    out["latent_confusion"] = {t: {c: int(((latent_truth == t) & (classes == c) & live).sum())
                                   for c in LATENT_CLASSES if c != "dead"} for t in (*TRUE_CLASSES, "none")}

    fired_ft = np.asarray(ev["true_fires"][1]) > 0
    true_new = [i for i in pair.indices("new") if fired_ft[i]]
    right = (truth[in_ft[i_ft]] == "new") & (c_ft >= MATCHED)
    out["new"] = _new(labels["new"], live, right, pair.D_ft[true_new], refit, n_boot, seed)
    out.update(_similarity(true_of_sae, matched, ev["pair_stats"], n_boot, seed))
    out["mcc"] = {"sae": None if pair.truth_is_sae else mcc(sae.W_dec, pair.D_base[base], n_boot, seed),
                  "crosscoder_base": mcc(refit[live, 0], pair.D_base[base], n_boot, seed),
                  "crosscoder_finetune": mcc(refit[live, 1], pair.D_ft[in_ft], n_boot, seed)}
    return out


def _labels(truth: np.ndarray, matched: np.ndarray, feature_classes: list, n_boot: int, seed: int) -> dict:
    """Precision and recall of each diffing label over the features with a truth (``matched``) that fire on the
    data, and the confusion of true class against label."""
    fclass = np.array([c if c is not None else "silent" for c in feature_classes], dtype=object)
    scored = matched & (fclass != "silent")
    pred, true = fclass[scored].astype(str), truth[scored]
    exp = np.array([EXPECTED[t] for t in true])
    return {"n_scored": int(scored.sum()),
            "features": {lab: precision_recall(pred, exp, lab, n_boot, seed) for lab in LABELS},
            "confusion": {t: {c: int(((true == t) & (pred == c)).sum()) for c in FEATURE_CLASSES}
                          for t in EXPECTED if (truth[matched] == t).any()}}


def _new(new_labels: list, live: np.ndarray, right: np.ndarray, true_dirs: torch.Tensor, refit: torch.Tensor,
         n_boot: int, seed: int) -> dict:
    """The crosscoder's "new" latents against the true new directions ``true_dirs`` [n, d]: precision (new latents
    that are one, ``right`` [d_cc]), recall (true directions some new latent is), false new rate (new latents
    that are none, over live latents)."""
    new = np.asarray(new_labels, dtype=bool)
    if len(true_dirs) and new.any():
        found = best_match(true_dirs, refit[new, 1])[1] >= MATCHED  # [n]: a new latent's finetune decoder is it
    else:
        found = np.zeros(len(true_dirs), dtype=bool)
    return {"precision": interval(((new & right).astype(float)[new], np.ones(int(new.sum()))), _ratio, n_boot, seed),
            "recall": interval((found.astype(float), np.ones(len(found))), _ratio, n_boot, seed),
            "false_new_rate": interval(((new & ~right).astype(float)[live], np.ones(int(live.sum()))), _ratio,
                                       n_boot, seed),
            "n_new_latents": int(new.sum()), "n_true_new": len(true_dirs), "n_live": int(live.sum())}


def _similarity(truth: np.ndarray, matched: np.ndarray, stats: dict, n_boot: int, seed: int) -> dict:
    """The AUROC of activation similarity as a score of "changed" over features with a truth that fire in the
    base, and each true class's similarities (for the figure)."""
    sim = np.asarray(stats["act_sim"], dtype=float)
    use = matched & (np.asarray(stats["density_base"]) > 0)
    changed = np.isin(truth[use], CHANGED).astype(float)
    # A feature constant in the finetune (it stopped firing) has no correlation: the least similar it can be.
    s = -np.nan_to_num(sim[use], nan=-1.0)
    # How much of its mean activation each feature keeps in the finetune, by true class: what a scale-free
    # similarity cannot see (a feature firing on the same tokens at a fraction of its strength correlates fully).
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = np.asarray(stats["mean_finetune"], dtype=float)[use] / np.asarray(stats["mean_base"], dtype=float)[use]
    return {"auroc": {**interval((changed, s), auroc, n_boot, seed), "n_kept": int((changed == 0).sum()),
                      "n_changed": int(changed.sum())},
            "similarity": {t: (-s[truth[use] == t]).round(4).tolist() for t in TRUE_CLASSES if t != "new"},
            "activation_kept": {t: _num(np.nanmedian(kept[truth[use] == t])) if (truth[use] == t).any() else None
                                for t in TRUE_CLASSES if t != "new"}}


def auroc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The AUROC of scores ``s`` for labels ``y`` (1 changed), vectorised over leading axes (the Mann-Whitney
    statistic, ties counted half): what ``sklearn.metrics.roc_auc_score`` gives on one row."""
    from scipy.stats import rankdata

    ranks = rankdata(s, axis=-1)
    n1 = y.sum(-1)
    n0 = y.shape[-1] - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((ranks * y).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def seed_floor(pair: PlantedPair, sae, other) -> dict:
    """Two base SAEs of one recipe and two seeds: how many of the first's features the second has (decoder cosine
    at least ``MATCHED``), their MCC, and each one's MCC against the truth."""
    from sae_lens.synthetic import mean_correlation_coefficient

    _, cos = best_match(sae.W_dec, other.W_dec)
    base = pair.D_base[pair.base_features]
    return {"shared": float((cos >= MATCHED).mean()),
            "mcc_between": mean_correlation_coefficient(sae.W_dec.detach(), other.W_dec.detach()),
            "mcc_truth": [mean_correlation_coefficient(s.W_dec.detach(), base) for s in (sae, other)]}
