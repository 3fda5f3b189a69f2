"""The zoo chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.zoo.card import is_real


def in_short(card: dict, h: dict[str, Any]) -> str:
    models = card["models"]
    roots = [n for n, m in models.items() if m["parent"] is None]
    fts = [n for n, m in models.items() if m["parent"]]
    n_saes = int(h["saes_n_saes"])
    if is_real(card):
        text = (f"The real model `{roots[0]}` ({models[roots[0]]['n_params'] / 1e6:.0f}M parameters, fetched by "
                f"package name), {len(fts)} full finetune{'s' if len(fts) != 1 else ''} of it and {n_saes} "
                f"SAE{'s' if n_saes != 1 else ''} trained here.")
    else:
        text = (f"{len(roots)} base model{'s' if len(roots) != 1 else ''} ({', '.join(f'`{r}`' for r in roots)}), "
                f"{len(fts)} finetune{'s' if len(fts) != 1 else ''} and {n_saes} SAEs, all trained here on CPU.")
    return text + (f" {int(h['saes_n_meeting_bars'])} of the {n_saes} SAEs meet every quality bar on held-out prose "
                   f"(worst explained variance {h['saes_worst_explained_variance']:.3f}).")
