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


def measure_residuals(base: str, finetune: str, tokens: TokenSpec, zoo: str = "default", device: str = "auto",
                      dtype: str = "float32") -> dict[str, dict]:
    """``{hook: ResidualSimilarity result}`` for every residual hook, from one streaming pass (cached)."""
    check_token_spec(tokens)
    key = {"base": model_identity(base, zoo), "finetune": model_identity(finetune, zoo), "tokens": tokens.as_dict(),
           "dtype": dtype, "what": "residual-similarity", "v": 2}

    def compute() -> dict:
        b, f, tok, _ = load_models(base, finetune, zoo, device, dtype)
        hooks = residual_hooks(b.cfg.n_layers)
        results = run_pass(b, f, token_batches(tokens, tok, zoo), hooks,
                           [ResidualSimilarity(h, tokens.context_size) for h in hooks], tokens.n_batches(),
                           desc=f"{base} vs {finetune} on {tokens.dataset}")
        return {"layers": results}  # a list: layer order survives the JSON cache

    return {r["hook"]: r for r in cached("residuals", key, compute)["layers"]}
