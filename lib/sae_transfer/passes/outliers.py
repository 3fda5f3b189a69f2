"""Which tokens count as outliers (residual norm above a threshold), and the base's mean norm that relative
thresholds scale. One rule drives every metric of the SAE-metric, feature and predict chapters."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sae_transfer.data.tokens import TokenSpec, token_batches
from sae_transfer.models.hooks import stop_layer
from sae_transfer.passes.cache import cached, measurement_key


@dataclass(frozen=True)
class Outliers:
    """Which tokens count as outliers: ``none``, ``NX`` (N times the base's mean residual norm) or ``N`` (absolute).

    The seed used absolute norms (about 289 for Gemma-2b, 200 for Mistral-7B); a multiple of the base's mean
    norm carries over to models of any scale.
    """

    kind: str  # "none", "relative" or "absolute"
    value: float = math.inf

    VALID = "'none', a multiple of the base's mean norm such as '3x', or an absolute norm such as '289'"

    @classmethod
    def parse(cls, text: str) -> Outliers:
        t = str(text).strip().lower()
        if t == "none":
            return cls("none")
        relative = t.endswith("x")
        try:
            value = float(t[:-1] if relative else t)
        except ValueError:
            raise ValueError(f"outliers={text!r}: use {cls.VALID}") from None
        if not value > 0 or math.isinf(value):
            raise ValueError(f"outliers={text!r} must be positive and finite; use {cls.VALID}")
        return cls("relative" if relative else "absolute", value)

    def threshold(self, base_mean_norm: Callable[[], float]) -> float:
        """The absolute norm above which a token is an outlier; ``base_mean_norm`` is called only if needed."""
        if self.kind == "none":
            return math.inf
        return self.value * base_mean_norm() if self.kind == "relative" else self.value


def finite_or_none(x: float) -> float | None:
    """Thresholds as JSON: ``inf`` (no outliers) becomes None."""
    return x if math.isfinite(x) else None


@torch.no_grad()
def mean_norm_pass(model, hook: str, batches: Iterable[torch.Tensor], n_batches: int | None = None) -> float:
    """Mean residual norm at ``hook`` over all tokens of ``batches`` [batch, pos] (stops after the hook's block)."""
    total, n = 0.0, 0
    stop = stop_layer([hook], model.cfg.n_layers)
    for tokens in tqdm(batches, total=n_batches, desc="mean norm", unit="batch", leave=False):
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, stop_at_layer=stop,
                                        return_type=None)
        total += float(cache[hook].float().norm(dim=-1).double().sum())
        n += cache[hook].shape[0] * cache[hook].shape[1]
    return total / n


def outlier_threshold(setup, outliers: str, spec: TokenSpec, load: Callable) -> float:
    """The absolute outlier norm of rule ``outliers`` on ``spec``'s tokens. ``load() -> ModelPair`` is called only
    when the base's mean norm is needed and not cached."""
    def mean_norm() -> float:
        def run() -> dict:
            pair = load()
            return {"mean_norm": mean_norm_pass(pair.base, pair.hook, token_batches(spec, pair.tokenizer, setup.zoo),
                                                spec.n_batches())}
        return cached("mean-norm", measurement_key("mean-norm", __name__, setup, tokens=spec), run)["mean_norm"]
    return Outliers.parse(outliers).threshold(mean_norm)
