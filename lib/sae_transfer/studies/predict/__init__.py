"""Predicting transfer before measuring it: cheap predictors against measured transfer (``measure``), and the
SAE transferability score and its claim (``sts``)."""
