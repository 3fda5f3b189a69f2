"""What every layer uses and that knows nothing of models or studies: where things live (``paths``), atomic writes
and content hashes (``io``), the memory budget (``memory``), labels, statistics, the verdict's thresholds
(``verdict``), the figure theme (``plotting``) and the one Hugging Face -> TransformerLens converter (``convert``)."""
