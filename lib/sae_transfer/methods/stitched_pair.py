"""Two models of one tokenizer, stitched: a source model and its SAE, a target model and its SAE (the reference),
loaded and checked; the stitch (``stitch.py``) trained on their residuals at the two SAEs' layers; one held-out
pass that measures what the stitch keeps; and which features of the two SAEs have a counterpart in the other.

The sizes chapter stitches a small model to a large one of its family; the chapter across architectures stitches
two models of one size and data built of different blocks. Each study names the two roles in its own words
(``Roles``); everything here says source and target. Shapes: source activations [n, d_source], target [n, d_target].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sae_transfer.core.specs import data_spec, is_zoo
from sae_transfer.data.contexts import context_text
from sae_transfer.data.tokens import TokenSpec, interleaved_batches, token_batches, token_windows
from sae_transfer.methods.stitch import Stitch, StitchConfig, collapse_sae, fit_stitch
from sae_transfer.methods.stitch_stats import FeatureCorrelation, LayerCKA, StitchQuality
from sae_transfer.models.hooks import residual_hooks, residual_index, resume_layer, stop_layer
from sae_transfer.models.load import (SpecError, check_dtype, d_model_of, load_model, load_sae, load_tokenizer_for,
                                      n_layers_of, parse_spec, resolve_device)
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.accumulators import RunningTopK
from sae_transfer.passes.cache import entry_path, measurement_key, sae_identity, tokens_identity, trained
from sae_transfer.passes.sae_metrics import logit_stats, sae_pass

#: A target-SAE feature is "core" when a source-SAE feature's activations correlate with its own at least this much
#: on the same tokens, "emergent" when it fires and none reaches ``EMERGENT``; between the two, "partial".
CORE, EMERGENT = 0.5, 0.2
#: The thresholds the share of matched features is reported at.
MATCH_LEVELS = (0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True, kw_only=True)
class StitchTokens:
    """What a stitched pair reads, the fields a chapter's measurement config shares (the sizes chapter's and the
    architectures section's): ``stitch_tokens`` training tokens of the stitch (an equal share of each dataset's
    train split), ``n_tokens`` held-out tokens per dataset for every evaluation."""

    datasets: tuple[str, ...]
    stitch_tokens: int
    n_tokens: int
    context_size: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        if self.stitch_tokens < 4096:
            raise ValueError(f"stitch_tokens={self.stitch_tokens}: at least 4096")

    def train_specs(self) -> list[TokenSpec]:
        share = int(-(-self.stitch_tokens // len(self.datasets)) * 1.05) + self.context_size
        return [TokenSpec(str(data_spec(d).with_split("train")), share, self.context_size,
                          self.batch_size, self.seed) for d in self.datasets]

    def eval_specs(self) -> list[TokenSpec]:
        """Held-out tokens: a zoo corpus's held-out split, or the windows after the training ones."""
        return [TokenSpec(d, self.n_tokens, self.context_size, self.batch_size, self.seed)
                if is_zoo(d) else t.after(self.n_tokens) for d, t in zip(self.datasets, self.train_specs())]


@dataclass(frozen=True)
class Roles:
    """What a study calls the two models: its parameter names (for one-line errors) and the words its tables use
    (``source``, ``target``: "small", "large"). ``why``: why the two must share a tokenizer, in the study's words."""

    source: str = "source"
    target: str = "target"
    source_sae: str = "source_sae"
    target_sae: str = "target_sae"
    second_sae: str = "second_sae"
    why: str = "stitching needs token-aligned streams"
    source_word: str = "source"
    target_word: str = "target"


@dataclass
class Pair:
    """Both models, their SAEs (the target SAE's second seed when given) and the hooks, loaded and checked."""

    source: Any
    target: Any
    source_sae: Any
    target_sae: Any
    second_sae: Any
    tokenizer: Any
    source_hook: str
    target_hook: str


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


def check_inputs(target: str, target_sae: str, source: str, source_sae: str, second_sae: str, zoo: str,
                 device: str = "cpu", dtype: str = "float32", roles: Roles = Roles()) -> tuple[Any, dict[str, Any]]:
    """Everything that can be checked without a model's weights: specs, that the two models share a tokenizer
    (stitching needs token-aligned streams), the SAEs' hooks against the models' depths and widths. Returns the
    tokenizer and the loaded SAEs (cheap), by role."""
    r = roles
    parse_spec(target, r.target)
    parse_spec(source, r.source)
    for name, spec in ((r.source_sae, source_sae), (r.target_sae, target_sae), (r.second_sae, second_sae)):
        if spec:
            parse_spec(spec, name, sae=True)
    tok = load_tokenizer_for(target, r.target, zoo)
    tok_source = load_tokenizer_for(source, r.source, zoo)
    if tok.get_vocab() != tok_source.get_vocab():
        raise SpecError(f"{r.source}={source!r} and {r.target}={target!r} have different tokenizers "
                        f"({len(tok_source)} and {len(tok)} tokens); {r.why}")
    saes = {role: load_sae(s, zoo, device, dtype) if s else None
            for role, s in (("source_sae", source_sae), ("target_sae", target_sae), ("second_sae", second_sae))}
    _sae_hook(saes["source_sae"], r.source_sae, source_sae, r.source, source, zoo)
    hook = _sae_hook(saes["target_sae"], r.target_sae, target_sae, r.target, target, zoo)
    if saes["second_sae"] is not None:
        _sae_hook(saes["second_sae"], r.second_sae, second_sae, r.target, target, zoo)
        if saes["second_sae"].cfg.metadata.hook_name != hook:
            raise SpecError(f"{r.second_sae}={second_sae!r} reads {saes['second_sae'].cfg.metadata.hook_name!r}, not "
                            f"the {r.target_word} SAE's {hook!r}; the ceiling compares two SAEs of one layer")
    return tok, saes


def load(setup: PairSetup, source: str, source_sae: str, second_sae: str = "", roles: Roles = Roles(),
         target=None) -> Pair:
    """Every cheap check first (``check_inputs``; the target is ``setup``'s base and SAE), then the weights;
    ``target``: the base already loaded (a chapter stitching several sources to one base loads it once)."""
    device, dtype = resolve_device(setup.device), check_dtype(setup.dtype)
    tok, saes = check_inputs(setup.base, setup.sae, source, source_sae, second_sae, setup.zoo, device, setup.dtype,
                             roles)
    models = {"source": load_model(source, roles.source, setup.zoo, tok, device, dtype),
              "target": target if target is not None else load_model(setup.base, roles.target, setup.zoo, tok,
                                                                      device, dtype)}
    for role, sae_role in (("source", "source_sae"), ("target", "target_sae"), ("target", "second_sae")):
        sae = saes[sae_role]
        if sae is not None and sae.cfg.d_in != models[role].cfg.d_model:
            raise SpecError(f"{getattr(roles, sae_role)} reads width {sae.cfg.d_in} but the "
                            f"{getattr(roles, role + '_word')} model's residual stream has width "
                            f"{models[role].cfg.d_model}")
    return Pair(models["source"], models["target"], saes["source_sae"], saes["target_sae"], saes["second_sae"], tok,
                saes["source_sae"].cfg.metadata.hook_name, saes["target_sae"].cfg.metadata.hook_name)


def _resid(model, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """{hook: [B, T, d]} and ``"final"``: the residual after the last block."""
    final, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks, stop_at_layer=model.cfg.n_layers)
    return {**{h: cache[h] for h in hooks}, "final": final}


def _flat(x: torch.Tensor) -> torch.Tensor:
    """[B, T, d] -> [B * (T - 1), d] in fp32, BOS left out."""
    return x[:, 1:].flatten(0, 1).float()


def paired_residuals(p: Pair, specs: list[TokenSpec], zoo: str):
    """[n, d_source + d_target] residuals at the two hooks, BOS left out, the datasets' batches interleaved."""
    stops = [stop_layer([p.source_hook], p.source.cfg.n_layers), stop_layer([p.target_hook], p.target.cfg.n_layers)]
    for tokens in interleaved_batches(specs, p.tokenizer, zoo):
        with torch.inference_mode():  # only around the forwards: training consumes what this yields
            acts = []
            for model, hook, stop in ((p.source, p.source_hook, stops[0]), (p.target, p.target_hook, stops[1])):
                _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook,
                                                stop_at_layer=stop, return_type=None)
                acts.append(_flat(cache[hook]).cpu())
        yield torch.cat(acts, 1).clone()


def trained_stitch(setup: PairSetup, source: str, source_sae: str, specs: list[TokenSpec], cfg: StitchConfig,
                   pair: Callable[[], Pair]) -> tuple[Stitch, dict]:
    """The stitch from ``source`` to ``setup``'s base on ``specs`` (train splits), trained once per key (weights
    in the measurement cache beside its log). ``pair()`` loads the two models when it must train."""
    key = measurement_key("stitch", __name__, setup, model=source,
                          specs=[tokens_identity(t, setup.zoo) for t in specs],
                          small_sae=sae_identity(source_sae, setup.zoo), lr=cfg.lr, n=cfg.n_tokens, seed=cfg.seed)
    weights = entry_path("stitch", key).with_suffix(".pt")

    def train() -> tuple[dict, dict]:
        p = pair()
        st, log = fit_stitch(p.source.cfg.d_model, p.target.cfg.d_model, cfg,
                             lambda: paired_residuals(p, specs, setup.zoo))
        return st.state(), log

    state, log = trained("stitch", key, weights, train)
    return Stitch.from_state(state), log


@torch.inference_mode()
def evaluation_pass(p: Pair, st: Stitch, spec: TokenSpec, zoo: str, cka: LayerCKA, corr: FeatureCorrelation,
                    ceiling: FeatureCorrelation | None, top: RunningTopK, offset: int) -> dict[str, Any]:
    """One dataset's held-out pass: linear CKA between every pair of layers, the stitch's errors, next-token CE of
    the target resumed from the stitched source activations (and KL to its own), both SAEs' feature correlations
    (and the second seed's, the ceiling), running top-k contexts of the target SAE, residual means, token counts.
    Returns the per-dataset sums; the accumulators passed in gather over every dataset. ``offset``: global index
    of this dataset's first token."""
    hooks_s, hooks_t = residual_hooks(p.source.cfg.n_layers), residual_hooks(p.target.cfg.n_layers)
    hs = hooks_s[residual_index(p.source_hook)]
    ht = hooks_t[residual_index(p.target_hook)]
    start = resume_layer(ht, p.target.cfg.positional_embedding_type)
    quality = StitchQuality(st)
    sums = {"source": 0, "target": 0, "n": 0, "ce_source": 0.0, "ce_target": 0.0, "ce_stitched": 0.0, "kl": 0.0}
    counts = torch.zeros(p.source.cfg.d_vocab, dtype=torch.float64)
    seen = offset
    for tokens in tqdm(token_batches(spec, p.tokenizer, zoo), total=spec.n_batches(),
                       desc=f"stitched pair on {spec.dataset}", unit="batch", leave=False):
        tokens = tokens.to(p.target.cfg.device)
        a, b = _resid(p.source, tokens, hooks_s), _resid(p.target, tokens, hooks_t)
        cka.update({h: _flat(a[h]) for h in hooks_s}, {h: _flat(b[h]) for h in hooks_t})
        xa, xb = _flat(a[hs]), _flat(b[ht])
        quality.update(xa, xb)
        B, T = tokens.shape
        up = st.map(a[hs].flatten(0, 1), "up").view(B, T, -1).to(b[ht].dtype)
        up[:, 0] = b[ht][:, 0]  # BOS: the stitch never saw it; the target keeps its own
        stitched = p.target(up, start_at_layer=start, stop_at_layer=p.target.cfg.n_layers)
        rows = max(64, (1 << 24) // p.target.cfg.d_vocab)  # [rows, vocab] logits of at most 64 MiB
        ce, kl = logit_stats(p.target, tokens, b["final"], {"stitched": stitched}, rows)
        ce_source, _ = logit_stats(p.source, tokens, a["final"], {}, rows)
        keep = slice(1, -1)  # BOS as input left out as everywhere; the last position has no target
        sums["ce_target"] += float(ce["clean"].view(B, T)[:, keep].sum())
        sums["ce_stitched"] += float(ce["stitched"].view(B, T)[:, keep].sum())
        sums["ce_source"] += float(ce_source["clean"].view(B, T)[:, keep].sum())
        sums["kl"] += float(kl["stitched"].view(B, T)[:, keep].sum())
        sums["n"] += B * (T - 2)
        sums["source"] = sums["source"] + xa.double().sum(0)
        sums["target"] = sums["target"] + xb.double().sum(0)
        fs, ft = p.source_sae.encode(xa), p.target_sae.encode(xb)
        corr.update(fs, ft)
        if ceiling is not None:
            ceiling.update(ft, p.second_sae.encode(xb))
        idx = (seen + torch.arange(B * T)).view(B, T)[:, 1:].flatten()
        top.update(ft, idx)
        seen += B * T
        counts += torch.bincount(tokens[:, 1:].flatten().cpu(), minlength=len(counts)).double()
    n = sums.pop("n")
    return {"quality": quality.result(), "n_tokens": n, "ce_source": sums["ce_source"] / n,
            "ce_target": sums["ce_target"] / n, "ce_stitched": sums["ce_stitched"] / n, "kl_stitched": sums["kl"] / n,
            "mean_source": (sums["source"] / quality.n).tolist(), "mean_target": (sums["target"] / quality.n).tolist(),
            "token_counts": counts.tolist(), "tokens_seen": seen - offset}


def sae_summary(r: dict) -> dict[str, Any]:
    """The SAE metrics a stitched pair reports, with their batch-bootstrap intervals (``ci``); the full result
    holds per-feature lists."""
    return {k: r[k] for k in ("n_tokens", "l0", "l0_frac", "ev_global", "ev_token", "mse", "ce_clean", "ce_spliced",
                              "delta_ce", "ce_recovered", "kl", "kl_score", "dead_frac", "ci")}


def read_pair(p: Pair, st: Stitch, specs: list[TokenSpec], zoo: str, memory: str, top_k: int,
              roles: Roles = Roles()) -> tuple[dict[str, Any], Any]:
    """Everything a stitched pair shows on held-out ``specs``: ``evaluation_pass`` on each; the SAE metrics of the
    source SAE on the source, of the source SAE carried to the target (``collapse_sae``: no activation mapped) and
    of the target SAE on the target; which features have a counterpart (``stability``). Keyed in the study's words
    (``roles``). Returns ``(plain data, the carried SAE)``."""
    src, tgt = roles.source_word, roles.target_word
    hooks_s, hooks_t = residual_hooks(p.source.cfg.n_layers), residual_hooks(p.target.cfg.n_layers)
    cka = LayerCKA(hooks_s, hooks_t)
    corr = FeatureCorrelation(p.source_sae.cfg.d_sae, p.target_sae.cfg.d_sae)
    ceiling = FeatureCorrelation(p.target_sae.cfg.d_sae, p.second_sae.cfg.d_sae) if p.second_sae else None
    top = RunningTopK(p.target_sae.cfg.d_sae, top_k)
    per, offset = {}, 0
    for spec in specs:
        per[spec.dataset] = evaluation_pass(p, st, spec, zoo, cka, corr, ceiling, top, offset)
        offset += per[spec.dataset]["tokens_seen"]
    carried = collapse_sae(p.source_sae, st, p.target_hook)
    metrics = {}
    for spec in specs:
        batches = lambda: token_batches(spec, p.tokenizer, zoo)  # noqa: E731
        metrics[spec.dataset] = {
            # no outliers are set aside here: "all" and "kept" are the same tokens
            name: sae_summary(sae_pass(model, sae, hook, batches(), float("inf"), spec.n_batches(),
                                       desc=f"{name} on {spec.dataset}", memory=memory)["all"])
            for name, model, sae, hook in ((f"{src} SAE on {src}", p.source, p.source_sae, p.source_hook),
                                           (f"transferred SAE on {tgt}", p.target, carried, p.target_hook),
                                           (f"{tgt} SAE on {tgt}", p.target, p.target_sae, p.target_hook))}
    windows = torch.cat([token_windows(spec, p.tokenizer, zoo) for spec in specs])
    return {"hooks": {src: hooks_s, tgt: hooks_t, f"{src}_sae": p.source_hook, f"{tgt}_sae": p.target_hook},
            "widths": {src: p.source.cfg.d_model, tgt: p.target.cfg.d_model,
                       f"{src}_sae": p.source_sae.cfg.d_sae, f"{tgt}_sae": p.target_sae.cfg.d_sae},
            "cka": cka.result(), "datasets": per, "sae_metrics": metrics,
            "stability": stability(p, st, corr.result(), ceiling.result() if ceiling else None, top, windows,
                                   roles)}, carried


# ------------------------------------------------------------------------------------------ counterparts

def _shares(best: list[float], alive: np.ndarray) -> dict[str, float]:
    b = np.asarray(best)[alive]
    return {str(t): float((b >= t).mean()) if len(b) else float("nan") for t in MATCH_LEVELS}


def _top_token_share(top_index: torch.Tensor, windows: torch.Tensor) -> np.ndarray:
    """Per feature, the share of its top-k activations that fall on its most common token id (1: a token-level
    feature; about 1/k: a feature of contexts). NaN for features that never fired."""
    ids = windows.flatten()
    out = np.full(len(top_index), np.nan)
    for j, row in enumerate(top_index.tolist()):
        toks = [int(ids[i]) for i in row if i >= 0]
        if toks:
            out[j] = max(toks.count(t) for t in set(toks)) / len(toks)
    return out


def stability(p: Pair, st: Stitch, corr: dict, ceiling: dict | None, top, windows: torch.Tensor,
              roles: Roles = Roles(), n_show: int = 6) -> dict[str, Any]:
    """Source-SAE features (decoders mapped up) against target-SAE features: decoder cosine and activation
    correlation on the same tokens, per target feature its class (core / partial / emergent / dead), density and
    top-token share; the second-seed SAE against the target SAE the same way (the ceiling). The shares are keyed
    in the study's words (``roles``: "small to large, activations")."""
    src, tgt = roles.source_word, roles.target_word
    P_up, _ = st.affine("up")
    source_dec = F.normalize(p.source_sae.W_dec.detach().float() @ P_up.to(p.source_sae.W_dec.device), dim=-1)
    target_dec = F.normalize(p.target_sae.W_dec.detach().float(), dim=-1)
    cos = source_dec @ target_dec.T  # [d_source_sae, d_target_sae]
    density = np.asarray(corr["density_b"])
    alive_t, alive_s = density > 0, np.asarray(corr["density_a"]) > 0
    corr_t = np.asarray(corr["corr_b"])
    cls = np.where(~alive_t, "dead", np.where(corr_t >= CORE, "core", np.where(corr_t < EMERGENT, "emergent",
                                                                               "partial")))
    share = _top_token_share(top.index, windows)
    out: dict[str, Any] = {
        "class": cls.tolist(), "corr": corr_t.tolist(), "partner": corr["partner_b"], "density": density.tolist(),
        "decoder_cos": cos.max(0).values.tolist(), "token_share": share.tolist(),
        "shares": {f"{src} to {tgt}, activations": _shares(corr["corr_a"], alive_s),
                   f"{tgt} from {src}, activations": _shares(corr["corr_b"], alive_t),
                   f"{src} to {tgt}, decoders": _shares(cos.max(1).values.tolist(), alive_s),
                   f"{tgt} from {src}, decoders": _shares(cos.max(0).values.tolist(), alive_t)}}
    if ceiling is not None:
        out["ceiling_corr"] = ceiling["corr_a"]  # per target feature: its best partner in the second seed's SAE
        second_dec = F.normalize(p.second_sae.W_dec.detach().float(), dim=-1)
        out["shares"][f"{tgt} to second seed, activations"] = _shares(ceiling["corr_a"], alive_t)
        out["shares"][f"{tgt} to second seed, decoders"] = _shares((target_dec @ second_dec.T).max(1).values.tolist(),
                                                                   alive_t)
    shown = {}
    for name, order in (("core", np.argsort(-corr_t)), ("emergent", np.argsort(-density))):
        picks = [int(j) for j in order if cls[j] == name][:n_show]
        shown[name] = [{"feature": j, "corr": float(corr_t[j]), "density": float(density[j]),
                        "contexts": [context_text(p.tokenizer, windows, int(t))
                                     for v, t in zip(top.values[j].tolist(), top.index[j].tolist())
                                     if t >= 0 and v > 0][:3]} for j in picks]
    out["shown"] = shown
    return out
