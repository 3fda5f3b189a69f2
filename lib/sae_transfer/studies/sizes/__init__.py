"""Across model sizes: an affine stitch between a small and a large model (``stitch``), the small SAE carried
across, SAE initialisation (``train``), probes, steering and stable features (``transfer``)."""
