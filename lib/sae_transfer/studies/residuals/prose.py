"""The residual-activation chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import short, slug
from sae_transfer.studies.residuals.measure import PAPER_COSINE

#: The seed's two pairs as the box names them.
SEED_LABELS = {"Gemma-2b vs Python-code finetune (theirs)": "Gemma-2b / Python",
               "Mistral-7B vs MetaMath (theirs)": "Mistral-7B / MetaMath"}


def in_short(h: dict[str, Any], own: dict[str, str]) -> str:
    """``own``: finetune spec -> the dataset spec it is read on (its own domain where known)."""
    cos = {ft: h[f"cos_{slug(ft, ds)}"] for ft, ds in own.items()}
    most = min(cos, key=cos.get)
    text = (f"At {h['summary_where']}, `{short(most)}` moved furthest: its residual keeps mean cosine {cos[most]:.3f} "
            f"with the base's on {short(own[most])}")
    if len(cos) > 1:
        least = max(cos, key=cos.get)
        text += f"; `{short(least)}` keeps {cos[least]:.3f} on {short(own[least])}"
    seed = ", ".join(f"{PAPER_COSINE[key]:.2f} for {label}" for key, label in SEED_LABELS.items())
    return text + f". The seed's pairs, their numbers: {seed}."
