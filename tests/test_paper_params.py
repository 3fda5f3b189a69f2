"""The paper parameter sets (seed setups for GPU users) parse and pass every check except the GPU itself."""

from pathlib import Path

import pytest
import yaml

from sae_transfer.chapters import get_chapter, resolve_params
from sae_transfer.paths import params_dir

PAPER = sorted((params_dir() / "paper").glob("*.yaml"))


def test_there_are_paper_sets():
    assert {p.stem for p in PAPER} >= {"gemma-2b-python", "mistral-7b-metamath"}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_set_is_complete_and_valid(path: Path):
    sections = yaml.safe_load(path.read_text())
    for chapter_name, values in sections.items():
        chapter = get_chapter(chapter_name)
        # this machine has no GPU: check everything else
        params = resolve_params(chapter, None, [path], [("device", "cpu")])
        assert all(params[k] == v for k, v in values.items() if k != "device")
        assert params["base"].startswith("hub:") and all(f.startswith("hub:") for f in params["finetunes"])
        assert params["n_tokens"] == 262144  # the seed's 256K


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_sets_use_the_seeds_saes_and_thresholds(path: Path):
    from sae_transfer.models import parse_spec
    from sae_transfer.sae_metrics import Outliers

    section = yaml.safe_load(path.read_text())["sae_metrics"]
    assert parse_spec(section["sae"], "sae", sae=True)[0] == "sae_lens"
    rule = Outliers.parse(section["outliers"])
    assert rule.kind == "absolute" and rule.value in (289, 200)  # the seed's Gemma and Mistral thresholds
