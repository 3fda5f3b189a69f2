"""The base SAE on a model's own activations: reconstruction, sparsity and downstream loss, in one streamed pass.

For each batch of tokens the model runs once cleanly (keeping the activation at the SAE's hook), and twice more
from the hook onward: with the SAE's reconstruction spliced in, and with the activation zero-ablated. Every
metric of the seed and of SAELens's ``run_evals`` comes out of running sums over those three passes, so memory
stays flat however many tokens are measured; no [tokens, d_sae] tensor ever exists beyond one batch.

Outlier tokens (residual norm above a threshold) keep their original activation in both interventions, and one
mask drives every metric: each is reported over all tokens and over the tokens that are not outliers.

Base and finetune are measured in separate passes over the same token batches with the same SAE: a model's
result depends only on (model, SAE, tokens, threshold), so the base's pass is cached once and reused by every
finetune and every checkpoint compared with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_transfer.core.memory import PassShape, Plan, budget_bytes, micro_batch, plan
from sae_transfer.core.specs import is_zoo
from sae_transfer.data.tokens import TokenSpec, check_token_spec, token_batches, token_windows
from sae_transfer.models.hooks import resume_layer
from sae_transfer.models.pairs import PairLoader, PairSetup
from sae_transfer.passes.cache import cached, measurement_key
from sae_transfer.passes.outliers import finite_or_none, outlier_threshold
from sae_transfer.passes.sae_accumulator import SAEMetrics
from sae_transfer.zoo.sae import run_evals_on_windows

# ------------------------------------------------------------------------------------------ the pass

def next_token_ce(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position CE [n] of log-probabilities ``logp`` [n, vocab] against ``targets`` [n] (the next tokens)."""
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def log_probs(model, resid: torch.Tensor) -> torch.Tensor:
    """fp32 log-probabilities [n, vocab] from final residuals [n, d_model] (before the final norm), as
    TransformerLens's forward makes them: final norm, unembedding, soft cap."""
    x = resid.unsqueeze(0)  # TransformerLens's components expect [batch, pos, d_model]
    if model.cfg.normalization_type is not None:
        x = model.ln_final(x)
    # Not model.unembed(x): TransformerLens's Unembed copies W_U transposed on every call (113 MB for a
    # 49K-token vocabulary), which made 42-row chunks 20x slower than the matmul itself.
    logits = torch.addmm(model.unembed.b_U, x[0], model.unembed.W_U).float()
    cap = model.cfg.output_logits_soft_cap  # Gemma 2's final soft cap; <= 0 means none
    if cap and cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return torch.log_softmax(logits, dim=-1)


def logit_stats(model, tokens: torch.Tensor, clean: torch.Tensor, others: dict[str, torch.Tensor],
                rows: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Next-token CE and KL(clean || other) from final residuals, ``rows`` positions at a time, so that no
    vocabulary-sized tensor larger than [rows, vocab] exists.

    ``tokens`` [B, T]; ``clean`` and each of ``others`` [B, T, d_model]. Returns (CE {"clean", *others} [B, T],
    KL {*others} [B, T]), fp32; CE at the last position (no next token) is 0 and must be masked out.
    """
    B, T = tokens.shape
    targets = torch.zeros_like(tokens)
    targets[:, :-1] = tokens[:, 1:]
    targets = targets.flatten()
    flat = {"clean": clean.flatten(0, 1), **{k: v.flatten(0, 1) for k, v in others.items()}}
    ce = {k: torch.empty(B * T, device=tokens.device) for k in flat}
    kl = {k: torch.empty(B * T, device=tokens.device) for k in others}
    for i in range(0, B * T, rows):
        sl = slice(i, i + rows)
        logp = log_probs(model, flat["clean"][sl])
        ce["clean"][sl] = next_token_ce(logp, targets[sl])
        p = logp.exp()
        neg_entropy = torch.einsum("nv,nv->n", p, logp)  # no [rows, vocab] temporary
        del logp
        for k in others:
            other = log_probs(model, flat[k][sl])
            ce[k][sl] = next_token_ce(other, targets[sl])
            kl[k][sl] = neg_entropy - torch.einsum("nv,nv->n", p, other)
            del other
    ce = {k: v.view(B, T) for k, v in ce.items()}
    for v in ce.values():
        v[:, -1] = 0.0
    return ce, {k: v.view(B, T) for k, v in kl.items()}


def _final_resid(model, hook: str, start: int | None, tokens, act=None):
    """The residual after the last block [b, T, d_model] of ``model`` on ``tokens`` with ``act`` spliced in at
    ``hook``, resuming at block ``start`` where the hook allows it. With ``act`` None (the clean pass, for hooks
    no pass can resume at), also returns the clean activation at ``hook``."""
    n = model.cfg.n_layers
    if act is None:
        resid, cache = model.run_with_cache(tokens, names_filter=hook, stop_at_layer=n)
        return resid, cache[hook]
    if start is not None:
        return model(act, start_at_layer=start, stop_at_layer=n)
    return model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: act.to(a.dtype))], stop_at_layer=n)


def pass_plan(model, sae, context: int, batch_size: int, memory: str = "auto") -> Plan:
    """The micro-batch and logit chunk of the pass for ``model`` with ``sae`` (``memory``: see ``memory.py``)."""
    shape = PassShape.of(model.cfg, sae.cfg.d_sae, context)
    return plan(shape, batch_size, budget_bytes(memory, model.cfg.device), memory, str(model.cfg.device))


@torch.inference_mode()  # no autograd bookkeeping at all: 1.19x faster than no_grad on SmolLM2
def sae_batch(model, sae, hook: str, start: int | None, tokens: torch.Tensor, threshold: float,
              acc: SAEMetrics, plan: Plan | None = None) -> torch.Tensor:
    """One batch of the pass: ``model`` runs cleanly, then from ``hook`` on with the SAE's reconstruction and with
    zeros spliced in; ``acc`` gets the batch. ``plan`` cuts the batch into micro-batches of whole windows and its
    logits into chunks (default: all at once). Returns the clean activation at ``hook`` [B, T, d_in] (for pair
    accumulators that need it). ``tokens`` [B, T] on the model's device; ``start`` from ``resume_layer``."""
    micro = plan.micro_batch if plan else len(tokens)
    chunks = tokens.split(micro)
    # The whole batch's activation at the hook first (its mean and outliers are the batch's); the clean pass
    # resumes from it a micro-batch at a time, so only [B, T, d_in] spans the batch.
    if start is not None:
        xs, cleans = [model(t, stop_at_layer=start) for t in chunks], [None] * len(chunks)
    else:  # a hook no pass can resume at: the clean pass runs whole, its final residuals kept
        cleans, xs = zip(*(_final_resid(model, hook, None, t) for t in chunks))
    x = torch.cat(xs)
    outlier = x.float().norm(dim=-1) > threshold
    acc.start_batch(x, outlier)
    for t, xm, clean, out in zip(chunks, xs, cleans, outlier.split(micro)):
        if clean is None:
            clean = model(xm, start_at_layer=start, stop_at_layer=model.cfg.n_layers)
        feats = sae.encode(xm.to(sae.dtype))
        x_hat = sae.decode(feats).to(xm.dtype)
        others = {name: _final_resid(model, hook, start, t, torch.where(out[..., None], xm, act))
                  for name, act in (("spliced", x_hat), ("zero", torch.zeros_like(xm)))}
        ce, kl = logit_stats(model, t, clean, others, plan.logit_rows if plan else t.numel())
        del others
        acc.add_part(xm, feats, x_hat, out, ce, kl)
    acc.end_batch()
    return x


@torch.inference_mode()
def sae_pass(model, sae, hook: str, batches: Iterable[torch.Tensor], threshold: float,
             n_batches: int | None = None, desc: str = "sae metrics", memory: str = "auto") -> dict[str, Any]:
    """``SAEMetrics`` of ``model`` with ``sae`` at ``hook`` over ``batches`` of token ids [batch, pos], within
    the ``memory`` budget (see ``memory.py``)."""
    acc = SAEMetrics(sae.cfg.d_in, sae.cfg.d_sae, threshold)
    start = resume_layer(hook, model.cfg.positional_embedding_type)
    plans: dict[tuple[int, int], Plan] = {}
    for tokens in tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False):
        shape = tuple(tokens.shape)
        if shape not in plans:
            plans[shape] = pass_plan(model, sae, shape[1], shape[0], memory)
        sae_batch(model, sae, hook, start, tokens.to(model.cfg.device), threshold, acc, plans[shape])
    return acc.result()


# ------------------------------------------------------------------------------------------ measuring pairs

def measure(setup: PairSetup, finetunes: list[str], tokens: list[TokenSpec], outliers: str = "3x",
            include_base: bool = True, loader: PairLoader | None = None) -> dict[str, Any]:
    """The SAE's metrics on the base and on every finetune, on every token spec (the base left out, and
    ``"base"`` empty, when ``include_base`` is false). A ``loader`` may be shared between calls so that models
    load once per finetune.

    Returns ``{"base": {dataset: result}, "finetunes": {finetune: {dataset: result}}, "thresholds":
    {dataset: float | None}}`` where each result is ``SAEMetrics.result()``. Every (model, dataset) pass is
    cached on disk; models load only if one is missing.
    """
    for spec in tokens:
        check_token_spec(spec)
    if not finetunes:
        raise ValueError("finetunes=[]: give at least one finetuned model spec")
    load = loader or setup.loader()

    def model_pass(spec: TokenSpec, model_spec: str, finetune: str, threshold: float) -> dict:
        def run() -> dict:
            pair = load(finetune)
            model = pair.base if model_spec == setup.base else pair.finetune
            return sae_pass(model, pair.sae, pair.hook, token_batches(spec, pair.tokenizer, setup.zoo), threshold,
                            spec.n_batches(), desc=f"{model_spec} on {spec.dataset}", memory=setup.memory)
        key = measurement_key("sae-metrics", __name__, setup, model=model_spec, tokens=spec,
                              threshold=finite_or_none(threshold))
        result = cached("sae-metrics", key, run)
        if not result["kept"]["n_tokens"]:  # the metrics are over tokens that are not outliers: there are none
            raise ValueError(f"every token of {model_spec} on {spec.dataset} is an outlier under "
                             f"outliers={outliers!r} (a residual norm over {threshold:.4g}), so no metric is left; "
                             "use outliers='none' or a larger threshold such as '10x'")
        return result

    out: dict[str, Any] = {"base": {}, "finetunes": {ft: {} for ft in finetunes}, "thresholds": {}}
    for spec in tokens:
        threshold = outlier_threshold(setup, outliers, spec, lambda: load(finetunes[0]))
        out["thresholds"][spec.dataset] = finite_or_none(threshold)
        if include_base:
            out["base"][spec.dataset] = model_pass(spec, setup.base, finetunes[0], threshold)
        for ft in finetunes:
            out["finetunes"][ft][spec.dataset] = model_pass(spec, ft, ft, threshold)
    return out


def measure_checkpoints(setup: PairSetup, finetunes: list[str], n_tokens: int, context_size: int,
                        batch_size: int, outliers: str) -> list[dict]:
    """The SAE's metrics on every saved checkpoint of each zoo finetune, on the finetune's own domain.

    Hub and local finetunes have no checkpoints and are skipped, as are zoo finetunes of more than one domain.
    """
    if not is_zoo(setup.base):
        return []
    zoo = setup.zoo_handle
    out = []
    for ft in finetunes:
        saved, dataset = zoo.checkpoints(ft), zoo.own_domain(ft)
        if not saved or not dataset:
            continue
        # Step 0 is the base's own weights (the zoo saves it to anchor the curve): its row is the base's pass.
        res = measure(setup, [f"zoo:{saved.name}@{s}" for s in saved.steps if s > 0],
                      [TokenSpec(dataset, n_tokens, context_size, batch_size)], outliers)
        for s in saved.steps:
            r = (res["finetunes"][f"zoo:{saved.name}@{s}"] if s > 0 else res["base"])[dataset]["kept"]
            out.append({"finetune": saved.name, "step": s, "tokens_seen": s * saved.tokens_per_step,
                        "delta CE": r["delta_ce"], "CE recovered": r["ce_recovered"], "EV per token": r["ev_token"],
                        "L0": r["l0"], "dead %": 100 * r["dead_frac"], "KL": r["kl"]})
    return out


# ------------------------------------------------------------------------------------------ cross-check

#: Metrics both this module and ``sae_lens.evals.run_evals`` compute, under the same definitions.
SHARED_METRICS = ("l0", "ev_token", "ev_global", "mse", "cos", "norm_ratio", "ce_clean", "ce_spliced", "ce_zero",
                  "ce_recovered", "kl", "kl_zero", "dead_frac")


#: Vocabulary-sized fp32 tensors per position that ``run_evals`` holds at once: clean, spliced and ablated logits,
#: their log-probabilities, and the probabilities and terms of its KL divergences (an upper estimate).
RUN_EVALS_LOGIT_COPIES = 10


def run_evals_batch(pair, spec: TokenSpec, memory: str) -> int:
    """The windows per ``run_evals`` batch (at most ``spec.batch_size``) that fit the ``memory`` budget: it holds
    its logits whole, so a 200K-token vocabulary at 16 windows of 128 tokens wants about 16 GB."""
    shape = PassShape.of(pair.base.cfg, pair.sae.cfg.d_sae, spec.context_size)
    window = spec.context_size * RUN_EVALS_LOGIT_COPIES * 4 * shape.d_vocab + shape.window_bytes()
    device = str(next(pair.base.parameters()).device)
    return micro_batch(window, spec.batch_size, budget_bytes(memory, device), spec.context_size, memory)


def cross_check(setup: PairSetup, finetune: str, dataset: str, n_tokens: int, context_size: int,
                batch_size: int) -> list[dict]:
    """Our streamed metrics next to ``run_evals``'s on the same SAE, models and ``n_tokens`` token windows of
    ``dataset``, no outliers; [] when ``n_tokens`` is 0 (skipped).

    One row per (model, metric): ``ours``, ``sae_lens`` and their absolute difference.
    """
    if not n_tokens:
        return []
    spec = TokenSpec(dataset, n_tokens, context_size, max(1, min(batch_size, n_tokens // context_size)))
    check_token_spec(spec)
    pair = setup.loader()(finetune)
    batch = run_evals_batch(pair, spec, setup.memory)
    windows = token_windows(spec, pair.tokenizer, setup.zoo)
    windows = windows[: len(windows) - len(windows) % batch]  # run_evals wants whole batches
    out = []
    for role, model in (("base", pair.base), ("finetune", pair.finetune)):
        ours = sae_pass(model, pair.sae, pair.hook, windows.split(batch), math.inf, memory=setup.memory)["all"]
        ref = run_evals_on_windows(pair.sae, model, windows, batch)
        out += [{"model": role, "metric": k, "ours": ours[k], "sae_lens": ref[k], "abs diff": abs(ours[k] - ref[k])}
                for k in SHARED_METRICS]
    return out


def log_density(result: dict) -> torch.Tensor:
    """log10(density + 1e-10) per feature [d_sae], the seed's scale."""
    return (torch.tensor(result["density"], dtype=torch.float64) + 1e-10).log10()


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson r of two vectors; NaN (never silently dropped) when either is constant."""
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


def density_comparison(base: dict, finetune: dict) -> dict[str, float]:
    """How the SAE's per-feature densities move from base to finetune (one subset's results each)."""
    lb, lf = log_density(base), log_density(finetune)
    alive = (lb > -9.9) | (lf > -9.9)
    regular = (lb >= -5) & (lb <= -1) & (lf >= -5) & (lf <= -1)
    return {"pearson_log_density": pearson(lb, lf), "pearson_log_density_alive": pearson(lb[alive], lf[alive]),
            "dead_base": float((lb <= -9.9).double().mean()), "dead_finetune": float((lf <= -9.9).double().mean()),
            "dead_both": float(((lb <= -9.9) & (lf <= -9.9)).double().mean()),
            "regular_frac": float(regular.double().mean()),
            "mean_abs_log_density_change": float((lb - lf)[alive].abs().mean()) if alive.any() else float("nan")}
