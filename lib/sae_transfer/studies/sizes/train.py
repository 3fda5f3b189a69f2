"""The small model's SAE as the large model's starting point: the large model's SAE trained twice with the large
SAE's own recipe (at the small SAE's width) on the same tokens, from sae_lens's initialisation and from the
collapsed (transferred) SAE, its explained variance on held-out text along the way, and the compute each needs to
reach what training from scratch reaches at the end (Chen et al. report 30-50% less, the stitch's cost included)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from sae_transfer.core.specs import data_spec
from sae_transfer.data.tokens import TokenSpec, token_batches, token_windows
from sae_transfer.models.hooks import residual_index
from sae_transfer.models.load import SpecError, load_local_sae, parse_spec
from sae_transfer.passes.sae_metrics import sae_pass
from sae_transfer.zoo.sae import train_checkpointed, training_recipe
from sae_transfer.zoo.store import Zoo


def sae_recipe(spec: str, zoo: str) -> dict[str, Any]:
    """How the large SAE was trained: architecture, sparsity (L1 or k), lr and batch, from the zoo's recipe or a
    local directory's ``runner_cfg.json`` (sae_lens writes it next to the weights)."""
    kind, ref = parse_spec(spec, "large_sae", sae=True)
    if kind == "zoo":
        r = Zoo.open(zoo).recipe.saes[ref]
        return {"architecture": r.architecture, "sparsity": r.sparsity, "lr": r.lr, "batch_tokens": r.batch_tokens}
    runner = Path(ref) / "runner_cfg.json"
    if kind != "local" or not runner.exists():
        raise SpecError(f"large_sae={spec!r}: the initialisation study retrains it with its own recipe, which only a "
                        "zoo SAE or a local directory with sae_lens's runner_cfg.json records; set sae_tokens=0")
    arch, sparsity = training_recipe(Path(ref))
    cfg = json.loads(runner.read_text())
    return {"architecture": arch, "sparsity": sparsity, "lr": cfg["lr"], "batch_tokens": cfg["train_batch_size_tokens"]}


def _blocks_params(model, n_blocks: int) -> int:
    return sum(p.numel() for b in model.blocks[:n_blocks] for p in b.parameters())


def flops_per_token(s, hooks: tuple[int, int], d_sae: int) -> dict[str, float]:
    """Training FLOPs a token, 2 per multiply-add, backward twice the forward, attention's own products left out
    (as in Kaplan et al.'s 6N): the large model's forward to the hook plus an SAE step (4 d d_sae forward), and a
    stitch step (both forwards to their hooks, four maps of 2 d_small d_large forward)."""
    lm_small = 2 * _blocks_params(s.source, hooks[0])
    lm_large = 2 * _blocks_params(s.target, hooks[1])
    d_s, d_l = s.source.cfg.d_model, s.target.cfg.d_model
    return {"sae": lm_large + 3 * 4 * d_l * d_sae, "stitch": lm_small + lm_large + 3 * 4 * 2 * d_s * d_l}


def tokens_to_reach(tokens: list[int], ev: list[float], target: float) -> float | None:
    """The first number of training tokens at which the curve reaches ``target`` (linear between points)."""
    for i, (t, e) in enumerate(zip(tokens, ev)):
        if e >= target:
            if i == 0:
                return float(t)
            t0, e0 = tokens[i - 1], ev[i - 1]
            return float(t0 + (target - e0) / (e - e0) * (t - t0))
    return None


def curve_point(r: dict) -> dict[str, float]:
    """A point of a training curve from an SAE-metric result (``SAEMetrics.result()``'s ``"all"``)."""
    return {"ev": r["ev_global"], "l0_frac": r["l0_frac"], "delta_ce": r["delta_ce"], "dead": r["dead_frac"]}


def init_study(s, transferred, zero_shot: dict, stitch_log: dict, study, setup) -> dict[str, Any] | None:
    """Both training runs and their curves (``None`` when ``study.sae_tokens`` is 0). ``zero_shot``: the
    transferred SAE's metrics on the held-out text of the curve (already measured), its point at 0 tokens."""
    if not study.sae_tokens:
        return None
    recipe = sae_recipe(setup.sae, setup.zoo)
    data = study.datasets[0]
    train = TokenSpec(str(data_spec(data).with_split("train")),
                      study.sae_tokens + 64 * study.context_size, study.context_size, study.batch_size, study.seed)
    windows = token_windows(train, s.tokenizer, setup.zoo)
    held = next(t for t in study.eval_specs() if t.dataset == data)
    d_sae = transferred.cfg.d_sae  # both runs at the transferred SAE's width: the one thing the recipe cannot set

    def ev_of(sae) -> dict[str, float]:
        return curve_point(sae_pass(s.target, sae, s.target_hook, token_batches(held, s.tokenizer, setup.zoo),
                                    float("inf"), held.n_batches(), desc="curve point", memory=setup.memory)["all"])

    curves = {}
    for name, init in (("from scratch", None), ("from the transferred SAE", transferred)):
        with tempfile.TemporaryDirectory() as tmp:
            points = train_checkpointed(
                s.target, windows, s.target_hook, d_sae, recipe["architecture"], recipe["sparsity"], study.sae_tokens,
                recipe["lr"], study.seed, Path(tmp), str(s.target.cfg.device), recipe["batch_tokens"],
                study.sae_checkpoints - 1, init=None if init is None else init.state_dict())
            rows = [{"tokens": 0, **curve_point(zero_shot)}] if init is not None else []
            rows += [{"tokens": p["tokens"], **ev_of(load_local_sae(Path(p["path"]), str(s.target.cfg.device)))}
                     for p in points]
        curves[name] = rows
    scratch, warm = curves["from scratch"], curves["from the transferred SAE"]
    target = scratch[-1]["ev"]
    flops = flops_per_token(s, (residual_index(s.source_hook), residual_index(s.target_hook)), d_sae)
    reach = tokens_to_reach([r["tokens"] for r in warm], [r["ev"] for r in warm], target)
    scratch_flops = scratch[-1]["tokens"] * flops["sae"]
    stitch_flops = stitch_log["tokens"] * flops["stitch"]
    out = {"curves": curves, "target_ev": target, "recipe": {**recipe, "d_sae": d_sae}, "flops_per_token": flops,
           "scratch_tokens": scratch[-1]["tokens"], "init_tokens_to_target": reach,
           "scratch_flops": scratch_flops, "stitch_flops": stitch_flops, "init_flops": None, "saved": None}
    if reach is not None:
        out["init_flops"] = reach * flops["sae"] + stitch_flops
        out["saved"] = float(1 - out["init_flops"] / scratch_flops)
        out["saved_without_stitch"] = float(1 - reach / scratch[-1]["tokens"])
    return out
