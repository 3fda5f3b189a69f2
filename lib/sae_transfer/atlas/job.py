"""One atlas job: a finetune (or the base, once per SAE) on every dataset of the atlas, run wherever the engine
puts it (this process, a local subprocess, a SLURM array task).

A finetune job loads the finetune and the SAE, never the base: the base's side of each check comes from its
stored pass (``base_store``). It measures what ``check`` measures, on the same tokens and with the same code
(``check.measure.check_pass``), plus the weight deviation from the base's stored parameters, and writes its result
to ``<out>/jobs/<id>.json``, ``id`` the hash of the job's whole configuration: a job whose output exists whole is
not run again.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from sae_transfer.atlas.base_store import StoredBase, StoreRef, base_parameters, build, disk_bytes, weights_path
from sae_transfer.check.measure import CheckSpec, add_contexts, check_pass
from sae_transfer.core.io import fingerprint, write_json_atomic
from sae_transfer.core.provenance import device_description, git_commit, package_versions
from sae_transfer.data.tokens import token_windows
from sae_transfer.methods.weights import weight_deviation
from sae_transfer.models.pairs import PairSetup, load_one_side
from sae_transfer.passes.cache import checksum, code_fingerprint, model_identity


# Both jobs are ``Checkpointable``: SLURM requeues one that is preempted or runs out of time with the same
# arguments, and it picks up where it stopped (whole shards and whole outputs are kept).

@dataclass(frozen=True)
class BaseJob(Checkpointable):
    """The base's passes for one SAE, every dataset: ``base_store.build``."""

    setup: PairSetup
    spec: CheckSpec
    datasets: tuple[str, ...]
    store_root: Path
    threads: int = 0

    @property
    def name(self) -> str:
        return f"base passes of {self.setup.base} with {self.setup.sae}"

    def __call__(self) -> list[dict]:
        _threads(self.threads)
        return build(self.setup, self.spec, self.datasets, self.store_root)


@dataclass(frozen=True)
class FinetuneJob(Checkpointable):
    """One finetune (``step``: its place in training) with one SAE on every dataset, its result at ``out``.
    ``compute``: what the zoo's recipe says of its training (steps x lr, tokens seen), empty otherwise."""

    setup: PairSetup
    finetune: str
    step: int
    spec: CheckSpec
    datasets: tuple[str, ...]
    store_root: Path
    out: Path
    key: dict
    compute: tuple[tuple[str, float], ...] = ()
    threads: int = 0

    @property
    def name(self) -> str:
        return f"{self.finetune} with {self.setup.sae}"

    def __call__(self) -> dict[str, Any]:
        _threads(self.threads)
        started = time.time()
        s = self.setup
        pair = load_one_side(s.base, s.sae, s.hook or None, s.zoo, s.device, s.dtype, finetune=self.finetune)
        rows = []
        for ds in self.datasets:
            stored = StoredBase(StoreRef.of(s, self.spec, ds, self.store_root))
            windows = token_windows(self.spec.tokens(ds), pair.tokenizer, s.zoo)
            t0 = time.time()
            r = check_pass(stored, pair.finetune, pair.sae, pair.hook, windows, stored.threshold, self.spec,
                           desc=f"atlas {self.finetune} on {ds}", memory=s.memory)
            add_contexts(r, pair.tokenizer, windows)
            rows.append({"dataset": ds, **r, "store": str(stored.ref.path), "store_bytes": disk_bytes(stored.ref),
                         "seconds": time.time() - t0})
        deviation = weight_deviation(base_parameters(weights_path(s, self.store_root)),
                                     dict(pair.finetune.named_parameters()), pair.finetune.cfg.n_layers)
        # Where and with what the numbers were made: a cluster node's own, not the submitting machine's.
        made = {"commit": git_commit(), "device": device_description(s.device), "host": socket.gethostname(),
                "versions": {k: v for k, v in package_versions().items() if k in ("torch", "sae-lens",
                                                                                   "transformer-lens")}}
        result = {"job": fingerprint(self.key), "finetune": self.finetune, "step": self.step, "sae": s.sae,
                  "hook": pair.hook, "results": rows, "weight_deviation": deviation, "compute": dict(self.compute),
                  "provenance": made, "seconds": time.time() - started}
        write_json_atomic(self.out, {"key": self.key, "result": result, "sha256": checksum(result)})
        return result


def finetune_key(setup: PairSetup, finetune: str, spec: CheckSpec, datasets: tuple[str, ...],
                 stores: list[dict]) -> dict:
    """Everything a finetune job's numbers depend on: the code measuring them, the finetune's content, the
    base's stored passes it reads (their keys hold the base, SAE, hook, text and token spec), the check's spec."""
    return {"what": "atlas-finetune", "code": code_fingerprint(__name__), "finetune": model_identity(finetune, setup.zoo),
            "stores": stores, "spec": asdict(spec), "datasets": list(datasets), "dtype": setup.dtype}


def finished(path: Path, key: dict) -> dict | None:
    """The result at ``path`` if it is whole, unedited and of ``key``; None otherwise (the job runs)."""
    try:
        entry = json.loads(Path(path).read_text())
        if entry["key"] == json.loads(json.dumps(key, default=str)) and entry["sha256"] == checksum(entry["result"]):
            return entry["result"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _threads(n: int) -> None:
    """Jobs that share a machine split its cores (``engine.local_slots``) instead of each taking all of them."""
    if n > 0:
        import torch

        torch.set_num_threads(n)
