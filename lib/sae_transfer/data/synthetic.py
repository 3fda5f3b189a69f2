"""Activations whose features are known: a base distribution built with sae_lens's synthetic module (a feature
dictionary in superposition, Zipfian firing), and a "finetune" made from it by planted edits, so every feature's
fate is known by construction.

Of the base's ``n_features`` features, a share ``Edits.share`` is changed, in equal parts:

- **shifted**: the finetune writes the feature along a direction rotated by ``Edits.angle`` degrees (in the plane
  of the base direction and a random orthogonal one), on the same tokens with the same activation;
- **rarer**: same direction, but it fires on only ``Edits.rarer_keep`` of the tokens it fires on in the base;
- **lost**: never active in the finetune.

The rest are **kept** (identical). ``Edits.new`` times ``n_features`` further directions (random unit vectors),
which the base never uses, fire in the finetune only: **new**, each as often as a base feature drawn at random.
Both models read the same draws of the feature activations, token by token, as two models read the same text:
``x_base = a_base @ D_base``, ``x_ft = a_ft @ D_ft`` with ``a_base``, ``a_ft`` [n, n_total] the planted activations
and ``D`` [n_total, d_model] unit rows.

Everything is drawn from ``World.seed`` and ``Edits.seed`` (dictionary, firing probabilities, which feature gets
which edit) and the stream's own seed (the tokens): the same seeds give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from typing import Iterator

import torch

#: The planted classes, in the order tables list them.
TRUE_CLASSES = ("kept", "shifted", "rarer", "lost", "new")
#: What changed: every class but kept.
CHANGED = TRUE_CLASSES[1:]


@dataclass(frozen=True)
class World:
    """The base's activations: ``n_features`` unit directions in ``d_model`` dimensions (made as orthogonal as
    they can be by sae_lens's ``orthogonal_initializer``), feature ``i`` firing with a Zipfian probability between
    ``max_prob`` and ``min_prob`` (exponent ``zipf``), with magnitude ``1 + magnitude_std * N(0, 1)`` (ReLU)."""

    n_features: int = 256
    d_model: int = 64
    zipf: float = 0.5
    max_prob: float = 0.2
    min_prob: float = 0.005
    magnitude_std: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class Edits:
    """The planted finetune: ``share`` of the base features changed (a third each shifted, rarer, lost; the
    remainder of the division goes to shifted), shifted ones rotated by ``angle`` degrees, rarer ones keeping
    ``rarer_keep`` of their firings, and ``new * n_features`` new features. ``share=0, new=0``: the null finetune,
    identical to the base."""

    share: float = 0.3
    angle: float = 45.0
    rarer_keep: float = 0.3
    new: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        for name, lo, hi in (("share", 0, 1), ("rarer_keep", 0, 1), ("new", 0, 4), ("angle", 0, 180)):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"{name}={v}: use a value in [{lo}, {hi}]")


class PlantedPair:
    """A base distribution (``world``) and its planted finetune (``edits``), built once.

    ``truth`` [n_total]: each feature's planted class (``TRUE_CLASSES``); ``D_base``, ``D_ft`` [n_total, d_model]
    unit rows; ``p_base``, ``p_ft`` [n_total] firing probabilities (``p_ft`` of a rarer feature is its kept
    share of ``p_base``)."""

    #: The truth is a dictionary of its own, which the SAE trained on the base may or may not find.
    truth_is_sae = False

    def __init__(self, world: World, edits: Edits):
        edits.validate()
        self.world, self.edits = world, edits
        n, d = world.n_features, world.d_model
        n_new = round(edits.new * n)
        self.n_total = n + n_new
        D, p = base_dictionary(world)
        # The edits' own draws, nested: a larger share changes a superset of the features a smaller one changes,
        # and the first new features are the same whatever their number.
        ge = torch.Generator().manual_seed(1_000_003 * world.seed + edits.seed)
        order = torch.randperm(n, generator=ge)
        new_dirs = torch.stack([torch.randn(d, generator=ge) for _ in range(n_new)]) if n_new else torch.zeros(0, d)
        new_p = p[torch.randint(n, (n_new,), generator=ge)]  # new features as frequent as the base's
        self.D_base = torch.cat([D, new_dirs / new_dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)])
        self.p_union = torch.cat([p, new_p])
        self.truth = truth = planted_classes(order.tolist(), n, n_new, edits.share)
        self.D_ft = turned(self.D_base, self.indices("shifted"), edits.angle, ge)
        mask = lambda classes: torch.tensor([c in classes for c in truth])  # noqa: E731
        self.in_base = ~mask(("new",))  # [n_total] bool
        self.in_ft = ~mask(("lost",))
        self.rarer = mask(("rarer",))
        self.p_base = self.p_union * self.in_base
        self.p_ft = self.p_union * self.in_ft * torch.where(self.rarer, edits.rarer_keep, 1.0)

    def indices(self, cls: str) -> list[int]:
        return [i for i, c in enumerate(self.truth) if c == cls]

    @property
    def d_in(self) -> int:
        return self.world.d_model

    @cached_property
    def base_features(self) -> list[int]:
        """The features the base uses (every class but new), in dictionary order."""
        return [i for i, c in enumerate(self.truth) if c != "new"]

    def describe(self) -> dict:
        """Plain data: the parameters and the planted counts and probabilities (what a page states)."""
        return {"world": asdict(self.world), "edits": asdict(self.edits), "n_total": self.n_total,
                "counts": {c: self.truth.count(c) for c in TRUE_CLASSES},
                "true_l0_base": float(self.p_base.sum()), "true_l0_finetune": float(self.p_ft.sum()),
                "max_cos_base": float(_max_offdiag_cos(self.D_base[self.base_features]))}

    def generator(self):
        """sae_lens's ``ActivationGenerator`` of the union of both models' features (each fires at ``p_union``)."""
        from sae_lens.synthetic import ActivationGenerator

        return ActivationGenerator(self.n_total, self.p_union, std_firing_magnitudes=self.world.magnitude_std,
                                   mean_firing_magnitudes=1.0)

    def base_only(self):
        """sae_lens's ``(FeatureDictionary, ActivationGenerator)`` of the base alone: what its SAE trains on."""
        from sae_lens.synthetic import ActivationGenerator, FeatureDictionary

        fd = FeatureDictionary(self.n_total, self.world.d_model, initializer=None)
        fd.feature_vectors.data = self.D_base.clone()
        gen = ActivationGenerator(self.n_total, self.p_base, std_firing_magnitudes=self.world.magnitude_std,
                                  mean_firing_magnitudes=1.0)
        return fd, gen

    def key(self) -> dict:
        """What this pair's activations depend on (a cache key part)."""
        return {"world": asdict(self.world), "edits": asdict(self.edits)}

    def training_batches(self, study, seed: int) -> Iterator[torch.Tensor]:
        """Both models' activations [n, 2, d_model] of ``study.train_tokens`` independent draws and a few more
        (the crosscoder's shuffle buffer holds some back), ``study.batch_tokens * 4`` at a time."""
        per_batch = study.batch_tokens * 4
        n_batches = -(-int(study.train_tokens * 1.05) // per_batch) + 1
        for b in self.paired(n_batches, per_batch, 1, seed=seed):
            yield torch.stack([b["x_base"], b["x_ft"]], 2).flatten(0, 1)

    @torch.no_grad()
    def paired(self, n_batches: int, batch_size: int, context: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        """``n_batches`` batches of ``batch_size`` windows of ``context`` draws: ``{"a_base", "a_ft"}``
        [B, T, n_total] planted feature activations and ``{"x_base", "x_ft"}`` [B, T, d_model] the two models'
        activations of the same draws. Draws are independent; position 0 of each window is one like the others
        (what the pair accumulators leave out as BOS)."""
        gen = self.generator()
        with torch.random.fork_rng(devices=[]):  # sae_lens samples from the global generator
            torch.manual_seed(seed)
            for _ in range(n_batches):
                a = gen.sample(batch_size * context)  # [n, n_total]
                keep = torch.rand(a.shape) < self.edits.rarer_keep
                a_base = a * self.in_base
                a_ft = a * self.in_ft * torch.where(self.rarer, keep, True)
                shape = (batch_size, context, -1)
                yield {"a_base": a_base.view(shape), "a_ft": a_ft.view(shape),
                       "x_base": (a_base @ self.D_base).view(shape), "x_ft": (a_ft @ self.D_ft).view(shape)}


def planted_classes(order: list[int], n: int, n_new: int, share: float) -> list[str]:
    """Each feature's planted class: ``round(share * len(order))`` of the ``n`` base features, taken in ``order``,
    changed (a third each shifted, rarer, lost; the remainder of the division to shifted), the rest kept; then
    ``n_new`` new ones."""
    n_changed = round(share * len(order))
    n_each = n_changed // 3
    counts = {"shifted": n_changed - 2 * n_each, "rarer": n_each, "lost": n_each}
    truth = ["kept"] * n + ["new"] * n_new
    start = 0
    for cls in ("shifted", "rarer", "lost"):
        for i in order[start:start + counts[cls]]:
            truth[i] = cls
        start += counts[cls]
    return truth


def turned(D: torch.Tensor, rows: list[int], angle: float, generator: torch.Generator) -> torch.Tensor:
    """A copy of unit rows ``D`` [m, d] with each of ``rows`` turned by ``angle`` degrees toward a random direction
    orthogonal to it (drawn from ``generator``, row by row)."""
    out = D.clone()
    theta = math.radians(angle)
    for i in rows:
        u = torch.randn(D.shape[1], generator=generator)
        u -= (u @ D[i]) * D[i]
        out[i] = math.cos(theta) * D[i] + math.sin(theta) * u / u.norm()  # unit: u is orthogonal
    return out


@lru_cache(maxsize=8)
def base_dictionary(world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """The base's directions [n_features, d_model] (sae_lens's ``FeatureDictionary``, orthogonalised as far as
    ``n_features`` directions in ``d_model`` dimensions allow) and firing probabilities [n_features] (sae_lens's
    Zipfian ones, in an order drawn from the seed): the world's alone, so every finetune of it shares its base."""
    from sae_lens.synthetic import FeatureDictionary, zipfian_firing_probabilities

    fd = FeatureDictionary(world.n_features, world.d_model, seed=world.seed)
    probs = zipfian_firing_probabilities(world.n_features, world.zipf, world.max_prob, world.min_prob)
    g = torch.Generator().manual_seed(world.seed)
    return fd.feature_vectors.detach().clone(), probs[torch.randperm(world.n_features, generator=g)]


def changed_mass(a_base: torch.Tensor, a_ft: torch.Tensor, D_base: torch.Tensor, D_ft: torch.Tensor) -> torch.Tensor:
    """Per draw, the activation mass the finetune changed: ``sum_i ||a_ft,i D_ft,i - a_base,i D_base,i||`` over
    features (a lost feature's whole base term, a new one's whole finetune term, a shifted one's
    ``2 a sin(angle / 2)``, a rarer one's base term where it stopped firing), and the total mass
    ``sum_i max(a_base,i, a_ft,i)``: returns [2] sums over the draws of ``a_base``, ``a_ft`` [n, n_total]."""
    moved = (D_ft - D_base).norm(dim=-1)  # [n_total]: 0 unless shifted
    same = (a_base == a_ft)
    diff = torch.where(same, a_base * moved, a_base + a_ft)
    return torch.stack([diff.sum(), torch.maximum(a_base, a_ft).sum()]).double()


def _max_offdiag_cos(D: torch.Tensor) -> torch.Tensor:
    c = (D @ D.T).abs()
    c.fill_diagonal_(0)
    return c.max()
