"""Across architectures: a model of another architecture, trained on the base's tokenizer, data and budget, stitched
to the base (``methods.stitched_pair``, the sizes chapter's machinery), its SAE carried onto the base, and the base
SAE's features matched by activation correlation on the same tokens; beside it, the same for the base's own
architecture from another seed (the twin: the floor a reseed already costs) and a second seed of the base SAE (the
ceiling of feature matching). Seed 000's stability question, for architectures.

``measure(setup, study)``: ``setup`` is the base with its SAE, the target of every stitch. For each partner (the
other architecture, the twin), cached by every input: the stitch trained on both models' residuals at the two SAEs'
layers, one held-out pass per dataset, the partner's SAE carried onto the base and measured with the SAE-metric
pass, and per base feature its best counterpart's correlation. Then shares of the base SAE's features with a
counterpart, with intervals over features, and the paired difference of each partner from the floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sae_transfer.core.stats import paired_difference, share_interval
from sae_transfer.data.tokens import check_token_spec
from sae_transfer.methods import stitched_pair
from sae_transfer.methods.stitch import StitchConfig
from sae_transfer.methods.stitched_pair import CORE, MATCH_LEVELS, Pair, Roles, StitchTokens, trained_stitch
from sae_transfer.models.load import parse_spec
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.cache import cached, measurement_key, sae_identity, tokens_identity
from sae_transfer.studies.parameters import Config
from sae_transfer.zoo.recipe import block_words


@dataclass(frozen=True, kw_only=True)
class AcrossStudy(Config, StitchTokens):
    """What a stitched pair reads (``StitchTokens``), the stitch's learning rate, ``top_k`` contexts per feature and
    ``n_boot`` resamples of the intervals over features."""

    stitch_lr: float
    top_k: int
    n_boot: int


def _n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def roles(partner: str) -> Roles:
    """The chapter's words for a stitched pair: the partner (``other`` or ``twin``) is the source, the base the
    target; the base SAE's second seed is the ceiling."""
    return Roles(source=partner, target="base", source_sae=f"{partner}_sae", target_sae="sae",
                 why="stitching needs token-aligned streams: the architectures compared share the base's tokenizer",
                 source_word=partner, target_word="base")


def check_inputs(base: str, sae: str, partner: str, partner_sae: str, second_sae: str, zoo: str, role: str,
                 device: str = "cpu", dtype: str = "float32"):
    """``stitched_pair.check_inputs`` in the chapter's parameter names: before any weights."""
    return stitched_pair.check_inputs(base, sae, partner, partner_sae, second_sae, zoo, device, dtype, roles(role))


def measure_partner(setup: PairSetup, role: str, partner: str, partner_sae: str, second_sae: str,
                    study: AcrossStudy, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """One partner stitched to the base and read on held-out text (``stitched_pair.read_pair``), cached.
    ``base``: ``{"model": ...}`` once some partner has loaded it, shared between partners (filled here)."""
    held: dict[str, Pair] = {}
    base = {} if base is None else base

    def pair() -> Pair:
        if "p" not in held:
            held["p"] = stitched_pair.load(setup, partner, partner_sae, second_sae, roles(role), base.get("model"))
            base["model"] = held["p"].target
        return held["p"]

    parse_spec(partner, role)
    parse_spec(partner_sae, f"{role}_sae", sae=True)
    st, log = trained_stitch(setup, partner, partner_sae, study.train_specs(),
                             StitchConfig(study.stitch_tokens, lr=study.stitch_lr, seed=study.seed), pair)
    key = measurement_key("across", __name__, setup, model=partner, partner_sae=sae_identity(partner_sae, setup.zoo),
                          second_sae=sae_identity(second_sae, setup.zoo) if second_sae else "",
                          specs=[tokens_identity(t, setup.zoo) for t in study.eval_specs()], study=asdict(study))

    def run() -> dict[str, Any]:
        p = pair()
        result, _ = stitched_pair.read_pair(p, st, study.eval_specs(), setup.zoo, setup.memory, study.top_k,
                                            roles(role))
        return {**result, "blocks": {"base": block_words(p.target.cfg.to_dict()),
                                     role: block_words(p.source.cfg.to_dict())},
                "n_params": {"base": _n_params(p.target), role: _n_params(p.source)}}

    return {**cached("across", key, run), "stitch_log": log}


def counterparts(pairs: dict[str, dict], n_boot: int, seed: int) -> dict[str, Any]:
    """Of the base SAE's living features, the share with a counterpart (best activation correlation >= ``CORE``)
    in each partner's SAE and in the second seed's (the ceiling), each with an interval over features, at every
    ``MATCH_LEVELS`` threshold; and each partner's paired difference from the twin (the floor), at ``CORE``."""
    first = next(iter(pairs.values()))["stability"]
    alive = np.asarray(first["density"]) > 0  # the base SAE's features firing on the held-out tokens (one pass each)
    best = {role: np.asarray(r["stability"]["corr"])[alive] for role, r in pairs.items()}
    if "ceiling_corr" in first:
        best["second seed"] = np.asarray(first["ceiling_corr"])[alive]
    out: dict[str, Any] = {
        "n_alive": int(alive.sum()), "n_features": len(alive), "threshold": CORE,
        "shares": {who: {str(t): share_interval(b >= t, n_boot, seed) for t in MATCH_LEVELS} for who, b in best.items()},
        "vs_floor": {}}
    if "twin" in best:
        for who in (w for w in best if w != "twin"):
            out["vs_floor"][who] = paired_difference(best[who] >= CORE, best["twin"] >= CORE, n_boot, seed)
    return out


def measure(setup: PairSetup, other: str, other_sae: str, study: AcrossStudy, twin: str = "", twin_sae: str = "",
            second_sae: str = "") -> dict[str, Any]:
    """Everything the architectures section shows (see the module docstring)."""
    for spec in study.train_specs() + study.eval_specs():
        check_token_spec(spec)
    partners = {"other": (other, other_sae), **({"twin": (twin, twin_sae)} if twin else {})}
    # the ceiling reads the base alone: measured once, beside the first partner; the base loads once for all
    base: dict[str, Any] = {}
    pairs = {role: measure_partner(setup, role, model, sae, second_sae if role == "other" else "", study, base)
             for role, (model, sae) in partners.items()}
    specs = {"base": setup.base, "sae": setup.sae, "other": other, "other_sae": other_sae, "twin": twin,
             "twin_sae": twin_sae, "second_sae": second_sae}
    return {"pairs": pairs, "counterparts": counterparts(pairs, study.n_boot, study.seed),
            "order": list(study.datasets), "specs": specs}
