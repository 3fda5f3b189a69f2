"""Building the zoo's artifacts: data, tokenizer, models with checkpoints, SAEs, the zoo card, and base SAEs
fine-tuned on a finetune's activations. Each artifact is reused when its fingerprint matches and written
atomically, so an interrupted build resumes where it stopped. Which artifacts a build makes, in what order and how
many at once, is ``plan``'s job; reading a built zoo is ``store.Zoo``'s."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sae_transfer.core.convert import arch_of, hooked_from_hf, quiet_to
from sae_transfer.core.io import atomic_dir, fingerprint, write_json_atomic
from sae_transfer.core.paths import cache_dir
from sae_transfer.core.specs import is_zoo
from sae_transfer.zoo.data import SOURCES_TABLE, SPLITS, build_corpora, language_sources
from sae_transfer.zoo.fingerprints import (card_fingerprint, data_fingerprint, is_current, model_fingerprint,
                                           sae_fingerprint, write_record)
from sae_transfer.zoo.pretrained import PRETRAINED, dequantize, save_tokenizer
from sae_transfer.zoo.recipe import BLOCKS, ModelRecipe, SAERecipe, ZooRecipe
from sae_transfer.zoo.sae import dead_fraction, evaluate_sae, finetune_sae, train_sae
from sae_transfer.zoo.store import Zoo, load_weights, new_model, save_weights
from sae_transfer.zoo.tokens import check_vocab, encode_documents, load_tokenizer, train_tokenizer
from sae_transfer.zoo.train import heldout_ce, hf_loss, train_lm

# --------------------------------------------------------------------------------------------- data

_CORPORA: dict[str, dict] = {}


def corpora_of(recipe: ZooRecipe) -> dict[str, dict[str, list[str]]]:
    """The recipe's corpora, built once per process: the tokens and the text of a zoo come from the same build."""
    key = data_fingerprint(recipe)
    if key not in _CORPORA:
        _CORPORA.clear()  # one zoo's text at a time is all a build needs in memory
        _CORPORA[key] = build_corpora(cache_dir() / "downloads", recipe.data.n_math_problems, recipe.seed,
                                      recipe.data.heldout_fraction, recipe.data.max_chars, recipe.data.languages)
    return _CORPORA[key]


def forget_corpora() -> None:
    """Let go of the corpora ``corpora_of`` holds: a build that has its data keeps no text resident."""
    _CORPORA.clear()


def build_data(zoo: Zoo) -> Path:
    recipe, out = zoo.recipe, zoo.root / "data"
    fp = data_fingerprint(recipe)
    if is_current(out, fp):
        return out
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        corpora = corpora_of(recipe)
        if recipe.pretrained:  # a real model's zoo: its own tokenizer, the same texts
            tok = save_tokenizer(PRETRAINED[recipe.pretrained], cache_dir() / "downloads", tmp / "tokenizer")
            check_vocab(tok)
        else:
            tok = train_tokenizer({d: corpora[d]["train"] for d in recipe.domains}, recipe.data.vocab_size,
                                  tmp / "tokenizer", recipe.seed)
        (tmp / "tokens").mkdir()
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for domain in tqdm(recipe.domains, desc="tokenize", unit="domain", leave=False):
            counts[domain] = {}
            for split in SPLITS:
                arr = encode_documents(tok, corpora[domain][split])
                np.save(tmp / "tokens" / f"{domain}_{split}.npy", arr)
                counts[domain][split] = {"documents": len(corpora[domain][split]), "tokens": int(len(arr)),
                                         "characters": sum(map(len, corpora[domain][split]))}
        sources = SOURCES_TABLE + language_sources(recipe.data.languages)
        write_json_atomic(tmp / "data_card.json", {"splits": counts, "sources": sources,
                                                   "vocab_size": len(tok), "seconds": time.perf_counter() - t0})
        write_record(tmp, fp)
    return out


def build_text(zoo: Zoo) -> Path:
    """The zoo's corpora as text, ``text/<domain>_<split>.jsonl`` (one ``{"text": ...}`` per document): what
    ``zoo:DOMAIN`` means for a model that does not share the zoo's tokenizer, which tokenizes it itself."""
    recipe, out = zoo.recipe, zoo.root / "text"
    fp = data_fingerprint(recipe)
    if is_current(out, fp):
        return out
    with atomic_dir(out) as tmp:
        corpora = corpora_of(recipe)
        for domain in recipe.domains:
            for split in SPLITS:
                lines = "".join(json.dumps({"text": t}) + "\n" for t in corpora[domain][split])
                (tmp / f"{domain}_{split}.jsonl").write_text(lines)
        write_record(tmp, fp)
    return out


# --------------------------------------------------------------------------------------------- models

def architecture(recipe: ZooRecipe, base: ModelRecipe, vocab_size: int) -> dict:
    """A toy root model's ``HookedTransformerConfig`` keyword arguments (stored as ``arch.json``)."""
    d_head = base.d_model // base.n_heads
    arch = dict(n_layers=base.n_layers, d_model=base.d_model, n_heads=base.n_heads, d_head=d_head, d_mlp=base.d_mlp,
                n_ctx=recipe.context_size, d_vocab=vocab_size, **BLOCKS[base.blocks or "gpt2"],
                original_architecture="zoo")
    if arch["positional_embedding_type"] == "rotary":
        arch["rotary_dim"] = d_head
    if base.seed is not None:
        arch["seed"] = base.seed  # the initialisation's seed (``new_model``); 0 when absent
    return arch


def build_pretrained(zoo: Zoo, name: str, device: str) -> Path:
    """A real pretrained model: dequantized into ``hf/`` (a ``local:`` directory, the model as Hugging Face
    saves it) and converted by TransformerLens into the zoo's own format (``arch.json``, ``model.safetensors``),
    so finetunes, SAEs and every chapter load it as they load a toy model. The conversion is checked: the
    stored model's logits must match the Hugging Face model's on a held-out window."""
    recipe, m = zoo.recipe, zoo.recipe.models[name]
    out = zoo.root / "models" / name
    fp = model_fingerprint(recipe, name)
    if is_current(out, fp):
        return out
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        dequantize(PRETRAINED[m.pretrained], cache_dir() / "downloads", tmp / "hf")
        tok = load_tokenizer(zoo.root / "data" / "tokenizer")
        hf = AutoModelForCausalLM.from_pretrained(str(tmp / "hf"), dtype=torch.float32).eval()
        model = hooked_from_hf(str(tmp / "hf"), hf, tok, device, torch.float32)
        arch = arch_of(model)
        save_weights(model, tmp / "model.safetensors")
        write_json_atomic(tmp / "arch.json", arch)
        del model
        agreement = check_conversion(hf, arch, tmp / "model.safetensors", tok,
                                     zoo.streams("heldout", recipe.context_size)["prose"])
        del hf
        write_json_atomic(tmp / "train_log.json", {
            "recipe": m, "steps": [], "loss": [], "tokens_seen": 0, "seconds": time.perf_counter() - t0,
            "n_params": agreement.pop("n_params"), "device": device, "checkpoint_steps": [],
            "pretrained": {"source": PRETRAINED[m.pretrained].upstream, "conversion": agreement}})
        write_record(tmp, fp)
    return out


@torch.no_grad()
def check_conversion(hf, arch: dict, weights: Path, tokenizer, stream, atol: float = 1e-3) -> dict:
    """Logits of the HookedTransformer as stored (``arch`` and ``weights``, read back) against the Hugging Face
    model ``hf``'s on one held-out window, both centred (TransformerLens centres the unembedding). Raises if they
    differ by more than ``atol``; returns the agreement and the Hugging Face model's parameter count."""
    tokens = next(stream.sequential(1, 1))
    want = hf(tokens).logits
    n_params = sum(p.numel() for p in hf.parameters())  # as the model is published (tied embeddings once)
    model = new_model(arch, tokenizer)
    load_weights(model, weights)
    got = model(tokens)
    centred = lambda t: t - t.mean(-1, keepdim=True)
    diff = float((centred(got) - centred(want)).abs().max())
    if not diff <= atol:
        raise RuntimeError(f"stored model differs from the Hugging Face one: max |logit difference| {diff:.2e} > "
                           f"{atol}")
    return {"max_abs_logit_diff": diff, "atol": atol, "logit_std": float(want.std()), "tokens": tokens.numel(),
            "n_params": n_params}


def _link_or(existing: Path | None, dest: Path, save) -> None:
    """``dest`` as a hard link to ``existing`` (the same weights, already converted and written: a real model's
    conversion and 0.5 GB write cost seconds each), or ``save(dest)`` when there is none to share."""
    if existing is None:
        save(dest)
        return
    try:
        os.link(existing, dest)
    except OSError:  # another file system
        shutil.copyfile(existing, dest)


def build_model(zoo: Zoo, name: str, device: str) -> Path:
    recipe = zoo.recipe
    m = recipe.models[name]
    if m.pretrained:
        return build_pretrained(zoo, name, device)
    out = zoo.root / "models" / name
    fp = model_fingerprint(recipe, name)
    if is_current(out, fp):
        return out
    tok = load_tokenizer(zoo.root / "data" / "tokenizer")
    parent = build_model(zoo, m.parent, device) if m.parent is not None else None
    hf_dir = parent / "hf" if parent is not None and recipe.models[m.parent].pretrained else None
    if hf_dir is not None:
        # A real model is finetuned as Hugging Face defines it (tied embeddings, norm weights apart), 2.5x faster
        # on CPU than its TransformerLens form; each saved state is converted to the zoo's format.
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).to(device)
        arch = json.loads((parent / "arch.json").read_text())
        save = lambda path: save_weights(hooked_from_hf(str(hf_dir), model, tok, device, torch.float32), path)
        loss_of = hf_loss
    else:
        if parent is not None:
            arch = json.loads((parent / "arch.json").read_text())
            model = quiet_to(new_model(arch, tok), device)
            load_weights(model, parent / "model.safetensors")
        else:
            arch = architecture(recipe, m, len(tok))
            model = quiet_to(new_model(arch, tok), device)
        save = lambda path: save_weights(model, path)
        loss_of = None
    streams = zoo.streams("train", recipe.context_size)
    with atomic_dir(out) as tmp:
        ckpt_steps = set(m.checkpoint_steps())
        (tmp / "checkpoints").mkdir()

        def on_step(step: int) -> None:
            if step in ckpt_steps:
                save(tmp / "checkpoints" / f"step_{step:06d}.safetensors")

        if m.checkpoints:  # the base itself, step 0: its parent's stored weights when they are the same form
            step0 = tmp / "checkpoints" / "step_000000.safetensors"
            _link_or(parent / "model.safetensors" if hf_dir is not None else None, step0, save)
        seed = (recipe.seed if m.seed is None else m.seed) + 1
        tlog = train_lm(model, streams, m.mix, m.steps, m.batch_size, m.lr, seed, m.warmup,
                        on_step=on_step, desc=f"train {name}", loss_of=loss_of, precision=recipe.precision)
        last = tmp / "checkpoints" / f"step_{m.steps:06d}.safetensors"
        _link_or(last if last.exists() else None, tmp / "model.safetensors", save)
        write_json_atomic(tmp / "arch.json", arch)
        n_params = sum(p.numel() for p in model.parameters())
        write_json_atomic(tmp / "train_log.json", {
            "recipe": m, "steps": tlog.steps, "loss": tlog.loss, "tokens_seen": tlog.tokens_seen,
            "seconds": tlog.seconds, "n_params": n_params, "device": device, "precision": recipe.precision,
            "checkpoint_steps": sorted(ckpt_steps | ({0} if m.checkpoints else set()))})
        write_record(tmp, fp)
    return out


# --------------------------------------------------------------------------------------------- SAEs

def build_sae(zoo: Zoo, name: str, device: str) -> Path:
    recipe = zoo.recipe
    out = zoo.root / "saes" / name
    fp = sae_fingerprint(recipe, name)
    if is_current(out, fp):
        return out
    s: SAERecipe = recipe.saes[name]
    model = zoo.model(s.model, device=device)
    stream = zoo.streams("train", recipe.context_size)["prose"]
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        # Real models put a massive activation on BOS; an SAE trained on it would spend itself there.
        exclude = [zoo.bos_id] if recipe.pretrained else False
        train_sae(model, stream, s.hook, s.d_sae, s.training_tokens, s.sparsity, s.lr,
                  recipe.seed if s.seed is None else s.seed, device,
                  batch_tokens=s.batch_tokens, out_dir=tmp, architecture=s.architecture, exclude_special=exclude,
                  normalize=s.normalize, precision=recipe.precision)
        write_json_atomic(tmp / "train_info.json", {"recipe": s, "seconds": time.perf_counter() - t0,
                                                    "trained_on": "prose train split", "device": device,
                                                    "precision": recipe.precision})
        write_record(tmp, fp)
    return out


def build_sae_finetune(zoo: Zoo, finetune: str, sae: str, training_tokens: int, lr: float, n_checkpoints: int,
                       device: str = "cpu", data: str = "prose") -> list[dict]:
    """The zoo SAE ``sae`` fine-tuned on the zoo finetune ``finetune``'s activations, with checkpoints.

    Trained on the zoo's ``data`` train split, the data every zoo SAE is trained on, so the fine-tuning sees a
    new model, not new text (as Kissane et al. fine-tuned base SAEs on the chat model's activations), in the zoo's
    precision. Built once into ``<zoo>/sae-finetunes/``; returns ``[{"tokens": int, "path": str}]`` in token
    order.
    """
    if not (is_zoo(finetune) and is_zoo(sae)):
        raise ValueError(f"finetune={finetune!r}, sae={sae!r}: SAE fine-tuning needs a zoo model and a zoo SAE "
                         "(it trains on the zoo's train split)")
    name = sae.removeprefix("zoo:")
    # v2: BOS left out of the training, the top-k threshold carried over
    key = {"sae": zoo.sae_fingerprint(name), "model": zoo.model_fingerprint(finetune), "tokens": training_tokens,
           "lr": lr, "n_checkpoints": n_checkpoints, "data": data, "v": 2,
           **({"precision": zoo.recipe.precision} if zoo.recipe.precision != "fp32" else {})}
    label = "".join(c if c.isalnum() else "_" for c in f"{name}-on-{finetune.removeprefix('zoo:')}")
    out = zoo.root / "sae-finetunes" / f"{label}-{fingerprint(key)}"
    if not (out / "checkpoints.json").exists():
        model = zoo.model(finetune, device=device)
        stream = zoo.streams("train", zoo.recipe.context_size)[data]
        n_windows = min(-(-training_tokens // stream.ctx) + 64, stream.n_windows())  # a margin for the buffer
        windows = torch.cat(list(stream.sequential(1024, n_windows)))
        with atomic_dir(out) as tmp:
            ckpts = finetune_sae(zoo.root / "saes" / name, model, windows, training_tokens, lr, zoo.recipe.seed, tmp,
                                 device, batch_tokens=zoo.recipe.saes[name].batch_tokens, n_checkpoints=n_checkpoints,
                                 bos_id=zoo.bos_id, precision=zoo.recipe.precision)
            write_json_atomic(tmp / "checkpoints.json", {"key": key, "checkpoints": [
                {"tokens": c["tokens"], "dir": Path(c["path"]).name} for c in ckpts]})
    ckpts = json.loads((out / "checkpoints.json").read_text())["checkpoints"]
    return [{"tokens": c["tokens"], "path": str(out / c["dir"])} for c in ckpts]


# --------------------------------------------------------------------------------------------- card

def build_card(zoo: Zoo, device: str) -> dict:
    """Held-out CE of every model on every domain, and every SAE's quality (sae_lens evals) on held-out
    prose of its own model; the base SAEs are also evaluated on each finetune of their model."""
    recipe = zoo.recipe
    fp = card_fingerprint(recipe)
    path = zoo.root / "card.json"
    try:
        card = json.loads(path.read_text())
        if card.get("fingerprint") == fp:
            return card
    except (OSError, ValueError):
        pass  # missing or damaged: evaluate again
    heldout = zoo.streams("heldout", recipe.context_size)
    models = {}
    for name in tqdm(recipe.models, desc="evaluate models", unit="model", leave=False):
        model = zoo.model(name, device)
        tlog = zoo.training_log(name)
        models[name] = {
            "parent": recipe.models[name].parent, "n_params": tlog["n_params"],
            "tokens_seen": tlog["tokens_seen"], "train_seconds": tlog["seconds"],
            "final_train_loss": tlog["loss"][-1] if tlog["loss"] else None,
            "pretrained": tlog.get("pretrained"), "steps": recipe.models[name].steps,
            "lr": recipe.models[name].lr, "mix": recipe.models[name].mix,
            "checkpoint_steps": tlog["checkpoint_steps"],
            "arch": json.loads((zoo.root / "models" / name / "arch.json").read_text()),
            "heldout_ce": {d: heldout_ce(model, heldout[d], recipe.eval_windows) for d in recipe.domains},
        }
    saes = {}
    exclude = [zoo.bos_id] if recipe.pretrained else False  # as the real family's SAEs were trained
    for name, s in tqdm(recipe.saes.items(), desc="evaluate SAEs", unit="sae", leave=False):
        sae = zoo.sae(name, device)
        info = json.loads((zoo.root / "saes" / name / "train_info.json").read_text())
        on = {s.model: zoo.model(s.model, device)}
        on.update({n: zoo.model(n, device) for n, m in recipe.models.items() if m.parent == s.model})
        saes[name] = {
            "model": s.model, "hook": s.hook, "d_sae": s.d_sae, "training_tokens": s.training_tokens,
            "architecture": s.architecture, "sparsity": s.sparsity, "train_seconds": info["seconds"],
            "evals": {f"{m}/{d}": evaluate_sae(sae, model, heldout[d], recipe.eval_windows, exclude_special=exclude)
                      for m, model in on.items() for d in recipe.domains},
            # A feature rarer than one in eval_windows' tokens is not dead: count them over more tokens.
            "dead_fraction": dead_fraction(sae, on[s.model], heldout["prose"], recipe.dead_windows,
                                           exclude_special=exclude),
            "excluded_tokens": exclude or [],
            "dead_tokens": recipe.dead_windows * recipe.context_size,
        }
    card = {"profile": recipe.profile, "fingerprint": fp, "recipe": recipe.as_dict(),
            "data": json.loads((zoo.root / "data" / "data_card.json").read_text()), "models": models, "saes": saes}
    write_json_atomic(path, card)
    return card
