"""Answerability probes (seed 002): trained on each domain, tested on every domain, template and layer, their
directions against the SAE's decoder, carried to the finetunes."""
