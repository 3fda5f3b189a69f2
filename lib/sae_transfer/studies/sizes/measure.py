"""Across model sizes: a stitch between a small and a large model of one family, and what it carries across (an SAE,
probes, a steering vector), with the features the two sizes share (seed 003; seed 000's stability question).

``measure(setup, small, small_sae, study)``: ``setup`` is the large model with its own SAE (the reference every
carried object is compared with); ``small`` and ``small_sae`` the other size. Steps, each cached:

1. the stitch (``stitch.py``) trained on both models' residuals at the two SAEs' layers (train splits, streamed);
2. one held-out pass per dataset: linear CKA between every pair of layers, the stitch's errors, next-token CE of
   the large model resumed from the stitched small activations, both SAEs' feature correlations (and the second
   seed's, the ceiling), running top-k contexts, domain means for steering, token counts;
3. the SAE metrics (``sae_metrics.sae_pass``) of the small SAE on the small model, of the collapsed SAE and of
   the large SAE on the large model;
4. the large model's SAE trained from scratch and from the collapsed SAE, explained variance along the way
   (``sizes_train.py``);
5. probes and steering (``sizes_transfer.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_transfer.core.specs import data_spec, is_zoo
from sae_transfer.data import answerable
from sae_transfer.data.tokens import TokenSpec, check_token_spec, interleaved_batches, token_batches, token_windows
from sae_transfer.models.hooks import residual_hooks, residual_index, resume_layer, stop_layer
from sae_transfer.models.load import (SpecError, check_dtype, d_model_of, load_model, load_sae, load_tokenizer_for,
                                      n_layers_of, parse_spec, resolve_device)
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.accumulators import RunningTopK
from sae_transfer.passes.cache import cached, entry_path, measurement_key, sae_identity, tokens_identity, trained
from sae_transfer.passes.sae_metrics import logit_stats, sae_pass
from sae_transfer.studies.parameters import Config
from sae_transfer.studies.sizes import train as sizes_train
from sae_transfer.studies.sizes import transfer as sizes_transfer
from sae_transfer.studies.sizes.stats import FeatureCorrelation, LayerCKA, StitchQuality
from sae_transfer.methods.stitch import Stitch, StitchConfig, collapse_sae, fit_stitch


@dataclass(frozen=True, kw_only=True)
class SizesStudy(Config):
    """``stitch_tokens`` training tokens of the maps (an equal share of each dataset's train split),
    ``n_tokens`` held-out tokens per dataset for every evaluation; ``sae_tokens`` of training for each of the two
    large-model SAEs of the initialisation study (0: skip it), ``sae_checkpoints`` points on its curve."""

    datasets: tuple[str, ...]
    stitch_tokens: int
    n_tokens: int
    context_size: int
    batch_size: int
    stitch_lr: float
    sae_tokens: int
    sae_checkpoints: int
    steer_from: str
    steer_to: str
    probe_domains: tuple[str, ...]
    n_train: int
    n_test: int
    probe_k: int
    top_k: int
    seed: int
    context_chars: int

    def __post_init__(self) -> None:
        for name in ("steer_from", "steer_to"):
            if getattr(self, name) not in self.datasets:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of datasets={list(self.datasets)}")
        if self.steer_from == self.steer_to:
            raise ValueError(f"steer_from and steer_to are both {self.steer_to!r}; give two datasets")
        if self.stitch_tokens < 4096:
            raise ValueError(f"stitch_tokens={self.stitch_tokens}: at least 4096")
        if self.sae_tokens and self.sae_checkpoints < 2:
            raise ValueError(f"sae_checkpoints={self.sae_checkpoints}: at least 2 points on the curve")
        answerable.check_sizes(self.n_train, self.n_test)
        answerable.check_domains(list(self.probe_domains))

    def train_specs(self) -> list[TokenSpec]:
        share = int(-(-self.stitch_tokens // len(self.datasets)) * 1.05) + self.context_size
        return [TokenSpec(str(data_spec(d).with_split("train")), share, self.context_size,
                          self.batch_size, self.seed) for d in self.datasets]

    def eval_specs(self) -> list[TokenSpec]:
        """Held-out tokens: a zoo corpus's held-out split, or the windows after the training ones."""
        return [TokenSpec(d, self.n_tokens, self.context_size, self.batch_size, self.seed)
                if is_zoo(d) else t.after(self.n_tokens) for d, t in zip(self.datasets, self.train_specs())]


@dataclass
class Sizes:
    """Both models, their SAEs (the second seed's when given) and the hooks, loaded and checked."""

    small: Any
    large: Any
    small_sae: Any
    large_sae: Any
    second_sae: Any
    tokenizer: Any
    small_hook: str
    large_hook: str


def _sae_hook(sae, param: str, spec: str, model_param: str, model_spec: str, zoo: str) -> str:
    """The SAE's hook, checked to be a residual stream of the model it is paired with and to fit its width."""
    hook = sae.cfg.metadata.hook_name
    if residual_index(hook) is None:
        raise SpecError(f"{param}={spec!r} reads {hook!r}: stitching maps residual streams (hook_resid_pre/post)")
    n = n_layers_of(model_spec, zoo)
    if n is not None and residual_index(hook) > n:
        raise SpecError(f"{param}={spec!r} reads {hook!r} but {model_param}={model_spec!r} has {n} blocks (residual "
                        f"hooks blocks.0.hook_resid_pre .. blocks.{n - 1}.hook_resid_post)")
    width = d_model_of(model_spec, zoo)
    if width is not None and sae.cfg.d_in != width:
        raise SpecError(f"{param}={spec!r} reads width {sae.cfg.d_in} but {model_param}={model_spec!r} has a "
                        f"residual stream of width {width}")
    return hook


def check_inputs(large: str, large_sae: str, small: str, small_sae: str, second_sae: str, zoo: str,
                 device: str = "cpu", dtype: str = "float32") -> tuple[Any, dict[str, Any]]:
    """Everything that can be checked without a model's weights: specs, that the two models share a tokenizer
    (stitching needs token-aligned streams), the SAEs' hooks against the models' depths and widths. Returns the
    tokenizer and the loaded SAEs (cheap), by parameter name."""
    parse_spec(large, "large")
    parse_spec(small, "small")
    for name, spec in (("small_sae", small_sae), ("large_sae", large_sae), ("second_sae", second_sae)):
        if spec:
            parse_spec(spec, name, sae=True)
    tok = load_tokenizer_for(large, "large", zoo)
    tok_small = load_tokenizer_for(small, "small", zoo)
    if tok.get_vocab() != tok_small.get_vocab():
        raise SpecError(f"small={small!r} and large={large!r} have different tokenizers ({len(tok_small)} and "
                        f"{len(tok)} tokens); stitching needs token-aligned streams: two sizes of one family")
    saes = {p: load_sae(s, zoo, device, dtype) if s else None
            for p, s in (("small_sae", small_sae), ("large_sae", large_sae), ("second_sae", second_sae))}
    _sae_hook(saes["small_sae"], "small_sae", small_sae, "small", small, zoo)
    hl = _sae_hook(saes["large_sae"], "large_sae", large_sae, "large", large, zoo)
    if saes["second_sae"] is not None:
        _sae_hook(saes["second_sae"], "second_sae", second_sae, "large", large, zoo)
        if saes["second_sae"].cfg.metadata.hook_name != hl:
            raise SpecError(f"second_sae={second_sae!r} reads {saes['second_sae'].cfg.metadata.hook_name!r}, not "
                            f"the large SAE's {hl!r}; the ceiling compares two SAEs of one layer")
    return tok, saes


def load(setup: PairSetup, small: str, small_sae: str, second_sae: str = "") -> Sizes:
    """Every cheap check first (``check_inputs``), then the models' weights."""
    device, dtype = resolve_device(setup.device), check_dtype(setup.dtype)
    tok, saes = check_inputs(setup.base, setup.sae, small, small_sae, second_sae, setup.zoo, device, setup.dtype)
    models = {p: load_model(s, p, setup.zoo, tok, device, dtype) for p, s in (("small", small),
                                                                             ("large", setup.base))}
    for p, sae_p in (("small", "small_sae"), ("large", "large_sae"), ("large", "second_sae")):
        sae = saes[sae_p]
        if sae is not None and sae.cfg.d_in != models[p].cfg.d_model:
            raise SpecError(f"{sae_p} reads width {sae.cfg.d_in} but the {p} model's residual stream has width "
                            f"{models[p].cfg.d_model}")
    return Sizes(models["small"], models["large"], saes["small_sae"], saes["large_sae"], saes["second_sae"], tok,
                 saes["small_sae"].cfg.metadata.hook_name, saes["large_sae"].cfg.metadata.hook_name)


def _resid(model, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """{hook: [B, T, d]} and ``"final"``: the residual after the last block."""
    final, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks, stop_at_layer=model.cfg.n_layers)
    return {**{h: cache[h] for h in hooks}, "final": final}


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, T, d] -> [B * (T - 1), d] in fp32, BOS left out."""
    return x[:, 1:].flatten(0, 1).float()


def paired_residuals(s: Sizes, specs: list[TokenSpec], zoo: str):
    """[n, d_small + d_large] residuals at the two hooks, BOS left out, the datasets' batches interleaved."""
    stops = [stop_layer([s.small_hook], s.small.cfg.n_layers), stop_layer([s.large_hook], s.large.cfg.n_layers)]
    for tokens in interleaved_batches(specs, s.tokenizer, zoo):
        with torch.inference_mode():  # only around the forwards: training consumes what this yields
            acts = []
            for model, hook, stop in ((s.small, s.small_hook, stops[0]), (s.large, s.large_hook, stops[1])):
                _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook,
                                                stop_at_layer=stop, return_type=None)
                acts.append(_flat(cache[hook]).cpu())
        yield torch.cat(acts, 1).clone()


def trained_stitch(setup: PairSetup, small: str, small_sae: str, study: SizesStudy, sizes) -> tuple[Stitch, dict]:
    """The stitch, trained once per key (weights in the measurement cache beside its log)."""
    specs = study.train_specs()
    key = measurement_key("stitch", __name__, setup, model=small,
                          specs=[tokens_identity(t, setup.zoo) for t in specs], small_sae=sae_identity(small_sae,
                                                                                                       setup.zoo),
                          lr=study.stitch_lr, n=study.stitch_tokens, seed=study.seed)
    weights = entry_path("stitch", key).with_suffix(".pt")

    def train() -> tuple[dict, dict]:
        s = sizes()
        cfg = StitchConfig(study.stitch_tokens, lr=study.stitch_lr, seed=study.seed)
        st, log = fit_stitch(s.small.cfg.d_model, s.large.cfg.d_model, cfg,
                             lambda: paired_residuals(s, specs, setup.zoo))
        return st.state(), log

    state, log = trained("stitch", key, weights, train)
    return Stitch.from_state(state), log


@torch.inference_mode()
def evaluation_pass(s: Sizes, st: Stitch, spec: TokenSpec, zoo: str, cka: LayerCKA, corr: FeatureCorrelation,
                    ceiling: FeatureCorrelation | None, top: RunningTopK, offset: int) -> dict[str, Any]:
    """One dataset's held-out pass (see the module docstring). Returns the per-dataset sums; the accumulators
    passed in gather over every dataset. ``offset``: global index of this dataset's first token."""
    hooks_s, hooks_l = residual_hooks(s.small.cfg.n_layers), residual_hooks(s.large.cfg.n_layers)
    hs = hooks_s[residual_index(s.small_hook)]
    hl = hooks_l[residual_index(s.large_hook)]
    start = resume_layer(hl, s.large.cfg.positional_embedding_type)
    quality = StitchQuality(st)
    sums = {"small": 0, "large": 0, "n": 0, "ce_small": 0.0, "ce_large": 0.0, "ce_stitched": 0.0, "kl": 0.0}
    counts = torch.zeros(s.small.cfg.d_vocab, dtype=torch.float64)
    seen = offset
    for tokens in tqdm(token_batches(spec, s.tokenizer, zoo), total=spec.n_batches(), desc=f"sizes {spec.dataset}",
                       unit="batch", leave=False):
        tokens = tokens.to(s.large.cfg.device)
        a, b = _resid(s.small, tokens, hooks_s), _resid(s.large, tokens, hooks_l)
        cka.update({h: _flat(a[h]) for h in hooks_s}, {h: _flat(b[h]) for h in hooks_l})
        xa, xb = _flat(a[hs]), _flat(b[hl])
        quality.update(xa, xb)
        B, T = tokens.shape
        up = st.map(a[hs].flatten(0, 1), "up").view(B, T, -1).to(b[hl].dtype)
        up[:, 0] = b[hl][:, 0]  # BOS: the stitch never saw it; the large model keeps its own
        stitched = s.large(up, start_at_layer=start, stop_at_layer=s.large.cfg.n_layers)
        rows = max(64, (1 << 24) // s.large.cfg.d_vocab)  # [rows, vocab] logits of at most 64 MiB
        ce, kl = logit_stats(s.large, tokens, b["final"], {"stitched": stitched}, rows)
        ce_small, _ = logit_stats(s.small, tokens, a["final"], {}, rows)
        keep = slice(1, -1)  # BOS as input left out as everywhere; the last position has no target
        sums["ce_large"] += float(ce["clean"].view(B, T)[:, keep].sum())
        sums["ce_stitched"] += float(ce["stitched"].view(B, T)[:, keep].sum())
        sums["ce_small"] += float(ce_small["clean"].view(B, T)[:, keep].sum())
        sums["kl"] += float(kl["stitched"].view(B, T)[:, keep].sum())
        sums["n"] += B * (T - 2)
        sums["small"] = sums["small"] + xa.double().sum(0)
        sums["large"] = sums["large"] + xb.double().sum(0)
        fs, fl = s.small_sae.encode(xa), s.large_sae.encode(xb)
        corr.update(fs, fl)
        if ceiling is not None:
            ceiling.update(fl, s.second_sae.encode(xb))
        idx = (seen + torch.arange(B * T)).view(B, T)[:, 1:].flatten()
        top.update(fl, idx)
        seen += B * T
        counts += torch.bincount(tokens[:, 1:].flatten().cpu(), minlength=len(counts)).double()
    n = sums.pop("n")
    return {"quality": quality.result(), "n_tokens": n, "ce_small": sums["ce_small"] / n,
            "ce_large": sums["ce_large"] / n, "ce_stitched": sums["ce_stitched"] / n, "kl_stitched": sums["kl"] / n,
            "mean_small": (sums["small"] / quality.n).tolist(), "mean_large": (sums["large"] / quality.n).tolist(),
            "token_counts": counts.tolist(), "tokens_seen": seen - offset}


def measure(setup: PairSetup, small: str, small_sae: str, study: SizesStudy, second_sae: str = "") -> dict[str, Any]:
    """Everything the chapter shows, cached by every input (see the module docstring)."""
    for spec in study.train_specs() + study.eval_specs():
        check_token_spec(spec)
    held: dict[str, Sizes] = {}

    def sizes() -> Sizes:
        if "s" not in held:
            held["s"] = load(setup, small, small_sae, second_sae)
        return held["s"]

    parse_spec(small, "small")
    parse_spec(small_sae, "small_sae", sae=True)
    st, log = trained_stitch(setup, small, small_sae, study, sizes)
    key = measurement_key("sizes", __name__, setup, model=small, small_sae=sae_identity(small_sae, setup.zoo),
                          second_sae=sae_identity(second_sae, setup.zoo) if second_sae else "",
                          specs=[tokens_identity(t, setup.zoo) for t in study.eval_specs()], study=asdict(study))

    def run() -> dict[str, Any]:
        s = sizes()
        hooks_s, hooks_l = residual_hooks(s.small.cfg.n_layers), residual_hooks(s.large.cfg.n_layers)
        cka = LayerCKA(hooks_s, hooks_l)
        corr = FeatureCorrelation(s.small_sae.cfg.d_sae, s.large_sae.cfg.d_sae)
        ceiling = FeatureCorrelation(s.large_sae.cfg.d_sae, s.second_sae.cfg.d_sae) if s.second_sae else None
        top = RunningTopK(s.large_sae.cfg.d_sae, study.top_k)
        per, offset = {}, 0
        for spec in study.eval_specs():
            per[spec.dataset] = evaluation_pass(s, st, spec, setup.zoo, cka, corr, ceiling, top, offset)
            offset += per[spec.dataset]["tokens_seen"]
        transferred = collapse_sae(s.small_sae, st, s.large_hook)
        metrics = {}
        for spec in study.eval_specs():
            batches = lambda: token_batches(spec, s.tokenizer, setup.zoo)  # noqa: E731
            metrics[spec.dataset] = {
                # no outliers are set aside here: "all" and "kept" are the same tokens
                name: _sae_summary(sae_pass(model, sae, hook, batches(), float("inf"), spec.n_batches(),
                                            desc=f"{name} on {spec.dataset}", memory=setup.memory)["all"])
                for name, model, sae, hook in (("small SAE on small", s.small, s.small_sae, s.small_hook),
                                               ("transferred SAE on large", s.large, transferred, s.large_hook),
                                               ("large SAE on large", s.large, s.large_sae, s.large_hook))}
        windows = torch.cat([token_windows(spec, s.tokenizer, setup.zoo) for spec in study.eval_specs()])
        return {"hooks": {"small": hooks_s, "large": hooks_l, "small_sae": s.small_hook, "large_sae": s.large_hook},
                "widths": {"small": s.small.cfg.d_model, "large": s.large.cfg.d_model,
                           "small_sae": s.small_sae.cfg.d_sae, "large_sae": s.large_sae.cfg.d_sae},
                "cka": cka.result(), "datasets": per, "sae_metrics": metrics,
                "stability": sizes_transfer.stability(s, st, corr.result(), ceiling.result() if ceiling else None,
                                                      top, windows),
                "steering": sizes_transfer.steering(s, st, per, study, setup.zoo),
                "probes": sizes_transfer.probes_across(s, st, transferred, study),
                "init": sizes_train.init_study(s, transferred, metrics[study.datasets[0]]["transferred SAE on large"],
                                               log, study, setup)}

    out = cached("sizes", key, run)
    specs = {"small": small, "large": setup.base, "small_sae": small_sae, "large_sae": setup.sae,
             "second_sae": second_sae}
    return {**out, "stitch_log": log, "order": list(study.datasets), "specs": specs}


def _sae_summary(r: dict) -> dict[str, float]:
    """The SAE metrics the chapter reports (the full result holds per-feature lists)."""
    return {k: r[k] for k in ("n_tokens", "l0", "l0_frac", "ev_global", "ev_token", "mse", "ce_clean", "ce_spliced",
                              "delta_ce", "ce_recovered", "kl", "kl_score", "dead_frac")}
