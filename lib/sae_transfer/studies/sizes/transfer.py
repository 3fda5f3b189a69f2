"""What the stitch carries from the small model to the large one besides an SAE: probes (the answerability
chapter's residual and k-sparse SAE probes), a steering vector, and which features the two sizes share.

Every function takes the loaded ``sizes.Sizes`` and the trained ``Stitch`` and returns plain data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sae_transfer.data import answerable
from sae_transfer.data.contexts import context_text
from sae_transfer.data.tokens import TokenSpec, token_batches
from sae_transfer.methods import probes
from sae_transfer.methods import probes as P
from sae_transfer.models.hooks import resume_layer
from sae_transfer.methods.stitch import Stitch, map_direction

#: A large-SAE feature is "core" when a small-SAE feature's activations correlate with its own at least this much
#: on the same tokens, "emergent" when it fires and none reaches ``EMERGENT``; between the two, "partial".
CORE, EMERGENT = 0.5, 0.2
#: The thresholds the share of matched features is reported at.
MATCH_LEVELS = (0.3, 0.5, 0.7, 0.9)
#: Tokens whose log-frequency ratio (steering target over source data) is highest make up the target concept.
N_MARKERS = 100


# ------------------------------------------------------------------------------------------ stability

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


def stability(s, st: Stitch, corr: dict, ceiling: dict | None, top, windows: torch.Tensor,
              n_show: int = 6) -> dict[str, Any]:
    """Small-SAE features (decoders mapped up) against large-SAE features: decoder cosine and activation
    correlation on the same tokens, per large feature its class (core / partial / emergent / dead), density and
    top-token share; the second-seed SAE against the large SAE the same way (the ceiling)."""
    P_up, _ = st.affine("up")
    small_dec = F.normalize(s.small_sae.W_dec.detach().float() @ P_up.to(s.small_sae.W_dec.device), dim=-1)
    large_dec = F.normalize(s.large_sae.W_dec.detach().float(), dim=-1)
    cos = small_dec @ large_dec.T  # [d_small_sae, d_large_sae]
    density = np.asarray(corr["density_b"])
    alive_l, alive_s = density > 0, np.asarray(corr["density_a"]) > 0
    corr_l = np.asarray(corr["corr_b"])
    cls = np.where(~alive_l, "dead", np.where(corr_l >= CORE, "core", np.where(corr_l < EMERGENT, "emergent",
                                                                                "partial")))
    share = _top_token_share(top.index, windows)
    out: dict[str, Any] = {
        "class": cls.tolist(), "corr": corr_l.tolist(), "partner": corr["partner_b"], "density": density.tolist(),
        "decoder_cos": cos.max(0).values.tolist(), "token_share": share.tolist(),
        "shares": {"small to large, activations": _shares(corr["corr_a"], alive_s),
                   "large from small, activations": _shares(corr["corr_b"], alive_l),
                   "small to large, decoders": _shares(cos.max(1).values.tolist(), alive_s),
                   "large from small, decoders": _shares(cos.max(0).values.tolist(), alive_l)}}
    if ceiling is not None:
        second_dec = F.normalize(s.second_sae.W_dec.detach().float(), dim=-1)
        out["shares"]["large to second seed, activations"] = _shares(ceiling["corr_a"], alive_l)
        out["shares"]["large to second seed, decoders"] = _shares((large_dec @ second_dec.T).max(1).values.tolist(),
                                                                   alive_l)
    shown = {}
    for name, order in (("core", np.argsort(-corr_l)), ("emergent", np.argsort(-density))):
        picks = [int(j) for j in order if cls[j] == name][:n_show]
        shown[name] = [{"feature": j, "corr": float(corr_l[j]), "density": float(density[j]),
                        "contexts": [context_text(s.tokenizer, windows, int(t))
                                     for v, t in zip(top.values[j].tolist(), top.index[j].tolist())
                                     if t >= 0 and v > 0][:3]} for j in picks]
    out["shown"] = shown
    return out


# ------------------------------------------------------------------------------------------ steering

def _markers(counts_to: np.ndarray, counts_from: np.ndarray, min_count: int = 10) -> np.ndarray:
    """The ``N_MARKERS`` token ids most over-represented in the target data relative to the source data."""
    p_to = (counts_to + 1) / (counts_to.sum() + len(counts_to))
    p_from = (counts_from + 1) / (counts_from.sum() + len(counts_from))
    ratio = np.where(counts_to >= min_count, np.log(p_to / p_from), -np.inf)
    return np.argsort(-ratio)[:N_MARKERS]


@torch.inference_mode()
def _steered(model, hook: str, spec: TokenSpec, tokenizer, zoo: str, vector: torch.Tensor | None,
             markers: torch.Tensor) -> dict[str, float]:
    """Mean probability mass on ``markers`` and next-token CE over ``spec``'s windows, with ``vector`` added to
    the residual at ``hook`` at every position after BOS."""
    start = resume_layer(hook, model.cfg.positional_embedding_type)
    mass, ce, n = 0.0, 0.0, 0
    for tokens in token_batches(spec, tokenizer, zoo):
        tokens = tokens.to(model.cfg.device)
        for t in tokens.split(4):  # logits of four windows at a time: [4, T, vocab]
            x = model(t, stop_at_layer=start)
            if vector is not None:
                x = x.clone()
                x[:, 1:] += vector.to(x.device, x.dtype)
            logp = model(x, start_at_layer=start).float().log_softmax(-1)[:, 1:-1]  # BOS and the last left out
            mass += float(logp[..., markers].exp().sum(-1).sum())
            ce -= float(logp.gather(-1, t[:, 2:, None]).sum())
            n += logp.shape[0] * logp.shape[1]
    return {"marker_mass": mass / n, "ce": ce / n}


def steering(s, st: Stitch, per: dict, study, zoo: str) -> dict[str, Any]:
    """A difference-of-means direction from ``steer_from`` to ``steer_to`` data, found on the small model and mapped
    up (no bias, renormalised to the large model's own direction's norm), added to the large model's residual on
    held-out ``steer_from`` windows: the probability mass the next-token distribution puts on the target data's
    marker tokens, against no steering, the large model's own direction and a random one of the same norm."""
    a, b = per[study.steer_from], per[study.steer_to]
    own = torch.tensor(b["mean_large"]) - torch.tensor(a["mean_large"])
    small = torch.tensor(b["mean_small"]) - torch.tensor(a["mean_small"])
    norm = float(own.norm())
    mapped = map_direction(small, st, norm)
    g = torch.Generator().manual_seed(study.seed)
    rand = torch.randn(len(own), generator=g)
    rand = rand * (norm / rand.norm())
    markers = _markers(np.asarray(b["token_counts"]), np.asarray(a["token_counts"]))
    spec = next(t for t in study.eval_specs() if t.dataset == study.steer_from)
    idx = torch.as_tensor(markers, device=s.large.cfg.device)
    rows = {name: _steered(s.large, s.large_hook, spec, s.tokenizer, zoo, v, idx)
            for name, v in (("none", None), ("large model's own", own), ("mapped from small", mapped),
                            ("random", rand))}
    return {"rows": rows, "norm": norm, "cos_mapped_own": float(F.cosine_similarity(mapped, own, dim=0)),
            "markers": [s.tokenizer.decode([int(t)]) for t in markers[:20]], "n_markers": len(markers)}


# ------------------------------------------------------------------------------------------ probes

def probes_across(s, st: Stitch, transferred, study) -> dict[str, Any]:
    """The answerability probes (residual, and k-sparse on SAE features) trained on the small model and read on the
    large one through the stitch (residual: the large activation mapped down; SAE: the transferred SAE's features,
    the same numbers), against the same probes trained on the large model. AUROC on the test split, all domains
    pooled, with 95% bootstrap intervals."""
    limit = min(128, s.small.cfg.n_ctx, s.large.cfg.n_ctx)
    examples = answerable.build(list(study.probe_domains), study.n_train, study.n_test, study.seed,
                                context_chars=study.context_chars,
                                fits=lambda t: len(probes.prompt_ids(s.tokenizer, t)) <= limit)
    texts = [e.text for e in examples]
    hs, hl = s.small_hook, s.large_hook
    small = probes.last_token_acts(s.small, s.tokenizer, texts, [hs], s.small_sae, hs, desc="small prompts")
    large = probes.last_token_acts(s.large, s.tokenizer, texts, [hl], s.large_sae, hl, desc="large prompts")
    with torch.inference_mode():  # the large model's prompts as the small model's probes read them
        carried = {hs: st.map(torch.as_tensor(large[hl]), "down").numpy(),
                   "sae": transferred.encode(torch.as_tensor(large[hl], device=transferred.W_enc.device))
                   .float().cpu().numpy()}
    train = np.array([i for i, e in enumerate(examples) if e.split == "train"])
    test = np.array([i for i, e in enumerate(examples) if e.split == "test"])
    fitted_small = P.fit_probes(small, hs, examples, train, (study.probe_k,), study.seed)
    fitted_large = P.fit_probes(large, hl, examples, train, (study.probe_k,), study.seed)
    scored = {"small, on small": P.score(fitted_small, small, hs, examples, test, 1000, study.seed),
              "small, carried to large": P.score(fitted_small, carried, hs, examples, test, 1000, study.seed),
              "large, on large": P.score(fitted_large, large, hl, examples, test, 1000, study.seed)}
    return {"n_train": len(train), "n_test": len(test), "domains": list(study.probe_domains), "k": study.probe_k,
            "rows": [{"probe": probe, "trained, read": where, **scored[where][probe]}
                     for probe in fitted_small for where in scored]}
