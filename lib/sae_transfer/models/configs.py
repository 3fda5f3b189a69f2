"""What a model or an SAE is, known from configuration files alone, before any weights load: a model's depth,
width and hook names (TransformerLens builds the model on the meta device, so the names are its own), an SAE's
width and the hook it was trained at, and whether the weight files are whole.

``check_reads`` puts them together for ``run`` and ``check``: the hook exists, the SAE was trained there, and its
width is the stream's. Each answer is None where it cannot be known without weights (a hub model outside the
local cache, a sae_lens release), and then the check inside the pass still catches it, later.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sae_transfer.core.convert import hooked_config
from sae_transfer.core.specs import SpecError, model_spec, sae_spec
from sae_transfer.models.hooks import block_of, residual_index
from sae_transfer.zoo.store import Zoo, split_spec

#: The files a Hugging Face save may hold its weights in, one of which must be there.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_safetensors(path: Path, param: str, spec: str) -> None:
    """A safetensors file holds every byte its header promises: a truncated download or copy is refused here
    rather than found by the loader halfway through (or not at all, where it reads lazily)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n <= size - 8 else None
    except (OSError, ValueError):
        header = None
    if not isinstance(header, dict):
        raise SpecError(f"{param}={spec!r}: {path.name} is not a safetensors file (or its header is cut off)")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size < 8 + n + end:
        raise SpecError(f"{param}={spec!r}: {path.name} is cut off ({size} of {8 + n + end} bytes); "
                        "download or save it again")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def check_hub_model(spec: str, ref: str, param: str) -> None:
    """A hub model can be had: in the local cache when the hub is off (``HF_HUB_OFFLINE``), else its config is
    fetched (which also tells a misspelt name from a missing network)."""
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        have = [f for f in ("config.json", *WEIGHT_FILES) if isinstance(try_to_load_from_cache(ref, f), str)]
        if "config.json" not in have or len(have) == 1:
            raise SpecError(f"{param}={spec!r}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                            "download it once with hub access, or save it and give local:DIR")
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(ref)
    except (OSError, ValueError) as e:
        raise SpecError(f"{param}={spec!r}: the hub cannot give its config ({str(e).splitlines()[0]})") from None


def check_sae_release(spec: str, release: str, sae_id: str, param: str) -> None:
    """A ``sae_lens:RELEASE:ID`` names a release and an SAE of sae_lens's directory (a release holding a '/' is
    a hub repository, which sae_lens also accepts, and is left to it)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        if "/" in release:
            return
        close = difflib.get_close_matches(release, list(directory), n=3)
        raise SpecError(f"{param}={spec!r}: sae_lens has no release {release!r}"
                        + (f"; close matches: {close}" if close else f" (it has {len(directory)})"))
    ids = list(directory[release].saes_map)
    if sae_id not in ids:
        close = difflib.get_close_matches(sae_id, ids, n=3)
        raise SpecError(f"{param}={spec!r}: release {release!r} has no SAE {sae_id!r}; "
                        + (f"close matches: {close}" if close else f"it has {ids[:5]}..."))


@dataclass(frozen=True)
class ModelFacts:
    n_layers: int
    d_model: int
    hooks: tuple[str, ...]  # every hook name of the model, as TransformerLens names them
    n_params: int  # of the HookedTransformer (an unembedding tied in the checkpoint counts apart)


def _meta_model(cfg) -> tuple[tuple[str, ...], int]:
    """The hook names and parameter count of a HookedTransformer built from ``cfg`` on the meta device
    (milliseconds, no memory)."""
    from transformer_lens import HookedTransformer

    cfg.tokenizer_name = None  # the names do not depend on it, and loading one may need the hub
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg, move_to_device=False)
    return tuple(model.hook_dict), sum(p.numel() for p in model.parameters())


@functools.cache
def model_facts(spec: str, zoo: str) -> ModelFacts | None:
    """Depth, width and hook names of a zoo or local model from its configuration; None for a hub model or a
    configuration TransformerLens cannot read (the loader then says why)."""
    s = model_spec(spec)
    if s.source == "zoo":
        from transformer_lens import HookedTransformerConfig

        arch = json.loads((Zoo.open(zoo).root / "models" / split_spec(s.ref)[0] / "arch.json").read_text())
        cfg = HookedTransformerConfig(**arch)  # no seed: building names must not reseed the process
    elif s.source == "local":
        try:
            cfg = hooked_config(Path(s.ref))
        except Exception:  # noqa: BLE001 - not knowable here; the loader reports it with its own words
            return None
    else:
        return None
    return ModelFacts(cfg.n_layers, cfg.d_model, *_meta_model(cfg))


@contextlib.contextmanager
def no_loading_advice():
    """sae_lens warns, on building an SAE whose metadata carries model kwargs, to load the model another way; the
    models here are converted with those kwargs already (``convert.py``), so the advice does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*This SAE has non-empty model_from_pretrained_kwargs")
        yield


@dataclass(frozen=True)
class SaeFacts:
    d_in: int
    hook: str  # the hook it was trained at


def sae_facts(spec: str, zoo: str, param: str = "sae") -> SaeFacts | None:
    """Width and training hook of a zoo or local SAE, its weight file checked whole; None for a sae_lens release
    (its name is checked against sae_lens's directory)."""
    s = sae_spec(spec, param)
    if s.source == "zoo":  # zoo SAEs are small: loading one is the simplest way to ask it
        with no_loading_advice():
            sae = Zoo.open(zoo).sae(s.ref)
        return SaeFacts(sae.cfg.d_in, sae.cfg.metadata.hook_name)
    if s.source == "sae_lens":
        check_sae_release(spec, *s.release, param)
        return None
    directory = Path(s.ref)
    check_safetensors(directory / "sae_weights.safetensors", param, spec)
    cfg = json.loads((directory / "cfg.json").read_text())
    hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    return SaeFacts(cfg["d_in"], hook) if hook and "d_in" in cfg else None


def check_hook(hook: str, facts: ModelFacts, base: str, param: str = "hook") -> None:
    block = block_of(hook)
    if block is not None and block >= facts.n_layers:
        raise SpecError(f"{param}={hook!r} names block {block} but base={base!r} has blocks 0..{facts.n_layers - 1}")
    if hook not in facts.hooks:
        close = difflib.get_close_matches(hook, facts.hooks, n=4, cutoff=0.5)
        raise SpecError(f"{param}={hook!r} is not a hook of base={base!r}"
                        + (f"; close matches: {close}" if close else f"; its residual hooks are blocks.L.hook_resid_pre "
                           f"and blocks.L.hook_resid_post for L in 0..{facts.n_layers - 1}"))


def check_reads(base: str, sae: str, hook: str, zoo: str, sae_param: str = "sae") -> None:
    """Before any weights load: ``hook`` (empty: the SAE's own) is a hook of the base; the SAE was trained at it,
    or at the same residual stream under its other name; a residual hook's width is the SAE's ``d_in``."""
    facts, trained = model_facts(base, zoo), sae_facts(sae, zoo, sae_param) if sae else None
    hook = hook or (trained.hook if trained else "")
    if facts is not None and hook:
        check_hook(hook, facts, base)
    if trained is None or not hook:
        return
    if facts is not None and residual_index(hook) is not None and trained.d_in != facts.d_model:
        raise SpecError(f"{sae_param}={sae!r} reads width {trained.d_in} but base={base!r} has a residual stream "
                        f"of width {facts.d_model}")
    if hook != trained.hook and (residual_index(hook) is None or residual_index(hook) != residual_index(trained.hook)):
        raise SpecError(f"hook={hook!r} but {sae_param}={sae!r} was trained at {trained.hook!r}; an SAE spliced at "
                        "another hook measures nothing of its own: leave hook empty (the SAE's own) or give that one")
