"""The known-answers chapter's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import between, param


@dataclass(frozen=True, kw_only=True)
class Study:
    n_features: int = param(256, "true features of the base, in superposition", P.positive("n_features", least=8))
    d_model: int = param(64, "dimensions of the activations", P.positive("d_model", least=4))
    share: float = param(0.3, "share of the base's features the finetune changes (a third shifted, rarer, lost)",
                         between("share", 0, 1))
    angle: float = param(45.0, "degrees a shifted feature's direction turns", between("angle", 0, 180))
    rarer_keep: float = param(0.3, "share of its firings a rarer feature keeps", between("rarer_keep", 0, 1))
    new: float = param(0.1, "new features of the finetune, per base feature", between("new", 0, 4))
    sae_samples: int = param(1500000, "draws that train the base SAE (sae_lens train_toy_sae)",
                             P.positive("sae_samples"))
    sae_batch: int = param(256, "draws per step of the base SAE", P.positive("sae_batch"))
    sae_lr: float = param(0.003, "learning rate of the base SAE", P.positive_float("sae_lr"))
    sae_k: float = param(0.0, "latents of the base SAE active per draw on average (BatchTopK); 0: the base's true L0",
                         between("sae_k", 0, 1e6))
    train_tokens: int = param(300000, "draws that train each crosscoder (both models' activations of each)",
                              P.positive("train_tokens"))
    expansion: int = param(2, "crosscoder latents per true feature of base and finetune together",
                           P.positive("expansion"))
    k: int = param(8, "crosscoder latents active per draw on average (BatchTopK)", P.positive("k"))
    lr: float = param(0.003, "Adam learning rate of the crosscoders", P.positive_float("lr"))
    batch_tokens: int = param(1024, "draws per crosscoder step", P.positive("batch_tokens"))
    n_tokens: int = param(65536, "held-out draws that evaluate every method", P.positive("n_tokens"))
    context_size: int = param(64, "draws per window (position 0 is left out as BOS, as on text)",
                              P.positive("context_size", least=2))
    batch_size: int = param(16, "windows per evaluation batch", P.positive("batch_size"))
    n_regular: int = param(1000, "regular features the verdict's activation similarity averages",
                           P.positive("n_regular"))
    severities: list = param([0.0, 0.03, 0.1, 1.0],
                             "severity grid: share of features changed, new ones in proportion (with share)",
                             P.each(between("severities", 0, 1), "severities", non_empty=False))
    angles: list = param([10.0, 25.0, 90.0], "sweep of the shifted features' angle in degrees (with angle)",
                         P.each(between("angles", 0, 180), "angles", non_empty=False))
    token_sweep: list = param([100000, 1000000], "sweep of the crosscoder's training draws (with train_tokens)",
                              P.each(P.positive("token_sweep"), "token_sweep", non_empty=False))
    features_per_dim: list = param([2.0], "sweep of true features per dimension, each a world and SAE of its own "
                                   "(with n_features / d_model)",
                                   P.each(between("features_per_dim", 0.125, 64), "features_per_dim", non_empty=False))
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "the real model the second level plants its finetune in: zoo:NAME, hub:ORG/NAME "
                      "or local:PATH; empty: no second level", P.optional(P.model("base")))
    sae: str = param("zoo:base-s", "the real model's SAE, whose features the planted finetune edits",
                     P.sae("sae"))
    dataset: str = param("zoo:prose", "the text the real model reads: its activations, the crosscoder's and the "
                         "check's", P.dataset("dataset"))
    planted_train_tokens: int = param(204800, "tokens that train the real pair's crosscoder (both models' "
                                      "activations of each)", P.positive("planted_train_tokens"))
    planted_tokens: int = param(16384, "held-out tokens that evaluate every method on the real pair",
                                P.positive("planted_tokens"))
    planted_k: int = param(32, "latents of the real pair's crosscoder active per token on average (the diffing "
                           "chapter's)", P.positive("planted_k"))
    planted_severities: list = param([0.0, 0.03, 0.1, 1.0],
                                     "severity grid of check's verdict on the real pair (with share)",
                                     P.each(between("planted_severities", 0, 1), "planted_severities",
                                            non_empty=False))
    pattern_tokens: int = param(8, "tokens of each planted pattern (added, removed) in the text of the real "
                                "level's trained finetune; 0: no trained finetune", P.non_negative("pattern_tokens"))
    pattern_steps: int = param(150, "steps of the trained finetune and of its control (16 windows each, every "
                               "parameter trains)", P.positive("pattern_steps"))
    pattern_lr: float = param(0.002, "peak learning rate of the trained finetune and its control (AdamW)",
                              P.positive_float("pattern_lr"))
    device: str = param("auto", "torch device of the real model: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "the real model's dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)
    n_boot: int = param(1000, "bootstrap resamples of every interval", P.positive("n_boot", least=100))
    seed: int = param(0, "seed of the world, the edits, the SAEs and the crosscoders", P.non_negative("seed"))

    def check(self) -> None:
        """Checks across parameters, before any kernel starts."""
        if self.sae_k >= self.n_features:
            raise ValueError(f"sae_k={self.sae_k}: use fewer active latents than n_features={self.n_features}")
        if self.train_tokens < 4 * self.batch_tokens:
            raise ValueError(f"train_tokens={self.train_tokens}: use at least 4 x batch_tokens "
                             f"({4 * self.batch_tokens})")
