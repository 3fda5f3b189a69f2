"""What every measurement of a (base, finetune) pair starts from: a ``PairSetup`` (which base, SAE, hook, zoo,
device, dtype and memory budget), and the one lazy ``PairLoader`` that loads models only when a measurement is not
cached."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sae_transfer.core.memory import check_memory
from sae_transfer.core.specs import is_zoo
from sae_transfer.models.load import (ModelPair, check_dtype, check_hook, compare_tokenizers, load_finetune, load_model,
                                      load_pair, load_sae, load_tokenizer_for, parse_spec, processing_of,
                                      resolve_device, with_finetune)
from sae_transfer.zoo.store import Zoo


@dataclass(frozen=True)
class PairSetup:
    """The fixed side of every comparison in a chapter. ``sae`` empty: a study that needs no SAE (residuals).

    ``hook`` empty means the hook the SAE was trained on. ``zoo`` is the profile ``zoo:`` specs refer to.
    ``memory`` bounds what a pass allocates on top of the weights (``memory.py``); it changes how batches are cut,
    never a result, so no cache key holds it.
    """

    base: str
    sae: str = ""
    hook: str = ""
    zoo: str = "default"
    device: str = "auto"
    dtype: str = "float32"
    memory: str = "auto"

    def __post_init__(self) -> None:
        parse_spec(self.base, "base")
        check_memory(self.memory)
        if self.sae:
            parse_spec(self.sae, "sae", sae=True)

    @property
    def zoo_handle(self) -> Zoo:
        return Zoo.open(self.zoo)

    @property
    def toy_base(self) -> bool:
        """Whether the base is one of the zoo's toy models, trained here from scratch (not a real pretrained
        model, whether the zoo's real family or the user's own): what a page may say of its base."""
        return is_zoo(self.base) and not self.zoo_handle.recipe.pretrained

    def loader(self) -> "PairLoader":
        return PairLoader(self)

    def tokenizer(self):
        """The base's tokenizer, without loading any weights."""
        return load_tokenizer_for(self.base, "base", self.zoo)

    def with_sae(self, sae: str) -> "PairSetup":
        return PairSetup(self.base, sae, self.hook, self.zoo, self.device, self.dtype, self.memory)


class PairLoader:
    """``loader(finetune) -> ModelPair``, loaded on first use; the base and SAE load once, and one finetune is in
    memory at a time, so a chapter that walks many checkpoints holds two models, not all of them."""

    def __init__(self, setup: PairSetup):
        self.setup = setup
        self._finetune: str | None = None
        self._pair: ModelPair | None = None

    def __call__(self, finetune: str) -> ModelPair:
        if self._finetune != finetune:
            s, loaded = self.setup, self._pair
            self._pair, self._finetune = None, None  # nothing half-loaded is reused if the load fails
            if loaded is None:
                self._pair = load_pair(s.base, finetune, s.sae, s.hook or None, s.zoo, s.device, s.dtype)
            else:  # the base and SAE stay; the previous finetune is freed before the next loads
                kept = replace(loaded, finetune=None)
                del loaded
                self._pair = with_finetune(kept, finetune, s.zoo, s.device, s.dtype)
            self._finetune = finetune
        return self._pair


def load_one_side(base: str, sae: str, hook: str | None = None, zoo: str = "default", device: str = "auto",
                  dtype: str = "float32", finetune: str | None = None) -> ModelPair:
    """The SAE, the base's tokenizer, and one model: the base, or with ``finetune`` that finetune alone (loaded
    into the base's architecture as ``load_pair`` does); the other side of the pair is None. For a base whose pass
    is computed once and stored, and finetunes that read it (the atlas)."""
    parse_spec(base, "base")
    parse_spec(sae, "sae", sae=True)
    resolved = resolve_device(device)
    tok = load_tokenizer_for(base, "base", zoo)
    sae_model = load_sae(sae, zoo, resolved, dtype)
    hook = hook or sae_model.cfg.metadata.hook_name
    if finetune is None:
        model = load_model(base, "base", zoo, tok, resolved, check_dtype(dtype),
                           from_pretrained_kwargs=processing_of(sae_model))
        check_hook(model, hook, sae_model)
        return ModelPair(model, None, sae_model, tok, hook, {"base": base, "sae": sae}, [])
    trimmed = compare_tokenizers(tok, load_tokenizer_for(finetune, "finetune", zoo))
    model = load_finetune(base, finetune, zoo, tok, resolved, dtype, trimmed, processing_of(sae_model))
    check_hook(model, hook, sae_model)
    return ModelPair(None, model, sae_model, tok, hook, {"base": base, "finetune": finetune, "sae": sae}, trimmed)


def own_domain_pairs(setup: PairSetup, finetunes: list[str], datasets: list[str]) -> list[tuple[str, str]]:
    """(finetune, dataset) with each finetune on the zoo domain it was finetuned on, when that is measured;
    otherwise on the first dataset (hub, local and mixed-domain finetunes)."""
    own = {ft: setup.zoo_handle.own_domain(ft) for ft in finetunes}
    return [(ft, own[ft] if own[ft] in datasets else datasets[0]) for ft in finetunes]


def own_dataset(setup: PairSetup, finetune: str, default: str = "zoo:prose") -> str:
    """The zoo domain a single-domain zoo finetune was trained on; ``default`` for anything else."""
    return setup.zoo_handle.own_domain(finetune) or default
