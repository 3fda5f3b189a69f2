"""The SAE-metric chapter's "In short": two sentences written from its headline numbers,
so the box at the top of the page can never disagree with the page; the introduction reads it back from
``results.json``."""

from __future__ import annotations

from typing import Any

from sae_transfer.core.labels import short, slug
from sae_transfer.core.verdict import pair_words


def in_short(h: dict[str, Any], own: list[tuple[str, str]]) -> str:
    parts = []
    for ft, ds in own:
        b, f = ({m: h[f"{m}_{key}"] for m in ("ev_token", "ce_recovered")}
                for key in (f"base_{short(ds)}", slug(ft, ds)))
        parts.append(f"**{pair_words(b, f)}** on `{short(ft)}` (explained variance per token {f['ev_token']:.3f} "
                     f"on {short(ds)}, {b['ev_token']:.3f} on the base; CE loss recovered {f['ce_recovered']:.3f}, "
                     f"{b['ce_recovered']:.3f})")
    worst = max(own, key=lambda p: h[f"delta_ce_{slug(*p)}"])
    return ("By explained variance and CE loss recovered (two of `check`'s three criteria), the base SAE "
            + "; it ".join(parts) + ". Splicing it into the finetune costs up to "
            f"{h[f'delta_ce_{slug(*worst)}']:.3f} nats of cross-entropy (`{short(worst[0])}`), against "
            f"{h[f'delta_ce_base_{short(worst[1])}']:.3f} in the base. `check`'s verdict adds its third criterion, "
            "the regular features' activation similarity (the features chapter).")


#: A token norm this many times the mean of the others is a massive activation (large models grow them, mostly
#: on BOS, at hundreds of times the typical norm; the seed's outlier filter was made for them).
MASSIVE = 10.0


def norm_reading(results: dict[str, Any]) -> str:
    """This base's residual norms at the SAE's hook, from the measured norms (``SAEMetrics``'s ``norms``) on the
    first dataset: BOS against the mean of the other tokens, and the largest other token against that mean."""
    ds, r = next(iter(results["base"].items()))
    n = r["norms"]
    bos, peak = n["bos"] / n["mean"], n["max"] / n["mean"]
    size = "*smaller* than" if bos < 0.9 else "about that of" if bos <= 1.1 else "*larger* than"
    text = (f"In the base, on {short(ds)}, the BOS token's residual norm at the SAE's hook is {n['bos']:.3g}, "
            f"{bos:.2g} times the mean norm of the other tokens ({n['mean']:.3g}): {size} the average token's; the "
            f"largest other token's norm is {peak:.2g} times that mean.")
    if max(bos, peak) >= MASSIVE:
        return text + (" Norms this far above the mean are the massive activations of large models that made the "
                       "seed's outlier filter necessary; the table shows what filtering them changes.")
    return text + (f" Neither is a massive activation (over {MASSIVE:g} times the mean, as billion-parameter models "
                   "grow mostly on BOS, and as made the seed's outlier filter necessary).")
