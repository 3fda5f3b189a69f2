"""The offline model zoo: corpora, tokenizer, small TransformerLens models, finetunes, SAEs, the zoo card."""

from .build import build_zoo, load_zoo_model, load_zoo_sae, read_card, zoo_dir

__all__ = ["build_zoo", "load_zoo_model", "load_zoo_sae", "read_card", "zoo_dir"]
