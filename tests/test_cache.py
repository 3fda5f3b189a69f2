"""Measurement caches are keyed by what a result depends on: the code that computes it, the content of local
models and JSON datasets, the parameters. A replaced model, an edited dataset or changed code recomputes; a
damaged entry is healed. Each test here fails on a cache keyed by spec strings and hand-bumped versions."""

import json

import pytest
import torch

from sae_transfer.data.tokens import TokenSpec
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes import cache
from sae_transfer.studies.residuals import measure as residuals

D = 32
TEXT = "the quick brown fox jumps over the lazy dog and then it runs far away into the woods. "


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _save_gpt2(path, tok, seed: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_ctx=32, n_embd=D, n_layer=2, n_head=2)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from sae_transfer.zoo.tokens import train_tokenizer

    return train_tokenizer({"prose": [TEXT * 30] * 5}, 300, tmp_path_factory.mktemp("tok"), seed=0)


def _jsonl(path, text: str) -> None:
    path.write_text("\n".join(json.dumps({"text": text * 20}) for _ in range(4)))


def _cosine(base, ft, data) -> float:
    setup = PairSetup(f"local:{base}", device="cpu")
    (record,) = residuals.measure(setup, [f"local:{ft}"], [TokenSpec(f"json:{data}", 256, 16, 4)])
    return residuals.summarised(record)["cos_mean"]


def test_replacing_a_local_model_or_editing_a_json_file_recomputes(tmp_path, tokenizer, isolated_cache,
                                                                  monkeypatch):
    _save_gpt2(tmp_path / "base", tokenizer, 0)
    _save_gpt2(tmp_path / "ft", tokenizer, 1)
    _jsonl(tmp_path / "d.jsonl", TEXT)
    first = _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl")
    assert _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl") == first  # cached, same answer
    # retrain the finetune into the same directory: the next run must see the new weights
    _save_gpt2(tmp_path / "ft", tokenizer, 2)
    replaced = _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl")
    assert replaced != first
    fresh = isolated_cache.parent / "fresh"
    # edit the dataset in place: new text, new numbers
    _jsonl(tmp_path / "d.jsonl", "completely different words about rivers, mountains and old cities. ")
    edited = _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl")
    assert edited != replaced
    # and what the cache returns is what an empty cache computes
    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(fresh))
    assert _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl") == pytest.approx(edited, abs=1e-12)


def test_changing_a_measurements_code_recomputes_it(tmp_path, tokenizer, isolated_cache, monkeypatch):
    _save_gpt2(tmp_path / "base", tokenizer, 0)
    _save_gpt2(tmp_path / "ft", tokenizer, 1)
    _jsonl(tmp_path / "d.jsonl", TEXT)
    _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl")
    calls = []
    real_run_pass = residuals.run_pass
    monkeypatch.setattr(residuals, "run_pass", lambda *a, **k: calls.append(1) or real_run_pass(*a, **k))
    _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl")
    assert calls == []  # unchanged code: served from the cache
    real_fingerprint = cache.code_fingerprint
    monkeypatch.setattr(cache, "code_fingerprint", lambda m: real_fingerprint(m) + "-edited")
    _cosine(tmp_path / "base", tmp_path / "ft", tmp_path / "d.jsonl")
    assert calls == [1]


def test_code_fingerprint_covers_imported_modules_only(tmp_path, monkeypatch):
    pkg = tmp_path / "sae_transfer"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "metric.py").write_text("from .helper import f\nfrom . import other\n")
    (pkg / "helper.py").write_text("def f():\n    return 1\n")
    (pkg / "other.py").write_text("X = 1\n")
    (pkg / "unrelated.py").write_text("Y = 1\n")
    monkeypatch.setattr(cache, "PACKAGE_DIR", pkg)
    # ``from . import other`` runs the package's __init__ too
    assert cache.module_closure("sae_transfer.metric") == ["sae_transfer", "sae_transfer.helper",
                                                          "sae_transfer.metric", "sae_transfer.other"]
    before = cache.code_fingerprint("sae_transfer.metric")
    (pkg / "unrelated.py").write_text("Y = 2\n")
    assert cache.code_fingerprint("sae_transfer.metric") == before
    (pkg / "helper.py").write_text("def f():\n    return 2\n")
    assert cache.code_fingerprint("sae_transfer.metric") != before
    # the parsed imports are memoised by the source: an import added by an edit is followed all the same
    (pkg / "metric.py").write_text("from .helper import f\nfrom . import other\nfrom . import unrelated\n")
    assert "sae_transfer.unrelated" in cache.module_closure("sae_transfer.metric")


def test_a_small_file_edited_to_its_size_and_time_is_seen(tmp_path, isolated_cache):
    import os

    f = tmp_path / "text.jsonl"
    f.write_text('{"text": "aaaa"}\n')
    first = cache.files_fingerprint([f])
    st = f.stat()
    f.write_text('{"text": "bbbb"}\n')
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert cache.files_fingerprint([f]) != first


def test_file_fingerprints_are_memoised_and_follow_edits(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setattr(cache, "ALWAYS_HASH_BYTES", 100)  # memoised above this size
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    first = cache.files_fingerprint([f])
    reads = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda p: reads.append(p) or real(p))
    assert cache.files_fingerprint([f]) == first and reads == []  # unchanged file: not read again
    f.write_bytes(b"b" * 1000)  # same size, new content and mtime
    assert cache.files_fingerprint([f]) != first and len(reads) == 1


def test_a_damaged_entry_is_recomputed_with_a_warning(isolated_cache):
    key = {"what": "test", "x": 1}
    assert cache.cached("test", key, lambda: {"v": 1}) == {"v": 1}
    path = cache.entry_path("test", key)
    path.write_text(path.read_text()[:10])  # truncated, as a killed writer on a non-atomic filesystem leaves it
    with pytest.warns(UserWarning, match=f"cache entry {path} is damaged"):
        assert cache.cached("test", key, lambda: {"v": 2}) == {"v": 2}
    assert json.loads(path.read_text())["result"] == {"v": 2}


def test_an_entry_edited_by_hand_is_not_served(isolated_cache):
    """A number changed in a cache entry's JSON (parsing fine) fails the entry's checksum and is recomputed."""
    key = {"what": "test", "x": 2}
    assert cache.cached("test", key, lambda: {"ev": 0.61, "rows": [(1, 2.5)]}) is not None
    path = cache.entry_path("test", key)
    entry = json.loads(path.read_text())
    assert cache.cached("test", key, lambda: pytest.fail("a whole entry is served")) == entry["result"]
    entry["result"]["ev"] = 0.99
    path.write_text(json.dumps(entry))
    with pytest.warns(UserWarning, match=f"cache entry {path} is damaged or was edited"):
        assert cache.cached("test", key, lambda: {"ev": 0.61})["ev"] == 0.61
    assert json.loads(path.read_text())["result"] == {"ev": 0.61}


def test_zoo_keys_use_recipe_fingerprints_and_hub_keys_revisions(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    ref = tmp_path / "models--org--name" / "refs"
    ref.mkdir(parents=True)
    (ref / "main").write_text("abc123\n")
    assert cache.model_identity("hub:org/name", "smoke") == {"spec": "hub:org/name", "revision": "abc123"}
    assert cache.model_identity("hub:org/other", "smoke")["revision"] is None
    zoo = cache.model_identity("zoo:code@25", "smoke")
    assert zoo["spec"] == "zoo:code@25" and len(zoo["zoo"]) == 16
    # a sae_lens SAE is keyed by its release repository's commit too: new files upstream are a new key
    gemma = tmp_path / "models--google--gemma-scope-2b-pt-res" / "refs"
    gemma.mkdir(parents=True)
    (gemma / "main").write_text("def456\n")
    sae = cache.sae_identity("sae_lens:gemma-scope-2b-pt-res:layer_12/width_16k/average_l0_41", "smoke")
    assert sae["revision"] == "def456" and sae["sae_lens"]
    assert cache.sae_identity("sae_lens:org/name:sae", "smoke")["revision"] == "abc123"  # a release that is a repo


@pytest.fixture
def zoo_copy(smoke_root, tmp_path, monkeypatch):
    """A copy of the built smoke zoo in a cache of its own, to damage without touching the shared one."""
    import shutil

    cache_root = tmp_path / "cache"
    shutil.copytree(smoke_root, cache_root / "zoo" / "smoke")
    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(cache_root))
    return cache_root / "zoo" / "smoke"


def test_a_zoo_file_with_other_bytes_of_its_size_is_refused_and_keys_follow_content(zoo_copy):
    from sae_transfer.models.pairs import PairSetup
    from sae_transfer.zoo.store import Zoo

    setup = PairSetup("zoo:base-s", "zoo:base-s", zoo="smoke", device="cpu")
    before = cache.measurement_key("t", "sae_transfer.passes.cache", setup)
    weights = zoo_copy / "saes" / "base-s" / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8) if data[-8:] != bytes(8) else b"\x01" * 8  # the last weights, same size, same header
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"zoo file .*sae_weights.safetensors differs from what was built"):
        Zoo.open("smoke").sae("zoo:base-s")
    record = json.loads((zoo_copy / "saes" / "base-s" / "fingerprint.json").read_text())
    record["files"]["sae_weights.safetensors"][1] = "0" * 64  # as a rebuild from another recipe would record
    (zoo_copy / "saes" / "base-s" / "fingerprint.json").write_text(json.dumps(record))
    assert cache.measurement_key("t", "sae_transfer.passes.cache", setup) != before


def test_a_zoo_model_built_from_another_recipe_is_refused(zoo_copy):
    from sae_transfer.zoo.store import Zoo

    record_path = zoo_copy / "models" / "code" / "fingerprint.json"
    record = json.loads(record_path.read_text())
    record["fingerprint"] = "another-recipe"
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"zoo model 'code' was built from another recipe than profile 'smoke'"):
        Zoo.open("smoke").model("code")


def test_trained_weights_are_held_to_their_digest(isolated_cache):
    """Weights trained once per key are checked when opened: edited, cut or left without their digest (a kill
    between the two writes) they are trained again, never used."""
    calls = []

    def train():
        calls.append(1)
        return {"w": torch.full((4,), float(len(calls)))}, {"loss": 0.5}

    key = {"what": "a model"}
    weights = cache.entry_path("toy", key).with_suffix(".pt")
    state, log = cache.trained("toy", key, weights, train)
    assert (len(calls), state["w"][0].item(), log) == (1, 1.0, {"loss": 0.5})
    assert cache.trained("toy", key, weights, train)[0]["w"][0].item() == 1.0 and len(calls) == 1  # reused
    torch.save({"w": torch.full((4,), 9.0)}, weights)  # edited
    with pytest.warns(UserWarning, match="differ from their record"):
        assert cache.trained("toy", key, weights, train)[0]["w"][0].item() == 2.0
    weights.with_name(weights.name + ".sha256").unlink()  # killed after the weights, before their digest
    assert cache.trained("toy", key, weights, train)[0]["w"][0].item() == 3.0 and len(calls) == 3
