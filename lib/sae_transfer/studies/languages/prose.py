"""The chapter across languages' "In short" box, written from the headline numbers."""

from __future__ import annotations

from typing import Any

from sae_transfer.studies.languages.tables import change_reading, general_reading, verdict_words


def in_short(h: dict[str, Any]) -> str:
    """The verdict in each language with the criterion that decided it, then what happened to the
    language-general features, each against the reference that gives it meaning (the floor of a wrong pairing,
    the ceiling of a second translation)."""
    en, new = h["lang_base"], h["lang_new"]
    learned = h["ce_clean_finetune_new"] < h["ce_clean_base_new"]
    return (f"After a finetune on {new} text (the model's {new} loss {h['ce_clean_base_new']:.2f} -> "
            f"{h['ce_clean_finetune_new']:.2f} nats{'' if learned else ': it did not learn the text measured'}), "
            f"the base SAE **{verdict_words(h, 'new')}** on {new} and "
            f"**{verdict_words(h, 'base')}** on {en}; its explained variance goes "
            f"{100 * h['ev_base_new']:.0f}% -> {100 * h['ev_finetune_new']:.0f}% on {new} and "
            f"{100 * h['ev_base_base']:.0f}% -> {100 * h['ev_finetune_base']:.0f}% on {en}. "
            f"Of the SAE's features that fire on the parallel verses, {100 * h['general_before']:.1f}% are "
            f"language-general on the base, {general_reading(h)}; after the finetune, "
            f"{100 * h['general_after']:.1f}%, {change_reading(h)}.")
