"""Models and SAEs as a study meets them: specs parsed and loaded (``load``), hook-name arithmetic (``hooks``),
and the pair setup every study measures (``pairs``: ``PairSetup``, the lazy ``PairLoader``, a finetune's own
domain)."""
