"""``python -m sae_transfer atlas -f atlas.yaml``: plan the jobs, run the base's passes once per SAE, run every
finetune job that has no whole output yet, and merge the outputs into one table.

Out directory: ``jobs/<id>.json`` (one per finetune job, named by the hash of its configuration), ``submitit/``
(the engine's logs and pickles), ``atlas.jsonl`` (one row per finetune, SAE and dataset, with provenance) and
``atlas.json`` (the summary: jobs run, skipped and failed, the stores' disk size, the configuration).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from sae_transfer.atlas.base_store import StoreRef, default_root, disk_bytes, weights_path
from sae_transfer.atlas.config import AtlasConfig
from sae_transfer.atlas.engine import local_slots, run_jobs
from sae_transfer.atlas.job import BaseJob, FinetuneJob, finetune_key, finished
from sae_transfer.check.run import step_of
from sae_transfer.core.memory import budget_bytes
from sae_transfer.core.io import fingerprint, mark_ours, write_json_atomic, write_text_atomic
from sae_transfer.core.provenance import device_description, git_commit, package_versions
from sae_transfer.core.specs import is_zoo, model_spec
from sae_transfer.models.configs import model_facts
from sae_transfer.models.load import LOAD_OVERHEAD, check_dtype, resolve_device
from sae_transfer.models.pairs import PairSetup
from sae_transfer.zoo.store import Zoo, split_spec

#: The version of ``atlas.jsonl``'s rows.
SCHEMA = 1


def _compute(spec: str, step: int, zoo: str) -> tuple[tuple[str, float], ...]:
    """A zoo finetune's training compute from its recipe: steps x lr and tokens seen; nothing for other models."""
    s = model_spec(spec)
    if s.source != "zoo":
        return ()
    recipe = Zoo.open(zoo).recipe
    m = recipe.models[split_spec(s.ref)[0]]
    if not m.parent:  # a base trained from scratch is not a finetune
        return ()
    return (("steps_x_lr", step * m.lr), ("tokens_seen", float(step * m.batch_size * recipe.context_size)))


def _job_bytes(cfg: AtlasConfig) -> int:
    """Memory one local job needs beyond its pass: the finetune's weights, and their conversion for a checkpoint
    that is not the zoo's (``LOAD_OVERHEAD``); twice that leaves its pass as much again."""
    facts = model_facts(cfg.finetunes[0], cfg.zoo) or model_facts(cfg.base, cfg.zoo)
    if facts is None:
        return 1 << 30
    over = 1.0 if is_zoo(cfg.finetunes[0]) else 1.0 + LOAD_OVERHEAD
    return int(2 * over * facts.n_params * check_dtype(cfg.dtype).itemsize)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The jobs of one atlas: base jobs still to run, finetune jobs (all, each with whether it is finished)."""

    base_jobs: tuple[BaseJob, ...]
    finetune_jobs: tuple[FinetuneJob, ...]
    done: tuple[bool, ...]
    slots: int
    stores: tuple[StoreRef, ...]  # every (SAE, dataset)'s stored pass


def plan(cfg: AtlasConfig, out: Path, store_root: Path) -> Plan:
    """Every job of the atlas, keyed by content (no weights load)."""
    device = resolve_device(cfg.device)
    slots = 1 if cfg.executor != "local" else local_slots(_job_bytes(cfg), cfg.memory, device, cfg.parallel)
    slots = min(slots, max(1, len(cfg.finetunes) * len(cfg.saes)))
    threads = max(1, (os.cpu_count() or 1) // slots) if cfg.executor == "local" else 0
    # Jobs that share the machine share the budget; ``memory`` never changes a result (``memory.py``).
    memory = cfg.memory if slots == 1 else str(budget_bytes(cfg.memory, device) // slots)
    base_jobs, ft_jobs, done, all_refs = [], [], [], []
    for sae in cfg.saes:
        setup = PairSetup(cfg.base, sae, cfg.hook, cfg.zoo, cfg.device, cfg.dtype, memory)
        refs = [StoreRef.of(setup, cfg.spec, ds, store_root) for ds in cfg.datasets]
        all_refs += refs
        if not all(r.complete() for r in refs) or not weights_path(setup, store_root).exists():
            base_jobs.append(BaseJob(setup, cfg.spec, cfg.datasets, store_root, threads))
        stores = [r.key for r in refs]
        for i, ft in enumerate(cfg.finetunes):
            key = finetune_key(setup, ft, cfg.spec, cfg.datasets, stores)
            path = out / "jobs" / f"{fingerprint(key)}.json"
            step = step_of(ft, i, cfg.zoo)
            ft_jobs.append(FinetuneJob(setup, ft, step, cfg.spec, cfg.datasets, store_root, path, key,
                                       _compute(ft, step, cfg.zoo), threads))
            done.append(finished(path, key) is not None)
    return Plan(tuple(base_jobs), tuple(ft_jobs), tuple(done), slots, tuple(all_refs))


def run(cfg: AtlasConfig, out: Path, store_root: Path | None = None) -> dict[str, Any]:
    """The whole atlas; returns its summary (``atlas.json``'s content)."""
    started = time.time()
    store_root = Path(store_root or default_root())
    mark_ours(out)
    p = plan(cfg, out, store_root)
    engine = out / "submitit"
    base_out = run_jobs(p.base_jobs, cfg.executor, engine, slots=p.slots, slurm=cfg.slurm,
                        desc="atlas: the base's passes")
    failed = [{"job": o.name, "error": o.error} for o in base_out if o.error]
    todo = [j for j, d in zip(p.finetune_jobs, p.done) if not d]
    bad = {j.setup.sae: o.error for j, o in zip(p.base_jobs, base_out) if o.error}
    # a finetune job cannot run without its base's passes: those of a failed base job fail with its error
    failed += [{"job": j.name, "error": f"its base job failed: {bad[j.setup.sae]}"} for j in todo if j.setup.sae in bad]
    todo = [j for j in todo if j.setup.sae not in bad]
    ft_out = run_jobs(todo, cfg.executor, engine, slots=p.slots, slurm=cfg.slurm, desc="atlas: finetunes")
    failed += [{"job": o.name, "error": o.error} for o in ft_out if o.error]
    rows = merge(p.finetune_jobs)
    write_text_atomic(out / "atlas.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    summary = {"schema": SCHEMA, "config": dataclasses.asdict(cfg), "executor": cfg.executor, "slots": p.slots,
               "jobs": len(p.finetune_jobs), "skipped": sum(p.done), "ran": sum(o.error is None for o in ft_out),
               "base_jobs": len(p.base_jobs), "base_computed": [m["computed"] for o in base_out if o.result
                                                                for m in o.result],
               "models_loaded": len(p.base_jobs) + len(ft_out), "failed": failed, "rows": len(rows),
               "store_bytes": sum(disk_bytes(r) for r in p.stores if r.complete()), "seconds": time.time() - started,
               "provenance": {"commit": git_commit(), "versions": package_versions(),
                              "device": device_description(cfg.device)}}
    write_json_atomic(out / "atlas.json", summary)
    return summary


def merge(jobs: tuple[FinetuneJob, ...]) -> list[dict]:
    """One row per (finetune, SAE, dataset) from every whole job output, in the atlas's order: the check's
    verdict and metrics (value and interval), the predictors, and where the numbers came from."""
    rows = []
    for job in jobs:
        r = finished(job.out, job.key)
        if r is None:
            continue
        for res in r["results"]:
            m = res["metrics"]
            rows.append({"schema": SCHEMA, "finetune": r["finetune"], "step": r["step"], "sae": r["sae"],
                         "hook": r["hook"], "dataset": res["dataset"], "verdict": res["verdict"],
                         "decided": res["decided"], "tokens": res["tokens"], "stopped_early": res["stopped_early"],
                         **{k: v["value"] for k, v in m.items()},
                         **{f"{k}_lo": v["lo"] for k, v in m.items()}, **{f"{k}_hi": v["hi"] for k, v in m.items()},
                         "weight_deviation": r["weight_deviation"]["overall"], **r["compute"],
                         "job": r["job"], "store": res["store"], "seconds": res["seconds"],
                         **{f"made_{k}": v for k, v in r["provenance"].items() if k != "versions"},
                         "made_versions": r["provenance"]["versions"]})
    return rows


def read_rows(out: Path) -> list[dict]:
    """``atlas.jsonl``'s rows."""
    return [json.loads(line) for line in (Path(out) / "atlas.jsonl").read_text().splitlines() if line.strip()]
