"""Training what the known-answers chapter scores: the study's settings, the world's base SAE and each case's
crosscoder, trained once per key. Its own module so that the cache key of a trained SAE or crosscoder holds this
code and what it imports, not the chapter's scores and tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from sae_transfer.core.io import fingerprint
from sae_transfer.core.paths import cache_dir
from sae_transfer.data.synthetic import Edits, PlantedPair, World
from sae_transfer.methods.crosscoder import Crosscoder, CrosscoderConfig, TrainConfig, fit
from sae_transfer.passes.cache import code_fingerprint, trained
from sae_transfer.studies.parameters import Config

@dataclass(frozen=True, kw_only=True)
class KnownStudy(Config):
    """The world and edits at the default difficulty, how much each method trains and measures, and the sweeps.

    ``sae_samples`` draws train the base SAE, ``sae_batch`` a step (``sae_k`` active latents per draw on average,
    0 for the base's true L0; as many latents as base features); ``train_tokens`` draws, both models' activations
    of each, train a crosscoder of ``expansion`` latents per feature of base and finetune together, ``k`` active;
    ``n_tokens`` held-out draws evaluate every method."""

    n_features: int
    d_model: int
    share: float
    angle: float
    rarer_keep: float
    new: float
    sae_samples: int
    sae_batch: int
    sae_lr: float
    sae_k: float
    train_tokens: int
    expansion: int
    k: int
    lr: float
    batch_tokens: int
    n_tokens: int
    context_size: int
    batch_size: int
    n_regular: int
    severities: list
    angles: list
    token_sweep: list
    features_per_dim: list
    zoo: str
    base: str
    sae: str
    dataset: str
    planted_train_tokens: int
    planted_tokens: int
    planted_k: int
    planted_severities: list
    pattern_tokens: int
    pattern_steps: int
    pattern_lr: float
    device: str
    dtype: str
    memory: str
    n_boot: int
    seed: int

    def world(self, n_features: int | None = None) -> World:
        return World(n_features=n_features or self.n_features, d_model=self.d_model, seed=self.seed)

    def edits(self, **changes) -> Edits:
        return replace(Edits(share=self.share, angle=self.angle, rarer_keep=self.rarer_keep, new=self.new,
                             seed=self.seed), **changes)

    def case(self) -> dict:
        """What one case's numbers depend on beyond its world, edits and SAE: the crosscoder's training and the
        evaluation (the sweeps' lists left out, so adding a point re-measures no other)."""
        return {k: v for k, v in asdict(self).items() if k not in (*PLANTED, *SWEEP_LISTS, *WORLD)}

    def planted(self, context_size: int, batch_size: int) -> "KnownStudy":
        """The settings of the second level (a real model's planted finetune): its crosscoder the diffing
        chapter's kind (as many latents as the SAE's features and the new ones, ``planted_k`` active), trained on
        ``planted_train_tokens`` and evaluated on ``planted_tokens``, in windows of ``context_size``."""
        return replace(self, train_tokens=self.planted_train_tokens, n_tokens=self.planted_tokens, expansion=1,
                       k=self.planted_k, context_size=context_size, batch_size=batch_size)

    def severity(self, s: float) -> Edits:
        """Severity ``s`` in [0, 1]: ``s`` of the base's features changed, new ones in the default proportion."""
        return self.edits(share=s, new=self.new * s / self.share if self.share else 0.0)


#: The fields a synthetic case's numbers do not depend on: the second level's, the sweeps' lists (adding a point
#: re-measures no other), and the world's and SAE's (their own key parts).
PLANTED = ("zoo", "base", "sae", "dataset", "planted_train_tokens", "planted_tokens", "planted_k",
           "planted_severities", "pattern_tokens", "pattern_steps", "pattern_lr", "device", "dtype", "memory")
SWEEP_LISTS = ("severities", "angles", "token_sweep", "features_per_dim")
WORLD = ("n_features", "d_model", "share", "angle", "rarer_keep", "new", "sae_samples", "sae_batch", "sae_lr", "sae_k")


def _key(what: str, **parts: Any) -> dict:
    return {"what": what, "code": code_fingerprint(__name__), **parts}


def base_sae(pair: PlantedPair, study: KnownStudy, seed: int):
    """The world's base SAE (sae_lens BatchTopK, trained by sae_lens's ``train_toy_sae``, kept as its inference
    SAE), trained once per (world, training settings, seed)."""
    from sae_lens import SAE

    k = study.sae_k or round(float(pair.p_base.sum()), 2)
    key = _key("synthetic-sae", world=asdict(pair.world), samples=study.sae_samples, batch=study.sae_batch,
               lr=study.sae_lr, k=k, seed=seed)
    path = cache_dir() / "synthetic" / f"sae-{fingerprint(key)}.pt"

    def train() -> tuple[dict, dict]:
        import logging

        from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
        from sae_lens.synthetic import train_toy_sae

        logging.getLogger("sae_lens").setLevel(logging.WARNING)
        fd, gen = pair.base_only()
        cfg = BatchTopKTrainingSAEConfig(d_in=pair.world.d_model, d_sae=pair.world.n_features, k=k,
                                         dtype="float32", device="cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sae = BatchTopKTrainingSAE(cfg)
            train_toy_sae(sae, fd, gen, training_samples=study.sae_samples, batch_size=study.sae_batch,
                          lr=study.sae_lr)
        weights = {k: v.detach().clone() for k, v in sae.state_dict().items()}
        sae.process_state_dict_for_saving_inference(weights)
        return {"cfg": sae.cfg.get_inference_sae_cfg_dict(), "weights": weights}, {"samples": study.sae_samples}

    state, _ = trained("synthetic-sae", key, path, train)
    sae = SAE.from_dict(state["cfg"])
    sae.load_state_dict(state["weights"])
    return sae.eval()


def crosscoder(pair: PlantedPair, study: KnownStudy) -> tuple[Crosscoder, dict]:
    """The case's crosscoder on paired draws of base and finetune, trained once per (world, edits, settings)."""
    key = _key("synthetic-crosscoder", **pair.key(),
               train=[study.train_tokens, study.expansion, study.k, study.lr, study.batch_tokens, study.seed])
    path = cache_dir() / "synthetic" / f"crosscoder-{fingerprint(key)}.pt"

    def train() -> tuple[dict, dict]:
        cfg = CrosscoderConfig(pair.d_in, study.expansion * pair.n_total, study.k)
        tc = TrainConfig(study.train_tokens, study.batch_tokens, study.lr, seed=study.seed)

        def batches():
            return pair.training_batches(study, seed=study.seed + 7)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(study.seed)
            cc, log = fit(cfg, tc, batches)
        return cc.state(), log

    state, log = trained("synthetic-crosscoder", key, path, train)
    return Crosscoder.from_state(state), log
