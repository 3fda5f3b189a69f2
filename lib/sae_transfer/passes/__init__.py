"""One streamed pass over token batches and what it keeps: the measurement cache keyed by content (``cache``),
the pass (``stream``), running-sum accumulators (``accumulators``, ``sae_accumulator``), outlier thresholds
(``outliers``), the SAE-metric pass every study that asks "does the SAE still work?" shares (``sae_metrics``) and
the feature groups studies score (``feature_groups``). Nothing here plots or writes prose."""
