"""``check``: one request (base, one finetune or a series of checkpoints, SAE, datasets), every cheap check
first, models loaded once, one streamed pass per (finetune, dataset), an optional SAE adaptation; plain data out.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sae_transfer.check.adapt import adapt, adaptation_windows, training_tokens_spec
from sae_transfer.check.measure import CheckSpec, add_contexts, check_pass, live_base
from sae_transfer.core import verdict as V
from sae_transfer.core.memory import check_memory
from sae_transfer.core.specs import is_zoo
from sae_transfer.data.tokens import check_dataset_source, check_text_holds, token_windows
from sae_transfer.models.configs import check_reads
from sae_transfer.models.load import (check_dtype, check_load_fits, check_pair_kinds, check_source, context_limit,
                                      load_finetune, load_local_sae, load_pair, load_tokenizer_for, parse_spec,
                                      resolve_device)
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.outliers import Outliers, outlier_threshold
from sae_transfer.passes.sae_metrics import pass_plan, sae_pass
from sae_transfer.zoo.store import Zoo, split_spec

#: The version of ``check.json``'s layout (its fields are documented in the README).
SCHEMA = 2  # 2: exit statuses 10 (degraded) and 11 (broken), no longer 1 and 3


@dataclass(frozen=True)
class CheckRequest:
    """What to check. ``finetunes``: one model, or checkpoints in training order (``--watch``). ``datasets``
    empty: a zoo finetune's own domain. ``adapt_tokens`` > 0: fine-tune the SAE on the last finetune for that
    many tokens at ``adapt_lr`` and measure it again."""

    base: str
    finetunes: tuple[str, ...]
    sae: str
    datasets: tuple[str, ...] = ()
    hook: str = ""
    zoo: str = "default"
    device: str = "auto"
    dtype: str = "float32"
    spec: CheckSpec = field(default_factory=CheckSpec)
    adapt_tokens: int = 0
    adapt_lr: float = 3e-4
    memory: str = "auto"

    @property
    def setup(self) -> PairSetup:
        return PairSetup(self.base, self.sae, self.hook, self.zoo, self.device, self.dtype, self.memory)


def step_of(spec: str, index: int, zoo: str) -> int:
    """A checkpoint's position in training: a zoo spec's ``@STEP`` (its last step without one), the last number
    in a directory's name (``checkpoint-500``), else its index in the series."""
    kind, ref = parse_spec(spec, "finetune")
    if kind == "zoo":
        name, step = split_spec(ref)
        return step if step is not None else Zoo.open(zoo).recipe.models[name].steps
    numbers = re.findall(r"\d+", Path(ref).name)
    return int(numbers[-1]) if numbers else index


def watch_series(target: str, zoo: str) -> tuple[str, ...]:
    """The checkpoints ``--watch`` means: every saved checkpoint (step > 0) of a zoo finetune ``zoo:NAME``, or
    every model directory inside ``DIR`` (ordered by the last number in its name)."""
    if is_zoo(target):
        check_source(target, "watch", zoo)
        saved = Zoo.open(zoo).checkpoints(target)
        if saved is None:
            raise ValueError(f"watch={target!r}: that zoo model saves no checkpoints")
        return tuple(f"{target}@{s}" for s in saved.steps if s > 0)
    root = Path(target.removeprefix("local:"))
    if not root.is_dir():
        raise ValueError(f"watch={target!r}: no such directory; give zoo:NAME or a directory of checkpoints")
    dirs = [d for d in root.iterdir() if (d / "config.json").exists()]
    if not dirs:
        raise ValueError(f"watch={target!r}: no model directory (one with a config.json) inside it")
    key = lambda d: (int(re.findall(r"\d+", d.name)[-1]) if re.findall(r"\d+", d.name) else -1, d.name)  # noqa: E731
    return tuple(f"local:{d}" for d in sorted(dirs, key=key))


def preflight(req: CheckRequest) -> CheckRequest:
    """Every check that needs no weights, with one-line errors naming the parameter; returns the request with
    its datasets and context size resolved."""
    if not req.finetunes:
        raise ValueError("finetune: give --finetune SPEC or --watch (zoo:NAME or a directory of checkpoints)")
    check_source(req.base, "base", req.zoo)
    for ft in req.finetunes:
        check_source(ft, "finetune", req.zoo)
        check_pair_kinds(req.base, ft)
    check_source(req.sae, "sae", req.zoo, sae=True)
    check_reads(req.base, req.sae, req.hook, req.zoo)
    check_dtype(req.dtype)
    resolve_device(req.device)
    check_memory(req.memory)
    check_load_fits([("base", req.base), *(("finetune", ft) for ft in req.finetunes)], req.zoo, req.dtype,
                    req.memory, req.device)
    Outliers.parse(req.spec.outliers)
    datasets = req.datasets
    if not datasets:
        own = Zoo.open(req.zoo).own_domain(req.finetunes[-1])
        if not own:
            raise ValueError("dataset: give --dataset zoo:DOMAIN, verses:LANG, json:PATH or hub:NAME (only a "
                             "single-domain zoo finetune has a default: its own domain)")
        datasets = (own,)
    limit = context_limit(req.base, req.zoo)
    spec = req.spec
    if limit is not None and spec.context_size > limit:
        raise ValueError(f"context_size={spec.context_size} exceeds the base model's context of {limit} tokens; "
                         f"use context_size <= {limit}")
    tokenizer = None if is_zoo(req.base) else load_tokenizer_for(req.base, "base", req.zoo)
    for ds in datasets:
        spec.validate(ds)
        check_dataset_source(ds)
        if tokenizer is not None:
            check_text_holds(spec.tokens(ds), tokenizer, req.zoo, "tokens")
    if req.adapt_tokens < 0 or req.adapt_lr <= 0:
        raise ValueError(f"adapt_tokens={req.adapt_tokens}, adapt_lr={req.adapt_lr}: tokens must be >= 0 and the "
                         "learning rate positive")
    return replace(req, datasets=tuple(datasets))


def run(req: CheckRequest, out: Path, final: Path | None = None) -> dict[str, Any]:
    """The whole check as plain data (``check.json``'s content); the adapted SAE, if asked for, goes to
    ``out/adapted-sae``, and is recorded at ``final/adapted-sae`` (``final``: where ``out`` is moved once the
    check is done)."""
    req = preflight(req)
    started = time.time()
    spec = req.spec
    pair = load_pair(req.base, req.finetunes[0], req.sae, req.hook or None, req.zoo, req.device, req.dtype)
    kwargs = dict(getattr(pair.sae.cfg.metadata, "model_from_pretrained_kwargs", None) or {})
    windows = {ds: token_windows(spec.tokens(ds), pair.tokenizer, req.zoo) for ds in req.datasets}
    setup = replace(req.setup, hook=pair.hook)
    thresholds = {ds: outlier_threshold(setup, spec.outliers, spec.tokens(ds), lambda: pair) for ds in req.datasets}
    results = []
    for i, ft in enumerate(req.finetunes):
        if i:
            pair.finetune = None  # free the previous checkpoint first
            pair.finetune = load_finetune(req.base, ft, req.zoo, pair.tokenizer, req.device, req.dtype,
                                          from_pretrained_kwargs=kwargs)
        for ds in req.datasets:
            t0 = time.time()
            base = live_base(pair.base, pair.sae, pair.hook, thresholds[ds],
                             pass_plan(pair.base, pair.sae, spec.context_size, spec.batch_size, req.memory))
            r = check_pass(base, pair.finetune, pair.sae, pair.hook, windows[ds], thresholds[ds], spec,
                           desc=f"check {ft} on {ds}", memory=req.memory)
            add_contexts(r, pair.tokenizer, windows[ds])
            results.append({"finetune": ft, "step": step_of(ft, i, req.zoo), "dataset": ds, **r,
                            "seconds": time.time() - t0})
    adapted = _adapt(req, pair, windows, thresholds, results, out) if req.adapt_tokens else None
    if adapted is not None:
        adapted["path"] = str((final or out) / Path(adapted["path"]).relative_to(out))
    worst = V.worst(r["verdict"] for r in results)
    return {"schema": SCHEMA, "thresholds": V.thresholds(), "verdict": worst, "exit_status": V.EXIT_STATUS[worst],
            "request": {**{k: v for k, v in asdict(req).items() if k != "spec"}, "hook": pair.hook,
                        "spec": asdict(spec)},
            "results": results, "adapt": adapted, "seconds": time.time() - started}


def _adapt(req: CheckRequest, pair, windows: dict, thresholds: dict, results: list[dict], out: Path) -> dict:
    """Fine-tune the SAE on the last finetune (first dataset) and measure the adapted SAE on the tokens the check
    measured, beside the check's own numbers for the base SAE on base and finetune."""
    ds, spec = req.datasets[0], req.spec
    measured = next(r for r in results if r["finetune"] == req.finetunes[-1] and r["dataset"] == ds)
    train_spec = training_tokens_spec(ds, req.adapt_tokens, spec.context_size, spec.tokens(ds))
    path = adapt(req.sae, pair.sae, pair.finetune, adaptation_windows(train_spec, pair.tokenizer, req.zoo),
                 req.adapt_tokens, req.adapt_lr, spec.seed, out / "adapted-sae", req.zoo,
                 resolve_device(req.device))
    adapted = load_local_sae(path, resolve_device(req.device), req.dtype)
    tokens = windows[ds][: measured["batches"] * spec.batch_size]
    r = sae_pass(pair.finetune, adapted, pair.hook, tokens.split(spec.batch_size), thresholds[ds],
                 measured["batches"], desc="adapted SAE", memory=req.memory)["kept"]
    m = {k: v["value"] for k, v in measured["metrics"].items()}

    def of(model: str) -> dict:
        l0 = m["l0_base"] * (1.0 if model == "base" else m["l0_ratio"])
        return {"ev_token": m[f"ev_{model}"], "ce_recovered": m[f"ce_recovered_{model}"],
                "delta_ce": m[f"delta_ce_{model}"], "kl": m[f"kl_{model}"], "l0": l0}
    return {"finetune": req.finetunes[-1], "dataset": ds, "training_dataset": train_spec.dataset,
            "training_tokens": req.adapt_tokens, "lr": req.adapt_lr, "path": str(path),
            "base_sae_on_base": of("base"), "base_sae_on_finetune": of("finetune"),
            "adapted_sae_on_finetune": {k: r[k] for k in ("ev_token", "ce_recovered", "delta_ce", "kl", "l0")}}
