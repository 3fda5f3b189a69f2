"""The chapter across languages' "In short" box, written from the headline numbers."""

from __future__ import annotations

from typing import Any

from sae_transfer.studies.languages.tables import change_reading, general_reading


def in_short(h: dict[str, Any]) -> str:
    """The verdict in each language, then what happened to the language-general features, each against the
    reference that gives it meaning (the floor of a wrong pairing, the ceiling of a second translation)."""
    en, new = h["lang_base"], h["lang_new"]
    undecided = lambda k: "" if h[f"decided_{k}"] else " (not decided by the intervals)"
    learned = h["ce_clean_finetune_new"] < h["ce_clean_base_new"]
    return (f"Finetuned on {new} text (its {new} loss {h['ce_clean_base_new']:.2f} -> "
            f"{h['ce_clean_finetune_new']:.2f} nats{'' if learned else ': it did not learn the text measured'}), "
            f"the model keeps the base SAE **{h['verdict_new']}** on {new}{undecided('new')} and "
            f"**{h['verdict_base']}** on {en}{undecided('base')}: explained variance "
            f"{100 * h['ev_base_new']:.0f}% -> {100 * h['ev_finetune_new']:.0f}% on {new}, "
            f"{100 * h['ev_base_base']:.0f}% -> {100 * h['ev_finetune_base']:.0f}% on {en}. "
            f"Of the SAE's features that fire on the parallel verses, {100 * h['general_before']:.0f}% are "
            f"language-general on the base, {general_reading(h)}; after the finetune, "
            f"{100 * h['general_after']:.0f}%, {change_reading(h)}.")
