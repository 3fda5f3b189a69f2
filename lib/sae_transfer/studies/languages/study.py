"""The chapter across languages' parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.languages.measure import check_batches
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("smollm2", "zoo profile the zoo: specs refer to (smollm2, smollm2-smoke or a recipe path)",
                     P.zoo_recipe)
    base: str = param("zoo:smollm2", "base model spec: zoo:NAME, hub:ORG/NAME or local:PATH", P.model("base"))
    sae: str = param("zoo:smollm2", "the base's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH", P.sae("sae"))
    finetune: str = param("zoo:french", "the base finetuned on text in another language", P.model("finetune"))
    base_text: str = param("zoo:prose", "text in the base's language, for the SAE metrics and the verdict",
                           P.dataset("base_text"))
    new_text: str = param("zoo:fr", "text in the finetune's language, for the SAE metrics and the verdict",
                          P.dataset("new_text"))
    base_language: str = param("en", "the base's language among the parallel verses",
                               P.verse_language("base_language"))
    new_language: str = param("fr", "the finetune's language among the parallel verses",
                              P.verse_language("new_language"))
    ceiling: str = param("en-kjv", "a second translation in the base's language (the ceiling); empty: none",
                         P.optional(P.verse_language("ceiling")))
    n_tokens: int = param(8192, "tokens per dataset for the SAE metrics and the verdict", P.positive("n_tokens"))
    n_verses: int = param(1024, "held-out verses read in every translation", P.positive("n_verses", least=64))
    context_size: int = param(128, "tokens per window, BOS included (a verse is cut there)",
                              P.positive("context_size", least=2))
    batch_size: int = param(16, "windows per batch of the verdict's pass (its intervals resample whole batches)",
                            P.positive("batch_size"))
    outliers: str = param("2x", "outlier norm: none, a multiple of the base's mean norm ('2x'), or absolute ('289')",
                          P.outliers)
    min_rate: float = param(0.01, "share of verses a feature must fire on to count as firing in a language",
                            P.between("min_rate", 0.0, 1.0))
    general_corr: float = param(0.5, "correlation over verses with the translation that makes a feature "
                                     "language-general", P.between("general_corr", -1.0, 1.0))
    transfer_corr: float = param(0.7, "correlation over verses between base and finetune that makes a feature "
                                      "transfer", P.between("transfer_corr", -1.0, 1.0))
    n_boot: int = param(1000, "bootstrap resamples of every interval", P.positive("n_boot", least=100))
    seed: int = param(0, "seed of the token windows, the shuffled pairing and the bootstrap", P.non_negative("seed"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)

    def check(self) -> None:
        """The verses compared are three different translations, and the verdict's tokens make enough batches for
        its intervals (checked with the parameters, before any zoo is built)."""
        langs = [self.base_language, self.new_language] + ([self.ceiling] if self.ceiling else [])
        if len(set(langs)) != len(langs):
            raise ValueError(f"base_language={self.base_language!r}, new_language={self.new_language!r}, "
                             f"ceiling={self.ceiling!r}: give three different translations (the ceiling a second "
                             "one in the base's language)")
        check_batches(self.n_tokens, self.batch_size, self.context_size)
