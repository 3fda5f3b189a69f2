"""The offline model zoo: corpora, tokenizer, small TransformerLens models or a real pretrained family, finetunes,
SAEs, the zoo card.

``store.Zoo`` reads a built zoo; ``build`` builds one. Nothing in this package measures."""

from sae_transfer.zoo.build import build_zoo
from sae_transfer.zoo.store import Zoo, zoo_dir

__all__ = ["Zoo", "build_zoo", "zoo_dir"]
