"""How far finetuning moves the residual stream: per-layer similarity of base and finetune activations."""

from __future__ import annotations

from .accumulators import ResidualSimilarity
from .datasets import TokenSpec, check_token_spec, token_batches
from .models import load_models
from .stream import cached, model_identity, run_pass


def residual_hooks(n_layers: int) -> list[str]:
    """The residual stream after the embeddings and after every block."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def layer_label(hook: str) -> str:
    return "embed" if hook == "blocks.0.hook_resid_pre" else f"L{hook.split('.')[1]}"


def measure_residuals(base: str, finetune: str, specs: list[TokenSpec], zoo: str = "default",
                      device: str = "auto", dtype: str = "float32") -> list[dict[str, dict]]:
    """For each token spec, ``{hook: ResidualSimilarity result}`` over every residual hook, each from one
    streaming pass. Results are cached per spec; the models load once, and only if some spec is not cached."""
    for spec in specs:
        check_token_spec(spec)
    loaded: list = []

    def models():
        if not loaded:
            loaded.extend(load_models(base, finetune, zoo, device, dtype))
        return loaded

    def compute(spec: TokenSpec):
        def run() -> dict:
            b, f, tok, _ = models()
            hooks = residual_hooks(b.cfg.n_layers)
            results = run_pass(b, f, token_batches(spec, tok, zoo), hooks,
                               [ResidualSimilarity(h, spec.context_size) for h in hooks], spec.n_batches(),
                               desc=f"{base} vs {finetune} on {spec.dataset}")
            return {"layers": results}  # a list: layer order survives the JSON cache
        return run

    out = []
    for spec in specs:
        key = {"base": model_identity(base, zoo), "finetune": model_identity(finetune, zoo),
               "tokens": spec.as_dict(), "dtype": dtype, "what": "residual-similarity", "v": 2}
        out.append({r["hook"]: r for r in cached("residuals", key, compute(spec))["layers"]})
    return out


#: The seed post's global mean cosine similarity (Kutsyk et al. 2025, section 3): their numbers, quoted.
SEED_COSINE = {"Gemma-2b vs Python-code finetune (theirs)": 0.6691,
               "Mistral-7B vs MetaMath (theirs)": 0.9648}


def result_key(finetune: str, dataset: str) -> str:
    """``zoo:code`` on ``zoo:prose`` -> ``code_prose``: the suffix of the chapter's glued names."""
    name = f"{finetune.split(':')[-1]}_{dataset.split(':')[-1]}"
    return "".join(c if c.isalnum() else "_" for c in name)


def summary_hook(hooks: list[str]) -> str:
    """The middle residual of the stack, where the zoo's SAEs read (``blocks.{L/2}.hook_resid_pre``)."""
    return hooks[len(hooks) // 2]


def measure_all(base: str, finetunes: list[str], datasets: list[str], n_tokens: int, context_size: int,
                batch_size: int, zoo: str, device: str, dtype: str, seed: int = 0) -> dict[tuple[str, str], dict]:
    """``{(finetune, dataset): {hook: result}}`` for every finetune on every dataset."""
    specs = [TokenSpec(d, n_tokens, context_size, batch_size, seed) for d in datasets]
    for s in specs:
        check_token_spec(s)
    out = {}
    for ft in finetunes:
        for s, layers in zip(specs, measure_residuals(base, ft, specs, zoo, device, dtype)):
            out[(ft, s.dataset)] = layers
    return out


def summary_table(results: dict[tuple[str, str], dict]):
    """One row per (finetune, dataset) at the middle layer, the seed's two pairs beside them."""
    import pandas as pd

    rows = []
    for (ft, ds), layers in results.items():
        r = layers[summary_hook(list(layers))]
        rows.append({"pair": f"base vs {ft.removeprefix('zoo:')}", "data": ds.removeprefix("zoo:"),
                     "hook": r["hook"], "cosine": r["cos_mean"], "relative distance": r["rel_dist_mean"],
                     "distance": r["dist_mean"], "base norm": r["norm_base_mean"], "BOS cosine": r["pos0"]["cos"]})
    for pair, cos in SEED_COSINE.items():
        rows.append({"pair": pair, "data": "base's pretraining data", "cosine": cos})
    return pd.DataFrame(rows).set_index(["pair", "data"])


def layer_table(results: dict[tuple[str, str], dict]):
    """Mean cosine similarity per layer (columns) for each (finetune, dataset) (rows)."""
    import pandas as pd

    return pd.DataFrame({(ft.removeprefix("zoo:"), ds.removeprefix("zoo:")):
                         {layer_label(h): r["cos_mean"] for h, r in layers.items()}
                         for (ft, ds), layers in results.items()}).T


def checkpoint_sweep(base: str, finetune: str, dataset: str, n_tokens: int, context_size: int, batch_size: int,
                     zoo: str, device: str, dtype: str) -> list[dict]:
    """Middle-layer similarity of ``base`` with each saved checkpoint of a zoo finetune, in step order."""
    from .zoo.build import saved_checkpoints

    name, steps, tokens_per_step = saved_checkpoints(finetune, zoo)
    spec = TokenSpec(dataset, n_tokens, context_size, batch_size)
    out = []
    for step in steps:
        (layers,) = measure_residuals(base, f"zoo:{name}@{step}", [spec], zoo, device, dtype)
        r = layers[summary_hook(list(layers))]
        out.append({"finetune": name, "step": step, "tokens_seen": step * tokens_per_step,
                    "cosine": r["cos_mean"], "relative distance": r["rel_dist_mean"],
                    "last-layer cosine": list(layers.values())[-1]["cos_mean"]})
    return out


def sweep_all(base: str, finetunes: list[str], n_tokens: int, context_size: int, batch_size: int, zoo: str,
              device: str, dtype: str) -> list[dict]:
    """``checkpoint_sweep`` of every zoo finetune on its own domain (the domain it was finetuned on alone);
    hub and local finetunes and mixed-domain finetunes are skipped."""
    from .zoo.build import own_domain, saved_checkpoints

    if not base.startswith("zoo:"):
        return []
    rows = []
    for ft in finetunes:
        if saved_checkpoints(ft, zoo) and own_domain(ft, zoo):
            rows += checkpoint_sweep(base, ft, own_domain(ft, zoo), n_tokens, context_size, batch_size, zoo,
                                     device, dtype)
    return rows


def benchmark_table():
    """The last record of ``benchmarks/stream_pass.py``: peak memory at N and 8N tokens, time against bare
    forward passes."""
    from .bench import record_table

    return record_table("stream_pass", ["what", "n_tokens"], {
        "what": "measurement", "n_tokens": "tokens", "wall_s": "wall s", "peak_rss_mb": "peak RSS MB"},
        "benchmarks/stream_pass.py")
