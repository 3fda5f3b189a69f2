"""Methods fitted on activations that more than one study uses: linear and k-sparse probes (``probes``)."""
