"""The residual-activation chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "base model spec: zoo:NAME, hub:ORG/NAME or local:PATH", P.model("base"))
    finetunes: list = param(["zoo:code", "zoo:math"], "finetuned model specs compared with the base",
                            P.each(P.model("finetunes"), "finetunes"))
    sae: str = param("", "the SAE whose layer the summary describes (the residual stream at its hook); empty: the "
                         "middle layer", P.optional(P.sae("sae")))
    datasets: list = param(["zoo:prose", "zoo:code", "zoo:math"], "token sources: zoo:DOMAIN, hub:NAME or json:PATH",
                           P.each(P.dataset("datasets"), "datasets"))
    n_tokens: int = param(49152, "tokens per (pair, dataset); the seed used 256K (the paper sets do)",
                          P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window, BOS included", P.positive("context_size", least=2))
    batch_size: int = param(32, "windows per batch", P.positive("batch_size"))
    checkpoint_tokens: int = param(16384, "tokens per checkpoint in the sweep along finetuning (finetunes with saved checkpoints)",
                                   P.positive("checkpoint_tokens"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)
