"""The answerability chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any


def _change(drop: float) -> str:
    return f"loses {drop:.3f} AUROC" if drop >= 0 else f"gains {-drop:.3f} AUROC"


def in_short(h: dict[str, Any]) -> str:
    return (f"A residual probe tells answerable from unanswerable prompts at AUROC {h['residual_in']:.2f} in its "
            f"own domain and {h['residual_out']:.2f} in others; a single SAE feature at {h['sae1_in']:.2f} and "
            f"{h['sae1_out']:.2f}. Carried to the finetunes without retraining, the residual probe "
            f"{_change(h['drop_residual'])} and the one-feature probe {_change(h['drop_sae1'])}.")
