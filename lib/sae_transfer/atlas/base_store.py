"""The base's side of the check, computed once per (base, SAE, dataset, tokens, hook) and read by every finetune.

What a finetune's check needs from the base, batch by batch (``check.measure.BaseSide``): the base's activation at
the SAE's hook [B, T, d_in], which the residual and feature comparisons pair with the finetune's token by token,
and the base's SAE-metric sums over the batch (its clean, spliced and zero-ablated losses, reconstruction error,
sparsity), which the verdict's intervals resample with the finetune's. The base's SAE codes are the SAE's
encoding of the stored activation (the SAE is loaded anyway), so they are not stored twice.

Layout of a store directory ``<root>/<key fingerprint>/``:

- ``shard-00000.safetensors`` ...: one batch each, ``tokens`` [B, T] int64, ``x`` [B, T, d_in] in the model's
  dtype, ``sums`` [2 + len(BATCH_SUMS)] float64, ``sum_x`` [d_in] float64. A shard is written to a temp file and
  renamed into place, then its sha256 is written beside it (``.sha256``): a shard without one is not whole.
- ``store.json``, written last: the key, the outlier threshold, every shard's sha256 and the total size. A store
  without it is unfinished: collection resumes at the first shard that is not whole.
- ``weights.safetensors``: the base's parameters as the check's models hold them (processed as the SAE was
  trained), for the weight deviation of each finetune, read one tensor at a time.

Reading verifies every shard's bytes against ``store.json`` and its token ids against the finetune's own windows,
so a store of other text, or one edited, is refused instead of paired.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sae_transfer.check.measure import BatchSums, CheckSpec, live_base
from sae_transfer.core.io import fingerprint, sha256_bytes, sha256_file, write_json_atomic, write_text_atomic
from sae_transfer.core.paths import cache_dir
from sae_transfer.data.tokens import token_windows
from sae_transfer.models.pairs import PairSetup, load_one_side
from sae_transfer.passes.cache import measurement_key
from sae_transfer.passes.outliers import finite_or_none, outlier_threshold
from sae_transfer.passes.sae_metrics import pass_plan

MANIFEST = "store.json"
WEIGHTS = "weights.safetensors"


def default_root() -> Path:
    return cache_dir() / "base-passes"


def store_key(setup: PairSetup, spec: CheckSpec, dataset: str) -> dict:
    """Everything a stored pass depends on: this module's code and what it imports (the pass, the windows and
    their BOS handling), the base's and SAE's content, the hook, dtype, the dataset's content and the token spec
    (budget, context length, batch size, seed), and the outlier rule."""
    return measurement_key("base-pass", __name__, setup, tokens=spec.tokens(dataset), outliers=spec.outliers)


def weights_key(setup: PairSetup) -> dict:
    """The base's processed parameters depend on the base's content, the SAE's processing settings and dtype."""
    return measurement_key("base-weights", __name__, setup)


@dataclass(frozen=True)
class StoreRef:
    """Where one stored pass lives and the key it must hold."""

    path: Path
    key: dict

    @classmethod
    def of(cls, setup: PairSetup, spec: CheckSpec, dataset: str, root: Path) -> "StoreRef":
        key = store_key(setup, spec, dataset)
        return cls(Path(root) / f"pass-{fingerprint(key)}", key)

    def complete(self) -> bool:
        """Whole and of this key (its shards are verified when read)."""
        try:
            return json.loads((self.path / MANIFEST).read_text())["key_fingerprint"] == fingerprint(self.key)
        except (OSError, ValueError, KeyError):
            return False


def weights_path(setup: PairSetup, root: Path) -> Path:
    return Path(root) / f"weights-{fingerprint(weights_key(setup))}" / WEIGHTS


# ------------------------------------------------------------------------------------------ writing

def _shard(path: Path, i: int) -> Path:
    return path / f"shard-{i:05d}.safetensors"


def _whole(shard: Path) -> str | None:
    """The shard's sha256 if it is whole (its recorded sum matches its bytes), else None."""
    rec = shard.with_name(shard.name + ".sha256")
    if not (shard.exists() and rec.exists()):
        return None
    digest = sha256_file(shard)
    return digest if rec.read_text().strip() == digest else None


def collect(ref: StoreRef, setup: PairSetup, spec: CheckSpec, dataset: str, pair, windows: torch.Tensor,
            threshold: float) -> dict[str, Any]:
    """Write the base's pass over ``windows`` [n, T] into ``ref.path``, shard by shard, skipping shards already
    whole (a killed collection resumes); ``store.json`` last. ``pair``: the loaded base, SAE and hook (its
    finetune is not used). Returns the manifest; ``computed``: the shards this call computed."""
    path = ref.path
    path.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / f".{path.name}.lock"):  # one collector per store; a second waits, then finds it
        if ref.complete():
            return {**json.loads((path / MANIFEST).read_text()), "computed": 0}
        plan = pass_plan(pair.base, pair.sae, spec.context_size, spec.batch_size, setup.memory)
        base = live_base(pair.base, pair.sae, pair.hook, threshold, plan)
        batches = windows.split(spec.batch_size)
        digests, computed = [], 0
        for i, tokens in enumerate(tqdm(batches, desc=f"base pass on {dataset}", unit="batch", leave=False)):
            shard = _shard(path, i)
            digest = _whole(shard)
            if digest is None:
                x, (sums, sum_x) = base(i, tokens.to(pair.base.cfg.device))
                tmp = shard.with_name(f".{shard.name}.tmp")
                save_file({"tokens": tokens.contiguous(), "x": x.cpu().contiguous(),
                           "sums": torch.tensor(sums, dtype=torch.float64), "sum_x": sum_x.contiguous()}, tmp)
                tmp.replace(shard)
                digest = sha256_file(shard)
                write_text_atomic(shard.with_name(shard.name + ".sha256"), digest)
                computed += 1
            digests.append(digest)
        manifest = {"key": ref.key, "key_fingerprint": fingerprint(ref.key), "dataset": dataset,
                    "threshold": finite_or_none(threshold), "hook": pair.hook, "n_batches": len(digests),
                    "shape": list(windows.shape), "d_in": pair.sae.cfg.d_in, "dtype": str(pair.base.cfg.dtype),
                    "shards": digests, "bytes": sum(_shard(path, i).stat().st_size for i in range(len(digests)))}
        write_json_atomic(path / MANIFEST, manifest)
    return {**manifest, "computed": computed}


def save_weights(base, path: Path) -> None:
    """The base's parameters [as the model holds them] to ``path``, atomically (once per base and processing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.parent / f".{path.name}.lock"):
        if path.exists() and _whole(path):
            return
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in base.named_parameters()}, tmp)
        tmp.replace(path)
        write_text_atomic(path.with_name(path.name + ".sha256"), sha256_file(path))


def build(setup: PairSetup, spec: CheckSpec, datasets: tuple[str, ...], root: Path) -> list[dict]:
    """Every dataset's stored pass for one (base, SAE), the base and SAE loaded once: what an atlas's base job
    does. Returns the manifests (with ``computed`` shards each)."""
    refs = {ds: StoreRef.of(setup, spec, ds, root) for ds in datasets}
    wpath = weights_path(setup, root)
    if all(r.complete() for r in refs.values()) and _whole(wpath):
        return [{**json.loads((r.path / MANIFEST).read_text()), "computed": 0} for r in refs.values()]
    pair = load_one_side(setup.base, setup.sae, setup.hook or None, setup.zoo, setup.device, setup.dtype)
    save_weights(pair.base, wpath)
    hooked = replace(setup, hook=pair.hook)  # the threshold's cache entry is the check's own
    out = []
    for ds, ref in refs.items():
        windows = token_windows(spec.tokens(ds), pair.tokenizer, setup.zoo)
        threshold = outlier_threshold(hooked, spec.outliers, spec.tokens(ds), lambda: pair)
        out.append(collect(ref, setup, spec, ds, pair, windows, threshold))
    return out


# ------------------------------------------------------------------------------------------ reading

class StoredBase:
    """A complete store as the check's base side (``BaseSide``): batch ``i``'s activation and sums, each shard's
    bytes checked against the manifest and its token ids against the finetune's."""

    def __init__(self, ref: StoreRef):
        if not ref.complete():
            raise RuntimeError(f"the base's stored pass {ref.path} is missing or unfinished; run its base job first")
        self.ref = ref
        self.manifest = json.loads((ref.path / MANIFEST).read_text())
        self.threshold = self.manifest["threshold"] if self.manifest["threshold"] is not None else float("inf")

    def __call__(self, i: int, tokens: torch.Tensor) -> tuple[torch.Tensor, BatchSums]:
        if i >= self.manifest["n_batches"]:
            raise RuntimeError(f"{self.ref.path} holds {self.manifest['n_batches']} batches; batch {i} was asked for")
        data = _shard(self.ref.path, i).read_bytes()
        if sha256_bytes(data) != self.manifest["shards"][i]:
            raise RuntimeError(f"{_shard(self.ref.path, i)} differs from its record in {MANIFEST}: the store was "
                               "edited or damaged; delete the directory and run the atlas again")
        t = load_bytes(data)
        if not torch.equal(t["tokens"], tokens.cpu()):
            raise RuntimeError(f"batch {i}: the finetune's token ids differ from those of the base's stored pass "
                               f"{self.ref.path} (another tokenizer or text); they cannot be paired")
        return t["x"].to(tokens.device), (t["sums"].tolist(), t["sum_x"])


def base_parameters(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The base's stored parameters, one tensor at a time (mapped from disk)."""
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            yield name, f.get_tensor(name)


def disk_bytes(ref: StoreRef) -> int:
    return json.loads((ref.path / MANIFEST).read_text())["bytes"]
