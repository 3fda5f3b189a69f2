"""Hugging Face causal LMs as TransformerLens HookedTransformers: one converter for hub names and local
``save_pretrained`` directories, used by the zoo (pretrained bases) and by the measurement loaders alike.

A converted model can be stored as the zoo stores its own models: ``arch_of(model)`` (the
``HookedTransformerConfig`` keyword arguments, JSON) and its processed state dict; ``zoo.store.new_model(arch)``
rebuilds it without Hugging Face.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from pathlib import Path
from typing import Any

import torch

#: ``HookedTransformer.from_pretrained``'s weight processing defaults; an SAE's own
#: ``model_from_pretrained_kwargs`` override them, so activations match what the SAE was trained on.
PROCESSING_DEFAULTS = {"fold_ln": True, "center_writing_weights": True, "center_unembed": True,
                       "fold_value_biases": True}


def quiet_to(model, device_or_dtype):
    """``model.to(...)`` without TransformerLens's "Moving model to device" prints (they would land on pages)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return model.to(device_or_dtype)


def hooked_from_hf(name_or_dir: str, hf_model, tokenizer, device: str, dtype: torch.dtype,
                   from_pretrained_kwargs: dict[str, Any] | None = None):
    """A HookedTransformer of ``hf_model``'s weights (``name_or_dir``'s own when None).

    The steps of ``HookedTransformer.from_pretrained(BASE, hf_model=FINETUNE)``, the seed's way, with one
    difference: a local ``save_pretrained`` directory stands in for an official hub name (TransformerLens's
    config and weight conversion accept directories; ``from_pretrained`` itself does not). Hub names and local
    directories therefore take the same code, which the tests exercise offline.
    """
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    kwargs = {**PROCESSING_DEFAULTS, **(from_pretrained_kwargs or {})}
    processing = {k: kwargs.pop(k) for k in PROCESSING_DEFAULTS}
    official = name_or_dir if Path(name_or_dir).is_dir() else loading.get_official_model_name(name_or_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg = loading.get_pretrained_model_config(official, fold_ln=processing["fold_ln"], device=device,
                                                  dtype=dtype, **kwargs)
        state = loading.get_pretrained_state_dict(official, cfg, hf_model, dtype=dtype)
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state, **processing)
    return quiet_to(model, device).eval()


#: Config fields that describe where and how a model runs, not what it is: never stored in ``arch.json``.
_RUNTIME_FIELDS = {"device", "dtype", "n_devices", "n_params", "tokenizer_name", "model_name", "seed",
                   "tokenizer_prepends_bos", "default_prepend_bos", "checkpoint_index", "checkpoint_label",
                   "checkpoint_value", "from_checkpoint", "original_architecture"}


def arch_of(model) -> dict[str, Any]:
    """A HookedTransformer's architecture as ``HookedTransformerConfig`` keyword arguments that JSON can hold
    (after weight processing, so the stored state dict and config agree: e.g. ``normalization_type`` RMSPre)."""
    cfg = model.cfg
    out: dict[str, Any] = {"original_architecture": cfg.original_architecture or "zoo"}
    for f in dataclasses.fields(cfg):
        if not f.init or f.name in _RUNTIME_FIELDS:
            continue
        value = getattr(cfg, f.name)
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[f.name] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[f.name] = list(value)
        elif isinstance(value, dict) and all(isinstance(v, (bool, int, float, str)) for v in value.values()):
            out[f.name] = dict(value)
    return out
