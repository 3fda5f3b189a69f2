"""One loader for a (base model, finetuned model, SAE) triple, from the zoo, the hub or local directories.

Specs (strings, so they fit a parameter file):

    model:  zoo:NAME[@STEP]      a zoo model, optionally a finetune checkpoint (``zoo:code@25``)
            hub:ORG/NAME         a Hugging Face model, loaded the seed's way (needs the hub or its cache)
            local:PATH           a directory written by ``save_pretrained``
    SAE:    zoo:NAME             a zoo SAE
            sae_lens:RELEASE:ID  ``SAE.from_pretrained(RELEASE, ID)``
            local:PATH           a directory written by sae_lens (``SAE.load_from_disk``)

Everything cheap is checked before any model weights load: spec syntax, dtype and device, that base and
finetune tokenizers agree (a finetune that only appends special tokens is trimmed with a warning, as the seed
did for MetaMath-Mistral's PAD; any other difference is refused). The hook and the SAE width are checked
against the base model before the finetune loads.
"""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sae_transfer.core.convert import check_convertible, hooked_from_hf, quiet_to, read_config
from sae_transfer.core.memory import budget_bytes, gib
from sae_transfer.core.specs import SpecError, is_zoo, model_spec, sae_spec
from sae_transfer.models.configs import (WEIGHT_FILES, check_hub_model, check_safetensors, model_facts,
                                         no_loading_advice, sae_facts)
from sae_transfer.models.hooks import stop_layer
from sae_transfer.zoo.pretrained import PRETRAINED
from sae_transfer.zoo.store import Zoo, build_command, split_spec

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelPair:
    base: Any  # HookedTransformer
    finetune: Any  # HookedTransformer
    sae: Any  # sae_lens SAE
    tokenizer: Any
    hook: str
    specs: dict[str, str] = field(default_factory=dict)
    trimmed_tokens: list[str] = field(default_factory=list)


def parse_spec(spec: str, param: str, sae: bool = False) -> tuple[str, str]:
    """``(source, ref)`` of a model or SAE spec (``core.specs``), a ``local:`` directory checked to exist; a zoo
    model's ref keeps its ``@STEP``."""
    s = sae_spec(spec, param) if sae else model_spec(spec, param)
    if s.source == "local" and not Path(s.ref).is_dir():
        raise SpecError(f"{param}={spec!r}: no such directory")
    step = getattr(s, "step", None)
    return s.source, (s.ref if step is None else f"{s.ref}@{step}")


#: What a directory must hold to load as a model or an SAE, and how to produce it.
LOCAL_MODEL_FILES = (("config.json",), "save it with model.save_pretrained(DIR)")
LOCAL_TOKENIZER_FILES = (("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model"),
                         "save the tokenizer with tokenizer.save_pretrained(DIR)")
LOCAL_SAE_FILES = (("cfg.json",), "save it with sae_lens (sae.save_inference_model(DIR) or save_model)")
LOCAL_SAE_WEIGHTS = (("sae_weights.safetensors",), LOCAL_SAE_FILES[1])
LOCAL_MODEL_WEIGHTS = (WEIGHT_FILES, LOCAL_MODEL_FILES[1])


def _zoo_check(kind: str, ref: str, param: str, zoo: str) -> None:
    handle = Zoo.open(zoo)
    recipe = handle.recipe
    if kind == "sae":
        if ref not in recipe.saes:
            raise SpecError(f"{param}='zoo:{ref}': no SAE {ref!r} in zoo profile {recipe.profile!r}; "
                            f"its SAEs are {sorted(recipe.saes)}")
        artifact = handle.root / "saes" / ref
    else:
        name, step = split_spec(ref)
        if name not in recipe.models:
            raise SpecError(f"{param}='zoo:{ref}': no model {name!r} in zoo profile {recipe.profile!r}; "
                            f"its models are {sorted(recipe.models)}")
        m = recipe.models[name]
        saved = sorted(set(m.checkpoint_steps()) | ({0} if m.checkpoints else set()))
        if step is not None and step not in saved:
            raise SpecError(f"{param}='zoo:{ref}': zoo model {name!r} saves no checkpoint at step {step}; "
                            f"saved steps are {saved}")
        artifact = handle.root / "models" / name
    if not (artifact / "fingerprint.json").exists():
        raise SpecError(f"{param}='zoo:{ref}': zoo profile {recipe.profile!r} is not built; run: "
                        f"{build_command(handle.source)}")


def _missing(directory: Path, wanted: tuple[tuple[str, ...], str]) -> str | None:
    names, how = wanted
    if any((directory / n).exists() for n in names):
        return None
    return f"holds no {' or '.join(names)}; {how}"


def check_source(spec: str, param: str, zoo: str, sae: bool = False) -> None:
    """What can be known of a spec without loading weights: zoo names, saved steps and that the zoo is built;
    that a ``local:`` directory holds a model, its weights (whole) and a tokenizer, or an SAE; that a ``hub:``
    model can be had; that a sae_lens release exists. One-line ``SpecError`` otherwise."""
    kind, ref = parse_spec(spec, param, sae=sae)
    if kind == "zoo":
        _zoo_check("sae" if sae else "model", ref, param, zoo)
    elif kind == "hub":
        check_hub_model(spec, ref, param)
    elif kind == "sae_lens":
        sae_facts(spec, zoo, param)
    elif kind == "local":
        directory = Path(ref)
        if problem := _missing(directory, LOCAL_SAE_FILES if sae else LOCAL_MODEL_FILES):
            raise SpecError(f"{param}={spec!r}: the directory {problem}")
        if not sae:  # an architecture TransformerLens cannot convert is the first thing to know
            try:
                check_convertible(directory)
            except ValueError as e:
                raise SpecError(f"{param}={spec!r}: {e}") from None
        for wanted in (LOCAL_SAE_WEIGHTS,) if sae else (LOCAL_MODEL_WEIGHTS, LOCAL_TOKENIZER_FILES):
            if problem := _missing(directory, wanted):
                raise SpecError(f"{param}={spec!r}: the directory {problem}")
        single = directory / ("sae_weights.safetensors" if sae else "model.safetensors")
        if single.exists():
            check_safetensors(single, param, spec)


def check_pair_kinds(base: str, finetune: str) -> None:
    base_kind, _ = parse_spec(base, "base")
    ft_kind, _ = parse_spec(finetune, "finetune")
    if (base_kind == "zoo") != (ft_kind == "zoo"):
        raise SpecError(f"base={base!r}, finetune={finetune!r}: a zoo model pairs only with a zoo model")


def context_limit(spec: str, zoo: str) -> int | None:
    """The longest context a model takes, where it is known without loading it (zoo recipe, local config)."""
    kind, ref = parse_spec(spec, "base")
    if kind == "zoo":
        return Zoo.open(zoo).recipe.context_size
    if kind == "local" and (Path(ref) / "config.json").exists():
        cfg = read_config(Path(ref))
        return next((cfg[k] for k in ("n_positions", "max_position_embeddings", "n_ctx") if k in cfg), None)
    return None


def _known(spec: str, zoo: str, field: str, config_keys: tuple[str, ...]) -> int | None:
    """A model's ``field`` where it is known without loading it: the zoo recipe (or its pretrained source), or
    the first of ``config_keys`` in a local directory's config."""
    kind, ref = parse_spec(spec, "base")
    if kind == "zoo":
        recipe = Zoo.open(zoo).recipe
        name = split_spec(ref)[0]
        if name not in recipe.models:
            return None
        root = recipe.root(name)
        return getattr(PRETRAINED[root.pretrained] if root.pretrained else root, field)
    if kind == "local" and (Path(ref) / "config.json").exists():
        cfg = read_config(Path(ref))
        return next((cfg[k] for k in config_keys if k in cfg), None)
    return None


def n_layers_of(spec: str, zoo: str) -> int | None:
    """A model's number of blocks where it is known without loading it (zoo recipe, local config)."""
    return _known(spec, zoo, "n_layers", ("num_hidden_layers", "n_layer", "n_layers"))


def d_model_of(spec: str, zoo: str) -> int | None:
    """A model's residual width where it is known without loading it (zoo recipe, local config)."""
    return _known(spec, zoo, "d_model", ("hidden_size", "n_embd", "d_model"))


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; anything else must be a valid, visible torch device."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SpecError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SpecError(f"device={device!r} cannot run a model here; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device={device!r} but no CUDA device is visible; use auto or cpu")
    return str(dev)


def check_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise SpecError(f"dtype={dtype!r}: valid dtypes are {sorted(DTYPES)}")
    return DTYPES[dtype]


# ------------------------------------------------------------------------------------------ tokenizers

def load_tokenizer_for(spec: str, param: str, zoo: str):
    from transformers import AutoTokenizer

    kind, ref = parse_spec(spec, param)
    if kind == "zoo":
        return Zoo.open(zoo).tokenizer
    return AutoTokenizer.from_pretrained(ref)


def compare_tokenizers(base_tok, ft_tok) -> list[str]:
    """Tokens the finetune appends to the base vocabulary, all special (safe to trim); raises otherwise."""
    base, ft = base_tok.get_vocab(), ft_tok.get_vocab()
    if base == ft:
        return []
    changed = [t for t, i in base.items() if ft.get(t) != i]
    extra = sorted((t for t in ft if t not in base), key=ft.get)
    special = set(ft_tok.all_special_tokens) | {str(t) for t in getattr(ft_tok, "added_tokens_decoder", {}).values()}
    if changed or any(t not in special for t in extra) or sorted(ft[t] for t in extra) != list(
            range(len(base), len(base) + len(extra))):
        sample = (changed or extra)[:5]
        raise SpecError(f"finetune tokenizer differs from the base's ({len(changed)} tokens changed, "
                        f"{len(extra)} added, e.g. {sample}); the base SAE cannot be compared across them")
    warnings.warn(f"finetune tokenizer appends {len(extra)} special token(s) {extra}; trimming them as the seed "
                  "did for MetaMath-Mistral's PAD", stacklevel=2)
    return extra


# ------------------------------------------------------------------------------------------ SAEs

def load_sae(spec: str, zoo: str, device: str, dtype: str = "float32"):
    with no_loading_advice():
        return _load_sae(spec, zoo, device, dtype)


def _load_sae(spec: str, zoo: str, device: str, dtype: str):
    from sae_lens import SAE

    kind, ref = parse_spec(spec, "sae", sae=True)
    if kind == "zoo":
        try:
            return Zoo.open(zoo).sae(ref, device=device)
        except ValueError as e:
            raise SpecError(f"sae={spec!r}: {e}") from None
    if kind == "sae_lens":
        release, sae_id = ref.split(":", 1)
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    return load_local_sae(Path(ref), device, dtype)


def load_local_sae(path: Path, device: str, dtype: str = "float32"):
    """An SAE directory in either of sae_lens's save formats: inference (``save_inference_model``) or training
    (``save_model``, whose architecture names a training class such as ``batchtopk``). A training save is
    turned into its inference form by sae_lens itself (BatchTopK becomes JumpReLU, as sae_lens does on save)."""
    import tempfile

    from sae_lens import SAE, TrainingSAE

    if not (path / "sae_weights.safetensors").exists():
        raise SpecError(f"sae='local:{path}': the directory holds no sae_weights.safetensors (found "
                        f"{sorted(p.name for p in path.iterdir())}); save the SAE with sae_lens")
    try:
        with no_loading_advice():
            return SAE.load_from_disk(str(path), device=device, dtype=dtype)
    except KeyError as inference_error:
        try:
            training = TrainingSAE.load_from_disk(str(path), device)
        except Exception:  # noqa: BLE001 - neither format: say what was found
            arch = json.loads((path / "cfg.json").read_text()).get("architecture", "none")
            raise SpecError(f"sae='local:{path}': sae_lens cannot load it in its inference or training format "
                            f"(architecture {arch!r}, files {sorted(p.name for p in path.iterdir())}); "
                            f"{inference_error!r}") from None
        with tempfile.TemporaryDirectory() as tmp, no_loading_advice():
            training.save_inference_model(tmp)
            return SAE.load_from_disk(tmp, device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------ models

#: What loading a Hugging Face checkpoint (local or hub) adds at its peak beyond the weights it leaves, per byte of
#: those weights: the Hugging Face model, read once, lives until its converted successors have replaced it
#: (generous: ``benchmarks/load_memory.py`` measured 1.24 for SmolLM2-135M). A zoo model's file is mapped, not
#: copied: it adds nothing.
LOAD_OVERHEAD = 1.5


def check_load_fits(models: list[tuple[str, str]], zoo: str, dtype: str, memory: str, device: str) -> None:
    """One line naming ``memory`` when loading one of ``models`` (``(param, spec)``) would take more than the
    budget beyond the weights already loaded; before any weights load. A hub model's size is not known before it
    is downloaded: it is not checked."""
    budget = budget_bytes(memory, resolve_device(device))
    for param, spec in models:
        facts = None if is_zoo(spec) else model_facts(spec, zoo)
        if facts is None:
            continue
        need = int(LOAD_OVERHEAD * facts.n_params * check_dtype(dtype).itemsize)
        if need > budget:
            raise SpecError(f"memory={memory!r} leaves {gib(budget)} beyond the weights on this machine, but loading "
                            f"{param}={spec!r} takes about {gib(need)} more while its Hugging Face weights are "
                            f"converted; set memory to at least {gib(need)}")


def load_model(spec: str, param: str, zoo: str, tokenizer, device: str, dtype: torch.dtype,
               base_ref: str | None = None, n_trim: int = 0, from_pretrained_kwargs: dict | None = None):
    """One model from its spec. A hub/local finetune is loaded into the base's architecture (``base_ref``)."""
    kind, ref = parse_spec(spec, param)
    if kind == "zoo":
        try:
            return quiet_to(Zoo.open(zoo).model(ref, device=device), dtype)
        except ValueError as e:
            raise SpecError(f"{param}={spec!r}: {e}") from None
    return hooked_from_hf(base_ref or ref, None, tokenizer, device, dtype, from_pretrained_kwargs,
                          weights=ref if base_ref is not None else None, n_trim=n_trim)


def check_hook(model, hook: str, sae) -> None:
    if hook not in model.hook_dict:
        close = difflib.get_close_matches(hook, list(model.hook_dict), n=5, cutoff=0.5)
        raise SpecError(f"hook={hook!r} is not a hook of the base model; close matches: {close}")
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.zeros(1, 2, dtype=torch.long, device=model.cfg.device),
                                        names_filter=hook, stop_at_layer=stop_layer([hook], model.cfg.n_layers))
    width = cache[hook].shape[-1]
    if sae.cfg.d_in != width:
        raise SpecError(f"sae d_in={sae.cfg.d_in} but the model's activation at hook={hook!r} has width {width}")


def load_models(base: str, finetune: str, zoo: str = "default", device: str = "auto", dtype: str = "float32",
                before_weights=None, after_base=None):
    """Base and finetuned models and the shared tokenizer: ``(base, finetune, tokenizer, trimmed_tokens)``.

    Spec syntax, dtype, device and tokenizer agreement are checked before any weights load. Then
    ``before_weights(device)`` runs (e.g. to load an SAE) and may return ``from_pretrained`` kwargs;
    ``after_base(model)`` runs once the base is loaded, before the finetune (e.g. to check a hook).
    """
    torch_dtype = check_dtype(dtype)
    device = resolve_device(device)
    parse_spec(base, "base")
    check_pair_kinds(base, finetune)
    base_tok = load_tokenizer_for(base, "base", zoo)
    trimmed = compare_tokenizers(base_tok, load_tokenizer_for(finetune, "finetune", zoo))
    from_pretrained_kwargs = (before_weights(device) if before_weights else None) or {}
    base_model = load_model(base, "base", zoo, base_tok, device, torch_dtype,
                            from_pretrained_kwargs=from_pretrained_kwargs)
    if after_base is not None:
        after_base(base_model)
    ft_model = load_finetune(base, finetune, zoo, base_tok, device, dtype, trimmed, from_pretrained_kwargs)
    return base_model, ft_model, base_tok, trimmed


def load_finetune(base: str, finetune: str, zoo: str, base_tokenizer, device: str, dtype: str,
                  trimmed: list[str] | None = None, from_pretrained_kwargs: dict | None = None):
    """A finetune of an already loaded base: a hub/local finetune goes into the base's architecture, special
    tokens it appends trimmed. ``trimmed``: ``compare_tokenizers``'s answer, when the caller already has it."""
    check_pair_kinds(base, finetune)
    if trimmed is None:
        trimmed = compare_tokenizers(base_tokenizer, load_tokenizer_for(finetune, "finetune", zoo))
    _, base_ref = parse_spec(base, "base")
    ft_kind, _ = parse_spec(finetune, "finetune")
    return load_model(finetune, "finetune", zoo, base_tokenizer, resolve_device(device), check_dtype(dtype),
                      base_ref=None if ft_kind == "zoo" else base_ref, n_trim=len(trimmed),
                      from_pretrained_kwargs=from_pretrained_kwargs)


def load_pair(base: str, finetune: str, sae: str = "", hook: str | None = None, zoo: str = "default",
              device: str = "auto", dtype: str = "float32") -> ModelPair:
    """Base model, finetuned model, SAE (None when ``sae`` is empty) and the shared tokenizer, every cheap
    check first."""
    if not sae:
        base_model, ft_model, tok, trimmed = load_models(base, finetune, zoo, device, dtype)
        return ModelPair(base_model, ft_model, None, tok, hook or "", {"base": base, "finetune": finetune}, trimmed)
    parse_spec(sae, "sae", sae=True)
    loaded: dict[str, Any] = {}

    def with_sae(resolved_device: str) -> dict:
        loaded["sae"] = load_sae(sae, zoo, resolved_device, dtype)
        loaded["hook"] = hook or loaded["sae"].cfg.metadata.hook_name
        return processing_of(loaded["sae"])

    base_model, ft_model, tok, trimmed = load_models(
        base, finetune, zoo, device, dtype, before_weights=with_sae,
        after_base=lambda m: check_hook(m, loaded["hook"], loaded["sae"]))
    return ModelPair(base_model, ft_model, loaded["sae"], tok, loaded["hook"],
                     {"base": base, "finetune": finetune, "sae": sae}, trimmed)


def processing_of(sae) -> dict:
    """The ``from_pretrained`` kwargs an SAE was trained under (weight processing), {} without an SAE."""
    return dict(getattr(sae.cfg.metadata, "model_from_pretrained_kwargs", None) or {}) if sae is not None else {}


def with_finetune(pair: ModelPair, finetune: str, zoo: str = "default", device: str = "auto",
                  dtype: str = "float32") -> ModelPair:
    """``pair`` with another finetune of the same base: the loaded base, SAE and tokenizer kept, only the finetune
    loaded (a chapter walking checkpoints loaded the base again for each: 2.7 s a load of SmolLM2 on 2 cores).
    The caller drops its reference to ``pair`` first if the old finetune is to be freed before the new loads."""
    base = pair.specs["base"]
    trimmed = compare_tokenizers(pair.tokenizer, load_tokenizer_for(finetune, "finetune", zoo))
    ft_model = load_finetune(base, finetune, zoo, pair.tokenizer, device, dtype, trimmed, processing_of(pair.sae))
    return ModelPair(pair.base, ft_model, pair.sae, pair.tokenizer, pair.hook,
                     {**pair.specs, "finetune": finetune}, trimmed)
