"""Across model sizes: a stitch between a small and a large model of one family, and what it carries across (an SAE,
probes, a steering vector), with the features the two sizes share (seed 003; seed 000's stability question).

``measure(setup, small, small_sae, study)``: ``setup`` is the large model with its own SAE (the reference every
carried object is compared with); ``small`` and ``small_sae`` the other size. Steps, each cached:

1. the stitch trained on both models' residuals at the two SAEs' layers (train splits, streamed), and
2. one held-out pass per dataset: linear CKA between every pair of layers, the stitch's errors, next-token CE of
   the large model resumed from the stitched small activations, both SAEs' feature correlations (and the second
   seed's, the ceiling), running top-k contexts, domain means for steering, token counts: both
   ``methods.stitched_pair``, the small model its source and the large one its target (``ROLES``);
3. the SAE metrics (``sae_metrics.sae_pass``) of the small SAE on the small model, of the collapsed SAE and of
   the large SAE on the large model;
4. the large model's SAE trained from scratch and from the collapsed SAE, explained variance along the way
   (``sizes_train.py``);
5. probes and steering (``sizes_transfer.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


from sae_transfer.data import answerable
from sae_transfer.data.tokens import check_token_spec
from sae_transfer.methods import stitched_pair
from sae_transfer.methods.stitch import StitchConfig
from sae_transfer.methods.stitched_pair import Pair, Roles, StitchTokens, trained_stitch
from sae_transfer.models.load import parse_spec
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.cache import cached, measurement_key, sae_identity, tokens_identity
from sae_transfer.studies.parameters import Config
from sae_transfer.studies.sizes import train as sizes_train
from sae_transfer.studies.sizes import transfer as sizes_transfer


@dataclass(frozen=True, kw_only=True)
class SizesStudy(Config, StitchTokens):
    """What the stitched pair reads (``StitchTokens``); ``sae_tokens`` of training for each of the two large-model
    SAEs of the initialisation study (0: skip it), ``sae_checkpoints`` points on its curve."""

    stitch_lr: float
    sae_tokens: int
    sae_checkpoints: int
    steer_from: str
    steer_to: str
    probe_domains: tuple[str, ...]
    n_train: int
    n_test: int
    probe_k: int
    top_k: int
    context_chars: int

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steer_from", "steer_to"):
            if getattr(self, name) not in self.datasets:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of datasets={list(self.datasets)}")
        if self.steer_from == self.steer_to:
            raise ValueError(f"steer_from and steer_to are both {self.steer_to!r}; give two datasets")
        if self.sae_tokens and self.sae_checkpoints < 2:
            raise ValueError(f"sae_checkpoints={self.sae_checkpoints}: at least 2 points on the curve")
        answerable.check_sizes(self.n_train, self.n_test)
        answerable.check_domains(list(self.probe_domains))


#: The sizes chapter's words for the stitched pair's two roles.
ROLES = Roles(source="small", target="large", source_sae="small_sae", target_sae="large_sae",
              why="stitching needs token-aligned streams: two sizes of one family", source_word="small",
              target_word="large")


def check_inputs(large: str, large_sae: str, small: str, small_sae: str, second_sae: str, zoo: str,
                 device: str = "cpu", dtype: str = "float32") -> tuple[Any, dict[str, Any]]:
    """``stitched_pair.check_inputs`` in the chapter's parameter names: before any weights."""
    return stitched_pair.check_inputs(large, large_sae, small, small_sae, second_sae, zoo, device, dtype, ROLES)


def measure(setup: PairSetup, small: str, small_sae: str, study: SizesStudy, second_sae: str = "") -> dict[str, Any]:
    """Everything the chapter shows, cached by every input (see the module docstring)."""
    for spec in study.train_specs() + study.eval_specs():
        check_token_spec(spec)
    held: dict[str, Pair] = {}

    def sizes() -> Pair:
        if "s" not in held:
            held["s"] = stitched_pair.load(setup, small, small_sae, second_sae, ROLES)
        return held["s"]

    parse_spec(small, "small")
    parse_spec(small_sae, "small_sae", sae=True)
    st, log = trained_stitch(setup, small, small_sae, study.train_specs(),
                             StitchConfig(study.stitch_tokens, lr=study.stitch_lr, seed=study.seed), sizes)
    key = measurement_key("sizes", __name__, setup, model=small, small_sae=sae_identity(small_sae, setup.zoo),
                          second_sae=sae_identity(second_sae, setup.zoo) if second_sae else "",
                          specs=[tokens_identity(t, setup.zoo) for t in study.eval_specs()], study=asdict(study))

    def run() -> dict[str, Any]:
        s = sizes()
        result, transferred = stitched_pair.read_pair(s, st, study.eval_specs(), setup.zoo, setup.memory, study.top_k,
                                                      ROLES)
        per, metrics = result["datasets"], result["sae_metrics"]
        return {**result,
                "steering": sizes_transfer.steering(s, st, per, study, setup.zoo),
                "probes": sizes_transfer.probes_across(s, st, transferred, study),
                "init": sizes_train.init_study(s, transferred, metrics[study.datasets[0]]["transferred SAE on large"],
                                               log, study, setup)}

    out = cached("sizes", key, run)
    specs = {"small": small, "large": setup.base, "small_sae": small_sae, "large_sae": setup.sae,
             "second_sae": second_sae}
    return {**out, "stitch_log": log, "order": list(study.datasets), "specs": specs}
