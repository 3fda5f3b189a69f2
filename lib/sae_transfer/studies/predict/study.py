"""The predicting-transfer chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile (the cases are its finetunes' checkpoints; zoo models only)", P.zoo_recipe)
    base: str = param("zoo:base-s", "the zoo base model the finetunes start from", P.model("base"))
    sae: str = param("zoo:base-s", "the base's SAE", P.sae("sae"))
    datasets: list = param(["zoo:prose", "zoo:code", "zoo:math"], "each checkpoint is measured on each of these",
                           P.each(P.dataset("datasets"), "datasets"))
    n_tokens: int = param(2048, "tokens per case for the outcomes", P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window, BOS included", P.positive("context_size", least=2))
    batch_size: int = param(32, "windows per batch", P.positive("batch_size"))
    outliers: str = param("2x", "outlier norm: none, a multiple of the base's mean norm ('2x'), or absolute",
                          P.outliers)
    n_shift: int = param(100, "STS: number of shifted SAE dimensions (the paper: 100)", P.positive("n_shift"))
    sts_examples: int = param(64, "STS: (demonstration, query) examples per case", P.positive("sts_examples"))
    demo_tokens: int = param(96, "STS: tokens of in-context demonstration before each query", P.positive("demo_tokens"))
    n_boot: int = param(2000, "bootstrap resamples of the cases for the confidence intervals", P.positive("n_boot"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)

    def check(self) -> None:
        """Checks across parameters, before any kernel starts."""
        if self.demo_tokens + 2 > self.context_size:
            raise ValueError(f"demo_tokens={self.demo_tokens} leaves no room for a query in context_size="
                             f"{self.context_size}; use demo_tokens <= {self.context_size - 2}")
