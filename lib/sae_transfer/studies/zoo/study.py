"""The zoo page's parameters: each declared once, here, with its default, doc and check (see
``studies.parameters``, which derives the notebook's parameters cell, the command's checks and the docs from it)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_transfer.studies import parameters as P
from sae_transfer.studies.parameters import param


@dataclass(frozen=True, kw_only=True)
class Study:
    zoo: str = param("default", "zoo profile: smoke, default, or a path to a recipe .yaml (see params/zoo/)",
                     P.zoo_recipe)
    device: str = param("auto", "torch device for building what is missing: auto, cpu, cuda", P.device)
