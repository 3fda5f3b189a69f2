"""Training a crosscoder on a (base, finetune) pair: the study's settings, the paired activation stream and the
cached training run. Its own module so that the cache key of a trained crosscoder holds this code and the model's,
not the chapter's tables."""

from __future__ import annotations

from dataclasses import asdict, dataclass
import torch

from sae_transfer.core.io import fingerprint
from sae_transfer.core.paths import cache_dir
from sae_transfer.core.specs import data_spec, is_zoo
from sae_transfer.data.tokens import TokenSpec, check_token_spec, interleaved_batches
from sae_transfer.methods.crosscoder import Crosscoder, CrosscoderConfig, TrainConfig, fit
from sae_transfer.models.pairs import PairSetup, own_dataset
from sae_transfer.passes.cache import measurement_key, tokens_identity, trained
from sae_transfer.passes.stream import paired_activations
from sae_transfer.studies.parameters import Config


@dataclass(frozen=True, kw_only=True)
class DiffingStudy(Config):
    """``n_train`` crosscoder training tokens (half from the base's data, half from the finetune's), ``n_tokens``
    held-out evaluation tokens per dataset; ``d_sae = expansion * d_model`` latents, ``k`` active per token."""

    n_train: int
    n_tokens: int
    context_size: int
    batch_size: int
    expansion: int
    k: int
    lr: float
    batch_tokens: int
    top_k: int
    n_show: int
    base_data: str
    seed: int

    def training(self) -> dict:
        """What a trained crosscoder depends on (evaluation sizes left out, so changing them retrains nothing)."""
        return {k: v for k, v in asdict(self).items() if k not in ("n_tokens", "top_k", "n_show")}

    def datasets(self, setup: PairSetup, finetune: str) -> list[str]:
        """The base's data, then the finetune's own (one dataset when they are the same)."""
        own = own_dataset(setup, finetune, self.base_data)
        return [self.base_data] if own == self.base_data else [self.base_data, own]


def train_specs(study: DiffingStudy, datasets: list[str]) -> list[TokenSpec]:
    """Training tokens, an equal share from each dataset (5% more text than the steps need: the shuffle buffer
    holds some back at the end): a zoo corpus's train split, or the first windows of any other dataset."""
    share = int(-(-study.n_train // len(datasets)) * 1.05) + study.context_size
    return [TokenSpec(str(data_spec(d).with_split("train")), share, study.context_size,
                      study.batch_size, study.seed) for d in datasets]


def eval_specs(study: DiffingStudy, datasets: list[str]) -> list[TokenSpec]:
    """Held-out tokens of each dataset: a zoo corpus's held-out split, or the windows after the training ones."""
    train = train_specs(study, datasets)
    return [TokenSpec(d, study.n_tokens, study.context_size, study.batch_size, study.seed)
            if is_zoo(d) else t.after(study.n_tokens) for d, t in zip(datasets, train)]


def trained_crosscoder(setup: PairSetup, finetune: str, load, study: DiffingStudy) -> tuple[Crosscoder, dict]:
    """The pair's crosscoder, trained once per key (weights in ``<cache>/crosscoders/``, the log in the
    measurement cache)."""
    specs = train_specs(study, study.datasets(setup, finetune))
    for s in specs:
        check_token_spec(s)
    key = measurement_key("crosscoder", __name__, setup, finetune=finetune,
                          specs=[tokens_identity(s, setup.zoo) for s in specs], study=study.training())
    path = cache_dir() / "crosscoders" / f"{fingerprint(key)}.pt"

    def train() -> tuple[dict, dict]:
        pair = load()
        d = pair.base.cfg.d_model
        cfg = CrosscoderConfig(d, study.expansion * d, study.k)
        tc = TrainConfig(study.n_train, study.batch_tokens, study.lr, seed=study.seed)
        torch.manual_seed(study.seed)
        cc, log = fit(cfg, tc, lambda: paired_activations(pair.base, pair.finetune, pair.hook,
                                                          interleaved_batches(specs, pair.tokenizer, setup.zoo)))
        return cc.state(), log

    state, log = trained("crosscoder", key, path, train)
    return Crosscoder.from_state(state), log
