"""The check's one streamed pass: base and finetune read the same token batches; each model runs once cleanly and
twice from the SAE's hook on (SAE spliced, activation zeroed), as in the SAE-metric chapter; the clean
activations of both feed the residual and per-feature accumulators, as in the feature and predict chapters. The
base's side comes batch by batch from a function (``BaseSide``): the base model itself (``live_base``), or its pass
stored once for many finetunes (``atlas.base_store``).

After every second batch past ``min_tokens``, the verdict's criteria get intervals over token batches (paired:
base and finetune resampled on the same batches); the pass stops as soon as the verdict is decided
(``verdict.decided``) or ``max_tokens`` are measured. Memory: running sums, plus a few numbers and one [7, d_sae]
array per batch for the intervals; never a [tokens, d_sae] tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from sae_transfer.core import verdict as V
from sae_transfer.core.memory import Plan
from sae_transfer.data.contexts import context_text
from sae_transfer.data.tokens import TokenSpec, check_token_spec
from sae_transfer.models.hooks import resume_layer
from sae_transfer.passes.accumulators import FeaturePairStats, ResidualSimilarity
from sae_transfer.passes.feature_groups import select_groups
from sae_transfer.passes.sae_accumulator import BATCH_SUMS, SAEMetrics, metrics_of_sums
from sae_transfer.passes.sae_metrics import pass_plan, sae_batch

#: Intervals need whole token batches to resample; fewer than this and a percentile interval means nothing.
MIN_BATCHES = 4


@dataclass(frozen=True)
class CheckSpec:
    """How much to measure: at most ``max_tokens`` per dataset, in windows of ``context_size`` tokens,
    ``batch_size`` windows a batch; stop early once the verdict is decided, but not before ``min_tokens``.
    ``outliers``: the outlier rule of the chapters (tokens with a residual norm above it are left out of every
    metric). ``n_regular`` regular features (a seeded sample) score activation similarity; the ``n_recheck`` whose
    similarity fell most are listed with their top contexts."""

    max_tokens: int = 16384
    min_tokens: int = 8192
    context_size: int = 128
    batch_size: int = 8
    outliers: str = "2x"
    n_regular: int = 1000
    n_recheck: int = 10
    early_stop: bool = True
    n_boot: int = 1000
    seed: int = 0

    def tokens(self, dataset: str) -> TokenSpec:
        return TokenSpec(dataset, self.max_tokens, self.context_size, self.batch_size, self.seed)

    def batch_tokens(self) -> int:
        return self.context_size * self.batch_size

    def min_batches(self) -> int:
        return max(MIN_BATCHES, -(-self.min_tokens // self.batch_tokens()))

    def validate(self, dataset: str) -> None:
        """One-line errors naming the parameter, before any model loads."""
        check_token_spec(self.tokens(dataset))
        for name in ("max_tokens", "min_tokens"):
            if getattr(self, name) < MIN_BATCHES * self.batch_tokens():
                raise ValueError(f"{name}={getattr(self, name)} gives fewer than {MIN_BATCHES} batches of "
                                 f"{self.batch_size} x {self.context_size} tokens, too few for an interval; use "
                                 f"{name} >= {MIN_BATCHES * self.batch_tokens()} or a smaller batch_size")
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens={self.min_tokens} exceeds max_tokens={self.max_tokens}")
        if self.n_boot < 100:
            raise ValueError(f"n_boot={self.n_boot}: use at least 100 bootstrap resamples")


# ------------------------------------------------------------------------------------------ intervals

class _Batches:
    """The per-batch sums of one pass as arrays, and every number of the check from any resample of them."""

    #: Every quantity the check reports; the first three are the verdict's criteria.
    KEYS = ("ev_drop", "ce_recovered_drop", "regular_act_sim", "ev_base", "ev_finetune", "ce_recovered_base",
            "ce_recovered_finetune", "delta_ce_base", "delta_ce_finetune", "kl_base", "kl_finetune", "l0_base",
            "l0_ratio", "density_r", "residual_cos", "ce_clean_base", "ce_clean_finetune")

    def __init__(self, per_b: list[BatchSums], per_f: list[BatchSums], feats: FeaturePairStats,
                 res: ResidualSimilarity, regular: list[int]):
        def sums(per_batch):
            return (np.array([b[0] for b in per_batch]),  # [nb, 2 + len(BATCH_SUMS)]
                    torch.stack([b[1] for b in per_batch]).numpy())  # [nb, d_in]
        self.tb, self.xb = sums(per_b)
        self.tf, self.xf = sums(per_f)
        moments = torch.stack(feats.batch_moments).numpy()  # [nb, 7, d_sae]
        self.moments = moments[:, :5, regular]  # [nb, 5, n_regular]
        self.fires = moments[:, 5:]  # [nb, 2, d_sae]
        self.n = np.array(feats.batch_n, dtype=float)  # [nb]
        self.cos = np.array(res.batch_means)  # [nb]
        self.n_batches = len(self.n)

    def statistic(self, idx: np.ndarray, criteria_only: bool = False) -> np.ndarray:
        """Every quantity of ``KEYS`` (or the criteria alone) for resamples ``idx`` [..., nb] of batch indices:
        returns [len(keys), ...]."""
        idx = idx.astype(int)
        mb = metrics_of_sums(self.tb[idx].sum(-2), self.xb[idx].sum(-2))
        mf = metrics_of_sums(self.tf[idx].sum(-2), self.xf[idx].sum(-2))
        n = self.n[idx].sum(-1)[..., None]  # [..., 1]
        m = self.moments[idx].sum(-3) / n[..., None]  # [..., 5, n_regular]: E[x], E[y], E[xx], E[yy], E[xy]
        vx, vy = m[..., 2, :] - m[..., 0, :] ** 2, m[..., 3, :] - m[..., 1, :] ** 2
        cov = m[..., 4, :] - m[..., 0, :] * m[..., 1, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where((vx > 1e-20) & (vy > 1e-20), cov / np.sqrt(np.maximum(vx * vy, 1e-40)), np.nan)
            act_sim = np.nanmean(r, -1) if r.shape[-1] else np.full(n.shape[:-1], np.nan)
        out = [mb["ev_token"] - mf["ev_token"], mb["ce_recovered"] - mf["ce_recovered"], act_sim]
        if criteria_only:
            return np.stack(out)
        logd = np.log10(self.fires[idx].sum(-3) / n[..., None] + 1e-10)  # [..., 2, d_sae]
        a, b = logd[..., 0, :] - logd[..., 0, :].mean(-1, keepdims=True), logd[..., 1, :] - logd[..., 1, :].mean(
            -1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            density_r = (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
            out += [mb["ev_token"], mf["ev_token"], mb["ce_recovered"], mf["ce_recovered"], mb["delta_ce"],
                    mf["delta_ce"], mb["kl"], mf["kl"], mb["l0"], mf["l0"] / mb["l0"], density_r,
                    self.cos[idx].mean(-1), _clean_ce(self.tb[idx].sum(-2)), _clean_ce(self.tf[idx].sum(-2))]
        return np.stack(out)

    def estimate(self, criteria_only: bool = False, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
        """``{key: {"value", "lo", "hi"}}``: each quantity on all batches, and its 95% percentile interval from
        resampling whole batches with replacement (``scipy.stats.bootstrap``, base and finetune paired)."""
        from scipy.stats import bootstrap

        keys = self.KEYS[:3] if criteria_only else self.KEYS
        every = np.arange(self.n_batches)
        value = self.statistic(every, criteria_only)
        # Resamples in chunks, so the largest array held is about 2e7 numbers whatever the SAE's width.
        width = self.moments.shape[1] * self.moments.shape[2] + (0 if criteria_only else self.fires[0].size)
        chunk = max(1, int(2e7 // (self.n_batches * max(width, 1))))
        res = bootstrap((every,), lambda i, axis=-1: self.statistic(i, criteria_only), n_resamples=n_boot,
                        method="percentile", vectorized=True, batch=chunk, random_state=np.random.default_rng(seed))
        lo, hi = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
        return {k: {"value": _num(value[i]), "lo": _num(lo[i]), "hi": _num(hi[i])} for i, k in enumerate(keys)}


def _clean_ce(totals: np.ndarray) -> np.ndarray:
    """The model's own next-token CE (nats) from summed batch totals [..., 2 + len(BATCH_SUMS)]: whether a
    finetune learned the text measured."""
    return totals[..., 2 + BATCH_SUMS.index("ce_clean")] / np.maximum(totals[..., 1], 1)


def _num(x) -> float | None:
    """A JSON-safe float: NaN and infinities (undefined) become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _criteria(est: dict[str, dict]) -> tuple[dict[str, str], bool]:
    """The verdict from point estimates, and whether the intervals decide it."""
    nan = float("nan")
    values = {c.key: est[c.key]["value"] if est[c.key]["value"] is not None else nan for c in V.CRITERIA}
    spans = {c.key: (est[c.key]["lo"] if est[c.key]["lo"] is not None else nan,
                     est[c.key]["hi"] if est[c.key]["hi"] is not None else nan) for c in V.CRITERIA}
    return V.classify(values), V.decided(spans)


# ------------------------------------------------------------------------------------------ the pass

#: One batch's sums over its non-outlier tokens, as ``SAEMetrics`` keeps them for intervals: the scalar sums
#: ``(n, n_ce, *BATCH_SUMS)`` and ``sum_x`` [d_in].
BatchSums = tuple[list[float], torch.Tensor]
#: The base's side of the pass: ``base(i, tokens)`` -> (its activation at the hook [B, T, d_in], its BatchSums) for
#: batch ``i`` of token ids ``tokens`` [B, T]. ``live_base`` runs the base model; the atlas reads stored passes.
BaseSide = Callable[[int, torch.Tensor], tuple[torch.Tensor, BatchSums]]


def live_base(base, sae, hook: str, threshold: float, plan: Plan) -> BaseSide:
    """The base model's pass, one batch at a time: clean, SAE spliced, zero-ablated (``sae_batch``)."""
    start = resume_layer(hook, base.cfg.positional_embedding_type)

    @torch.inference_mode()
    def batch(i: int, tokens: torch.Tensor) -> tuple[torch.Tensor, BatchSums]:
        acc = SAEMetrics(sae.cfg.d_in, sae.cfg.d_sae, threshold)  # a batch's sums depend on that batch alone
        x = sae_batch(base, sae, hook, start, tokens, threshold, acc, plan)
        return x, acc.kept.per_batch[0]
    return batch


@torch.inference_mode()
def check_pass(base: BaseSide, finetune, sae, hook: str, windows: torch.Tensor, threshold: float, spec: CheckSpec,
               desc: str = "check", memory: str = "auto") -> dict[str, Any]:
    """The check of ``sae`` at ``hook`` on ``finetune`` against the base (``base``: ``live_base`` or stored
    passes) over ``windows`` [n, context_size] (BOS-led token ids), in batches of ``spec.batch_size``, stopping
    early once decided, each batch cut to fit ``memory`` (``memory.py``).

    Returns plain data: ``tokens``/``batches`` measured, ``stopped_early``, ``decided``, ``criteria`` (each
    criterion's class and ``verdict``), ``metrics`` (``{key: {value, lo, hi}}``), ``n_regular``, ``poor_on_base``
    and ``recheck`` (the regular features whose activation similarity fell most, with top contexts' token indices).
    """
    per_b: list[BatchSums] = []
    acc_f = SAEMetrics(sae.cfg.d_in, sae.cfg.d_sae, threshold)
    res = ResidualSimilarity(hook, windows.shape[1])
    feats = FeaturePairStats(sae, hook, threshold, top_k=3, keep_batches=True)
    start = resume_layer(hook, finetune.cfg.positional_embedding_type)
    plan = pass_plan(finetune, sae, windows.shape[1], spec.batch_size, memory)
    device = finetune.cfg.device
    batches = windows.split(spec.batch_size)
    stopped, regular, n_tokens = False, [], 0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False)
    for i, tokens in enumerate(bar):
        tokens = tokens.to(device)
        n_tokens += tokens.numel()
        xb, sums_b = base(i, tokens)
        per_b.append(sums_b)
        xf = sae_batch(finetune, sae, hook, start, tokens, threshold, acc_f, plan)
        for acc in (res, feats):
            acc.update(tokens, {hook: xb}, {hook: xf})
            acc.end_batch()
        done = i + 1
        if spec.early_stop and done >= spec.min_batches() and done % 2 == 0 and done < len(batches):
            regular = _regular(feats, spec)
            crit, is_decided = _criteria(_Batches(per_b, acc_f.kept.per_batch, feats, res, regular).estimate(
                criteria_only=True, n_boot=spec.n_boot, seed=spec.seed))
            bar.set_postfix_str(f"{crit['verdict']}{'' if is_decided else '?'}")
            if is_decided:
                stopped = True
                break
    bar.close()
    regular = _regular(feats, spec)
    est = _Batches(per_b, acc_f.kept.per_batch, feats, res, regular).estimate(n_boot=spec.n_boot, seed=spec.seed)
    crit, is_decided = _criteria(est)
    stats = feats.result()
    return {"tokens": n_tokens, "batches": done, "token_budget": spec.max_tokens, "stopped_early": stopped,
            "decided": is_decided, "criteria": crit, "verdict": crit["verdict"], "metrics": est,
            "n_regular": len(regular),
            "outlier_threshold": _num(threshold), "n_outliers": stats["n_outliers"],
            "poor_on_base": (est["ev_base"]["value"] or 0.0) < V.POOR,
            "recheck": _recheck(stats, regular, spec.n_recheck)}


def _regular(feats: FeaturePairStats, spec: CheckSpec) -> list[int]:
    """A seeded sample of the regular features (log10 density in [-5, -1] in both models) seen so far."""
    n = max(feats.n, 1)
    dens = {"density_base": (feats.fires["x"].double() / n).tolist(),
            "density_finetune": (feats.fires["y"].double() / n).tolist()}
    return select_groups(dens, spec.n_regular, 0, spec.seed)["regular"]


def _recheck(stats: dict, regular: list[int], n: int) -> list[dict]:
    """The ``n`` regular features with the lowest activation similarity, with their top activations' token
    indices in each model (``context`` fills in the text)."""
    sim = torch.tensor(stats["act_sim"], dtype=torch.float64)[regular]
    ok = ~sim.isnan()
    order = sim[ok].argsort()[:n]
    feats = torch.tensor(regular, dtype=torch.long)[ok][order].tolist()
    out = []
    for f in feats:
        top = {m: [(float(v), int(t)) for v, t in zip(stats[f"top_{m}"]["values"][f], stats[f"top_{m}"]["tokens"][f])
                   if t >= 0 and v > 0] for m in ("base", "finetune")}
        out.append({"feature": f, "act_sim": stats["act_sim"][f], "density_base": stats["density_base"][f],
                    "density_finetune": stats["density_finetune"][f], "top": top})
    return out


def add_contexts(result: dict, tokenizer, windows: torch.Tensor) -> dict:
    """``result["recheck"]`` with each top activation's text (the token in ⟦ ⟧) in place of its index."""
    for row in result["recheck"]:
        row["contexts"] = {m: [{"activation": v, "text": context_text(tokenizer, windows, t)} for v, t in top]
                           for m, top in row.pop("top").items()}
    return result
