"""Residual activations: how far a finetune's residual stream moved from the base's, per layer, dataset and
checkpoint."""
