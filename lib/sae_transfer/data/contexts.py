"""Text around one token of a batch of token windows, as the pages show a feature's contexts."""

from __future__ import annotations

import torch


def context_text(tokenizer, windows: torch.Tensor, token: int, before: int = 12, after: int = 3) -> str:
    """The text around the ``token``-th token of ``windows`` [n, ctx] (counted across windows, as the feature
    accumulator's top-k records it), the token itself wrapped in ⟦ ⟧ and newlines shown as ⏎."""
    w, p = divmod(token, windows.shape[1])
    ids = windows[w].tolist()
    text = (tokenizer.decode(ids[max(1, p - before):p]) + "⟦" + tokenizer.decode([ids[p]]) + "⟧"
            + tokenizer.decode(ids[p + 1:p + 1 + after]))
    return text.replace("\n", "⏎")
