"""Zoo recipes: what to build, read from ``params/zoo/<profile>.yaml`` (or any YAML of the same form)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sae_transfer.core.io import read_yaml
from sae_transfer.core.paths import params_dir
from sae_transfer.zoo.data import DOMAINS, LANGUAGES
from sae_transfer.zoo.pretrained import PRETRAINED, check_name


@dataclass(frozen=True)
class DataRecipe:
    vocab_size: int = 4096
    n_math_problems: int = 20000
    heldout_fraction: float = 0.1
    max_chars: dict[str, int] | None = None  # per-domain cap on characters (smoke profiles)
    # Languages added as domains of their own (``zoo.data.LANGUAGES``), after prose, code and math: a toy zoo's
    # tokenizer is then trained on them too, and a model's ``mix`` can name them.
    languages: tuple[str, ...] = ()


#: The kinds of transformer block a toy model can be built of: ``HookedTransformerConfig`` settings of each.
#: gpt2: learned positions, LayerNorm, a GELU MLP; llama: rotary positions, RMSNorm, a gated SiLU MLP.
BLOCKS = {"gpt2": {"act_fn": "gelu", "normalization_type": "LN", "positional_embedding_type": "standard"},
          "llama": {"act_fn": "silu", "normalization_type": "RMS", "positional_embedding_type": "rotary",
                    "gated_mlp": True}}


def block_words(arch) -> str:
    """A model's kind of block in words, from its TransformerLens config (``arch.json`` or ``cfg.to_dict()``):
    "learned positions, LayerNorm, a GELU MLP"."""
    positions = {"standard": "learned positions", "rotary": "rotary positions"}.get(
        arch.get("positional_embedding_type", "standard"), str(arch.get("positional_embedding_type")))
    norm = {"LN": "LayerNorm", "LNPre": "LayerNorm", "RMS": "RMSNorm", "RMSPre": "RMSNorm"}.get(
        arch.get("normalization_type"), str(arch.get("normalization_type")))
    act = {"gelu": "GELU", "gelu_new": "GELU", "silu": "SiLU", "relu": "ReLU"}.get(arch.get("act_fn"),
                                                                                  str(arch.get("act_fn")))
    return f"{positions}, {norm}, a {'gated ' if arch.get('gated_mlp') else ''}{act} MLP"


@dataclass(frozen=True)
class ModelRecipe:
    """A pretraining run (``parent`` is None), a real pretrained model (``pretrained`` names one of
    ``zoo.pretrained.PRETRAINED``: no training, no shapes) or a full finetune of ``parent`` (every parameter
    trains)."""

    name: str
    steps: int
    lr: float
    mix: dict[str, float]
    batch_size: int = 32
    parent: str | None = None
    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    d_mlp: int | None = None
    checkpoints: tuple[float, ...] = ()  # fractions of ``steps`` to save along the way (finetunes)
    warmup: int = 20
    pretrained: str | None = None
    # Another seed for this model's initialisation and data order (the zoo's seed when absent): an independent
    # twin of a base, the floor of "unrelated model" for the diffing chapter.
    seed: int | None = None
    # A root toy model's kind of block (``BLOCKS``; gpt2 when absent): the same tokenizer, data and budget in
    # another architecture.
    blocks: str | None = None

    def checkpoint_steps(self) -> list[int]:
        if not self.checkpoints:
            return []
        return sorted({max(1, round(f * self.steps)) for f in self.checkpoints} | {self.steps})


@dataclass(frozen=True)
class SAERecipe:
    """``standard`` SAEs (ReLU) take an L1 coefficient ``l1``; ``batchtopk`` SAEs a mean active count ``k``."""

    name: str
    model: str
    hook: str
    d_sae: int
    training_tokens: int
    architecture: str = "standard"
    l1: float | None = None
    k: float | None = None
    lr: float = 1e-3
    batch_tokens: int = 1024
    # sae_lens's normalize_activations: "expected_average_only_in" scales inputs to norm sqrt(d_in) while
    # training and folds the scale into the saved weights (real residual streams have norms in the hundreds).
    normalize: str = "none"
    # Another seed for this SAE's initialisation and buffer (the zoo's seed when absent): a second SAE of the same
    # model and recipe, the ceiling of what feature matching can reach.
    seed: int | None = None

    @property
    def sparsity(self) -> float:
        return self.l1 if self.architecture == "standard" else self.k


@dataclass(frozen=True)
class ZooRecipe:
    profile: str
    seed: int
    context_size: int
    eval_windows: int  # held-out windows per (model, domain) for the card's losses and SAE evals
    dead_windows: int  # held-out prose windows over which an SAE's dead features are counted
    data: DataRecipe
    models: dict[str, ModelRecipe] = field(default_factory=dict)
    saes: dict[str, SAERecipe] = field(default_factory=dict)
    # How the zoo's models and SAEs train (``PRECISIONS``); measurements are fp32 whatever the zoo trained in.
    precision: str = "fp32"

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def domains(self) -> tuple[str, ...]:
        """The zoo's corpora: prose, code, math, then the recipe's languages."""
        return DOMAINS + self.data.languages

    @property
    def pretrained(self) -> str | None:
        """The real model this zoo's models descend from (its tokenizer is the zoo's), or None: a toy zoo."""
        return next((m.pretrained for m in self.models.values() if m.pretrained), None)

    def root(self, name: str) -> ModelRecipe:
        """The model ``name`` descends from (itself for a root)."""
        m = self.models[name]
        while m.parent is not None:
            m = self.models[m.parent]
        return m


#: How a zoo trains. ``bf16-mixed``: the forward and backward passes under bf16 autocast (the LM's and, for an SAE,
#: the activations it reads and its own), weights, gradients, optimiser state and losses in fp32, as LM training is
#: done on GPUs. On a CPU with bf16 units (AVX512-BF16, AMX) it trained the default zoo's models 1.6-1.9x and its SAEs
#: 1.7x faster (params/zoo/default.yaml gives the figures; benchmarks/precision.py measures them); on one without,
#: slower than fp32.
PRECISIONS = ("fp32", "bf16-mixed")


def _fail(msg: str):
    raise ValueError(msg)


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,)}


def _check_types(where: str, cls, spec: dict) -> None:
    """Each scalar field of ``spec`` has its declared type (``n_layers: two`` is named, not a missing key)."""
    for f in fields(cls):
        if f.name not in spec or spec[f.name] is None:
            continue
        kind = str(f.type).split(" | ")[0]
        want = _SCALARS.get(kind)
        value = spec[f.name]
        if want and (isinstance(value, bool) or not isinstance(value, want)):
            _fail(f"zoo recipe: {where}.{f.name}={value!r} must be {'a number' if kind == 'float' else kind}")
        if want and kind in ("int", "float") and (value < 0 if f.name in ("warmup", "seed") else value <= 0):
            _fail(f"zoo recipe: {where}.{f.name}={value!r} must be positive")


def _check_sae_hook(name: str, s: SAERecipe, models: dict[str, ModelRecipe]) -> None:
    """A zoo SAE reads a residual stream its model has (before five models train, not after)."""
    root = models[s.model]
    while root.parent is not None and root.parent in models:
        root = models[root.parent]
    n_layers = PRETRAINED[root.pretrained].n_layers if root.pretrained else root.n_layers
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", s.hook)
    if m is None or (n_layers is not None and int(m.group(1)) >= n_layers):
        last = f"{n_layers - 1}" if n_layers else "L"
        _fail(f"zoo recipe: saes.{name}.hook={s.hook!r}; a zoo SAE reads blocks.L.hook_resid_pre or "
              f"blocks.L.hook_resid_post of its model, L in 0..{last}")


def parse_recipe(raw: dict, profile: str) -> ZooRecipe:
    """Validate a recipe dict; every error names the offending key and what would be valid."""
    known = {"seed", "context_size", "eval_windows", "dead_windows", "data", "models", "saes", "precision"}
    if unknown := set(raw) - known:
        _fail(f"zoo recipe: unknown key(s) {sorted(unknown)}; valid keys are {sorted(known)}")
    data = _data_recipe(dict(raw.get("data") or {}))
    domains = DOMAINS + data.languages
    models: dict[str, ModelRecipe] = {}
    if not isinstance(raw.get("models") or {}, dict) or not isinstance(raw.get("saes") or {}, dict):
        _fail("zoo recipe: models and saes must be mappings of names to settings")
    for name, spec in (raw.get("models") or {}).items():
        if not isinstance(spec, dict):
            _fail(f"zoo recipe: models.{name} must be a mapping of settings, got {spec!r}")
        spec = dict(spec)
        _check_types(f"models.{name}", ModelRecipe, spec)
        if "pretrained" in spec:
            check_name(spec["pretrained"], f"zoo recipe: models.{name}.pretrained")
            if extra := set(spec) - {"pretrained"}:
                _fail(f"zoo recipe: models.{name} is pretrained ({spec['pretrained']}); it takes no "
                      f"{sorted(extra)} (shapes come from the checkpoint, and it is not trained)")
            spec.update(steps=0, lr=0.0, mix={})
        if "checkpoints" in spec:
            spec["checkpoints"] = tuple(float(x) for x in spec["checkpoints"])
        try:
            m = ModelRecipe(name=name, **spec)
        except TypeError as e:
            _fail(f"zoo recipe: models.{name}: {e}")
        if bad := set(m.mix) - set(domains):
            more = [lang for lang in bad if lang in LANGUAGES]
            _fail(f"zoo recipe: models.{name}.mix names {sorted(bad)}; valid domains are {list(domains)}"
                  + (f" (add {more} to data.languages to train on them)" if more else ""))
        if bad := [f for f in m.checkpoints if not 0 < f <= 1]:
            _fail(f"zoo recipe: models.{name}.checkpoints={list(m.checkpoints)}: {bad} are not fractions of its "
                  f"steps; give each in (0, 1] (0.5 saves at step {max(1, round(0.5 * m.steps))} of {m.steps})")
        if m.parent is None and m.pretrained is None and None in (m.n_layers, m.d_model, m.n_heads, m.d_mlp):
            _fail(f"zoo recipe: models.{name} has no parent, so it needs n_layers, d_model, n_heads and d_mlp")
        if m.blocks is not None and (m.blocks not in BLOCKS or m.parent is not None):
            _fail(f"zoo recipe: models.{name}.blocks={m.blocks!r}: " + (
                f"valid are {sorted(BLOCKS)}" if m.blocks not in BLOCKS else
                "a finetune keeps its parent's blocks; give blocks to a model without a parent"))
        models[name] = m
    for m in models.values():
        if m.parent is not None and m.parent not in models:
            _fail(f"zoo recipe: models.{m.name}.parent={m.parent!r}; valid parents are {sorted(models)}")
    sources = {m.pretrained for m in models.values() if m.parent is None}
    if len(sources) > 1 and None in sources or len(sources - {None}) > 1:
        _fail(f"zoo recipe: one zoo holds one tokenizer, so its root models are all toy models or one pretrained "
              f"model; found {sorted(str(s) for s in sources)}: put each pretrained family in a recipe of its own")
    saes: dict[str, SAERecipe] = {}
    for name, spec in (raw.get("saes") or {}).items():
        if not isinstance(spec, dict):
            _fail(f"zoo recipe: saes.{name} must be a mapping of settings, got {spec!r}")
        _check_types(f"saes.{name}", SAERecipe, spec)
        try:
            s = SAERecipe(name=name, **spec)
        except TypeError as e:
            _fail(f"zoo recipe: saes.{name}: {e}")
        if s.model not in models:
            _fail(f"zoo recipe: saes.{name}.model={s.model!r}; valid models are {sorted(models)}")
        _check_sae_hook(name, s, models)
        if s.architecture not in ("standard", "batchtopk"):
            _fail(f"zoo recipe: saes.{name}.architecture={s.architecture!r}; valid are ['batchtopk', 'standard']")
        if s.normalize not in ("none", "expected_average_only_in"):
            _fail(f"zoo recipe: saes.{name}.normalize={s.normalize!r}; valid are ['expected_average_only_in', "
                  "'none']")
        if s.sparsity is None:
            _fail(f"zoo recipe: saes.{name} needs {'l1' if s.architecture == 'standard' else 'k'} "
                  f"for architecture {s.architecture!r}")
        saes[name] = s
    for key in ("seed", "context_size", "eval_windows", "dead_windows"):
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int)):
            _fail(f"zoo recipe: {key}={raw[key]!r} must be an integer")
    if not models:
        _fail("zoo recipe: models is empty; give at least a base model (see params/zoo/smoke.yaml)")
    precision = raw.get("precision", "fp32")
    if precision not in PRECISIONS:
        _fail(f"zoo recipe: precision={precision!r}; valid are {list(PRECISIONS)}")
    eval_windows = int(raw.get("eval_windows", 64))
    return ZooRecipe(profile=profile, seed=int(raw.get("seed", 0)), context_size=int(raw.get("context_size", 128)),
                     eval_windows=eval_windows, dead_windows=int(raw.get("dead_windows", 4 * eval_windows)),
                     data=data, models=models, saes=saes, precision=precision)


def _data_recipe(spec: dict) -> DataRecipe:
    _check_types("data", DataRecipe, spec)
    languages = spec.pop("languages", None) or ()
    if not isinstance(languages, (list, tuple)) or not all(isinstance(x, str) for x in languages) \
            or set(languages) - set(LANGUAGES) or len(set(languages)) != len(languages):
        _fail(f"zoo recipe: data.languages={languages!r}; give a list of distinct languages from {sorted(LANGUAGES)}")
    try:
        return DataRecipe(**spec, languages=tuple(languages))
    except TypeError as e:
        _fail(f"zoo recipe: data: {e}")


def zoo_profiles() -> list[str]:
    return sorted(p.stem for p in (params_dir() / "zoo").glob("*.yaml"))


def load_recipe(profile_or_path: str) -> ZooRecipe:
    """A profile name (``smoke``, ``default``) or a path to a YAML recipe."""
    path = Path(profile_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = params_dir() / "zoo" / f"{profile_or_path}.yaml"
        if not path.exists():
            _fail(f"zoo profile {profile_or_path!r} does not exist; valid profiles are {zoo_profiles()} "
                  "or a path to a .yaml recipe")
    elif not path.exists():
        _fail(f"zoo recipe file {str(path)!r} does not exist")
    raw = read_yaml(path, "zoo recipe") or {}
    if not isinstance(raw, dict):
        _fail(f"zoo recipe {str(path)!r} must hold a mapping (seed, context_size, data, models, saes)")
    return parse_recipe(raw, profile=path.stem)
