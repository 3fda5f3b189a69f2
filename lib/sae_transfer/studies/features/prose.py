"""The feature-transfer chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import pct, short, slug


def in_short(h: dict[str, Any], finetunes: list[str]) -> str:
    sims = {ft: h[f"regular_sim_{slug(ft)}"] for ft in finetunes if f"regular_sim_{slug(ft)}" in h}
    if not sims:
        return "No finetune had regular features to score."
    lo, hi = min(sims, key=sims.get), max(sims, key=sims.get)
    text = (f"On `{short(lo)}` the base SAE's regular features fire on the same tokens with mean activation "
            f"similarity {sims[lo]:.2f} ({pct(h[f'regular_above08_{slug(lo)}'])} above 0.8)")
    if hi != lo:
        text += f"; on `{short(hi)}`, {sims[hi]:.2f} ({pct(h[f'regular_above08_{slug(hi)}'])})"
    rec = [ft for ft in finetunes if f"rec_final_ev_{slug(ft)}" in h]
    if rec:
        ft = min(rec, key=lambda f: h[f"rec_base_ev_{slug(f)}"])
        text += (f". Fine-tuning the SAE on `{short(ft)}` for {h['sae_finetune_tokens']:,} tokens takes its explained "
                 f"variance from {h[f'rec_base_ev_{slug(ft)}']:.3f} to {h[f'rec_final_ev_{slug(ft)}']:.3f}")
    return text + "."
