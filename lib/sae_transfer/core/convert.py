"""Hugging Face causal LMs as TransformerLens HookedTransformers: one converter for hub names and local
``save_pretrained`` directories, used by the zoo (pretrained bases) and by the measurement loaders alike.

A converted model can be stored as the zoo stores its own models: ``arch_of(model)`` (the
``HookedTransformerConfig`` keyword arguments, JSON) and its processed state dict; ``zoo.store.new_model(arch)``
rebuilds it without Hugging Face.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from sae_transfer.core.memory import release
from sae_transfer.core.weight_processing import load_processed, storages

#: ``HookedTransformer.from_pretrained``'s weight processing defaults; an SAE's own
#: ``model_from_pretrained_kwargs`` override them, so activations match what the SAE was trained on.
PROCESSING_DEFAULTS = {"fold_ln": True, "center_writing_weights": True, "center_unembed": True,
                       "fold_value_biases": True}


def quiet_to(model, device_or_dtype):
    """``model.to(...)`` without TransformerLens's "Moving model to device" prints (they would land on pages).

    A dtype bypasses ``HookedTransformer.to``: besides updating ``cfg.dtype`` it calls ``state_dict()`` once per
    tensor to assign into a throwaway dict, quadratic in the number of tensors and a no-op (0.8 s of a 3.4 s
    load of SmolLM2's 513 tensors, ``benchmarks/load.py``); ``nn.Module.to`` is the conversion it then does."""
    if isinstance(device_or_dtype, torch.dtype):
        model.cfg.dtype = device_or_dtype
        return torch.nn.Module.to(model, device_or_dtype)
    with contextlib.redirect_stdout(io.StringIO()):
        return model.to(device_or_dtype)


def kernel_layout(model, values: bool = True):
    """``model`` with its weights laid out in memory as TransformerLens's forward reads them; values unchanged
    (with ``values`` False the weights are left unwritten, for a model whose weights are copied in next).

    TransformerLens 3 copies weights on every call: the gated MLP passes ``W.T.contiguous()`` to ``F.linear``
    (three [d_model, d_mlp] copies a layer), attention ``rearrange``s W_Q/W_K/W_V into [(head d_head), d_model]
    and W_O into [d_model, (head d_head)], the unembedding copies ``W_U.T``. Stored in those orders (the same
    shapes, other strides) every one of them is a view, and ``F.linear`` gets the very tensor it got before, so
    outputs are bit-identical. SmolLM2-135M's forward to the logits ran 1.18x as fast at the SAE pass's micro-batch
    (10 x 128 tokens; 1.35x at 4 x 128), the toy base-s's (plain MLP) 1.01x, on 2 cores on 2026-12-06
    (``benchmarks/forward.py``'s ``layout_speedup``). Each weight is replaced in turn: one weight's copy at a time
    on top of the model."""
    def lay(p, order: tuple[int, ...]) -> None:
        inverse = tuple(order.index(i) for i in range(len(order)))
        if values:
            p.data = p.data.permute(order).contiguous().permute(inverse)
        else:
            p.data = torch.empty([p.shape[i] for i in order], dtype=p.dtype, device=p.device).permute(inverse)

    with torch.no_grad():
        for block in model.blocks:
            mlp, attn = block.mlp, block.attn
            if type(mlp).__name__ == "GatedMLP":  # the plain MLP uses addmm, which reads any layout
                for name in ("W_gate", "W_in", "W_out"):
                    lay(getattr(mlp, name), (1, 0))
            for name in ("W_Q", "W_K", "W_V", "_W_K", "_W_V"):  # _W_K/_W_V: grouped-query attention's own
                p = attn._parameters.get(name)
                if p is not None and p.dim() == 3:
                    lay(p, (0, 2, 1))
            p = attn._parameters.get("W_O")
            if p is not None and p.dim() == 3:
                lay(p, (2, 0, 1))
        lay(model.unembed.W_U, (1, 0))
    return model


def plain_layout(model):
    """A copy of ``model`` with every weight contiguous, as TransformerLens stores it: what ``kernel_layout``'s
    tests and benchmark hold its model against."""
    import copy

    plain = copy.deepcopy(model)
    for p in plain.parameters():
        p.data = p.data.contiguous()
    return plain


# ------------------------------------------------------------------------------------------ local directories

#: Families TransformerLens configures only from an official hub name (its config code never reads their
#: ``config.json``): a local checkpoint of one is converted through the official configuration of its family
#: named here, with every shape taken from the checkpoint's own ``config.json``.
NAME_ONLY_FAMILIES = {"gemma": "google/gemma-2b", "gemma2": "google/gemma-2-2b", "gemma3_text": "google/gemma-3-1b-pt"}

#: Fields of a TransformerLens config derived from others: recomputed for the checkpoint, never copied from the
#: template (Gemma-2b's attention scale of 16 = sqrt(256) on a model with 16-dimensional heads was the bug).
_DERIVED = {"n_params", "attn_scale", "d_vocab_out", "rotary_dim", "model_name", "tokenizer_name"}


def supported_architectures() -> list[str]:
    """Hugging Face architectures TransformerLens converts from a local ``config.json`` (read from its config code:
    it keeps no list)."""
    from transformer_lens import loading_from_pretrained as loading

    found = set(re.findall(r'architecture == "(\w+ForCausalLM|\w+LMHeadModel)"',
                           inspect.getsource(loading.convert_hf_model_config)))
    return sorted(found)


def read_config(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / "config.json").read_text())


def check_convertible(directory: Path) -> None:
    """Whether TransformerLens can convert the checkpoint in ``directory``, from its ``config.json`` alone
    (before any weights load): a one-line ``ValueError`` naming its architecture and the supported ones."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = read_config(directory)
    # A config without "architectures" names its causal-LM class through its model_type.
    arch = (cfg.get("architectures") or [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(cfg.get("model_type"), "?")])[0]
    if cfg.get("model_type") in NAME_ONLY_FAMILIES or arch in supported_architectures():
        return
    raise ValueError(f"{directory}: architecture {arch} (model_type {cfg.get('model_type')!r}) is not one "
                     f"TransformerLens converts; supported: {', '.join(supported_architectures())}")


def _name_only_config(directory: Path, template: str, fold_ln: bool, device: str, dtype: torch.dtype):
    """The official ``template`` configuration with the checkpoint's shapes: a TransformerLens config for a local
    checkpoint of a family TransformerLens configures only by name."""
    from transformer_lens import HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    c = read_config(directory)
    base = loading.get_pretrained_model_config(template, fold_ln=fold_ln, device=device, dtype=dtype)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init and f.name not in _DERIVED}
    head = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    rope = c.get("rope_parameters") or {}
    theta = rope.get("rope_theta") or c.get("rope_theta") or rope.get("full_attention", {}).get("rope_theta")
    fields.update(d_model=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
                  d_head=head, d_mlp=c["intermediate_size"], d_vocab=c["vocab_size"], rotary_dim=head,
                  n_key_value_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
                  n_ctx=min(c.get("max_position_embeddings") or base.n_ctx, base.n_ctx), eps=c["rms_norm_eps"],
                  act_fn=c.get("hidden_activation") or c.get("hidden_act") or base.act_fn, model_name=directory.name)
    if theta:
        fields["rotary_base"] = theta
    if c.get("query_pre_attn_scalar"):
        fields["attn_scale"] = c["query_pre_attn_scalar"] ** 0.5
    if fields.get("use_local_attn"):
        types = c.get("layer_types") or [("sliding_attention" if i % 2 == 0 else "full_attention")
                                         for i in range(c["num_hidden_layers"])]
        fields["attn_types"] = ["local" if t == "sliding_attention" else "global" for t in types]
        fields["window_size"] = c.get("sliding_window") or base.window_size
        local_theta = rope.get("sliding_attention", {}).get("rope_theta") or c.get("rope_local_base_freq")
        if local_theta and "rotary_base_local" in fields:
            fields["rotary_base_local"] = local_theta
    for ours, theirs in (("attn_scores_soft_cap", "attn_logit_softcapping"),
                         ("output_logits_soft_cap", "final_logit_softcapping")):
        if ours in fields and fields[ours] not in (None, -1.0):
            fields[ours] = c.get(theirs) if c.get(theirs) is not None else -1.0
    return HookedTransformerConfig(**fields)


@contextlib.contextmanager
def _neutral_path(directory: Path):
    """``directory`` as TransformerLens should see it: under a name that says nothing (it picks some families by
    words in the path, "llama" or "gemma", so ``my-llama-ft`` of another family would be misread), and with the
    artifacts of a dequantized save left out of ``config.json`` (``"quantization_config": null`` breaks it).
    Every other file is a symlink to the original."""
    with tempfile.TemporaryDirectory(prefix="sae-transfer-") as tmp:
        view = Path(tmp) / "checkpoint"
        view.mkdir()
        for f in Path(directory).resolve().iterdir():
            if f.name != "config.json":
                (view / f.name).symlink_to(f)
        cfg = read_config(directory)
        if cfg.get("quantization_config", {}) is None:
            del cfg["quantization_config"]
        if cfg.get("model_type") == "gpt2" and "n_ctx" not in cfg:
            cfg["n_ctx"] = cfg["n_positions"]  # the legacy field TransformerLens reads; transformers 5 omits it
        (view / "config.json").write_text(json.dumps(cfg))
        yield str(view)


@torch.no_grad()
def reference_logits(hf_model, d_vocab: int, n_tokens: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hugging Face model's logits on ``n_tokens`` random tokens: ``(tokens [1, n_tokens], logits [1, n_tokens,
    d_vocab] fp32)``, computed on the device it is on (taken before conversion, so the model can be freed)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, d_vocab, (1, n_tokens), generator=g)
    training = hf_model.training  # a model being finetuned is checked at each saved step: leave it as it was
    device = next(hf_model.parameters()).device
    logits = hf_model.eval()(tokens.to(device)).logits.float()[..., :d_vocab].cpu()
    hf_model.train(training)
    return tokens, logits


@torch.no_grad()
def check_logits(model, tokens: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest difference between the HookedTransformer's centred logits on ``tokens`` and ``theirs``
    (``reference_logits``; TransformerLens centres the unembedding, which shifts every logit of a position alike).
    Raises when it exceeds 1e-3 times the logits' spread (fp32; 5e-2 in half precision)."""
    ours = model(tokens.to(model.cfg.device)).float().cpu()
    theirs = theirs[..., : ours.shape[-1]]
    centred = lambda t: t - t.mean(-1, keepdim=True)
    diff = float((centred(ours) - centred(theirs)).abs().max())
    tol = (1e-3 if model.cfg.dtype == torch.float32 else 5e-2) * max(1.0, float(theirs.std()))
    if not diff <= tol:
        raise ValueError(f"the converted model's logits differ from the Hugging Face model's by {diff:.3g} "
                         f"(tolerance {tol:.3g}): TransformerLens does not convert this checkpoint faithfully")
    return diff


def verify_logits(model, hf_model, n_tokens: int = 8, seed: int = 0) -> float:
    """``check_logits`` of ``model`` against ``hf_model`` on ``n_tokens`` random tokens."""
    return check_logits(model, *reference_logits(hf_model, model.cfg.d_vocab, n_tokens, seed))


@contextlib.contextmanager
def _config(name_or_dir: str, fold_ln: bool, device: str, dtype: torch.dtype, kwargs: dict[str, Any]):
    """``(official name, HookedTransformerConfig)`` of a hub name or a local checkpoint; the name holds while the
    context is open (a local checkpoint is read through a neutral path, ``_neutral_path``)."""
    from transformer_lens import loading_from_pretrained as loading

    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore", DeprecationWarning)
        if Path(name_or_dir).is_dir():
            template = NAME_ONLY_FAMILIES.get(read_config(Path(name_or_dir)).get("model_type"))
            if template:
                yield template, _name_only_config(Path(name_or_dir), template, fold_ln, device, dtype)
                return
            official = stack.enter_context(_neutral_path(Path(name_or_dir)))
        else:
            official = loading.get_official_model_name(name_or_dir)
        yield official, loading.get_pretrained_model_config(official, fold_ln=fold_ln, device=device, dtype=dtype,
                                                            **kwargs)


def hooked_config(directory: Path):
    """The ``HookedTransformerConfig`` TransformerLens gives a local checkpoint, from its config files alone."""
    with _config(str(directory), True, "cpu", torch.float32, {}) as (_, cfg):
        return cfg


def hooked_from_hf(name_or_dir: str, hf_model, tokenizer, device: str, dtype: torch.dtype,
                   from_pretrained_kwargs: dict[str, Any] | None = None, verify: bool = True,
                   weights: str | None = None, n_trim: int = 0):
    """A HookedTransformer of ``hf_model``'s weights; when None, of ``weights`` (a hub name or a directory; default
    ``name_or_dir``), loaded here and freed once converted, its vocabulary cut by ``n_trim`` appended tokens.

    The steps of ``HookedTransformer.from_pretrained(BASE, hf_model=FINETUNE)``, the seed's way, with two
    differences for a local ``save_pretrained`` directory: it stands in for an official hub name (TransformerLens's
    config and weight conversion accept directories; ``from_pretrained`` itself does not), and a family that
    TransformerLens configures only by name (Gemma 1/2/3) is converted through its official configuration with
    the checkpoint's shapes. A local checkpoint is then checked against the Hugging Face model (``check_logits``).
    The weights are processed without TransformerLens's copies (``weight_processing``): the peak is the Hugging
    Face weights and the converted ones, once each.
    """
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    kwargs = {**PROCESSING_DEFAULTS, **(from_pretrained_kwargs or {})}
    processing = {k: kwargs.pop(k) for k in PROCESSING_DEFAULTS}
    local = Path(name_or_dir).is_dir()
    if hf_model is None and (local or weights is not None):
        from transformers import AutoModelForCausalLM

        hf_model = AutoModelForCausalLM.from_pretrained(weights or name_or_dir, dtype=dtype)
        if n_trim:
            hf_model.resize_token_embeddings(hf_model.get_input_embeddings().num_embeddings - n_trim)
    with _config(name_or_dir, processing["fold_ln"], device, dtype, kwargs) as (official, cfg):
        reference = reference_logits(hf_model, cfg.d_vocab) if local and verify else None
        state = loading.get_pretrained_state_dict(official, cfg, hf_model, dtype=dtype)
        foreign = storages(hf_model) if hf_model is not None else frozenset()
        hf_model = None  # a model loaded here is freed as its weights are processed; the caller's stays whole
        release()
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        load_processed(model, state, foreign, **processing)
    release()
    model = kernel_layout(quiet_to(model, device).eval())
    if reference is not None:
        check_logits(model, *reference)
    return model


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
