"""The base SAE's metrics on base and finetune. Its measurement is ``passes.sae_metrics`` (other studies share it);
here are its tables, figures and prose."""
