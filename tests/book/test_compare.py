"""Books with parts: the comparison page's verdicts and the generated table of contents."""

import pytest
import yaml

from sae_transfer.book import build
from sae_transfer.book.parts import Book, book_parts
from sae_transfer.book.chapters import ParameterError
from sae_transfer.book.compare import COMPARISONS, compare, page


def _results(code: float, math: float, base: float = 0.0) -> dict:
    """results.json of every chapter the comparisons read, with ``code`` and ``math`` for every number, and
    ``base`` for the base's own values."""
    out: dict = {}
    for c in COMPARISONS:
        for ft, v in (("code", code), ("math", math)):
            numbers = out.setdefault(c.chapter, {"numbers": {}})["numbers"]
            numbers[c.key.format(ft=ft)] = v
            if c.base_key:
                numbers[c.base_key.format(ft=ft)] = base
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
    assert "parts differ: code, math" in text and "Where they differ: whose residual stream is less aligned" in text
    assert "| 0.200 / 0.900 | 0.900 / 0.200 |" in text  # levels where the chapter has no base value
    assert "| +0.200 / +0.900 | +0.900 / +0.200 |" in text  # changes from the base, signed


def test_values_within_the_tolerance_are_a_tie_and_read_apart():
    text = page({"toy": _results(0.2, 0.9), "real": _results(0.99860, 0.99893)})
    assert "| 0.200 / 0.900 | 0.9986 / 0.9989 | 0.01 | parts differ: code, tie |" in text  # not 0.999 / 0.999
    text = page({"toy": _results(0.5, 0.5), "real": _results(0.5, 0.505)})
    assert "| 0.500 / 0.500 | 0.500 / 0.505 | 0.01 | a tie in every part |" in text


def test_changes_from_the_base_are_compared_not_levels():
    """The base SAE explains code worse than math already on the base: the code finetune's lower level is the
    data's, and the math finetune lost more."""
    numbers = {"ev_token_base_code": 0.5, "ev_token_base_math": 0.9, "ev_token_code_code": 0.49,
               "ev_token_math_math": 0.7}
    (row,) = compare({"toy": {"sae_metrics": {"numbers": numbers}}})
    assert row["answers"]["toy"] == ({"code": pytest.approx(-0.01), "math": pytest.approx(-0.2)}, "math")


def test_a_part_without_a_chapter_is_left_out_of_that_comparison():
    real = _results(0.5, 0.6)
    del real["features"]
    rows = compare({"toy": _results(0.2, 0.9), "real": real})
    assert {r["comparison"].chapter for r in rows} == {"residuals", "sae_metrics"}


def test_the_default_and_smoke_books_hold_a_real_part(tmp_path):
    for profile, part in (("default", "smollm2"), ("smoke", "smollm2-smoke")):
        parts = book_parts(profile)
        assert [p.profile for p in parts] == [profile, part]
        assert parts[1].page("residuals") == f"book/{part}/residuals"
    book = Book(tmp_path, tuple(book_parts("default")), tmp_path / "runs", "test")
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
    monkeypatch.setattr("sae_transfer.book.parts.profile_parts", lambda p: parts.get(p, []))
    with pytest.raises(ParameterError) as e:
        book_parts("smoke")
    assert message in str(e.value)
