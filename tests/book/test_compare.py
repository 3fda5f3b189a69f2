"""Books with parts: the comparison page's verdicts and the generated table of contents."""

import pytest
import yaml

from sae_transfer.book import build
from sae_transfer.book.chapters import ParameterError
from sae_transfer.book.compare import COMPARISONS, compare, page


def _results(code: float, math: float) -> dict:
    """results.json of every chapter the comparisons read, with ``code`` and ``math`` for every number."""
    out: dict = {}
    for c in COMPARISONS:
        for ft, v in (("code", code), ("math", math)):
            out.setdefault(c.chapter, {"numbers": {}})["numbers"][c.key.format(ft=ft)] = v
    return out


def test_parts_agree_when_the_same_finetune_moved_further():
    rows = compare({"toy": _results(0.2, 0.9), "real": _results(0.5, 0.6)})
    assert len(rows) == len(COMPARISONS)
    for r in rows:
        closer = r["comparison"].higher_is_closer
        assert r["agree"] and {f for _, f in r["answers"].values()} == {"code" if closer else "math"}


def test_parts_that_disagree_are_named_and_counted():
    text = page({"toy": _results(0.2, 0.9), "real": _results(0.9, 0.2)})
    assert "**0 of 7 comparisons agree.**" in text
    assert "parts differ: code, math" in text and "Where they differ: residual cosine" in text
    assert "| 0.200 / 0.900 | 0.900 / 0.200 |" in text


def test_numbers_the_verdict_tells_apart_read_apart():
    text = page({"toy": _results(0.2, 0.9), "real": _results(0.99860, 0.99893)})
    assert "| 0.200 / 0.900 | 0.9986 / 0.9989 | code in every part |" in text  # not 0.999 / 0.999


def test_a_part_without_a_chapter_is_left_out_of_that_comparison():
    real = _results(0.5, 0.6)
    del real["features"]
    rows = compare({"toy": _results(0.2, 0.9), "real": real})
    assert {r["comparison"].chapter for r in rows} == {"residuals", "sae_metrics"}


def test_the_default_and_smoke_books_hold_a_real_part(tmp_path):
    for profile, part in (("default", "smollm2"), ("smoke", "smollm2-smoke")):
        parts = build.book_parts(profile)
        assert [p.profile for p in parts] == [profile, part]
        assert parts[1].page("residuals") == f"book/{part}/residuals"
    book = build.Book(tmp_path, tuple(build.book_parts("default")), tmp_path / "runs", "test")
    toc = yaml.safe_load(build.write_toc(book).read_text())
    captions = [p["caption"] for p in toc["parts"]]
    assert captions == ["Setup", "Chapters", "On a real model: SmolLM2-135M-Instruct", "Compared", "Reference"]
    assert {"file": "book/smollm2/answerability"} in toc["parts"][2]["chapters"]


@pytest.mark.parametrize("parts, message", [
    ({"smoke": [{"profile": "smoke", "caption": "x"}]}, "must be another profile, listed once"),
    ({"smoke": [{"profile": "nope", "caption": "x"}]}, "valid profiles are"),
    ({"smoke": [{"profile": "default", "caption": "x"}], "default": [{"profile": "smollm2", "caption": "y"}]},
     "which has parts of its own"),
    ({"smoke": [{"profile": "default"}]}, "parts[0] must be a mapping with 'profile' and 'caption'"),
])
def test_a_part_must_be_another_profile_without_parts(parts, message, monkeypatch):
    monkeypatch.setattr(build, "profile_parts", lambda p: parts.get(p, []))
    with pytest.raises(ParameterError) as e:
        build.book_parts("smoke")
    assert message in str(e.value)
