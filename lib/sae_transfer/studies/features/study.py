"""The feature-transfer chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "base model spec: zoo:NAME, hub:ORG/NAME or local:PATH", P.model("base"))
    finetunes: list = param(["zoo:code", "zoo:math"], "finetuned model specs",
                            P.each(P.model("finetunes"), "finetunes"))
    sae: str = param("zoo:base-s", "the base's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH", P.sae("sae"))
    hook: str = param("", "hook the SAE reads; empty: the hook the SAE was trained on")
    dataset: str = param("",
                         "token source for every pair; empty: each zoo finetune on its own domain (prose otherwise)",
                         P.optional(P.dataset("dataset")))
    n_select: int = param(16384, "tokens of the selection split (feature groups)", P.positive("n_select"))
    n_tokens: int = param(32768, "tokens of the evaluation split (every score)", P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window, BOS included", P.positive("context_size", least=2))
    batch_size: int = param(32, "windows per batch", P.positive("batch_size"))
    n_regular: int = param(1000, "regular features sampled per pair (the seed: 1000)", P.positive("n_regular"))
    n_dead: int = param(100, "exclusively dead features sampled per group (the seed: 100)", P.positive("n_dead"))
    outliers: str = param("2x", "outlier norm: none, a multiple of the base's mean norm ('2x'), or absolute ('289')",
                          P.outliers)
    sae_finetune_tokens: int = param(150000,
                                     "tokens of fine-tuning the base SAE on each finetune (zoo pairs only; 0: skip)",
                                     P.non_negative("sae_finetune_tokens"))
    sae_finetune_lr: float = param(0.0003, "learning rate of that fine-tuning", P.positive_float("sae_finetune_lr"))
    recovery_tokens: int = param(8192, "tokens per SAE for the recovery metrics", P.positive("recovery_tokens"))
    checkpoint_tokens: int = param(8192, "tokens per finetune checkpoint for activation similarity along finetuning",
                                   P.positive("checkpoint_tokens"))
    n_show: int = param(3, "features shown with their contexts, per pair, that transferred and that broke",
                        P.positive("n_show"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)
