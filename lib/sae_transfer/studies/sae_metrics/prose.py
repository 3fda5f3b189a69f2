"""The SAE-metric chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import short, slug
from sae_transfer.core.verdict import pair_words


def in_short(h: dict[str, Any], own: list[tuple[str, str]]) -> str:
    parts = []
    for ft, ds in own:
        b, f = ({m: h[f"{m}_{key}"] for m in ("ev_token", "ce_recovered")}
                for key in (f"base_{short(ds)}", slug(ft, ds)))
        parts.append(f"**{pair_words(b, f)}** on `{short(ft)}` (explained variance per token {f['ev_token']:.3f} "
                     f"on {short(ds)}, {b['ev_token']:.3f} on the base; CE loss recovered {f['ce_recovered']:.3f}, "
                     f"{b['ce_recovered']:.3f})")
    worst = max(own, key=lambda p: h[f"delta_ce_{slug(*p)}"])
    return ("The base SAE " + "; it ".join(parts) + ". Splicing it into the finetune costs up to "
            f"{h[f'delta_ce_{slug(*worst)}']:.3f} nats of cross-entropy (`{short(worst[0])}`), against "
            f"{h[f'delta_ce_base_{short(worst[1])}']:.3f} in the base.")
