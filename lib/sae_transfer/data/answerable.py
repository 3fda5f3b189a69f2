"""Answerable / unanswerable prompts in four domains, built offline and deterministically (seed 002's study).

Every *item* yields a matched pair: the same question once with what it needs (label 1) and once without
(label 0), in one of two prompt templates. Pairs never straddle splits, so a probe never meets the partner of
a training example at test time, and both classes and both templates are exactly balanced in every split.

    reading   a question about Wikipedia article X, with X's lead as context or another article's lead
    equation  an expression over variables, all of them defined in the context or one of them not
    math      a reasoning-gym word problem, whole or with one needed quantity replaced by "some"
    entity    "which year does the text give for X?", with a sentence of X's lead that holds a year, the year
              kept or replaced by "some year"

Train and test items come from disjoint pools: Wikipedia articles are split by a hash of their key, generated
problems by seeds of their own per split; a test prompt that also occurs in training is dropped.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from sae_transfer.core.paths import cache_dir
from sae_transfer.zoo.data import split_of, wiki_articles

DOMAINS = ("reading", "equation", "math", "entity")
SPLITS = ("train", "test")
N_TEMPLATES = 2

# (context, subject) -> prompt, per domain and template. The last prompt token is where the probes read.
TEMPLATES: dict[str, tuple[Callable[..., str], ...]] = {
    "reading": (lambda c, s: f"{c}\nQuestion: What is {s}?\nAnswer:",
                lambda c, s: f"Read this: {c}\nWhat does the text say about {s}?\nReply:"),
    "equation": (lambda c, s: f"Let {c}. What is {s}?\nAnswer:",
                 lambda c, s: f"We know that {c.replace(' = ', ' is ')}. Compute {s}.\nResult:"),
    "math": (lambda c, s: f"Question: {c}\nAnswer:",
             lambda c, s: f"Problem: {c}\nSolution:"),
    "entity": (lambda c, s: f"{c}\nQuestion: Which year does the text give for {s}?\nAnswer:",
               lambda c, s: f"Context: {c}\nQ: Name a year linked to {s} in the context.\nA:"),
}


@dataclass(frozen=True)
class Example:
    domain: str
    split: str
    item: str  # the source item; both labels of an item share it
    template: int
    label: int  # 1: answerable from the prompt, 0: not
    text: str

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ sources

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-2][0-9])\b")
_NUMBER = re.compile(r"\$?\b\d+(?:[.,]\d+)*%?")


def _lead(text: str, max_chars: int) -> str:
    """Whole leading sentences up to ``max_chars``; a first sentence longer than that is cut at a word."""
    out = ""
    for s in _SENTENCE.split(text):
        if len(out) + len(s) + 1 > max_chars:
            break
        out = f"{out} {s}".strip()
    return out or text[:max_chars].rsplit(" ", 1)[0] + " ..."


def _wiki_pool(split: str, downloads: Path) -> list[tuple[str, str, str]]:
    # Half the articles per pool, by a hash of the key: a test article never appears in a training prompt.
    return [a for a in wiki_articles(downloads)
            if (split_of(f"answerable/{a[0]}", 0.5) == "heldout") == (split == "test")]


def reading_pairs(split: str, rng: random.Random, downloads: Path, max_chars: int) -> Iterator:
    pool = _wiki_pool(split, downloads)
    rng.shuffle(pool)
    for i, (key, title, extract) in enumerate(pool):
        other = pool[(i + 1 + rng.randrange(len(pool) - 1)) % len(pool)]  # never the article itself
        yield f"reading/{key}", title, _lead(extract, max_chars), _lead(other[2], max_chars)


def entity_pairs(split: str, rng: random.Random, downloads: Path, max_chars: int) -> Iterator:
    pool = _wiki_pool(split, downloads)
    rng.shuffle(pool)
    for key, title, extract in pool:
        if re.search(r"\d", title):  # "History of India (1947-present)": the question would hold a year
            continue
        sentences = _SENTENCE.split(extract)[:6]
        dated = sorted((s for s in sentences if len(_YEAR.findall(s)) == 1), key=len)
        if not dated or len(dated[0]) > max_chars:
            continue
        # A minimal pair: X's shortest sentence with one year, after X's first sentence when both fit, once
        # as it is and once with the year replaced by "some year".
        lead = sentences[0]
        parts = [lead, dated[0]] if lead != dated[0] and len(lead) + len(dated[0]) < max_chars else [dated[0]]
        context = " ".join(parts)
        yield f"entity/{key}", title, context, _YEAR.sub("some year", context)


def equation_pairs(split: str, rng: random.Random, downloads: Path | None = None, max_chars: int = 0) -> Iterator:
    letters = [c for c in string.ascii_lowercase if c not in "ilo"]
    for i in range(20_000):
        names = rng.sample(letters, 5)
        used, spare = names[:rng.choice((2, 3))], names[3:]
        expr = used[0]
        for v in used[1:]:
            expr += f" {rng.choice('+-*')} {v}"
        values = {v: rng.randint(1, 20) for v in names}
        dropped = rng.choice(used)
        known = used + [spare[0]]
        missing = [v for v in known if v != dropped] + [spare[1]]  # one used variable swapped out

        def defs(vs: list[str]) -> str:
            vs = rng.sample(vs, len(vs))
            parts = [f"{v} = {values[v]}" for v in vs]
            return ", ".join(parts[:-1]) + f" and {parts[-1]}"
        yield f"equation/{split}/{i}", expr, defs(known), defs(missing)


def math_pairs(split: str, rng: random.Random, downloads: Path | None = None, max_chars: int = 0,
               size: int = 5000) -> Iterator:
    import reasoning_gym

    # Seeds of their own per split, and different from the zoo's math corpus (which uses the zoo seed).
    seed = 10_000 + 2 * rng.randrange(10 ** 6) + (split == "test")
    for i, item in enumerate(reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)):
        problem = re.sub(r"\s*Give the result as your final answer\..*$", "", item["question"], flags=re.S).strip()
        sentences = _SENTENCE.split(problem)
        statement = " ".join(sentences[:-1])
        numbers = list(_NUMBER.finditer(statement))
        if not numbers or "?" not in sentences[-1]:
            continue
        m = rng.choice(numbers)
        removed = f"{statement[:m.start()]}some{statement[m.end():]} {sentences[-1]}"
        yield f"math/{seed}/{i}", "", problem, removed


PAIRS = {"reading": reading_pairs, "equation": equation_pairs, "math": math_pairs, "entity": entity_pairs}


# ------------------------------------------------------------------------------------------ building

def check_sizes(n_train: int, n_test: int) -> None:
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if n < 4 or n % (2 * N_TEMPLATES):
            raise ValueError(f"{name}={n} must be a positive multiple of 4 (2 labels x 2 templates per domain)")


def check_domains(domains: list[str]) -> None:
    if not domains or any(d not in DOMAINS for d in domains) or len(set(domains)) != len(domains):
        raise ValueError(f"domains={domains!r}: a non-empty list of distinct domains; choose from {list(DOMAINS)}")


def build(domains: list[str], n_train: int, n_test: int, seed: int = 0, fits: Callable[[str], bool] | None = None,
          context_chars: int = 240, downloads: Path | None = None) -> list[Example]:
    """``n_train`` / ``n_test`` examples per domain (half answerable; templates alternate by item).

    ``context_chars`` bounds the Wikipedia contexts (reading: whole leading sentences up to it; entity: two
    sentences of at most that many characters each).

    ``fits(text)`` drops items whose prompts a model cannot take whole (e.g. longer than its context); both
    labels and both templates of an item are kept or dropped together.
    """
    check_domains(domains)
    check_sizes(n_train, n_test)
    downloads = downloads or cache_dir() / "downloads"
    out: list[Example] = []
    for domain in domains:
        seen: set[str] = set()
        for split, n in (("train", n_train), ("test", n_test)):
            rng = random.Random(f"{seed}/{domain}/{split}")
            kept = 0
            for item, subject, with_it, without in PAIRS[domain](split, rng, downloads, context_chars):
                t = kept % N_TEMPLATES
                texts = [TEMPLATES[domain][j](c, subject) for j in range(N_TEMPLATES) for c in (with_it, without)]
                if (fits and not all(map(fits, texts))) or seen.intersection(texts):
                    continue
                seen.update(texts)
                out += [Example(domain, split, item, t, 1, TEMPLATES[domain][t](with_it, subject)),
                        Example(domain, split, item, t, 0, TEMPLATES[domain][t](without, subject))]
                kept += 1
                if 2 * kept == n:
                    break
            else:
                most = 2 * kept - (2 * kept) % 4
                raise ValueError(f"domain {domain!r} has only {kept} {split} items whose prompts fit; "
                                 + (f"lower n_{split}={n} to at most {most}" if most else
                                    "allow longer prompts (max_tokens) or shorter contexts (context_chars)"))
    return out


def counts(examples: list[Example]):
    """Examples per (domain, split, template, label): the balance table."""
    import pandas as pd

    df = pd.DataFrame([e.as_dict() for e in examples])
    return df.groupby(["domain", "split", "template", "label"]).size().unstack("label").rename(
        columns={0: "unanswerable", 1: "answerable"})


def shown_examples(examples: list[Example], max_chars: int = 400):
    """The first training example of each (domain, template, label)."""
    import pandas as pd

    rows, seen = [], set()
    for e in examples:
        key = (e.domain, e.template, e.label)
        if e.split == "train" and key not in seen:
            seen.add(key)
            text = e.text if len(e.text) <= max_chars else e.text[:max_chars] + " ..."
            rows.append({"domain": e.domain, "template": e.template, "answerable": bool(e.label), "prompt": text})
    return pd.DataFrame(rows).sort_values(["domain", "template", "answerable"], ascending=[True, True, False],
                                          key=lambda c: c.map(DOMAINS.index) if c.name == "domain" else c
                                          ).set_index(["domain", "template", "answerable"])


def examples_of(result: dict) -> list[Example]:
    """The examples a study result holds (as plain dicts) as ``Example`` objects."""
    return [Example(**e) for e in result["examples"]]
