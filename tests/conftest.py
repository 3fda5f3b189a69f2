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
