"""Hook-name arithmetic, in one place: which hooks hold the residual stream, which block a pass can stop after
or resume at, and how a hook is labelled on a page. Pure string work on TransformerLens's hook names."""

from __future__ import annotations

from typing import Iterable


def residual_hooks(n_layers: int) -> list[str]:
    """The residual stream after the embeddings and after every block: ``n_layers + 1`` hooks."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def probe_hooks(n_layers: int, layers: Iterable[int] = ()) -> list[str]:
    """``blocks.L.hook_resid_pre`` for each layer (all when ``layers`` is empty), then the last block's output."""
    chosen = sorted(set(layers)) or list(range(n_layers))
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layers={list(layers)}: valid layers are 0..{n_layers - 1}")
    return [f"blocks.{layer}.hook_resid_pre" for layer in chosen] + [f"blocks.{n_layers - 1}.hook_resid_post"]


def depth_order(hook: str) -> tuple[int, bool]:
    """Sort key putting hooks in forward order: by block, a block's input before its output."""
    return block_of(hook) or 0, hook.endswith("post")


def layer_label(hook: str) -> str:
    """The residual stream a hook holds, named by the block it comes out of (pages read it after "residual
    after"): ``blocks.0.hook_resid_pre`` -> ``embed``; ``blocks.3.hook_resid_post`` and ``blocks.4.hook_resid_pre``
    -> ``block 3``. Never ``L3``, which a page would read beside L0, the sparsity."""
    layer = int(hook.split(".")[1])
    if hook.endswith("hook_resid_pre"):
        return "embed" if layer == 0 else f"block {layer - 1}"
    return f"block {layer}"


def block_of(hook: str) -> int | None:
    """The block a ``blocks.L.*`` hook belongs to; None for hooks outside the blocks (embed, ln_final)."""
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


def stop_layer(hooks: Iterable[str], n_layers: int) -> int | None:
    """The ``stop_at_layer`` after which no requested hook fires (None: the whole model must run)."""
    layers = []
    for h in hooks:
        block = block_of(h)
        if block is None:
            return None  # hook_embed is before block 0, ln_final and unembed need the whole model
        layers.append(block + 1)
    deepest = max(layers)
    return None if deepest >= n_layers else deepest


def resume_layer(hook: str, positional_embedding_type: str) -> int | None:
    """The block a forward pass can start at with ``hook``'s activation as its input, if any.

    ``blocks.L.hook_resid_pre`` is block L's input and ``blocks.L.hook_resid_post`` block L+1's, so spliced and
    ablated passes can skip the layers before the hook. Other hooks need a full pass with a hook.
    """
    return None if positional_embedding_type == "shortformer" else residual_index(hook)


def writer_hook(hook: str) -> str | None:
    """The block output that writes the residual stream ``hook`` reads: ``blocks.L.hook_resid_pre`` ->
    ``blocks.{L-1}.hook_resid_post``, ``blocks.L.hook_resid_post`` -> itself. A pass that stops before block L
    (``stop_at_layer``) runs this hook and one that resumes there does not: an edit hooked here changes the clean
    stream and nothing spliced in after it. None for the embeddings' stream and any other hook."""
    i = residual_index(hook)
    return None if not i else f"blocks.{i - 1}.hook_resid_post"


def residual_index(hook: str) -> int | None:
    """How many blocks the residual stream at ``hook`` has passed: ``blocks.L.hook_resid_pre`` -> L,
    ``blocks.L.hook_resid_post`` -> L + 1 (the same stream as ``blocks.{L+1}.hook_resid_pre``); None for any
    other hook. The index into ``residual_hooks``."""
    parts = hook.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
        return None
    return {"hook_resid_pre": int(parts[1]), "hook_resid_post": int(parts[1]) + 1}.get(parts[2])
