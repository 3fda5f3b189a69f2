"""The answerability datasets: balance, matched pairs, determinism, no train/test leakage, and that each
unanswerable prompt really lacks what its answerable partner has."""

import re
from collections import Counter

import pytest

from sae_transfer.data import answerable as A


@pytest.fixture(scope="module")
def downloads(smoke_card):
    from sae_transfer.core.paths import cache_dir

    return cache_dir() / "downloads"  # the smoke zoo has fetched the Wikipedia summaries


@pytest.fixture(scope="module")
def examples(downloads):
    return A.build(list(A.DOMAINS), 40, 24, seed=0, downloads=downloads)


def test_every_domain_split_template_and_label_is_balanced(examples):
    counts = Counter((e.domain, e.split, e.template, e.label) for e in examples)
    assert set(counts) == {(d, s, t, y) for d in A.DOMAINS for s in A.SPLITS for t in range(2) for y in (0, 1)}
    for (d, s, t, y), n in counts.items():
        assert n == (40 if s == "train" else 24) // 4, (d, s, t, y)


def test_items_are_matched_pairs_in_one_split(examples):
    by_item = {}
    for e in examples:
        by_item.setdefault(e.item, []).append(e)
    for item, pair in by_item.items():
        assert sorted(e.label for e in pair) == [0, 1], item
        assert len({(e.split, e.template, e.domain) for e in pair}) == 1, item
        assert pair[0].text != pair[1].text


def test_no_train_test_leakage(examples):
    train = [e for e in examples if e.split == "train"]
    test = [e for e in examples if e.split == "test"]
    assert not {e.item for e in train} & {e.item for e in test}
    assert not {e.text for e in train} & {e.text for e in test}
    # reading: the article a test question is about never appears as a training context, nor the reverse
    titles = {s: {re.search(r"(?:What is|say about) (.+?)\?", e.text).group(1)
                  for e in examples if e.domain == "reading" and e.split == s} for s in A.SPLITS}
    assert not titles["train"] & titles["test"]


def test_build_is_deterministic_and_seeded(examples, downloads):
    again = A.build(list(A.DOMAINS), 40, 24, seed=0, downloads=downloads)
    assert again == examples
    other = A.build(["equation", "reading"], 40, 24, seed=1, downloads=downloads)
    assert {e.text for e in other}.isdisjoint({e.text for e in examples if e.domain in ("equation", "reading")}) \
        or len({e.text for e in other} & {e.text for e in examples}) < 10


def _defined_and_used(text: str) -> tuple[set[str], set[str]]:
    defs = set(re.findall(r"\b([a-z]) (?:=|is) \d+", text))
    expr = re.search(r"(?:What is|Compute) ([a-z][a-z +*\-]*)", text).group(1)
    return defs, set(re.findall(r"[a-z]", expr))


def test_equations_are_answerable_exactly_when_every_variable_is_defined(examples):
    eqs = [e for e in examples if e.domain == "equation"]
    assert eqs
    for e in eqs:
        defs, used = _defined_and_used(e.text)
        assert (used <= defs) == bool(e.label), e.text
        assert len(defs) == 3 or len(defs) == 4  # same count of definitions in both labels: 2 or 3 used + 1


def test_math_and_entity_pairs_differ_only_in_the_removed_quantity(examples):
    import os

    year = re.compile(r"\b(1\d{3}|20[0-2]\d)\b")
    for domain, blank in (("math", "some"), ("entity", "some year")):
        pairs = {}
        for e in examples:
            if e.domain == domain:
                pairs.setdefault(e.item, {})[e.label] = e.text
        assert pairs
        for p in pairs.values():
            a, u = p[1], p[0]
            n = len(os.path.commonprefix([a, u]))
            # where they part, the answerable prompt has a number and the other the blank
            assert re.match(r"\$?\d", a[n:]) and u[n:].startswith(blank), (a, u)
            if domain == "entity":
                assert year.search(a) and not year.search(u)


def test_fits_drops_whole_items(downloads):
    ex = A.build(["reading"], 8, 8, seed=0, fits=lambda t: len(t) < 200, downloads=downloads)
    assert all(len(e.text) < 200 for e in ex) and len(ex) == 16


def test_bad_sizes_and_domains_are_refused_with_one_line():
    with pytest.raises(ValueError, match="n_train=6 must be a positive multiple of 4"):
        A.build(["equation"], 6, 8)
    with pytest.raises(ValueError, match="choose from"):
        A.build(["poetry"], 8, 8)
    with pytest.raises(ValueError, match="allow longer prompts"):
        A.build(["equation"], 8, 8, fits=lambda t: False)
