"""The architectures section's "In short" box, written from the headline numbers."""

from __future__ import annotations

from typing import Any

from sae_transfer.studies.across.tables import STITCH_FLOOR, verdict_vs_floor


def in_short(h: dict[str, Any]) -> str:
    """What a reader takes away, with the decisive caveat: the other architecture against the floor a reseed of the
    base's own architecture sets, and whether the stitch found a map at all."""
    if not h["stitch_worked"]:
        return (f"The stitch from the other architecture ({h['blocks_other']}) to the base explains under "
                f"{100 * STITCH_FLOOR:.0f}% of the base's residual variance on at least one dataset: it found no map, "
                "and the SAE it carries measures the stitch, not the dictionary. The shares of features with a "
                f"counterpart still stand: {100 * h['share_other']:.0f}% of the base SAE's features have one in the "
                f"other architecture's SAE, which leaves {verdict_vs_floor(h)}.")
    twin = h["twin"]
    trained = "trained on the base's tokenizer, data and budget" if h["zoo_recipes"] else "on the base's tokenizer"
    compared = [f"{100 * h['share_twin']:.0f}% for a reseed of the base's own architecture"] if twin else []
    if "share_second_seed" in h:
        compared.append(f"{100 * h['share_second_seed']:.0f}% for a second seed of the SAE itself")
    return (f"A model of another architecture ({h['blocks_other']}, against the base's {h['blocks_base']}), {trained}, "
            f"shares {100 * h['share_other']:.0f}% of the base SAE's features "
            f"(activation correlation {h['threshold']:.1f} or more)"
            + (", against " + " and ".join(compared) if compared else "")
            + (f". The other architecture leaves {verdict_vs_floor(h)}" if twin else "")
            + ". Carried onto the base by an affine stitch, its SAE explains "
            f"{100 * h['ev_carried_other']:.0f}% of the base's residual variance on {h['first']}"
            + (f" (the twin's: {100 * h['ev_carried_twin']:.0f}%" if twin else " (")
            + f"{'; ' if twin else ''}the base SAE's own: {100 * h['ev_own']:.0f}%).")
