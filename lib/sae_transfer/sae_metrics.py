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
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .accumulators import Bins
from .datasets import TokenSpec, check_token_spec, token_batches
from .stream import cached, model_identity

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


# ------------------------------------------------------------------------------------------ outliers

@dataclass(frozen=True)
class Outliers:
    """Which tokens count as outliers: ``none``, ``NX`` (N times the base's mean residual norm) or ``N`` (absolute).

    The seed used absolute norms (about 289 for Gemma-2b, 200 for Mistral-7B); a multiple of the base's mean
    norm carries over to models of any scale.
    """

    kind: str  # "none", "relative" or "absolute"
    value: float = math.inf

    VALID = "'none', a multiple of the base's mean norm such as '3x', or an absolute norm such as '289'"

    @classmethod
    def parse(cls, text: str) -> Outliers:
        t = str(text).strip().lower()
        if t == "none":
            return cls("none")
        relative = t.endswith("x")
        try:
            value = float(t[:-1] if relative else t)
        except ValueError:
            raise ValueError(f"outliers={text!r}: use {cls.VALID}") from None
        if not value > 0 or math.isinf(value):
            raise ValueError(f"outliers={text!r} must be positive and finite; use {cls.VALID}")
        return cls("relative" if relative else "absolute", value)

    def threshold(self, base_mean_norm) -> float:
        """The absolute norm above which a token is an outlier; ``base_mean_norm`` is called only if needed."""
        if self.kind == "none":
            return math.inf
        return self.value * base_mean_norm() if self.kind == "relative" else self.value


# ------------------------------------------------------------------------------------------ accumulator

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
        if b is None:
            return
        self.n += b["n"]
        self.n_ce += b["n_ce"]
        for k, v in b["s"].items():
            self.s[k] += v
        self.sum_x += b["sum_x"]
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
        }


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


def next_token_ce(logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-token next-token CE [B, T] from log-probabilities [B, T, vocab]; the last position (no next token)
    gets 0 and must be masked out."""
    ce = torch.zeros(tokens.shape, dtype=torch.float32, device=logp.device)
    ce[:, :-1] = -logp[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    return ce


class CleanLogits:
    """The clean pass's log-probabilities [B, T, vocab] (fp32) and what every intervention compares against."""

    def __init__(self, logits: torch.Tensor, tokens: torch.Tensor):
        self.logp = torch.log_softmax(logits.float(), dim=-1)
        self.p = self.logp.exp()
        self.neg_entropy = (self.p * self.logp).sum(-1)  # [B, T]
        self.tokens = tokens
        self.ce = next_token_ce(self.logp, tokens)

    def compare(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE [B, T], KL(clean || intervened) [B, T]) of intervened ``logits`` [B, T, vocab], in fp32."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        return next_token_ce(logp, self.tokens), self.neg_entropy - (self.p * logp).sum(-1)


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


# ------------------------------------------------------------------------------------------ the pass

def resume_layer(hook: str, model) -> int | None:
    """The block a forward pass can start at with the activation of ``hook`` as its input, if any.

    ``blocks.L.hook_resid_pre`` is block L's input and ``blocks.L.hook_resid_post`` block L+1's, so the spliced
    and ablated passes skip the layers before the hook. Other hooks fall back to a full pass with a hook.
    """
    parts = hook.split(".")
    if model.cfg.positional_embedding_type == "shortformer" or len(parts) != 3 or parts[0] != "blocks":
        return None
    layer = int(parts[1])
    return {"hook_resid_pre": layer, "hook_resid_post": layer + 1}.get(parts[2])


def _forward_from(model, hook: str, start: int | None, tokens, act):
    """Logits [B, T, vocab] of ``model`` on ``tokens`` with ``act`` in place of the activation at ``hook``."""
    if start is not None:
        return model(act, start_at_layer=start)
    return model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: act.to(a.dtype))])


@torch.no_grad()
def sae_pass(model, sae, hook: str, batches: Iterable[torch.Tensor], threshold: float,
             n_batches: int | None = None, desc: str = "sae metrics") -> dict[str, Any]:
    """``SAEMetrics`` of ``model`` with ``sae`` at ``hook`` over ``batches`` of token ids [batch, pos]."""
    acc = SAEMetrics(sae.cfg.d_in, sae.cfg.d_sae, threshold)
    start = resume_layer(hook, model)
    device = model.cfg.device
    for tokens in tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False):
        tokens = tokens.to(device)
        logits, cache = model.run_with_cache(tokens, names_filter=hook)
        x = cache[hook]
        del cache
        outlier = x.float().norm(dim=-1) > threshold
        feats = sae.encode(x.to(sae.dtype))
        x_hat = sae.decode(feats).to(x.dtype)
        # Few vocabulary-sized tensors alive at a time: logits of 7B models are gigabytes per batch.
        clean = CleanLogits(logits, tokens)
        del logits
        ce, kl = {"clean": clean.ce}, {}
        for name, act in (("spliced", torch.where(outlier[..., None], x, x_hat)),
                          ("zero", torch.where(outlier[..., None], x, torch.zeros_like(x)))):
            ce[name], kl[name] = clean.compare(_forward_from(model, hook, start, tokens, act))
        acc.update(x, feats, x_hat, outlier, ce, kl)
    return acc.result()


@torch.no_grad()
def mean_norm_pass(model, hook: str, batches: Iterable[torch.Tensor], n_batches: int | None = None) -> float:
    """Mean residual norm at ``hook`` over all tokens of ``batches`` (stops after the hook's block)."""
    from .stream import stop_layer

    total, n = 0.0, 0
    stop = stop_layer([hook], model.cfg.n_layers)
    for tokens in tqdm(batches, total=n_batches, desc="mean norm", unit="batch", leave=False):
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, stop_at_layer=stop,
                                        return_type=None)
        total += float(cache[hook].float().norm(dim=-1).double().sum())
        n += cache[hook].shape[0] * cache[hook].shape[1]
    return total / n


# ------------------------------------------------------------------------------------------ measuring pairs

def sae_identity(spec: str, zoo: str) -> dict:
    """What identifies an SAE's weights in a cache key."""
    from pathlib import Path

    if spec.startswith("zoo:"):
        from .zoo.build import sae_fingerprint
        from .zoo.recipe import load_recipe

        return {"spec": spec, "zoo": sae_fingerprint(load_recipe(zoo), spec[4:])}
    return {"spec": spec, "path": str(Path(spec.partition(":")[2]).resolve()) if spec.startswith("local:") else None}


class Loader:
    """Loads (base, finetune, SAE) only when a measurement is not cached, one finetune in memory at a time."""

    def __init__(self, base: str, sae: str, hook: str, zoo: str, device: str, dtype: str):
        self.args = dict(base=base, sae=sae, hook=hook or None, zoo=zoo, device=device, dtype=dtype)
        self.finetune: str | None = None
        self.pair = None

    def __call__(self, finetune: str):
        from .models import load_pair

        if self.finetune != finetune:
            self.pair = None  # free the previous finetune before loading the next
            self.pair = load_pair(finetune=finetune, **self.args)
            self.finetune = finetune
        return self.pair


def base_mean_norm(base: str, sae: str, hook: str, spec: TokenSpec, zoo: str, dtype: str, load) -> float:
    """The base's mean residual norm at the SAE's hook over ``spec``'s tokens (cached); ``load()`` returns the
    loaded ``ModelPair`` and is called only when the value is not cached. Relative outlier rules scale it."""
    key = {"sae": sae_identity(sae, zoo), "hook": hook or "the SAE's own", "dtype": dtype,
           "model": model_identity(base, zoo), "tokens": spec.as_dict(), "what": "mean-norm"}

    def run() -> dict:
        pair = load()
        return {"mean_norm": mean_norm_pass(pair.base, pair.hook, token_batches(spec, pair.tokenizer, zoo),
                                            spec.n_batches())}
    return cached("mean-norm", key, run)["mean_norm"]


def measure(base: str, finetunes: list[str], sae: str, datasets: list[str], n_tokens: int, context_size: int,
            batch_size: int, outliers: str = "3x", hook: str = "", zoo: str = "default", device: str = "auto",
            dtype: str = "float32", seed: int = 0, include_base: bool = True, load=None) -> dict[str, Any]:
    """The SAE's metrics on the base and on every finetune, on every dataset (the base left out, and
    ``"base"`` empty, when ``include_base`` is false). ``load(finetune) -> ModelPair`` may be shared between
    calls (a ``Loader``) so that models load once per finetune.

    Returns ``{"base": {dataset: result}, "finetunes": {finetune: {dataset: result}}, "thresholds":
    {dataset: float | None}}`` where each result is ``SAEMetrics.result()``. Every (model, dataset) pass is
    cached on disk; models load only if one is missing.
    """
    rule = Outliers.parse(outliers)
    specs = [TokenSpec(d, n_tokens, context_size, batch_size, seed) for d in datasets]
    for s in specs:
        check_token_spec(s)
    if not finetunes:
        raise ValueError("finetunes=[]: give at least one finetuned model spec")
    load = load or Loader(base, sae, hook, zoo, device, dtype)
    common = {"sae": sae_identity(sae, zoo), "hook": hook or "the SAE's own", "dtype": dtype}

    def model_pass(spec: TokenSpec, model_spec: str, finetune: str, threshold: float) -> dict:
        key = {**common, "model": model_identity(model_spec, zoo), "tokens": spec.as_dict(),
               "threshold": threshold if math.isfinite(threshold) else None, "what": "sae-metrics", "v": 1}

        def run() -> dict:
            pair = load(finetune)
            model = pair.base if model_spec == base else pair.finetune
            return sae_pass(model, pair.sae, pair.hook, token_batches(spec, pair.tokenizer, zoo), threshold,
                            spec.n_batches(), desc=f"{model_spec} on {spec.dataset}")
        return cached("sae-metrics", key, run)

    out: dict[str, Any] = {"base": {}, "finetunes": {ft: {} for ft in finetunes}, "thresholds": {}}
    for spec in specs:
        threshold = rule.threshold(
            lambda spec=spec: base_mean_norm(base, sae, hook, spec, zoo, dtype, lambda: load(finetunes[0])))
        out["thresholds"][spec.dataset] = threshold if math.isfinite(threshold) else None
        if include_base:
            out["base"][spec.dataset] = model_pass(spec, base, finetunes[0], threshold)
        for ft in finetunes:
            out["finetunes"][ft][spec.dataset] = model_pass(spec, ft, ft, threshold)
    return out


# ------------------------------------------------------------------------------------------ comparisons, tables

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


#: The seed's headline table (Kutsyk et al. 2025, section 4; ../shared/reference/methods.md section A):
#: their numbers, quoted, for billion-parameter models on the base's pretraining data.
SEED_TABLE = {
    "Mistral-7B (theirs)": {"L0": 83.37, "clean CE": 1.78, "substitution CE": 1.93, "delta CE": 0.15,
                            "R² pooled": 0.68, "dead %": 0.76},
    "MetaMath-Mistral-7B (theirs)": {"L0": 90.22, "clean CE": 1.94, "substitution CE": 2.10, "delta CE": 0.16,
                                     "R² pooled": 0.58, "dead %": 0.64},
    "Gemma-2b (theirs)": {"L0": 53.59, "clean CE": 2.65, "substitution CE": 3.16, "delta CE": 0.51,
                          "R² pooled": 0.97, "dead %": 48.1},
    "Gemma-2b python-codes (theirs)": {"L0": 84.74, "clean CE": 3.29, "substitution CE": 7.50, "delta CE": 4.21,
                                       "R² pooled": -10.27, "dead %": 0.1},
}

#: Table columns: (label, result key, scale).
COLUMNS = (("L0", "l0", 1), ("L0 / width %", "l0_frac", 100), ("clean CE", "ce_clean", 1),
           ("substitution CE", "ce_spliced", 1), ("delta CE", "delta_ce", 1), ("CE recovered", "ce_recovered", 1),
           ("KL", "kl", 1), ("R² pooled", "r2_pooled", 1), ("EV per token", "ev_token", 1),
           ("cosine", "cos", 1), ("norm ratio", "norm_ratio", 1), ("dead %", "dead_frac", 100),
           ("dense %", "dense_frac", 100))


def short(spec: str) -> str:
    return spec.split(":", 1)[-1]


def rows(results: dict, subset: str = "kept"):
    """``(finetune, dataset, model spec, result)`` for the base and each finetune, base first within a pair."""
    for ft, by_ds in results["finetunes"].items():
        for ds, r in by_ds.items():
            yield ft, ds, None, results["base"][ds][subset]
            yield ft, ds, ft, r[subset]


def results_table(results: dict, subset: str = "kept", with_seed: bool = True):
    """The seed's table per (pair, dataset): a base row and a finetune row, then the seed's rows (theirs)."""
    import pandas as pd

    out = []
    for ft, ds, model, r in rows(results, subset):
        out.append({"pair": f"base vs {short(ft)}", "data": short(ds), "model": short(model) if model else "base",
                    **{label: r[key] * scale for label, key, scale in COLUMNS}})
    if with_seed:
        for name, vals in SEED_TABLE.items():
            out.append({"pair": "seed (theirs)", "data": "base's pretraining data", "model": name, **vals})
    return pd.DataFrame(out).set_index(["pair", "data", "model"])


def filtering_table(results: dict):
    """Key metrics over all tokens vs without outliers, and the outlier fraction, per model and dataset."""
    import pandas as pd

    keys = (("L0", "l0"), ("delta CE", "delta_ce"), ("CE recovered", "ce_recovered"), ("EV per token", "ev_token"),
            ("R² pooled", "r2_pooled"))
    out = []
    models = [("base", results["base"])] + [(short(ft), r) for ft, r in results["finetunes"].items()]
    for name, by_ds in models:
        for ds, r in by_ds.items():
            row = {"model": name, "data": short(ds), "outlier %": 100 * r["outlier_frac"],
                   "outliers at BOS": r["outliers_at_pos0"]}
            for label, key in keys:
                row[f"{label} (all)"] = r["all"][key]
                row[f"{label} (no outliers)"] = r["kept"].get(key, float("nan"))
            out.append(row)
    return pd.DataFrame(out).set_index(["model", "data"])


def density_table(results: dict, subset: str = "kept"):
    """``density_comparison`` for every (finetune, dataset)."""
    import pandas as pd

    out = []
    for ft, by_ds in results["finetunes"].items():
        for ds, r in by_ds.items():
            out.append({"pair": f"base vs {short(ft)}", "data": short(ds),
                        **density_comparison(results["base"][ds][subset], r[subset])})
    return pd.DataFrame(out).set_index(["pair", "data"])


def checkpoint_sweep(base: str, finetunes: list[str], sae: str, n_tokens: int, context_size: int, batch_size: int,
                     outliers: str, hook: str, zoo: str, device: str, dtype: str) -> list[dict]:
    """The SAE's metrics on every saved checkpoint of each zoo finetune, on the finetune's own domain.

    Hub and local finetunes have no checkpoints and are skipped, as are zoo finetunes of more than one domain.
    """
    from .zoo.build import own_domain, saved_checkpoints

    if not base.startswith("zoo:"):
        return []
    out = []
    for ft in finetunes:
        saved, dataset = saved_checkpoints(ft, zoo), own_domain(ft, zoo)
        if not saved or not dataset:
            continue
        name, steps, tokens_per_step = saved
        # Step 0 is the base's own weights (the zoo saves it to anchor the curve): its row is the base's pass.
        res = measure(base, [f"zoo:{name}@{s}" for s in steps if s > 0], sae, [dataset], n_tokens, context_size,
                      batch_size, outliers, hook, zoo, device, dtype)
        for s in steps:
            r = (res["finetunes"][f"zoo:{name}@{s}"] if s > 0 else res["base"])[dataset]["kept"]
            out.append({"finetune": name, "step": s, "tokens_seen": s * tokens_per_step,
                        "delta CE": r["delta_ce"], "CE recovered": r["ce_recovered"], "EV per token": r["ev_token"],
                        "L0": r["l0"], "dead %": 100 * r["dead_frac"], "KL": r["kl"]})
    return out


# ------------------------------------------------------------------------------------------ cross-check

#: Metrics both this module and ``sae_lens.evals.run_evals`` compute, under the same definitions.
SHARED_METRICS = ("l0", "ev_token", "ev_global", "mse", "cos", "norm_ratio", "ce_clean", "ce_spliced", "ce_zero",
                  "ce_recovered", "kl", "kl_zero", "dead_frac")


def cross_check(base: str, finetune: str, sae: str, dataset: str, n_tokens: int, context_size: int,
                batch_size: int, hook: str = "", zoo: str = "default", device: str = "auto",
                dtype: str = "float32") -> list[dict]:
    """Our streamed metrics next to ``run_evals``'s on the same SAE, models and token windows, no outliers.

    One row per (model, metric): ``ours``, ``sae_lens`` and their absolute difference.
    """
    from .models import load_pair
    from .zoo.sae import run_evals_on_windows

    spec = TokenSpec(dataset, n_tokens, context_size, batch_size)
    check_token_spec(spec)
    pair = load_pair(base, finetune, sae, hook or None, zoo, device, dtype)
    windows = torch.cat(list(token_batches(spec, pair.tokenizer, zoo)))
    windows = windows[: len(windows) - len(windows) % batch_size]  # run_evals wants whole batches
    out = []
    for role, model in (("base", pair.base), ("finetune", pair.finetune)):
        ours = sae_pass(model, pair.sae, pair.hook, windows.split(batch_size), math.inf)["all"]
        ref = run_evals_on_windows(pair.sae, model, windows, batch_size)
        out += [{"model": role, "metric": k, "ours": ours[k], "sae_lens": ref[k], "abs diff": abs(ours[k] - ref[k])}
                for k in SHARED_METRICS]
    return out


def own_domain_pairs(finetunes: list[str], datasets: list[str], zoo: str) -> list[tuple[str, str]]:
    """(finetune, dataset) with each finetune on the zoo domain it was finetuned on, when that is measured;
    otherwise on the first dataset (hub, local and mixed-domain finetunes)."""
    from .zoo.build import own_domain

    return [(ft, own_domain(ft, zoo) if own_domain(ft, zoo) in datasets else datasets[0]) for ft in finetunes]


def benchmark_table():
    """The last record of ``benchmarks/sae_metrics.py``: one row per implementation and token count."""
    from .bench import record_table

    return record_table("sae_metrics", ["implementation", "n_tokens"], {
        "implementation": "implementation", "n_tokens": "tokens per model", "wall_s": "wall s (both models)",
        "tokens_per_s": "tokens/s", "peak_rss_mb": "peak RSS MB"}, "benchmarks/sae_metrics.py")
