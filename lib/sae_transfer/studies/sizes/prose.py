"""The sizes chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import pct


def in_short(h: dict[str, Any]) -> str:
    text = (f"Stitched from {h['small']} into {h['large']}, the small model's SAE explains "
            f"{pct(100 * h['ev_transferred'])} of the large model's variance (the large model's own SAE: "
            f"{pct(100 * h['ev_large'])}); a steering vector carried across keeps {pct(h['steer_ratio_pct'])} of "
            f"the own vector's effect")
    if "init_reached" in h:
        text += (". As a starting point for the large SAE it " +
                 (f"saves {pct(h['init_saved_pct'])} of the compute" if h["init_reached"] and h["init_saved_pct"] > 0
                  else "saves no compute once the stitch is paid for"))
    return text + "."
