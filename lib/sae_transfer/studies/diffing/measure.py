"""What the base SAE misses: a crosscoder on base and finetune, its latents' classes, and the base SAE's features
joined to them (kept, shifted, lost), with the noise floors that give every similarity a scale.

Per pair, a BatchTopK crosscoder (``methods/crosscoder.py``) trains on both models' activations at the SAE's hook, read
from the train split of the base's data and of the finetune's (half each), streamed through a shuffle buffer. An
evaluation pass on held-out tokens of each dataset feeds ``crosscoder_stats.CrosscoderStats`` (densities, latent
scaling, contexts) and, on the finetune's data, the feature chapter's ``FeaturePairStats`` of the base SAE. The
classes and their thresholds are in ``methods/crosscoder_classes.py``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from sae_transfer.data.contexts import context_text
from sae_transfer.data.tokens import TokenSpec, token_batches, token_windows
from sae_transfer.methods.crosscoder import Crosscoder
from sae_transfer.methods.crosscoder_classes import latent_classes, shown_latents
from sae_transfer.methods.crosscoder_stats import CrosscoderStats, MatchedCorrelation, join_sae, refit_decoders
from sae_transfer.models.load import load_sae
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.accumulators import FeaturePairStats
from sae_transfer.passes.cache import cached, measurement_key, tokens_identity
from sae_transfer.passes.stream import run_pass
from sae_transfer.studies.diffing.train import DiffingStudy, eval_specs, trained_crosscoder


def _logit_effects(cc: Crosscoder, decoders: torch.Tensor, models, latents: list[int], tokenizer,
                   n: int = 6) -> list[dict]:
    """Per latent and model, the tokens its decoder direction (``decoders`` [d_cc, M, d], normalised space)
    promotes and suppresses most through that model's unembedding (the direct path, final norm left out)."""
    out = []
    W = decoders
    for j in latents:
        row = {}
        for m, (name, model) in enumerate(models):
            direction = W[j, m] / cc.scale[m]
            logits = direction.to(model.W_U.device, model.W_U.dtype) @ model.W_U  # [vocab]
            up, down = logits.topk(n), (-logits).topk(n)
            row[name] = {"promoted": [tokenizer.decode([int(t)]) for t in up.indices],
                         "suppressed": [tokenizer.decode([int(t)]) for t in down.indices]}
        out.append(row)
    return out


def _contexts(stats: dict, windows: torch.Tensor, tokenizer, latents: list[int]) -> list[list[dict]]:
    return [[{"activation": v, "text": context_text(tokenizer, windows, t)}
             for v, t in zip(stats["top_values"][j], stats["top_tokens"][j]) if t >= 0 and v > 0]
            for j in latents]


def measure_pair(setup: PairSetup, finetune: str, study: DiffingStudy, loader) -> dict:
    """One pair: the crosscoder, its latents on held-out tokens of each dataset, the base SAE joined to it."""
    load = lambda: loader(finetune)  # noqa: E731
    cc, log = trained_crosscoder(setup, finetune, load, study)
    datasets = study.datasets(setup, finetune)
    specs = eval_specs(study, datasets)

    def run() -> dict:
        pair = load()
        per_data, sae_stats, accumulators = {}, None, []
        for i, spec in enumerate(specs):
            accs = [CrosscoderStats(cc, pair.hook, study.top_k)]
            accumulators.append(accs[0])
            if i == len(specs) - 1:
                accs.append(FeaturePairStats(pair.sae, pair.hook))
            res = run_pass(pair.base, pair.finetune, token_batches(spec, pair.tokenizer, setup.zoo), [pair.hook],
                           accs, spec.n_batches(), desc=f"crosscoder on {spec.dataset}", memory=setup.memory)
            per_data[spec.dataset] = res[0]
            sae_stats = res[-1] if len(res) > 1 else sae_stats
        refit = refit_decoders(accumulators)  # [d_cc, M, d]
        latents, features = join_sae(cc, refit, pair.sae.W_dec, sae_stats)
        out = {"finetune": finetune, "datasets": datasets, "train": log, "latents": latents,
               "features": features, "data": per_data}
        classes = latent_classes(out)
        shown = shown_latents(out, classes, study.n_show)
        windows = {s.dataset: token_windows(s, pair.tokenizer, setup.zoo) for s in specs}
        out["pages"] = {"latents": shown,
                        "contexts": {d: _contexts(per_data[d], windows[d], pair.tokenizer, shown) for d in datasets},
                        "logits": _logit_effects(cc, refit, [("base", pair.base), ("finetune", pair.finetune)], shown,
                                                 pair.tokenizer)}
        for d in datasets:  # what the pages and tables need is kept; the top-k lists of every latent are not
            for k in ("top_values", "top_tokens"):
                per_data[d].pop(k)
            per_data[d]["hist"] = [per_data[d]["hist"][j] for j in shown]
        return out

    key = measurement_key("diffing-pair", __name__, setup, finetune=finetune,
                          specs=[tokens_identity(s, setup.zoo) for s in specs],
                          study=asdict(study), crosscoder=log)
    return cached("diffing", key, run)


def sae_ceiling(setup: PairSetup, second_sae: str, study: DiffingStudy, load) -> dict:
    """Two SAEs of the base model, same recipe, another seed: decoder-cosine matching and the activation
    correlation of matched features on held-out base tokens, the most that feature matching can show. ``load()``
    gives any loaded pair: only its base and SAE are read."""
    spec = TokenSpec(study.base_data, study.n_tokens, study.context_size, study.batch_size, study.seed)

    def run() -> dict:
        pair = load()
        other = load_sae(second_sae, setup.zoo, str(pair.sae.device), setup.dtype)
        a = torch.nn.functional.normalize(pair.sae.W_dec.detach().float().cpu(), dim=-1)
        b = torch.nn.functional.normalize(other.W_dec.detach().float().cpu(), dim=-1)
        best = (a @ b.T).max(1)
        (corr,) = run_pass(pair.base, pair.base, token_batches(spec, pair.tokenizer, setup.zoo), [pair.hook],
                           [MatchedCorrelation(pair.sae, other, best.indices.tolist(), pair.hook)],
                           spec.n_batches(), desc="two SAEs of the base", memory=setup.memory)
        return {"sae": second_sae, "match_cos": best.values.tolist(), "corr": corr["corr"],
                "density": corr["density_a"]}

    key = measurement_key("sae-ceiling", __name__, setup, model=setup.base, tokens=spec, second_sae=second_sae)
    return cached("diffing", key, run)


def checkpoint_specs(setup: PairSetup, finetune: str, n: int) -> list[str]:
    """Up to ``n`` saved checkpoints of a zoo finetune, evenly spread between its first step and its last (both
    left out: step 0 is the base, the last is the finetune itself); none for hub and local models."""
    ck = setup.zoo_handle.checkpoints(finetune) if n > 0 else None
    if ck is None:
        return []
    inner = [s for s in ck.steps if 0 < s < max(ck.steps)]
    picks = sorted({inner[round(i * (len(inner) - 1) / max(n - 1, 1))] for i in range(min(n, len(inner)))})
    return [f"{finetune}@{s}" for s in picks]


def measure(setup: PairSetup, finetunes: list[str], study: DiffingStudy, twin: str = "", second_sae: str = "",
            n_checkpoints: int = 0) -> dict:
    """``{"pairs": {finetune: pair result}, "checkpoints": {spec: pair result}, "twin": pair result or None,
    "ceiling": sae_ceiling result or None, "study": ...}``; ``twin`` (an independently pretrained copy of the
    base) and ``second_sae`` (the base SAE's recipe from another seed) are the noise floors, left out when
    empty; ``n_checkpoints`` crosscoders along the first finetune say whether "new" grows with finetuning."""
    loader = setup.loader()
    checkpoints = checkpoint_specs(setup, finetunes[0], n_checkpoints)
    pairs = {ft: measure_pair(setup, ft, study, loader) for ft in finetunes}
    ckpts = {c: measure_pair(setup, c, study, loader) for c in checkpoints}
    twin_res = measure_pair(setup, twin, study, loader) if twin else None
    last = twin or (checkpoints or finetunes)[-1]  # the pair the loader holds now: its base is the base
    ceiling = sae_ceiling(setup, second_sae, study, lambda: loader(last)) if second_sae else None
    return {"pairs": pairs, "checkpoints": ckpts, "twin": twin_res, "ceiling": ceiling, "study": asdict(study)}


def pages_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "pages"
