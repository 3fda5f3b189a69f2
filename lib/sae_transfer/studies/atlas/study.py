"""The atlas chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@P.rule("local or debug")
def executor(value: str) -> None:
    if value not in ("local", "debug"):
        raise ValueError(f"executor={value!r}: use 'local' (subprocesses) or 'debug' (this process); a cluster runs "
                         "python -m sae_transfer atlas --executor slurm")


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "base model spec: zoo:NAME, hub:ORG/NAME or local:PATH", P.model("base"))
    sae: str = param("zoo:base-s", "the base's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH", P.sae("sae"))
    finetunes: list = param(["zoo:code", "zoo:math", "zoo:mix"], "finetuned model specs, one job each",
                            P.each(P.model("finetunes"), "finetunes"))
    checkpoints: bool = param(True, "every saved checkpoint of each zoo finetune, not only its last")
    datasets: list = param(["zoo:code", "zoo:math"], "token sources: zoo:DOMAIN, hub:NAME or json:PATH",
                           P.each(P.dataset("datasets"), "datasets"))
    n_tokens: int = param(16384, "at most this many tokens per (finetune, dataset), as check --tokens",
                          P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window, BOS included", P.positive("context_size", least=2))
    batch_size: int = param(8, "windows per batch (the verdict's intervals resample whole batches)",
                            P.positive("batch_size"))
    outliers: str = param("2x", "outlier norm: none, a multiple of the base's mean norm ('2x'), or absolute ('289')",
                          P.outliers)
    executor: str = param("local", "where jobs run: local (subprocesses) or debug (this process)", executor)
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)
