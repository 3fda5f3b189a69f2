"""What the stitch carries from the small model to the large one besides an SAE: probes (the answerability
chapter's residual and k-sparse SAE probes) and a steering vector. (Which features the two sizes share is
``methods.stitched_pair.stability``.)

Every function takes the loaded ``stitched_pair.Pair`` (source: the small model, target: the large one) and the
trained ``Stitch`` and returns plain data."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sae_transfer.data import answerable
from sae_transfer.data.tokens import TokenSpec, token_batches
from sae_transfer.methods import probes
from sae_transfer.methods import probes as P
from sae_transfer.models.hooks import resume_layer
from sae_transfer.methods.stitch import Stitch, map_direction

#: Tokens whose log-frequency ratio (steering target over source data) is highest make up the target concept.
N_MARKERS = 100


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
    own = torch.tensor(b["mean_target"]) - torch.tensor(a["mean_target"])
    small = torch.tensor(b["mean_source"]) - torch.tensor(a["mean_source"])
    norm = float(own.norm())
    mapped = map_direction(small, st, norm)
    g = torch.Generator().manual_seed(study.seed)
    rand = torch.randn(len(own), generator=g)
    rand = rand * (norm / rand.norm())
    markers = _markers(np.asarray(b["token_counts"]), np.asarray(a["token_counts"]))
    spec = next(t for t in study.eval_specs() if t.dataset == study.steer_from)
    idx = torch.as_tensor(markers, device=s.target.cfg.device)
    rows = {name: _steered(s.target, s.target_hook, spec, s.tokenizer, zoo, v, idx)
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
    limit = min(128, s.source.cfg.n_ctx, s.target.cfg.n_ctx)
    examples = answerable.build(list(study.probe_domains), study.n_train, study.n_test, study.seed,
                                context_chars=study.context_chars,
                                fits=lambda t: len(probes.prompt_ids(s.tokenizer, t)) <= limit)
    texts = [e.text for e in examples]
    hs, hl = s.source_hook, s.target_hook
    small = probes.last_token_acts(s.source, s.tokenizer, texts, [hs], s.source_sae, hs, desc="small prompts")
    large = probes.last_token_acts(s.target, s.tokenizer, texts, [hl], s.target_sae, hl, desc="large prompts")
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
