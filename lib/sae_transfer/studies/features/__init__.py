"""Which of the base SAE's features keep their meaning (``measure``), how they drift along finetuning and how
much fine-tuning the SAE recovers (``drift``)."""
