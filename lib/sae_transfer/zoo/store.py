"""The zoo's one read API: ``Zoo.open(profile)``, a handle on a built zoo.

Everything a measurement needs from the zoo comes through the handle: models (``code`` or ``code@25``), SAEs,
the tokenizer, token streams, the card, training logs, checkpoints, each finetune's own domain and native SAE,
and fingerprints. Nothing here builds (``zoo.build`` does) and nothing here measures.

Layout under ``<cache>/zoo/<profile>/``::

    data/             tokenizer/, tokens/<domain>_<split>.npy, data_card.json, fingerprint.json
    text/             <domain>_<split>.jsonl: the corpora as text, for models with a tokenizer of their own
    models/<name>/    model.safetensors, arch.json, train_log.json, checkpoints/step_<n>.safetensors
                      (a pretrained root also keeps hf/, its dequantized save_pretrained directory)
    saes/<name>/      sae_lens files (cfg.json, sae_weights.safetensors), train_info.json, fingerprint.json
    sae-finetunes/    base SAEs fine-tuned on a finetune's activations, one fingerprinted directory each
    card.json         held-out losses, parameter counts, SAE quality: the zoo card
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from sae_transfer.core.convert import kernel_layout, quiet_to
from sae_transfer.core.io import fingerprint
from sae_transfer.core.paths import cache_dir
from sae_transfer.core.specs import is_zoo, model_spec
from sae_transfer.zoo.data import LANGUAGES
from sae_transfer.zoo.fingerprints import (card_fingerprint, check_file, content_digest, data_fingerprint,
                                           model_fingerprint, sae_fingerprint, stored_fingerprint)
from sae_transfer.zoo.recipe import ZooRecipe, load_recipe
from sae_transfer.zoo.sae import quiet_sae_lens
from sae_transfer.zoo.tokens import TokenStream, bos_id, load_tokenizer


def zoo_dir(profile: str) -> Path:
    return cache_dir() / "zoo" / profile


def build_command(profile: str) -> str:
    return f"python -m sae_transfer zoo build --profile {profile}"


def split_spec(spec: str) -> tuple[str, int | None]:
    """``zoo:code@25`` or ``code@25`` -> ``("code", 25)``; ``zoo:code`` -> ``("code", None)``."""
    s = model_spec(spec if is_zoo(spec) else f"zoo:{spec}", "zoo model")
    return s.ref, s.step


@dataclass(frozen=True)
class Checkpoints:
    """A zoo finetune's saved checkpoints: step 0 (its parent's weights) first."""

    name: str
    steps: tuple[int, ...]
    tokens_per_step: int


# ------------------------------------------------------------------------------------------ TransformerLens

def new_model(arch: dict, tokenizer=None, init: bool | None = None):
    """A HookedTransformer of the zoo's architecture (``arch.json``: ``HookedTransformerConfig`` kwargs); ``init``
    False leaves its weights unwritten (untouched memory), for a model whose weights are loaded next; None, as
    ``arch`` says."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)  # HookedTransformer is what sae_lens trains on
        init = {} if init is None else {"init_weights": init}
        return HookedTransformer(HookedTransformerConfig(**{"seed": 0, **arch, **init}), tokenizer=tokenizer)


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))


def load_weights(model, path: Path) -> None:
    """``path``'s weights copied into ``model``'s parameters, whatever their layout (``kernel_layout``); the file
    is mapped only while they are copied."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


# ------------------------------------------------------------------------------------------ the handle

_OPEN: dict[str, "Zoo"] = {}


@dataclass(frozen=True, eq=False)
class Zoo:
    """A zoo profile's recipe and where it is built. ``Zoo.open`` returns one handle per recipe content."""

    recipe: ZooRecipe
    root: Path
    source: str  # the profile name or recipe path it was opened with: what ``zoo build --profile`` takes

    @staticmethod
    def open(profile: str) -> "Zoo":
        """``smoke``, ``default`` or a path to a recipe YAML; the same handle while the recipe is unchanged."""
        recipe = load_recipe(profile)
        key = fingerprint([profile, recipe.as_dict(), str(cache_dir())])
        if key not in _OPEN:
            _OPEN[key] = Zoo(recipe, zoo_dir(recipe.profile), profile)
        return _OPEN[key]

    @property
    def profile(self) -> str:
        return self.recipe.profile

    # -------------------------------------------------------------------- what is built
    def card(self) -> dict:
        """The zoo card; a one-line error with the build command if the zoo is missing or stale."""
        path = self.root / "card.json"
        if not path.exists():
            raise ValueError(f"zoo profile {self.profile!r} is not built; run: {build_command(self.source)}")
        card = json.loads(path.read_text())
        if card.get("fingerprint") != card_fingerprint(self.recipe):
            raise ValueError(f"zoo profile {self.profile!r} was built from another recipe; rebuild it with: "
                             f"{build_command(self.source)}")
        return card

    # -------------------------------------------------------------------- fingerprints
    def data_fingerprint(self) -> str:
        return data_fingerprint(self.recipe)

    def model_fingerprint(self, name: str) -> str:
        return model_fingerprint(self.recipe, split_spec(name)[0])

    def sae_fingerprint(self, name: str) -> str:
        return sae_fingerprint(self.recipe, name.removeprefix("zoo:"))

    def content(self, kind: str, name: str) -> str | None:
        """The content digest of a built ``models``/``saes`` artifact, or of the ``data`` (``name`` ignored)."""
        path = self.root / "data" if kind == "data" else self.root / kind / split_spec(name)[0]
        return content_digest(path)

    # -------------------------------------------------------------------- data
    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.root / "data" / "tokenizer")

    @property
    def bos_id(self) -> int | None:
        """The token every window of this zoo starts with (the tokenizer's BOS; the toy tokenizer's is EOT)."""
        return bos_id(self.tokenizer)

    def streams(self, split: str, context_size: int) -> dict[str, TokenStream]:
        """One ``TokenStream`` per domain of ``split`` (train or heldout), memory-mapped."""
        bos = self.bos_id
        for d in self.recipe.domains:
            check_file(self.root / "data", f"tokens/{d}_{split}.npy", self.source)
        tokens = self.root / "data" / "tokens"
        return {d: TokenStream(np.load(tokens / f"{d}_{split}.npy", mmap_mode="r"), context_size, bos)
                for d in self.recipe.domains}

    def check_domain(self, domain: str, param: str = "dataset") -> None:
        """``zoo:DOMAIN`` names a corpus of this zoo: a language is one only where the recipe adds it."""
        if domain not in self.recipe.domains:
            raise ValueError(f"{param}=zoo:{domain}: zoo profile {self.profile!r} holds "
                             f"{[f'zoo:{d}' for d in self.recipe.domains]}"
                             + ("; a recipe adds a language with data.languages" if domain in LANGUAGES else ""))

    def text_file(self, domain: str, split: str) -> Path:
        """``text/<domain>_<split>.jsonl``: the corpus as text, for models with a tokenizer of their own."""
        self.check_domain(domain)
        path = self.root / "text" / f"{domain}_{split}.jsonl"
        if not (self.root / "text" / "fingerprint.json").exists():
            raise ValueError(f"zoo profile {self.profile!r} holds no text yet (zoo:{domain} for a model with its "
                             f"own tokenizer); run: {build_command(self.source)}")
        check_file(self.root / "text", path.name, self.source)
        return path

    def shares_tokenizer(self, tokenizer) -> bool:
        """Whether ``tokenizer`` is this zoo's (then ``zoo:`` datasets are its token streams, else its text)."""
        return tokenizer is None or tokenizer.get_vocab() == self.tokenizer.get_vocab()

    # -------------------------------------------------------------------- models and SAEs
    def model(self, spec: str, device: str = "cpu"):
        """``name`` or ``name@step`` (a saved finetune checkpoint), as an eval-mode HookedTransformer."""
        name, step = split_spec(spec)
        if name not in self.recipe.models:
            raise ValueError(f"zoo model {name!r} is not in profile {self.profile!r}; "
                             f"its models are {sorted(self.recipe.models)}")
        path = self.root / "models" / name
        if not (path / "fingerprint.json").exists():
            raise ValueError(f"zoo model {name!r} is not built in {self.root}; run: {build_command(self.source)}")
        if stored_fingerprint(path) != self.model_fingerprint(name):
            raise ValueError(f"zoo model {name!r} was built from another recipe than profile {self.profile!r} gives "
                             f"now; rebuild it with: {build_command(self.source)}")
        # Laid out for TransformerLens's kernels before the weights are copied in: the file is unmapped once they
        # are, and the model holds its weights once (assigned from the file and laid out after, it held the
        # copies and the file's pages both).
        model = kernel_layout(new_model(json.loads((path / "arch.json").read_text()), self.tokenizer, init=False),
                              values=False)
        weights = path / "model.safetensors"
        if step is not None:
            weights = path / "checkpoints" / f"step_{step:06d}.safetensors"
            saved = self.training_log(name)["checkpoint_steps"]
            if step not in saved:
                raise ValueError(f"zoo model {spec!r}: no checkpoint at step {step}; saved steps are {saved}")
            if not weights.exists():
                raise ValueError(f"zoo model {spec!r}: the checkpoint of step {step} is missing from {path} (its "
                                 f"training saved it, so the zoo was damaged); rebuild it: {build_command(self.source)}")
        check_file(path, str(weights.relative_to(path)), self.source)
        load_weights(model, weights)
        return quiet_to(model, device).eval()

    def sae(self, name: str, device: str = "cpu"):
        from sae_lens import SAE

        name = name.removeprefix("zoo:")
        path = self.root / "saes" / name
        if not (path / "fingerprint.json").exists():
            built = sorted(p.name for p in (self.root / "saes").glob("*") if (p / "fingerprint.json").exists())
            raise ValueError(f"zoo SAE {name!r} is not built in {self.root}; built SAEs are {built}")
        if name in self.recipe.saes and stored_fingerprint(path) != self.sae_fingerprint(name):
            raise ValueError(f"zoo SAE {name!r} was built from another recipe than profile {self.profile!r} gives "
                             f"now; rebuild it with: {build_command(self.source)}")
        check_file(path, "sae_weights.safetensors", self.source)
        with quiet_sae_lens():
            return SAE.load_from_disk(str(path), device=device)

    # -------------------------------------------------------------------- facts about models
    def training_log(self, name: str) -> dict:
        """A built model's ``train_log.json``: recipe, steps, loss, tokens seen, seconds, checkpoint steps."""
        return json.loads((self.root / "models" / split_spec(name)[0] / "train_log.json").read_text())

    def training_logs(self) -> dict[str, dict]:
        """``{model: {"steps", "loss", "parent"}}`` for every built model, in recipe order."""
        out = {}
        for name in self.recipe.models:
            if (self.root / "models" / name / "train_log.json").exists():
                log = self.training_log(name)
                out[name] = {"steps": log["steps"], "loss": log["loss"], "parent": log["recipe"]["parent"]}
        return out

    def own_domain(self, spec: str) -> str | None:
        """``zoo:DOMAIN`` for a ``zoo:NAME[@STEP]`` finetune trained on one zoo domain; None otherwise."""
        if not is_zoo(spec):
            return None
        m = self.recipe.models.get(split_spec(spec)[0])
        return f"zoo:{next(iter(m.mix))}" if m is not None and m.parent and len(m.mix) == 1 else None

    def checkpoints(self, spec: str) -> Checkpoints | None:
        """A zoo finetune's saved checkpoints; None for hub and local specs and models saved without any."""
        if not is_zoo(spec):
            return None
        name = split_spec(spec)[0]
        m = self.recipe.models.get(name)
        if m is None or not m.checkpoints:
            return None
        return Checkpoints(name, tuple(self.training_log(name)["checkpoint_steps"]),
                           m.batch_size * self.recipe.context_size)

    def finetunes_of(self, base: str) -> list[str]:
        """Names of the zoo models finetuned from ``base`` (``zoo:NAME``), in recipe order."""
        parent = split_spec(base)[0]
        return [n for n, m in self.recipe.models.items() if m.parent == parent]

    def native_sae(self, spec: str) -> str | None:
        """``zoo:SAE`` trained on the zoo model ``spec`` itself, if the zoo has one."""
        if not is_zoo(spec):
            return None
        name = split_spec(spec)[0]
        return next((f"zoo:{s}" for s, r in self.recipe.saes.items() if r.model == name), None)
