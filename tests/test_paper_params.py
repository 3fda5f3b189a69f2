"""The paper parameter sets (seed setups for GPU users) parse and pass every check except the GPU itself."""

from pathlib import Path

import pytest
import yaml

from sae_transfer.book.chapters import get_chapter, resolve_params
from sae_transfer.core.paths import params_dir

PAPER = sorted((params_dir() / "paper").glob("*.yaml"))


def test_there_are_paper_sets():
    assert {p.stem for p in PAPER} >= {"gemma-2b-python", "mistral-7b-metamath", "gemma-2-9b-answerability"}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_set_is_complete_and_valid(path: Path):
    sections = yaml.safe_load(path.read_text())
    for chapter_name, values in sections.items():
        chapter = get_chapter(chapter_name)
        # this machine has no GPU: check everything else
        params = resolve_params(chapter, None, [path], [("device", "cpu")])
        assert all(params[k] == v for k, v in values.items() if k != "device")
        assert params["base"].startswith("hub:") and all(f.startswith("hub:") for f in params["finetunes"])
        if "n_tokens" in params:
            assert params["n_tokens"] == 262144  # the seed's 256K


@pytest.mark.parametrize("path", [p for p in PAPER if "sae_metrics" in yaml.safe_load(p.read_text())],
                         ids=lambda p: p.stem)
def test_paper_sets_use_the_seeds_saes_and_thresholds(path: Path):
    from sae_transfer.models.load import parse_spec
    from sae_transfer.passes.outliers import Outliers

    section = yaml.safe_load(path.read_text())["sae_metrics"]
    assert parse_spec(section["sae"], "sae", sae=True)[0] == "sae_lens"
    rule = Outliers.parse(section["outliers"])
    assert rule.kind == "absolute" and rule.value in (289, 200)  # the seed's Gemma and Mistral thresholds


def test_answerability_set_is_the_papers_setup():
    """Seed 002: Gemma 2 9B, a Gemma Scope residual SAE of width 131K at layer 20, probes at layers 20 and 31."""
    from sae_transfer.models.load import parse_spec

    section = yaml.safe_load((params_dir() / "paper" / "gemma-2-9b-answerability.yaml").read_text())["answerability"]
    kind, ref = parse_spec(section["sae"], "sae", sae=True)
    assert kind == "sae_lens" and ref.startswith("gemma-scope-9b-pt-res") and "layer_20/width_131k" in ref
    assert section["layers"] == [20, 31] and section["finetunes"] == ["hub:google/gemma-2-9b-it"]


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_sets_leave_batch_sizes_to_the_memory_budget(path: Path):
    """Passes that run under ``memory`` cut batches themselves; a hand-tuned batch size would be a guess."""
    for chapter_name, values in yaml.safe_load(path.read_text()).items():
        if chapter_name in ("residuals", "sae_metrics", "features"):
            assert "batch_size" not in values, (path.stem, chapter_name)
