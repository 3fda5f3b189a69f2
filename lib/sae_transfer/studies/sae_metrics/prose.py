"""The SAE-metric chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import short, slug
from sae_transfer.core.verdict import ev_wording


def in_short(h: dict[str, Any], own: list[tuple[str, str]]) -> str:
    parts = []
    for ft, ds in own:
        b, f = h[f"ev_token_base_{short(ds)}"], h[f"ev_token_{slug(ft, ds)}"]
        parts.append(f"**{ev_wording(b, f)}** on `{short(ft)}` (explained variance per token {f:.3f} on "
                     f"{short(ds)}, {b:.3f} on the base)")
    worst = max(own, key=lambda p: h[f"delta_ce_{slug(*p)}"])
    return ("The base SAE " + "; it ".join(parts) + ". Splicing it into the finetune costs up to "
            f"{h[f'delta_ce_{slug(*worst)}']:.3f} nats of cross-entropy (`{short(worst[0])}`), against "
            f"{h[f'delta_ce_base_{short(worst[1])}']:.3f} in the base.")
