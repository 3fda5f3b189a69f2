"""The answerability chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "the model the probes are trained on: zoo:NAME, hub:ORG/NAME or local:PATH",
                      P.model("base"))
    sae: str = param("zoo:base-s", "the base's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH", P.sae("sae"))
    finetunes: list = param(["zoo:code", "zoo:math"], "finetunes the base's probes are carried to",
                            P.each(P.model("finetunes"), "finetunes"))
    checkpoints: bool = param(True, "also every saved checkpoint of zoo finetunes")
    domains: list = param(["reading", "equation", "math", "entity"], "prompt domains (all four by default)", P.domains)
    n_train: int = param(320, "training prompts per domain (a multiple of 4: 2 labels x 2 templates)",
                         P.probe_size("n_train"))
    n_test: int = param(160, "test prompts per domain (a multiple of 4)", P.probe_size("n_test"))
    layers: list = param([], "blocks whose residual (hook_resid_pre) is probed; []: every block", P.block_indices)
    ks: list = param([1, 2, 5, 10, 20, 50], "SAE features per sparse probe", P.feature_counts)
    max_tokens: int = param(128, "longest prompt, BOS included (never above the model's context)",
                            P.positive("max_tokens"))
    context_chars: int = param(240, "longest Wikipedia context, in characters", P.positive("context_chars"))
    batch_size: int = param(32, "prompts per forward pass", P.positive("batch_size"))
    n_boot: int = param(1000, "bootstrap resamples of the test examples", P.positive("n_boot"))
    seed: int = param(0, "seed of the datasets, the folds and the bootstrap", P.non_negative("seed"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
