"""Planted token patterns: the training text of a finetune whose change is known by construction, because its text
differs from the base's in chosen places only (the second form of the known-answers chapter's second level).

Two kinds of pattern, each on ``n`` tokens of the text's vocabulary chosen by a seed among its frequent ones:

- **added**: after each trigger token the next token is always the trigger's own target (a random token of the
  vocabulary): a rule the base never saw, which the finetune must learn;
- **removed**: after each such token the next token is drawn uniformly from the vocabulary: what followed it in
  the base's text is erased, and the finetune must unlearn it.

The finetune and its control train on the same windows, in the same order, from the same seed; only the control's
text is left as it is. So what the two finetunes do differently is learnt where the input token is a planted one:
the positions ``Patterns.positions`` marks on any text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

#: Candidates are the tokens of frequency rank ``SKIP`` to ``SKIP + CANDIDATES_PER_TOKEN * 2n``: frequent enough
#: that held-out text holds them, past the commonest (spaces, punctuation, "the"), whose erasure would change most of
#: the text rather than chosen places of it.
SKIP, CANDIDATES_PER_TOKEN = 20, 4
#: The planted position classes, in table order.
POSITION_CLASSES = ("added", "removed", "other")


@dataclass(frozen=True)
class Patterns:
    """Token ids: ``added`` triggers and their ``targets``, ``removed`` tokens, and the ids never planted or drawn
    as a next token (``special``: BOS and the like). ``vocab``: the model's vocabulary size."""

    added: tuple[int, ...]
    targets: tuple[int, ...]
    removed: tuple[int, ...]
    special: tuple[int, ...]
    vocab: int
    seed: int

    @classmethod
    def draw(cls, windows: torch.Tensor, n: int, vocab: int, special: tuple[int, ...], seed: int) -> "Patterns":
        """``n`` added and ``n`` removed tokens among the frequent ones of ``windows`` [m, T] (position 0, BOS, left
        out), and each trigger's target, drawn under ``seed``."""
        # ids past ``vocab`` (a tokenizer's added tokens the model has no row for) are never planted
        counts = torch.bincount(windows[:, 1:].flatten(), minlength=vocab)[:vocab].double()
        counts[list(special)] = 0
        ranked = counts.argsort(descending=True, stable=True)  # ties by token id, whatever the sort
        pool = ranked[SKIP: SKIP + CANDIDATES_PER_TOKEN * 2 * n]
        pool = pool[counts[pool] > 0]
        if len(pool) < 2 * n:
            raise ValueError(f"the text holds {len(pool)} frequent tokens past its {SKIP} commonest; "
                             f"{2 * n} are needed to plant {n} added and {n} removed")
        g = torch.Generator().manual_seed(2_000_003 + seed)
        chosen = pool[torch.randperm(len(pool), generator=g)[: 2 * n]].tolist()
        ordinary = _ordinary(vocab, special)
        targets = ordinary[torch.randint(len(ordinary), (n,), generator=g)].tolist()
        return cls(tuple(chosen[:n]), tuple(targets), tuple(chosen[n:]), tuple(special), vocab, seed)

    def apply(self, windows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The planted text: ``windows`` [m, T] with the token after each trigger set to its target and the token
        after each removed token drawn uniformly (``generator``), judged on the original tokens."""
        out = windows.clone()
        prev, nxt = windows[:, :-1], out[:, 1:]
        target = torch.full((self.vocab,), -1, dtype=windows.dtype)
        target[list(self.added)] = torch.tensor(self.targets, dtype=windows.dtype)
        t = target[prev]
        nxt[t >= 0] = t[t >= 0]
        erased = torch.isin(prev, torch.tensor(self.removed, dtype=windows.dtype))
        ordinary = _ordinary(self.vocab, self.special).to(windows.dtype)
        nxt[erased] = ordinary[torch.randint(len(ordinary), (int(erased.sum()),), generator=generator)]
        return out

    def positions(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per position of ``tokens`` [B, T], bool [B, T] masks of ``POSITION_CLASSES``: where the input is a
        trigger, a removed token, or neither (position 0, BOS, in none)."""
        added = torch.isin(tokens, torch.tensor(self.added, dtype=tokens.dtype))
        removed = torch.isin(tokens, torch.tensor(self.removed, dtype=tokens.dtype))
        body = torch.ones_like(added)
        body[:, 0] = False
        return {"added": added & body, "removed": removed & body, "other": ~added & ~removed & body}

    def target_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """Each position's planted target [B, T] (-1 where the input is no trigger)."""
        target = torch.full((self.vocab,), -1, dtype=torch.long)
        target[list(self.added)] = torch.tensor(self.targets)
        return target[tokens.long()]

    def describe(self) -> dict:
        return asdict(self)


def _ordinary(vocab: int, special: tuple[int, ...]) -> torch.Tensor:
    keep = torch.ones(vocab, dtype=torch.bool)
    keep[list(special)] = False
    return torch.nonzero(keep).flatten()
