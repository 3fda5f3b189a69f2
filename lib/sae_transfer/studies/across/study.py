"""The chapter across architectures' parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile the zoo: specs refer to (smoke, default or a recipe path)", P.zoo_recipe)
    base: str = param("zoo:base-s", "the reference model, every stitch's target: zoo:NAME, hub:ORG/NAME or local:PATH",
                      P.model("base"))
    sae: str = param("zoo:base-s", "the base's SAE: zoo:NAME, sae_lens:RELEASE:SAE_ID or local:PATH", P.sae("sae"))
    other: str = param("zoo:base-llama", "a model of another architecture on the base's tokenizer, data and budget",
                       P.model("other"))
    other_sae: str = param("zoo:base-llama", "the other model's SAE, trained with the base SAE's recipe",
                           P.sae("other_sae"))
    twin: str = param("zoo:twin", "the base's architecture from another seed (the floor); empty: no floor",
                      P.optional(P.model("twin")))
    twin_sae: str = param("zoo:twin", "the twin's SAE, trained with the base SAE's recipe (with twin)",
                          P.optional(P.sae("twin_sae")))
    second_sae: str = param("zoo:base-s-seed1", "the base SAE's recipe from another seed (the ceiling); empty: none",
                            P.optional(P.sae("second_sae")))
    datasets: list = param(["zoo:prose", "zoo:code", "zoo:math"],
                           "each stitch trains on their train splits and is read on held-out",
                           P.each(P.dataset("datasets"), "datasets"))
    stitch_tokens: int = param(131072, "tokens each stitch trains on (an equal share of each dataset)",
                               P.positive("stitch_tokens", least=4096))
    stitch_lr: float = param(0.001, "the stitch's Adam learning rate", P.positive_float("stitch_lr"))
    n_tokens: int = param(8192, "held-out tokens per dataset for every evaluation", P.positive("n_tokens"))
    context_size: int = param(128, "tokens per window (BOS included)", P.positive("context_size", least=2))
    batch_size: int = param(16, "windows per batch (intervals resample whole batches)", P.positive("batch_size"))
    top_k: int = param(16, "top activations kept per feature (the contexts shown)", P.positive("top_k"))
    n_boot: int = param(1000, "bootstrap resamples of every interval over features", P.positive("n_boot", least=100))
    seed: int = param(0, "seed of the stitches and the bootstrap", P.non_negative("seed"))
    device: str = param("auto", "torch device: auto, cpu, cuda", P.device)
    dtype: str = param("float32", "model dtype: float32, bfloat16, float16", P.dtype)
    memory: str = param("auto", P.MEMORY_DOC, P.memory)

    def check(self) -> None:
        """A twin needs its SAE and an SAE its twin: the floor is a pair."""
        if bool(self.twin) != bool(self.twin_sae):
            given, missing = ("twin", "twin_sae") if self.twin else ("twin_sae", "twin")
            raise ValueError(f"{given}={getattr(self, given)!r} without {missing}: the floor stitches the twin and "
                             f"carries its SAE; give both or leave both empty")
