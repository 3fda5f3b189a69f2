"""TransformerLens's weight processing (``HookedTransformer.load_and_process_state_dict``) without its copies.

TransformerLens 3.9 copies the whole state dict at three of its steps (``fold_layer_norm``, ``center_unembed``,
``fold_value_biases``) while its caller still holds the original, then copies every tensor into parameters the
model allocated for them: converting SmolLM2-135M (517 MB of weights) peaked at 3.2 GB, and a pair at 3.9 GB.
Here each step replaces the entries it changes, one layer at a time, so an old tensor is freed as its successor is
made, and the model takes the processed tensors as its parameters (``assign``): the peak is the Hugging Face
weights and their converted successors, once each (``benchmarks/load_memory.py``). The arithmetic is TransformerLens's own functions on the same tensors, in its order, so
the model is bit for bit the one ``load_and_process_state_dict`` makes (``tests/test_weight_processing.py`` holds
it so on every family the project converts; a TransformerLens release that changes these steps fails there).
"""

from __future__ import annotations

import re

import torch

#: The attention entries ``ProcessWeights.fold_value_biases`` reads or writes, per layer.
_VALUE_BIAS_KEYS = re.compile(r"blocks\.(\d+)\.attn\.(b_V|_b_V|v\.bias|W_O|b_O)$")


def load_processed(model, state: dict[str, torch.Tensor], foreign: frozenset[int] = frozenset(),
                   fold_ln: bool = True, center_writing_weights: bool = True, center_unembed: bool = True,
                   fold_value_biases: bool = True, refactor_factored_attn_matrices: bool = False) -> None:
    """``model.load_and_process_state_dict(state, ...)``, its peak memory the state dict's and one layer's.

    ``state`` is consumed: its tensors become the model's parameters. A converted state dict holds views of the
    Hugging Face model's weights (``storages`` of it: ``foreign``); processing only reads them, so the Hugging
    Face model can be freed before, its weights then released as their processed successors replace them, and
    what processing left untouched is copied at the end. Paths the project never takes by default (refactored
    attention matrices, 4-bit weights) stay TransformerLens's own."""
    if refactor_factored_attn_matrices or model.cfg.load_in_4bit:
        model.load_and_process_state_dict(state, fold_ln=fold_ln, center_writing_weights=center_writing_weights,
                                          center_unembed=center_unembed, fold_value_biases=fold_value_biases,
                                          refactor_factored_attn_matrices=refactor_factored_attn_matrices)
        return
    state = model.fill_missing_keys(state)
    fold_ln = fold_ln and _pre_norms(model, state)
    _process(state, model.cfg, fold_ln, center_writing_weights, center_unembed, fold_value_biases)
    for k in list(state):
        v = state.pop(k)
        # the model's own tensor, contiguous (a converted view is a transposed or rearranged one)
        state[k] = v.clone(memory_format=torch.contiguous_format) if v.untyped_storage().data_ptr() in foreign \
            else v.contiguous()
    model.load_state_dict(state, strict=False, assign=True)
    if fold_ln:
        model.setup()


def storages(module: torch.nn.Module) -> frozenset[int]:
    """Where ``module``'s parameters and buffers live: what a state dict must not share once loaded."""
    return frozenset(t.untyped_storage().data_ptr() for t in (*module.parameters(), *module.buffers()))


def _pre_norms(model, state) -> bool:
    """TransformerLens's switch to weightless norms once their weights are folded: whether folding happens."""
    from transformer_lens.components import LayerNormPre, RMSNormPre

    cfg = model.cfg
    if cfg.normalization_type not in ("LN", "LNPre", "RMS", "RMSPre"):
        return False
    if not any(k.endswith((".ln1.w", ".ln2.w", "ln_final.w")) for k in state):
        return False  # saved with its norms already folded
    pre = {"LN": (LayerNormPre, "LNPre"), "RMS": (RMSNormPre, "RMSPre")}.get(cfg.normalization_type)
    if pre is not None:
        norm, cfg.normalization_type = pre
        model.ln_final = norm(cfg)
        for block in model.blocks:
            block.ln1, block.ln2 = norm(cfg), norm(cfg)
            if cfg.is_layer_norm_activation():
                block.mlp.ln = norm(cfg)
    return True


def _process(state, cfg, fold_ln: bool, center_writing_weights: bool, center_unembed: bool,
             fold_value_biases: bool) -> None:
    """``ProcessWeights.process_weights`` in place (its order and its functions; its copies left out)."""
    from transformer_lens.weight_processing import ProcessWeights as PW

    layer_norm = cfg.normalization_type in ("LN", "LNPre")
    reduced = {k: v.dtype for k, v in state.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != torch.float32}
    for k in reduced:
        state[k] = state[k].float()  # TransformerLens processes in fp32 and casts back
    if fold_ln:
        gqa = "" if getattr(cfg, "n_key_value_heads", None) is None else "_"
        for layer in range(cfg.n_layers):
            PW._fold_layer(state, cfg, layer, layer_norm, layer_norm, None, gqa)
        PW._fold_final_rms_bias(state, cfg, layer_norm, None)
        PW._fold_unembed_layer_norm(state, cfg, layer_norm, layer_norm, None)
    centre = center_writing_weights and layer_norm and not getattr(cfg, "final_rms", False)
    if centre:
        PW.center_writing_weights(state, cfg)  # replaces entries; copies nothing whole
    if center_unembed:
        # ProcessWeights.center_unembed's arithmetic on the TransformerLens layout [d_model, d_vocab]
        state["unembed.W_U"] = state["unembed.W_U"] - state["unembed.W_U"].mean(-1, keepdim=True)
        if "unembed.b_U" in state:
            state["unembed.b_U"] = state["unembed.b_U"] - state["unembed.b_U"].mean()
    if fold_value_biases:
        for layer in range(cfg.n_layers):
            part = {k: v for k, v in state.items() if (m := _VALUE_BIAS_KEYS.match(k)) and int(m.group(1)) == layer}
            state.update(PW.fold_value_biases(part, cfg))
            if center_writing_weights and layer_norm and f"blocks.{layer}.attn.b_O" in state:
                b_O = state[f"blocks.{layer}.attn.b_O"]
                state[f"blocks.{layer}.attn.b_O"] = b_O - b_O.mean()
    for k, dtype in reduced.items():
        if k in state:
            state[k] = state[k].to(dtype)
