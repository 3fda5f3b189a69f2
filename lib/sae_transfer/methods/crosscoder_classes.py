"""The crosscoder classes (the diffing chapter's, scored against planted truth in the known-answers chapter) and
every threshold behind them, in one place.

Crosscoder latents, by the relative decoder norm ``r = ||d_ft|| / (||d_base|| + ||d_ft||)`` (the thresholds of
Minder et al. 2025), read from each model's least-squares decoders (``crosscoder_stats.refit_decoders``):
**base-only** ``r <= 0.1``, **finetune-only** ``r >= 0.9``, **shared** ``0.3 <= r <= 0.7``,
**between** otherwise, **dead** when the latent never fires on the held-out tokens. A model-specific latent whose
latent-scaling ratio (how much of the *other* model's activation it explains, over how much of its own) is at
least ``SCALING`` only looks specific: it is flagged, not counted as new or lost.

The base SAE's features (those that fire on the finetune's data in the base), in order of precedence:
**lost** (fires in the finetune at less than ``LOST`` times its base rate), **kept** (its best crosscoder latent by
decoder cosine on the base side is shared and at least ``MATCH`` close, that latent's two decoders at least
``SHIFT`` close, and the feature's activation similarity at least ``KEPT_SIM``: the feature chapter's "share above
0.8"), **shifted** (matched to a shared latent, but not kept: the finetune's direction moved or its activations
decorrelated), **unmatched** (no shared latent that close). **New in the finetune**: finetune-only latents that fire,
are not flagged by latent scaling, and have no base-SAE feature within ``MATCH`` of their finetune decoder.
"""

from __future__ import annotations

import math

import numpy as np

BASE_ONLY, FT_ONLY = 0.1, 0.9
SHARED = (0.3, 0.7)
# A crosscoder (BatchTopK, k = 32) and the zoo's L1 SAE (L0 about 9% of its width) learn different dictionaries:
# for a finetune three steps from its base, the median base-SAE feature's closest latent is at cosine 0.58 and only
# 16% reach 0.7, where two SAEs of the same recipe match 96%. At 0.5 most features find their latent.
MATCH = 0.5
SHIFT = 0.9
KEPT_SIM = 0.8
LOST = 0.1
SCALING = 0.5

#: A crosscoder that leaves this share of a model's variance unexplained (or more) on held-out tokens predicts no
#: better than the mean: it did not train, and its classes say nothing about the pair.
UNTRAINED_FVU = 1.0

LATENT_CLASSES = ("shared", "base-only", "finetune-only", "between", "dead")
FEATURE_CLASSES = ("kept", "shifted", "lost", "unmatched")


def _fires(result: dict) -> np.ndarray:
    return np.any([np.asarray(d["density"]) > 0 for d in result["data"].values()], axis=0)


def scaling_ratio(result: dict) -> np.ndarray:
    """Per latent, the other model's latent-scaling beta over its own model's, along the decoder of the side it
    belongs to (finetune side for ``r >= 0.5``); small means specific. NaN where the latent never fired.
    Measured on the finetune's data (the last dataset)."""
    beta = np.asarray(list(result["data"].values())[-1]["beta"], dtype=float)  # [m, s, latent]
    rel = np.asarray(result["latents"]["rel_norm"])
    ft_side = rel >= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        ft = beta[0, 1] / beta[1, 1]  # base's beta over the finetune's, along the finetune decoder
        base = beta[1, 0] / beta[0, 0]
    return np.where(ft_side, ft, base)


def latent_classes(result: dict) -> list[str]:
    rel = np.asarray(result["latents"]["rel_norm"])
    fires = _fires(result)
    out = []
    for r, f in zip(rel, fires):
        if not f:
            out.append("dead")
        elif r <= BASE_ONLY:
            out.append("base-only")
        elif r >= FT_ONLY:
            out.append("finetune-only")
        elif SHARED[0] <= r <= SHARED[1]:
            out.append("shared")
        else:
            out.append("between")
    return out


def flagged(result: dict, classes: list[str]) -> np.ndarray:
    """Model-specific latents that latent scaling says are not: the other model's activation carries them too."""
    ratio = scaling_ratio(result)
    specific = np.isin(classes, ("base-only", "finetune-only"))
    return specific & (np.nan_to_num(ratio, nan=0.0) >= SCALING)


def new_latents(result: dict, classes: list[str]) -> np.ndarray:
    """Finetune-only latents that fire, are not flagged, and that no base-SAE feature is within ``MATCH`` of."""
    ft_only = np.asarray(classes) == "finetune-only"
    far = np.asarray(result["latents"]["sae_match_cos"]) < MATCH
    return ft_only & ~flagged(result, classes) & far


def feature_classes(result: dict, classes: list[str]) -> list[str | None]:
    """Per base-SAE feature: one of ``FEATURE_CLASSES``, or None for a feature silent on this data in the base."""
    f = result["features"]
    shared = np.asarray(classes) == "shared"
    dcos = np.asarray(result["latents"]["decoder_cos"])
    out: list[str | None] = []
    for m, c, sim, db, dft in zip(f["match"], f["match_cos"], f["act_sim"], f["density_base"],
                                  f["density_finetune"]):
        if db <= 0:
            out.append(None)
        elif dft < LOST * db:
            out.append("lost")
        elif c >= MATCH and shared[m]:
            good = dcos[m] >= SHIFT and sim is not None and not math.isnan(sim) and sim >= KEPT_SIM
            out.append("kept" if good else "shifted")
        else:
            out.append("unmatched")
    return out


def shares(result: dict) -> dict:
    """Counts and shares of every class for one pair: latent classes over live latents, feature classes over
    the base SAE's features that fire on this data, ``new`` over live latents."""
    classes = latent_classes(result)
    live = sum(c != "dead" for c in classes)
    feats = [c for c in feature_classes(result, classes) if c is not None]
    out = {"latents": len(classes), "live latents": live,
           **{f"{c} latents": classes.count(c) for c in LATENT_CLASSES},
           "flagged by scaling": int(flagged(result, classes).sum()),
           "new latents": int(new_latents(result, classes).sum()), "features firing": len(feats),
           **{f"{c} features": feats.count(c) for c in FEATURE_CLASSES}}
    out["new share"] = out["new latents"] / max(live, 1)
    out["shared share"] = out["shared latents"] / max(live, 1)
    for c in FEATURE_CLASSES:
        out[f"{c} share"] = out[f"{c} features"] / max(len(feats), 1)
    return out


def shown_latents(result: dict, classes: list[str], n_show: int) -> list[int]:
    """The latents given a page: the most frequent of each live class in turn (new first, then base-only, shared
    with the lowest decoder cosine, shared), so every class a pair has is shown, ``n_show`` in all."""
    density = np.max([np.asarray(d["density"]) for d in result["data"].values()], axis=0)
    cls = np.asarray(classes)
    new = new_latents(result, classes)
    dcos = np.asarray(result["latents"]["decoder_cos"])
    pools = [np.flatnonzero(new), np.flatnonzero((cls == "finetune-only") & ~new),
             np.flatnonzero(cls == "base-only"), np.flatnonzero(cls == "between")]
    shared = np.flatnonzero(cls == "shared")
    pools.append(shared[np.argsort(dcos[shared])])  # moved the most first
    pools.append(shared[np.argsort(-density[shared])])
    ordered = [p if i == 4 else p[np.argsort(-density[p])] for i, p in enumerate(pools)]
    picked: list[int] = []
    while len(picked) < n_show and any(len(p) for p in ordered):
        for i, p in enumerate(ordered):
            while len(p) and int(p[0]) in picked:
                p = p[1:]
            if len(p) and len(picked) < n_show:
                picked.append(int(p[0]))
                p = p[1:]
            ordered[i] = p
    return picked
