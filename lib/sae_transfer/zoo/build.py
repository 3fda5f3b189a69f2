"""Building the zoo: data, tokenizer, models with checkpoints, SAEs and the zoo card, each artifact reused
when its fingerprint matches and written atomically, so an interrupted build resumes where it stopped.

Layout under ``<cache>/zoo/<profile>/``::

    data/           tokenizer/, tokens/<domain>_<split>.npy, data_card.json, fingerprint.json
    models/<name>/  model.safetensors, arch.json, train_log.json, checkpoints/step_<n>.safetensors, fingerprint.json
    saes/<name>/    sae_lens files (cfg.json, sae_weights.safetensors), train_info.json, fingerprint.json
    card.json       held-out losses, parameter counts, SAE quality: the zoo card
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import atomic_dir, fingerprint, write_json_atomic
from ..paths import cache_dir
from .data import DOMAINS, SOURCES_TABLE, SPLITS, build_corpora
from .recipe import ModelRecipe, SAERecipe, ZooRecipe, load_recipe
from .tokens import EOT, TokenStream, encode_documents, load_tokenizer, train_tokenizer
from .train import heldout_ce, train_lm


def zoo_dir(profile: str) -> Path:
    return cache_dir() / "zoo" / profile


def _read_fp(path: Path) -> str | None:
    f = path / "fingerprint.json"
    return json.loads(f.read_text())["fingerprint"] if f.exists() else None


def _is_current(path: Path, fp: str) -> bool:
    return _read_fp(path) == fp


# --------------------------------------------------------------------------------------------- data

def data_fingerprint(recipe: ZooRecipe) -> str:
    return fingerprint({"data": recipe.data, "seed": recipe.seed, "python": sys.version.split()[0],
                        "sources": SOURCES_TABLE, "v": 1})


def build_data(recipe: ZooRecipe, root: Path) -> Path:
    out = root / "data"
    fp = data_fingerprint(recipe)
    if _is_current(out, fp):
        return out
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        corpora = build_corpora(cache_dir() / "downloads", recipe.data.n_math_problems, recipe.seed,
                                recipe.data.heldout_fraction, recipe.data.max_chars)
        tok = train_tokenizer({d: corpora[d]["train"] for d in DOMAINS}, recipe.data.vocab_size,
                              tmp / "tokenizer", recipe.seed)
        (tmp / "tokens").mkdir()
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for domain in tqdm(DOMAINS, desc="tokenize", unit="domain", leave=False):
            counts[domain] = {}
            for split in SPLITS:
                arr = encode_documents(tok, corpora[domain][split])
                np.save(tmp / "tokens" / f"{domain}_{split}.npy", arr)
                counts[domain][split] = {"documents": len(corpora[domain][split]), "tokens": int(len(arr)),
                                         "characters": sum(map(len, corpora[domain][split]))}
        write_json_atomic(tmp / "data_card.json", {"splits": counts, "sources": SOURCES_TABLE,
                                                   "vocab_size": len(tok), "seconds": time.perf_counter() - t0})
        write_json_atomic(tmp / "fingerprint.json", {"fingerprint": fp})
    return out


def token_streams(data: Path, split: str, context_size: int) -> dict[str, TokenStream]:
    tok = load_tokenizer(data / "tokenizer")
    bos = tok.convert_tokens_to_ids(EOT)
    return {d: TokenStream(np.load(data / "tokens" / f"{d}_{split}.npy", mmap_mode="r"), context_size, bos)
            for d in DOMAINS}


# --------------------------------------------------------------------------------------------- models

def architecture(recipe: ZooRecipe, m: ModelRecipe, vocab_size: int) -> dict:
    """Keyword arguments of ``HookedTransformerConfig`` (stored as ``arch.json``)."""
    base = m
    while base.parent is not None:
        base = recipe.models[base.parent]
    return dict(n_layers=base.n_layers, d_model=base.d_model, n_heads=base.n_heads,
                d_head=base.d_model // base.n_heads, d_mlp=base.d_mlp, n_ctx=recipe.context_size,
                d_vocab=vocab_size, act_fn="gelu", normalization_type="LN", positional_embedding_type="standard",
                original_architecture="zoo")


def model_fingerprint(recipe: ZooRecipe, name: str) -> str:
    m = recipe.models[name]
    parent = model_fingerprint(recipe, m.parent) if m.parent else None
    return fingerprint({"model": m, "parent": parent, "data": data_fingerprint(recipe), "seed": recipe.seed,
                        "ctx": recipe.context_size, "v": 1})


def new_model(arch: dict, tokenizer=None):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # HookedTransformer is what sae_lens trains on
        return HookedTransformer(HookedTransformerConfig(**arch, seed=0), tokenizer=tokenizer)


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))


def load_weights(model, path: Path) -> None:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


def build_model(recipe: ZooRecipe, name: str, root: Path, device: str) -> Path:
    out = root / "models" / name
    fp = model_fingerprint(recipe, name)
    if _is_current(out, fp):
        return out
    m = recipe.models[name]
    data = root / "data"
    tok = load_tokenizer(data / "tokenizer")
    arch = architecture(recipe, m, len(tok))
    model = new_model(arch, tok).to(device)
    if m.parent is not None:
        load_weights(model, build_model(recipe, m.parent, root, device) / "model.safetensors")
    streams = token_streams(data, "train", recipe.context_size)
    with atomic_dir(out) as tmp:
        ckpt_steps = set(m.checkpoint_steps())
        (tmp / "checkpoints").mkdir()

        def on_step(step: int) -> None:
            if step in ckpt_steps:
                save_weights(model, tmp / "checkpoints" / f"step_{step:06d}.safetensors")

        if m.checkpoints:
            save_weights(model, tmp / "checkpoints" / "step_000000.safetensors")  # the base itself, step 0
        tlog = train_lm(model, streams, m.mix, m.steps, m.batch_size, m.lr, recipe.seed + 1, m.warmup,
                        on_step=on_step, desc=f"train {name}")
        save_weights(model, tmp / "model.safetensors")
        write_json_atomic(tmp / "arch.json", arch)
        n_params = sum(p.numel() for p in model.parameters())
        write_json_atomic(tmp / "train_log.json", {
            "recipe": m, "steps": tlog.steps, "loss": tlog.loss, "tokens_seen": tlog.tokens_seen,
            "seconds": tlog.seconds, "n_params": n_params, "device": device,
            "checkpoint_steps": sorted(ckpt_steps | ({0} if m.checkpoints else set()))})
        write_json_atomic(tmp / "fingerprint.json", {"fingerprint": fp})
    return out


# --------------------------------------------------------------------------------------------- SAEs

def sae_fingerprint(recipe: ZooRecipe, name: str) -> str:
    s = recipe.saes[name]
    # v2: SAE training seeded (v1 SAEs depended on the process's random state before training)
    return fingerprint({"sae": s, "model": model_fingerprint(recipe, s.model), "seed": recipe.seed, "v": 2})


def build_sae(recipe: ZooRecipe, name: str, root: Path, device: str) -> Path:
    from .sae import train_sae

    out = root / "saes" / name
    fp = sae_fingerprint(recipe, name)
    if _is_current(out, fp):
        return out
    s: SAERecipe = recipe.saes[name]
    model = load_zoo_model(root, s.model, device=device)
    stream = token_streams(root / "data", "train", recipe.context_size)["prose"]
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        train_sae(model, stream, s.hook, s.d_sae, s.training_tokens, s.sparsity, s.lr, recipe.seed, device,
                  batch_tokens=s.batch_tokens, out_dir=tmp, architecture=s.architecture)
        write_json_atomic(tmp / "train_info.json", {"recipe": s, "seconds": time.perf_counter() - t0,
                                                    "trained_on": "prose train split", "device": device})
        write_json_atomic(tmp / "fingerprint.json", {"fingerprint": fp})
    return out


# --------------------------------------------------------------------------------------------- loading

def load_zoo_model(root: Path, spec: str, device: str = "cpu"):
    """``name`` or ``name@step`` (a saved finetune checkpoint) from a built zoo at ``root``."""
    name, _, step = spec.partition("@")
    path = root / "models" / name
    if not (path / "fingerprint.json").exists():
        built = sorted(p.name for p in (root / "models").glob("*") if (p / "fingerprint.json").exists())
        raise ValueError(f"zoo model {name!r} is not built in {root}; built models are {built}")
    tok = load_tokenizer(root / "data" / "tokenizer")
    model = new_model(json.loads((path / "arch.json").read_text()), tok)
    if step:
        ckpt = path / "checkpoints" / f"step_{int(step):06d}.safetensors" if step.isdigit() else None
        if ckpt is None or not ckpt.exists():
            steps = json.loads((path / "train_log.json").read_text())["checkpoint_steps"]
            raise ValueError(f"zoo model {spec!r}: no checkpoint at step {step!r}; saved steps are {steps}")
        load_weights(model, ckpt)
    else:
        load_weights(model, path / "model.safetensors")
    from ..models import quiet_to

    return quiet_to(model, device).eval()


def load_zoo_sae(root: Path, name: str, device: str = "cpu"):
    from sae_lens import SAE

    path = root / "saes" / name
    if not (path / "fingerprint.json").exists():
        built = sorted(p.name for p in (root / "saes").glob("*") if (p / "fingerprint.json").exists())
        raise ValueError(f"zoo SAE {name!r} is not built in {root}; built SAEs are {built}")
    return SAE.load_from_disk(str(path), device=device)


# --------------------------------------------------------------------------------------------- card

def card_fingerprint(recipe: ZooRecipe) -> str:
    return fingerprint({"models": {n: model_fingerprint(recipe, n) for n in recipe.models},
                        "saes": {n: sae_fingerprint(recipe, n) for n in recipe.saes},
                        "eval_windows": recipe.eval_windows, "dead_windows": recipe.dead_windows, "v": 1})


def build_card(recipe: ZooRecipe, root: Path, device: str) -> dict:
    """Held-out CE of every model on every domain, and every SAE's quality (sae_lens evals) on held-out
    prose of its own model; the base SAEs are also evaluated on each finetune of their model."""
    from .sae import dead_fraction, evaluate_sae

    fp = card_fingerprint(recipe)
    path = root / "card.json"
    if path.exists() and (card := json.loads(path.read_text())).get("fingerprint") == fp:
        return card
    heldout = token_streams(root / "data", "heldout", recipe.context_size)
    models = {}
    for name in tqdm(recipe.models, desc="evaluate models", unit="model", leave=False):
        model = load_zoo_model(root, name, device)
        tlog = json.loads((root / "models" / name / "train_log.json").read_text())
        models[name] = {
            "parent": recipe.models[name].parent, "n_params": tlog["n_params"],
            "tokens_seen": tlog["tokens_seen"], "train_seconds": tlog["seconds"],
            "final_train_loss": tlog["loss"][-1], "steps": recipe.models[name].steps,
            "lr": recipe.models[name].lr, "mix": recipe.models[name].mix,
            "checkpoint_steps": tlog["checkpoint_steps"],
            "arch": json.loads((root / "models" / name / "arch.json").read_text()),
            "heldout_ce": {d: heldout_ce(model, heldout[d], recipe.eval_windows) for d in DOMAINS},
        }
    saes = {}
    for name, s in tqdm(recipe.saes.items(), desc="evaluate SAEs", unit="sae", leave=False):
        sae = load_zoo_sae(root, name, device)
        info = json.loads((root / "saes" / name / "train_info.json").read_text())
        on = {s.model: load_zoo_model(root, s.model, device)}
        on.update({n: load_zoo_model(root, n, device) for n, m in recipe.models.items() if m.parent == s.model})
        saes[name] = {
            "model": s.model, "hook": s.hook, "d_sae": s.d_sae, "training_tokens": s.training_tokens,
            "architecture": s.architecture, "sparsity": s.sparsity, "train_seconds": info["seconds"],
            "evals": {f"{m}/{d}": evaluate_sae(sae, model, heldout[d], recipe.eval_windows)
                      for m, model in on.items() for d in DOMAINS},
            # A feature rarer than one in eval_windows' tokens is not dead: count them over more tokens.
            "dead_fraction": dead_fraction(sae, on[s.model], heldout["prose"], recipe.dead_windows),
            "dead_tokens": recipe.dead_windows * recipe.context_size,
        }
    card = {"profile": recipe.profile, "fingerprint": fp, "recipe": recipe.as_dict(),
            "data": json.loads((root / "data" / "data_card.json").read_text()), "models": models, "saes": saes}
    write_json_atomic(path, card)
    return card


def build_zoo(profile: str = "default", device: str = "cpu") -> dict:
    """Build (or reuse) every artifact of a zoo profile and return its card. Prints what it does."""
    recipe = load_recipe(profile)
    root = zoo_dir(recipe.profile)
    timings = {}
    t = time.perf_counter()
    build_data(recipe, root)
    timings["data"] = time.perf_counter() - t
    for name in recipe.models:
        t = time.perf_counter()
        build_model(recipe, name, root, device)
        timings[f"model {name}"] = time.perf_counter() - t
    for name in recipe.saes:
        t = time.perf_counter()
        build_sae(recipe, name, root, device)
        timings[f"sae {name}"] = time.perf_counter() - t
    t = time.perf_counter()
    card = build_card(recipe, root, device)
    timings["card"] = time.perf_counter() - t
    card["last_build_seconds"] = timings
    return card



def read_card(profile: str) -> dict:
    """The card of an already built zoo profile (``zoo list``); says how to build it if it is missing."""
    recipe = load_recipe(profile)
    path = zoo_dir(recipe.profile) / "card.json"
    if not path.exists():
        raise ValueError(f"zoo profile {recipe.profile!r} is not built; run: python -m sae_transfer zoo build "
                         f"--profile {profile}")
    card = json.loads(path.read_text())
    if card.get("fingerprint") != card_fingerprint(recipe):
        raise ValueError(f"zoo profile {recipe.profile!r} was built from another recipe; rebuild it with: "
                         f"python -m sae_transfer zoo build --profile {profile}")
    return card


def training_curves(profile: str) -> dict[str, dict[str, list]]:
    """``{model: {"steps": [...], "loss": [...]}}`` from each built model's training log."""
    root = zoo_dir(load_recipe(profile).profile)
    out = {}
    for name in load_recipe(profile).models:
        logf = root / "models" / name / "train_log.json"
        if logf.exists():
            log_ = json.loads(logf.read_text())
            out[name] = {"steps": log_["steps"], "loss": log_["loss"], "parent": log_["recipe"]["parent"]}
    return out


# --------------------------------------------------------------------------------------------- finetune facts

def own_domain(spec: str, zoo: str) -> str | None:
    """``zoo:DOMAIN`` for a ``zoo:NAME[@STEP]`` finetune trained on one zoo domain; None otherwise."""
    if not spec.startswith("zoo:"):
        return None
    m = load_recipe(zoo).models.get(spec.removeprefix("zoo:").partition("@")[0])
    return f"zoo:{next(iter(m.mix))}" if m is not None and m.parent and len(m.mix) == 1 else None


def saved_checkpoints(spec: str, zoo: str) -> tuple[str, list[int], int] | None:
    """``(name, steps, tokens per step)`` of a zoo finetune's saved checkpoints (step 0, the parent's weights,
    first); None for hub and local specs and for zoo models saved without checkpoints."""
    if not spec.startswith("zoo:"):
        return None
    recipe = load_recipe(zoo)
    name = spec.removeprefix("zoo:").partition("@")[0]
    m = recipe.models.get(name)
    if m is None or not m.checkpoints:
        return None
    log = json.loads((zoo_dir(recipe.profile) / "models" / name / "train_log.json").read_text())
    return name, log["checkpoint_steps"], m.batch_size * recipe.context_size
