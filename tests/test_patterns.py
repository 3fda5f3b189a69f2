"""Planted token patterns (``data.patterns``): the planted text differs from the text exactly after the planted
tokens, the two finetunes' texts draw the same windows, and the positions are where the planted tokens are."""

import numpy as np
import pytest
import torch

from sae_transfer.data.patterns import CANDIDATES_PER_TOKEN, SKIP, Patterns
from sae_transfer.studies.known_answers.trained import _Text

VOCAB = 300


@pytest.fixture(scope="module")
def text():
    """Zipf-like token windows [400, 32] with BOS (id 0) first; ids 0 and 1 special."""
    g = torch.Generator().manual_seed(0)
    p = 1 / torch.arange(1, VOCAB + 1, dtype=torch.float64)
    p[:2] = 0
    w = torch.multinomial(p / p.sum(), 400 * 32, replacement=True, generator=g).view(400, 32)
    w[:, 0] = 0
    return w


@pytest.fixture(scope="module")
def patterns(text):
    return Patterns.draw(text, 4, VOCAB, (0, 1), seed=3)


def test_the_planted_tokens_are_distinct_frequent_and_never_special(text, patterns):
    counts = torch.bincount(text[:, 1:].flatten(), minlength=VOCAB)
    counts[[0, 1]] = 0
    pool = set(counts.argsort(descending=True)[SKIP: SKIP + CANDIDATES_PER_TOKEN * 8].tolist())
    chosen = patterns.added + patterns.removed
    assert len(set(chosen)) == 8 and set(chosen) <= pool
    assert not {0, 1} & set(patterns.targets) and len(patterns.targets) == 4
    assert Patterns.draw(text, 4, VOCAB, (0, 1), seed=3) == patterns
    assert Patterns.draw(text, 4, VOCAB, (0, 1), seed=4) != patterns
    with pytest.raises(ValueError, match="frequent tokens"):
        Patterns.draw(text, 200, VOCAB, (0, 1), seed=3)


def test_the_plant_changes_the_token_after_each_planted_token_and_nothing_else(text, patterns):
    planted = patterns.apply(text, torch.Generator().manual_seed(1))
    prev = text[:, :-1]
    after_trigger = torch.isin(prev, torch.tensor(patterns.added))
    after_removed = torch.isin(prev, torch.tensor(patterns.removed))
    target = dict(zip(patterns.added, patterns.targets))
    assert after_trigger.sum() > 50 and after_removed.sum() > 50
    want = torch.tensor([target[int(t)] for t in prev[after_trigger]])
    assert torch.equal(planted[:, 1:][after_trigger], want)
    untouched = ~(after_trigger | after_removed)
    assert torch.equal(planted[:, 1:][untouched], text[:, 1:][untouched])
    assert torch.equal(planted[:, 0], text[:, 0])
    erased = planted[:, 1:][after_removed]
    # drawn uniformly: mostly not what the text had there, never a special id, spread over the vocabulary
    assert (erased != text[:, 1:][after_removed]).float().mean() > 0.9
    assert not torch.isin(erased, torch.tensor([0, 1])).any() and len(erased.unique()) > 0.5 * len(erased)
    assert torch.equal(planted, patterns.apply(text, torch.Generator().manual_seed(1)))


def test_the_positions_are_where_the_planted_tokens_are(text, patterns):
    where = patterns.positions(text)
    assert not any(m[:, 0].any() for m in where.values())
    total = where["added"].long() + where["removed"].long() + where["other"].long()
    assert torch.equal(total[:, 1:], torch.ones_like(total[:, 1:]))
    assert torch.equal(where["added"][:, 1:], torch.isin(text[:, 1:], torch.tensor(patterns.added)))
    target = patterns.target_of(text)
    assert torch.equal(target >= 0, torch.isin(text, torch.tensor(patterns.added)))


def test_the_two_finetunes_read_the_same_windows_and_differ_only_by_the_plant(text, patterns):
    planted, control = _Text(text, patterns), _Text(text, None)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        p, c = planted.sample(16, a), control.sample(16, b)
        after = torch.isin(c[:, :-1], torch.tensor(patterns.added + patterns.removed))
        assert torch.equal(p[:, 1:][~after], c[:, 1:][~after]) and torch.equal(p[:, 0], c[:, 0])
        assert (p[:, 1:][after] != c[:, 1:][after]).any()
