"""The sizes chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    small: str = param("zoo:base-xs", "the smaller model: zoo:NAME, hub:ORG/NAME or local:PATH", P.model("small"))
    large: str = param("zoo:base-s", "the larger model of the same family (the same tokenizer)", P.model("large"))
    small_sae: str = param("zoo:base-xs", "the small model's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH",
                           P.sae("small_sae"))
    large_sae: str = param("zoo:base-s",
                           "the large model's SAE: the reference, and the recipe of the initialisation study",
                           P.sae("large_sae"))
    second_sae: str = param("zoo:base-s-seed1", "the large SAE's recipe from another seed (the ceiling); empty: none",
                            P.optional(P.sae("second_sae")))
    datasets: list = param(["zoo:prose", "zoo:code", "zoo:math"],
                           "the stitch trains on their train splits, is read on held-out",
                           P.each(P.dataset("datasets"), "datasets"))
    stitch_tokens: int = param(131072, "tokens the stitch trains on (an equal share of each dataset)",
                               P.positive("stitch_tokens", least=4096))
    stitch_lr: float = param(0.001, "the stitch's Adam learning rate", P.positive_float("stitch_lr"))
    n_tokens: int = param(8192, "held-out tokens per dataset for every evaluation", P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window (BOS included)", P.positive("context_size", least=2))
    batch_size: int = param(16, "windows per batch", P.positive("batch_size"))
    sae_tokens: int = param(409600, "training tokens of each of the large model's two new SAEs; 0: skip that study",
                            P.non_negative("sae_tokens"))
    sae_checkpoints: int = param(6, "points on each training curve", P.positive("sae_checkpoints", least=2))
    steer_from: str = param("zoo:prose", "steering: the data it starts from (one of datasets)", P.dataset("steer_from"))
    steer_to: str = param("zoo:code", "steering: the data whose direction it adds (one of datasets)",
                          P.dataset("steer_to"))
    domains: list = param(["reading", "equation", "math", "entity"], "answerability prompt domains for the probes",
                          P.domains)
    n_train: int = param(160, "training prompts per domain (a multiple of 4)", P.probe_size("n_train"))
    n_test: int = param(80, "test prompts per domain (a multiple of 4)", P.probe_size("n_test"))
    probe_k: int = param(10, "SAE features of the sparse probe", P.positive("probe_k"))
    top_k: int = param(16, "top activations kept per feature (contexts, top-token share)", P.positive("top_k"))
    seed: int = param(0, "seed of the stitch, the SAEs, the probes and the random direction", P.non_negative("seed"))
    context_chars: int = param(240, "longest Wikipedia context of a probe prompt, in characters",
                               P.positive("context_chars"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)
