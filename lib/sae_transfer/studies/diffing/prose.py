"""The diffing chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import pct


def in_short(h: dict[str, Any]) -> str:
    if not h.get("trained", True):
        return (f"The crosscoder did not train (it leaves {h['fvu_max_pct']:.0f}% of the variance unexplained), so "
                "this chapter reports no classes for this pair.")
    text = (f"Against a crosscoder of base and finetune, {h['worst_ft']} keeps {pct(h['worst_kept_pct'])} of the "
            f"base SAE's firing features and loses {pct(h['worst_lost_pct'])}")
    if h["n_pairs"] > 1:
        text += f"; {h['best_ft']} keeps {pct(h['best_kept_pct'])}"
    new = h["total_new"]
    text += (". The crosscoder finds no latent new in any finetune" if new == 0 else
             f". The crosscoder finds {new} latent{'s' if new != 1 else ''} new in the finetunes")
    if h["has_floor"] and h["has_ceiling"]:
        text += (f"; an independently pretrained twin keeps {pct(h['floor_kept_pct'])} by the same rule and a "
                 f"second SAE of the base {pct(h['ceiling_kept_pct'])}")
    text += "."
    if h["has_floor"] and h.get("floor_shared_pct", 0) > 90:
        text += (f" But the crosscoder calls {pct(h['floor_shared_pct'])} of its latents shared with an unrelated "
                 "twin too: at this budget it does not tell one model's directions from another's, so what it "
                 "calls shared, lost or new says little.")
    return text
