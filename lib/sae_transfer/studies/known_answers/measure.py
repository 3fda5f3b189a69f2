"""Every method of the book run on a planted finetune (``data.synthetic``) whose answers are known.

Per world (a base distribution), a BatchTopK SAE is trained on the base's activations with sae_lens's own
``train_toy_sae`` and kept as sae_lens's inference SAE (JumpReLU, L0 free to change on the finetune), as the zoo's
SAEs are. Per case (a world and its planted edits), the project's own code runs on the two models' activations of
the same draws, exactly as on a model pair's activations of the same tokens:

- a crosscoder (``methods.crosscoder.fit``, the diffing chapter's settings) on the paired stream;
- one evaluation pass feeding ``SAEMetrics`` (the SAE-metric chapter's reconstruction metrics, one per model),
  ``FeaturePairStats`` (the feature chapter's activation similarity), ``CrosscoderStats`` (the diffing chapter's
  densities and latent scaling), sae_lens's ``ClassificationMetricsCalculator`` against the true features, and the
  true changed mass;
- the diffing chapter's classes (``methods.crosscoder_classes``) and ``check``'s verdict (``core.verdict.judge``)
  on what was measured.

No model here has an unembedding: the CE-recovered criterion is not measured, and the verdict is judged on the
other two, as ``judge`` does for any criterion left out. What is trained (the SAE, the crosscoders) is in
``train.py``, the scores against the truth in ``scores.py``.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from sae_transfer.core import verdict as V
from sae_transfer.data.synthetic import PlantedPair, changed_mass
from sae_transfer.methods.crosscoder import Crosscoder
from sae_transfer.methods.crosscoder_classes import feature_classes, latent_classes, new_latents
from sae_transfer.methods.crosscoder_stats import CrosscoderStats, join_sae, refit_decoders
from sae_transfer.passes.accumulators import FeaturePairStats
from sae_transfer.passes.cache import cached, code_fingerprint
from sae_transfer.passes.feature_groups import select_groups
from sae_transfer.passes.sae_accumulator import SAEMetrics
from sae_transfer.studies.known_answers import planted, trained
from sae_transfer.studies.known_answers import scores as S
from sae_transfer.studies.known_answers.train import KnownStudy, base_sae, crosscoder

#: The activations' name in the accumulators' ``{hook: activations}`` dicts.
HOOK = "x"


@torch.no_grad()
def _evaluate(pair: PlantedPair, sae, cc: Crosscoder, study: KnownStudy) -> dict:
    """One pass over ``n_tokens`` held-out draws: every accumulator, and the truth beside them (where the pair
    has planted coefficients, ``a_base`` and ``a_ft``: ``changed_mass`` and ``true_fires`` are None without)."""
    from sae_lens.synthetic import ClassificationMetricsCalculator

    d, n_sae = sae.cfg.d_in, sae.cfg.d_sae
    metrics = {m: SAEMetrics(d, n_sae, float("inf")) for m in ("base", "finetune")}
    pair_stats = FeaturePairStats(sae, HOOK)
    cc_stats = CrosscoderStats(cc, HOOK, top_k=1)
    # A pair whose truth is the SAE's own features has nothing for the SAE's latents to detect.
    detect = None if pair.truth_is_sae else ClassificationMetricsCalculator(sae.W_dec.detach(),
                                                                             pair.D_base[pair.base_features])
    mass = torch.zeros(2, dtype=torch.float64)
    fires = torch.zeros(2, pair.n_total, dtype=torch.long)  # [base, finetune] true firings on these draws
    n_batches = -(-study.n_tokens // (study.batch_size * study.context_size))
    zeros = None
    for b in tqdm(pair.paired(n_batches, study.batch_size, study.context_size, seed=study.seed + 1),
                  total=n_batches, desc="known answers: evaluate", unit="batch", leave=False):
        xb, xf = b["x_base"], b["x_ft"]
        for m, x in (("base", xb), ("finetune", xf)):
            body = x[:, 1:]  # the positions the pair accumulators read (they leave position 0 out as BOS)
            feats = sae.encode(body)
            if zeros is None or zeros.shape != body.shape[:2]:
                zeros = torch.zeros(body.shape[:2])
            metrics[m].update(body, feats, sae.decode(feats), zeros.bool(), {k: zeros for k in
                              ("clean", "spliced", "zero")}, {k: zeros for k in ("spliced", "zero")})
            if m == "base":
                base_codes = feats.flatten(0, 1)  # [batch * (context - 1), d_sae]: detection reads these
        pair_stats.update(None, {HOOK: xb}, {HOOK: xf})
        cc_stats.update(None, {HOOK: xb}, {HOOK: xf})
        for s in (pair_stats, cc_stats):
            s.end_batch()
        if "a_base" not in b:  # a pair of trained models: no planted coefficients to score against
            continue
        ab, af = b["a_base"][:, 1:].flatten(0, 1), b["a_ft"][:, 1:].flatten(0, 1)
        if detect is not None:
            detect.add_batch(base_codes, ab[:, pair.base_features])
        mass += changed_mass(ab, af, pair.D_base, pair.D_ft)
        fires += torch.stack([(ab > 0).sum(0), (af > 0).sum(0)])
    stats = pair_stats.result()
    refit = refit_decoders([cc_stats])
    latents, features = join_sae(cc, refit, sae.W_dec, stats)
    cc_result = cc_stats.result()
    for k in ("top_values", "top_tokens", "hist"):
        cc_result.pop(k, None)
    detection = asdict(detect.compute()) if detect is not None else None
    return {"metrics": {m: a.result()["kept"] for m, a in metrics.items()}, "pair_stats": stats,
            "latents": latents, "features": features, "data": {"synthetic": cc_result},
            "refit": refit, "detection": detection,
            "changed_mass": float(mass[0] / mass[1]) if mass[1] > 0 else None,
            "true_fires": fires.tolist() if mass[1] > 0 else None}


def _verdict(ev: dict, stats: dict, study: KnownStudy) -> dict:
    """``check``'s verdict on the two criteria a model without an unembedding has: the EV drop and the regular
    features' activation similarity (its regular features chosen as ``check`` chooses them)."""
    regular = select_groups(stats, study.n_regular, 0, study.seed)["regular"]
    sims = torch.tensor(stats["act_sim"], dtype=torch.float64)[regular]
    sim = float(sims.nanmean()) if len(regular) and not sims.isnan().all() else float("nan")
    values = {"ev_drop": ev["base"]["ev_token"] - ev["finetune"]["ev_token"], "regular_act_sim": sim}
    return {"values": values, "n_regular": len(regular), **V.judge(values), "words": V.in_words(values)}


def measure_case(pair: PlantedPair, sae, study: KnownStudy, verdict: Callable[[], dict] | None = None) -> dict:
    """Plain data of one case: every method's output and its scores against the truth (``scores.score``).
    ``verdict``: ``check``'s own on a pair of models (a planted real finetune); without it, ``check``'s rule on
    the two criteria activations alone have (``_verdict``)."""
    def run() -> dict:
        cc, log = crosscoder(pair, study)
        ev = _evaluate(pair, sae, cc, study)
        result = {"latents": ev["latents"], "features": ev["features"], "data": ev["data"]}
        classes = latent_classes(result)
        labels = {"latent_classes": classes, "feature_classes": feature_classes(result, classes),
                  "new": new_latents(result, classes).tolist()}
        return {"pair": pair.describe(), "crosscoder": {**{k: v for k, v in log.items() if k not in ("step", "loss")},
                                                        "heldout_fvu": ev["data"]["synthetic"]["fvu"]},
                "metrics": ev["metrics"], "detection": ev["detection"], "changed_mass": ev["changed_mass"],
                "verdict": verdict() if verdict else _verdict(ev["metrics"], ev["pair_stats"], study),
                "scores": S.score(pair, sae, cc, ev, labels, study.n_boot, study.seed),
                "counts": {c: labels["latent_classes"].count(c) for c in set(labels["latent_classes"])}}

    key = {"what": "known-answers-case", "code": code_fingerprint(__name__), **pair.key(), "study": study.case(),
           "sae": S.sae_digest(sae)}
    return cached("known-answers", key, run)


def measure(study: KnownStudy) -> dict:
    """``{"default", "null", "severity", "angle", "features_per_dim", "train_tokens", "seeds", "study"}``: the
    default case, the null finetune, and per sweep one case per point (the default's value among them; the other
    parameters at their default); ``seeds`` compares the base SAE with its recipe at another seed (the floor a
    "kept" must beat). A case whose parameters another already has is measured once (the cache key is its
    parameters). With a ``base``, the real level: ``planted`` (its SAE's features edited, ``planted.measure``) and
    ``trained`` (finetuned on text with planted patterns, ``trained.measure``); None without."""
    world = study.world()
    pair = PlantedPair(world, study.edits())
    sae = base_sae(pair, study, study.seed)
    other = base_sae(pair, study, study.seed + 1)
    out: dict[str, Any] = {"study": asdict(study), "default": measure_case(pair, sae, study),
                           "null": measure_case(PlantedPair(world, study.edits(share=0.0, new=0.0)), sae, study),
                           "seeds": S.seed_floor(pair, sae, other)}
    out["severity"] = [{"severity": v, **measure_case(PlantedPair(world, study.severity(v)), sae, study)}
                       for v in _with(study.severities, study.share)]
    out["angle"] = [{"angle": v, **measure_case(PlantedPair(world, study.edits(angle=v)), sae, study)}
                    for v in _with(study.angles, study.angle)]
    out["train_tokens"] = [{"train_tokens": v, **measure_case(pair, sae, replace(study, train_tokens=v))}
                           for v in _with(study.token_sweep, study.train_tokens)]
    rows = []
    for v in _with(study.features_per_dim, study.n_features / study.d_model):
        p = PlantedPair(study.world(round(v * study.d_model)), study.edits())
        rows.append({"features_per_dim": v, **measure_case(p, sae if p.world == world else
                                                           base_sae(p, study, study.seed), study)})
    out["features_per_dim"] = rows
    real = planted.RealPair(study) if study.base else None
    out["planted"] = planted.measure(study, real, measure_case) if real else None
    out["trained"] = trained.measure(study, real, _evaluate) if real else None
    return out


def _with(points, default) -> list:
    """A sweep's points and the default's value, in order, once each."""
    return sorted({*map(float, points), float(default)})
