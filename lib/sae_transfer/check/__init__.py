"""``python -m sae_transfer check``: does a base SAE still work on this finetune? A verdict (``transfers`` /
``degraded`` / ``broken``, thresholds in ``sae_transfer.core.verdict``) from one streamed pass per model, with
intervals over token batches, early stopping, features to re-check, an optional SAE adaptation, and a report.

``measure``: the pass and its intervals; ``adapt``: SAE fine-tuning on the finetune; ``run``: the request,
preflight and loading; ``report``: terminal lines, ``check.json`` and the HTML page.
"""

from sae_transfer.check.measure import CheckSpec
from sae_transfer.check.run import SCHEMA, CheckRequest, preflight, run, watch_series

__all__ = ["SCHEMA", "CheckRequest", "CheckSpec", "preflight", "run", "watch_series"]
