"""Methods fitted on activations that more than one study uses: linear and k-sparse probes (``probes``), the
weight deviation of a finetune from its base (``weights``), and the BatchTopK crosscoder with its accumulators and
the classes read from it (``crosscoder``, ``crosscoder_stats``, ``crosscoder_classes``)."""
