"""The README's "Your own models" walkthrough, end to end on CPU: a tiny random Gemma checkpoint saved locally, a
finetune of it, an SAE in the format sae_lens's training runner saves (BatchTopK), your own text as JSON lines and
the zoo's text by name, relative paths, through residuals, SAE metrics and features; then a whole book of one
family from a parameter file. Three more architectures go through whole books in ``test_own_models.py``."""

import json
import math
import subprocess
import sys

import pytest
import torch

from tests.test_convert import save_checkpoint

pytestmark = pytest.mark.slow
FAMILIES = ("gemma",)
HOOK = "blocks.1.hook_resid_pre"


def _sae(directory, training_format: bool):
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(3)
    meta = SAEMetadata(hook_name=HOOK, prepend_bos=True)
    # Negative encoder biases (and a threshold, as training leaves one): features fire on some tokens, not all.
    if training_format:  # what sae_lens's training runner saves: architecture "batchtopk"
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=64, d_sae=128, k=8, metadata=meta))
        with torch.no_grad():
            sae.b_enc.fill_(-0.5)
            sae.topk_threshold.fill_(0.2)
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=64, d_sae=128, metadata=meta))
        with torch.no_grad():
            sae.b_enc.fill_(-0.5)
    sae.save_model(str(directory))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, smoke_card):
    root = tmp_path_factory.mktemp("walkthrough")
    for family in FAMILIES:
        base = save_checkpoint(family, root / family / "base", seed=0)
        with torch.no_grad():  # the "finetune": every weight moved a little
            for p in base.parameters():
                p.add_(0.02 * torch.randn_like(p))
        base.save_pretrained(root / family / "ft")
        for f in ("tokenizer.json", "tokenizer_config.json"):
            (root / family / "ft" / f).write_bytes((root / family / "base" / f).read_bytes())
        _sae(root / family / "sae", training_format=family == "gemma")
    words = "the model reads a sentence about code and math and then it writes another one".split()
    with open(root / "my_text.jsonl", "w") as f:
        for i in range(400):
            f.write(json.dumps({"text": " ".join(words[(i + j) % len(words)] for j in range(40))}) + "\n")
    return root


def cli(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "sae_transfer", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd)


def _pair(family: str) -> list[str]:
    return ["-p", "zoo", "smoke", "-p", "base", f"local:{family}/base", "-p", "finetunes", f"[local:{family}/ft]",
            "-p", "context_size", "32", "-p", "batch_size", "4"]


CHAPTERS = {
    "residuals": ["-p", "datasets", "[json:my_text.jsonl, zoo:prose]", "-p", "n_tokens", "512"],
    "sae_metrics": ["-p", "datasets", "[json:my_text.jsonl, zoo:code]", "-p", "n_tokens", "512",
                    "-p", "check_tokens", "128"],
    "features": ["-p", "dataset", "json:my_text.jsonl", "-p", "n_select", "512", "-p", "n_tokens", "512",
                 "-p", "n_regular", "20", "-p", "n_dead", "5", "-p", "recovery_tokens", "128"],
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_each_family_through_each_chapter(workdir, family, chapter):
    sae = [] if chapter == "residuals" else ["-p", "sae", f"local:{family}/sae"]
    out = f"runs/{family}-{chapter}"
    proc = cli("run", chapter, *_pair(family), *sae, *CHAPTERS[chapter], "--out", out, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / out / "results.json").read_text())
    numbers = results["numbers"]
    floats = [v for v in numbers.values() if isinstance(v, float)]
    assert floats and all(math.isfinite(v) for v in floats)
    params = results["meta"]["params"]
    assert params["base"] == f"local:{workdir / family / 'base'}"  # relative paths recorded absolute
    if chapter == "residuals":
        cosines = [v for k, v in numbers.items() if k.startswith("cos_")]
        assert cosines and all(0.0 < c <= 1.0 for c in cosines)  # a small perturbation: the residuals stay close
    if chapter == "sae_metrics":
        assert numbers["n_tokens_measured"] == 512
        assert numbers["d_sae"] == 128


def test_a_book_of_your_own_parameter_file_describing_only_the_real_family(tmp_path, real_smoke_card):
    """Two sections of the real family's own file (the smoke-size one): a book of just those chapters, with -W."""
    import yaml

    from sae_transfer.core.paths import params_dir

    spec = yaml.safe_load((params_dir() / "book" / "smollm2-smoke.yaml").read_text())
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({c: spec[c] for c in ("residuals", "sae_metrics")}))
    proc = cli("book", "-f", "mine.yaml", "--out", "my-book", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = tmp_path / "my-book" / "book" / "_build" / "html"
    assert (html / "book" / "chapters" / "sae_metrics.html").exists()
    assert not (html / "book" / "chapters" / "features.html").exists()  # only the chapters the file names
    import re

    intro = re.sub(r"<[^>]+>", "", (html / "book" / "intro.html").read_text())
    assert "sae_transfer book -f" in intro and "SAE metrics" in intro
    results = json.loads((tmp_path / "my-book" / "runs" / "book" / "sae_metrics" / "results.json").read_text())
    assert results["meta"]["params"]["zoo"] == "smollm2-smoke"
    assert results["numbers"]["ev_token_code_code_lo"] <= results["numbers"]["ev_token_code_code"] \
        <= results["numbers"]["ev_token_code_code_hi"]


def test_answerability_trains_its_probes_on_your_own_pair(tmp_path, smoke_card):
    """A local Gemma pair with a real-sized vocabulary (the smoke zoo's tokenizer: its prompts fit the context)."""
    from transformers import GemmaConfig, GemmaForCausalLM

    from sae_transfer.zoo import Zoo

    tok = Zoo.open("smoke").tokenizer
    torch.manual_seed(0)
    model = GemmaForCausalLM(GemmaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         head_dim=16, max_position_embeddings=128, initializer_range=0.1))
    for name in ("base", "ft"):
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    _sae(tmp_path / "sae", training_format=False)
    proc = cli("run", "answerability", "-p", "zoo", "smoke", "-p", "base", "local:base", "-p", "finetunes",
               "[local:ft]", "-p", "sae", "local:sae", "-p", "n_train", "40", "-p", "n_test", "20", "-p", "ks",
               "[1, 2]", "-p", "max_tokens", "100", "-p", "context_chars", "100", "-p", "batch_size", "8",
               "-p", "n_boot", "100", "--out", "runs/answerability", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    numbers = json.loads((tmp_path / "runs" / "answerability" / "results.json").read_text())["numbers"]
    assert numbers["h_n_train"] == 40 and 0.0 <= numbers["h_residual_in"] <= 1.0
