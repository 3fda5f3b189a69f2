"""The diffing chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.core.memory import budget_bytes, gib
from sae_transfer.models.load import d_model_of, resolve_device
from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "base model spec: zoo:NAME, hub:ORG/NAME or local:PATH", P.model("base"))
    finetunes: list = param(["zoo:code", "zoo:math"],
                            "finetuned model specs; the first is also followed along its checkpoints",
                            P.each(P.model("finetunes"), "finetunes"))
    sae: str = param("zoo:base-s", "the base's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH", P.sae("sae"))
    twin: str = param("zoo:twin", "the base's recipe from another seed (the floor); empty: no floor",
                      P.optional(P.model("twin")))
    second_sae: str = param("zoo:base-s-seed1",
                            "the base SAE's recipe from another seed (the ceiling); empty: no ceiling",
                            P.optional(P.sae("second_sae")))
    base_data: str = param("zoo:prose", "the base's data; each zoo finetune adds its own domain",
                           P.dataset("base_data"))
    train_tokens: int = param(307200, "crosscoder training tokens per pair (half the base's data, half the finetune's)",
                              P.positive("train_tokens"))
    n_tokens: int = param(16384, "held-out evaluation tokens per dataset", P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window, BOS included", P.positive("context_size", least=2))
    batch_size: int = param(16, "windows per batch", P.positive("batch_size"))
    expansion: int = param(8, "crosscoder latents per residual dimension", P.positive("expansion"))
    k: int = param(32, "latents active per token on average (BatchTopK)", P.positive("k"))
    lr: float = param(0.001, "Adam learning rate of the crosscoder", P.positive_float("lr"))
    batch_tokens: int = param(1024, "activations per crosscoder step", P.positive("batch_tokens"))
    n_checkpoints: int = param(2, "crosscoders along the first finetune's saved checkpoints; 0: none",
                               P.non_negative("n_checkpoints"))
    n_show: int = param(24, "latents per pair given a browsable page", P.positive("n_show"))
    top_k: int = param(8, "contexts kept per latent and dataset", P.positive("top_k"))
    seed: int = param(0, "seed of the crosscoders and the token order", P.non_negative("seed"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)

    def check(self) -> None:
        """Checks across parameters, before any kernel starts: the crosscoder's weights, gradients and Adam's two
        moments (``crosscoder_bytes``) fit the memory budget (the residual width comes from the base's config)."""
        width = d_model_of(self.base, self.zoo)
        if width is None:
            return
        need, budget = crosscoder_bytes(width, self.expansion), budget_bytes(self.memory, resolve_device(self.device))
        if need > budget:
            largest = max(budget // crosscoder_bytes(width, 1), 0)
            raise P.Unfit(f"expansion={self.expansion}: a crosscoder of {self.expansion * width} latents on width "
                          f"{width} needs {gib(need)} to train, over memory={self.memory!r} ({gib(budget)} here); "
                          f"use expansion <= {largest}", "expansion", largest or None)


def crosscoder_bytes(d_model: int, expansion: int) -> int:
    """fp32 bytes of a crosscoder's encoder and decoder ([2, d_model, d_sae] each), their gradients and Adam's
    two moments: 4 tensors of 4 * d_model * d_sae floats."""
    return 4 * 4 * (4 * d_model * expansion * d_model)
