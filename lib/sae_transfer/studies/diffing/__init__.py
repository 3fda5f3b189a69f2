"""What the base SAE misses: a BatchTopK crosscoder of base and finetune (``crosscoder``, ``train``,
``crosscoder_stats``), the base SAE's features classed against it (``classes``), tables and latent pages."""
