"""Do SAEs trained on a base language model still work on its finetunes? The computation behind the book.

Folders are layers; each imports only the ones listed before it (``tests/test_architecture.py`` holds this):

``core``     paths, atomic io and hashes, the memory budget, labels, statistics, the verdict, HF -> TransformerLens
``zoo``      the offline zoo: corpora, tokenizer, toy models or a real family, finetunes, SAEs, the card
``models``   model and SAE loading, hook names, the pair setup a study measures
``data``     token windows from every dataset source, the answerability prompts, text around a token
``passes``   the measurement cache, the streaming pass and its accumulators, outliers, the SAE-metric pass
``methods``  what studies fit on activations and share: probes
``studies``  one folder per chapter: ``measure`` -> plain data, tables, figures, prose; no study imports another
``check``    ``python -m sae_transfer check``: a practitioner's verdict on one finetune
``book``     parameters, papermill runs, the Jupyter Book, the introduction's findings
``cli``      the command line
"""

__version__ = "0.1.0"
