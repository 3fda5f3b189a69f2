"""The offline model zoo: corpora, tokenizer, small TransformerLens models or a real pretrained family, finetunes,
SAEs, the zoo card.

``store.Zoo`` reads a built zoo; ``build`` builds its artifacts and ``plan`` runs them. Nothing in this package
measures."""

from sae_transfer.zoo.plan import build_zoo, build_zoos
from sae_transfer.zoo.store import Zoo, zoo_dir

__all__ = ["Zoo", "build_zoo", "build_zoos", "zoo_dir"]
