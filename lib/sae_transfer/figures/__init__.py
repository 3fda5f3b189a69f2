"""Figures, one module per chapter (``figures.residuals``, ...), helpers in ``figures.common``. Every function
takes plain data from a study module and returns a matplotlib Figure (``summary`` also a plotly one); nothing here
measures."""

from . import (answerability, check, common, diffing, feature_pages, features, predict, residuals, sae_metrics, sizes,
               summary, zoo)

__all__ = ["answerability", "check", "common", "diffing", "feature_pages", "features", "predict", "residuals",
           "sae_metrics", "sizes", "summary", "zoo"]
