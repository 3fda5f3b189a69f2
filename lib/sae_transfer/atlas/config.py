"""``atlas.yaml`` parsed once, at the edge, into frozen objects: one base, its SAEs, the datasets, the finetunes
(each expanded to model specs), what to measure (the check's ``CheckSpec``) and where to run (the executor).

Every cheap check runs here, before any job is planned: a bad key, type or spec is one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sae_transfer.check import CheckRequest, CheckSpec, preflight, watch_series
from sae_transfer.check.measure import MIN_BATCHES
from sae_transfer.core.io import read_yaml
from sae_transfer.core.paths import PROJECT_ROOT
from sae_transfer.models.load import context_limit

#: The example atlas file ``atlas --example`` prints (every key explained; it runs on the smoke zoo).
EXAMPLE = PROJECT_ROOT / "params" / "atlas" / "example.yaml"
#: The engines a job list runs on (``engine.py``).
EXECUTORS = ("local", "slurm", "debug")
#: Keys of the ``check`` section: ``CheckSpec``'s fields as the ``check`` command names them.
CHECK_KEYS = {"tokens": "max_tokens", "min_tokens": "min_tokens", "context_size": "context_size",
              "batch_size": "batch_size", "outliers": "outliers", "early_stop": "early_stop", "seed": "seed"}


@dataclass(frozen=True)
class Slurm:
    """What a cluster job asks of SLURM, in sbatch's own terms (``submitit.SlurmExecutor``'s parameters):
    ``partition``; ``gpus_per_node`` a job; ``cpus_per_task``; ``mem`` (``64G``); ``time`` in minutes;
    ``array_parallelism``: at most this many array tasks at once; ``account``, ``qos``, ``constraint``;
    ``setup``: shell lines before the job (``module load``, activating the environment); ``additional``: any
    other sbatch option, ``{name: value}``."""

    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    mem: str | None = None
    time: int = 60
    array_parallelism: int = 32
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()
    additional: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class AtlasConfig:
    """One atlas: ``base``, its ``saes``, ``datasets`` and ``finetunes`` (model specs in order, a series of
    checkpoints already expanded); ``spec`` what each (finetune, SAE, dataset) measures; ``parallel``: local jobs
    at once (0: as many as ``memory`` allows)."""

    base: str
    saes: tuple[str, ...]
    datasets: tuple[str, ...]
    finetunes: tuple[str, ...]
    zoo: str = "default"
    hook: str = ""
    device: str = "auto"
    dtype: str = "float32"
    memory: str = "auto"
    spec: CheckSpec = field(default_factory=CheckSpec)
    executor: str = "local"
    parallel: int = 0
    slurm: Slurm = field(default_factory=Slurm)

    def request(self, sae: str) -> CheckRequest:
        """What ``check`` would be asked for this SAE over every finetune and dataset."""
        return CheckRequest(self.base, self.finetunes, sae, self.datasets, self.hook, self.zoo, self.device,
                            self.dtype, self.spec, memory=self.memory)


TOP_KEYS = ("base", "saes", "datasets", "finetunes", "zoo", "hook", "device", "dtype", "memory", "check",
            "executor", "parallel", "slurm")


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key}: give a spec or a non-empty list of specs (strings)")
    return tuple(value)


def _finetunes(entries: Any, zoo: str) -> tuple[str, ...]:
    """Each entry a model spec, or ``{checkpoints: zoo:NAME | DIR}``: every saved checkpoint, in training order."""
    if not isinstance(entries, list) or not entries:
        raise ValueError("finetunes: give a list of model specs or {checkpoints: zoo:NAME | DIR} entries")
    out: list[str] = []
    for e in entries:
        if isinstance(e, str) and e:
            out.append(e)
        elif isinstance(e, dict) and list(e) == ["checkpoints"] and isinstance(e["checkpoints"], str):
            out.extend(watch_series(e["checkpoints"], zoo))
        else:
            raise ValueError(f"finetunes: {e!r} is neither a model spec nor {{checkpoints: zoo:NAME | DIR}}")
    if len(set(out)) != len(out):
        raise ValueError(f"finetunes: {sorted({f for f in out if out.count(f) > 1})} given twice")
    return tuple(out)


def _section(raw: Any, name: str, valid: list[str]) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: give a mapping with keys among {valid}")
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {unknown}; valid keys are {valid}")
    return raw


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _typed(value: Any, want: type, key: str) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, bool) or not isinstance(value, want):
        raise ValueError(f"{key}={value!r}: give {_KINDS.get(want, want.__name__)}")
    return value


def _check_spec(raw: Any, base: str, zoo: str) -> CheckSpec:
    given = _section(raw, "check", list(CHECK_KEYS))
    defaults = CheckSpec()
    values = {}
    for key, name in CHECK_KEYS.items():
        if key in given:
            values[name] = _typed(given[key], type(getattr(defaults, name)), f"check.{key}")
    if "context_size" not in values:
        values["context_size"] = min(128, context_limit(base, zoo) or 128)
    spec = replace(defaults, **values)
    if "min_tokens" not in values:  # as ``check`` does: half the budget, at least enough batches for an interval
        spec = replace(spec, min_tokens=min(spec.max_tokens, max(spec.max_tokens // 2,
                                                                 MIN_BATCHES * spec.batch_tokens())))
    return spec


def _slurm(raw: Any) -> Slurm:
    names = [f.name for f in fields(Slurm)]
    given = _section(raw, "slurm", names)
    values: dict[str, Any] = {}
    for f in fields(Slurm):
        if f.name not in given:
            continue
        v = given[f.name]
        if f.name == "setup":
            values[f.name] = _strings(v, "slurm.setup")
        elif f.name == "additional":
            if not isinstance(v, dict):
                raise ValueError("slurm.additional: give a mapping of sbatch options, {name: value}")
            values[f.name] = tuple(sorted(v.items()))
        elif f.name in ("gpus_per_node", "cpus_per_task", "time", "array_parallelism"):
            values[f.name] = _typed(v, int, f"slurm.{f.name}")
            if values[f.name] < (0 if f.name == "gpus_per_node" else 1):
                raise ValueError(f"slurm.{f.name}={v}: give a {'non-negative' if f.name == 'gpus_per_node' else 'positive'} "
                                 "integer")
        else:
            values[f.name] = str(_typed(v, str, f"slurm.{f.name}"))
    return Slurm(**values)


def parse(raw: Any, where: str = "atlas") -> AtlasConfig:
    """An ``AtlasConfig`` from the YAML's content, every cheap check done (no weights load)."""
    top = _section(raw, where, list(TOP_KEYS))
    for key in ("base", "saes", "datasets", "finetunes"):
        if key not in top:
            raise ValueError(f"{where}: {key} is missing; an atlas names base, saes, datasets and finetunes")
    zoo = str(top.get("zoo", "default"))
    base = _typed(top["base"], str, "base")
    executor = str(top.get("executor", "local"))
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}: use one of {list(EXECUTORS)}")
    parallel = _typed(top.get("parallel", 0), int, "parallel")
    if parallel < 0:
        raise ValueError(f"parallel={parallel}: give 0 (as many as memory allows) or a positive number of jobs")
    cfg = AtlasConfig(base=base, saes=_strings(top["saes"], "saes"), datasets=_strings(top["datasets"], "datasets"),
                      finetunes=_finetunes(top["finetunes"], zoo), zoo=zoo, hook=str(top.get("hook", "")),
                      device=str(top.get("device", "auto")), dtype=str(top.get("dtype", "float32")),
                      memory=str(top.get("memory", "auto")), spec=_check_spec(top.get("check"), base, zoo),
                      executor=executor, parallel=parallel, slurm=_slurm(top.get("slurm")))
    for sae in cfg.saes:  # the check's own preflight: sources, hook, dtype, device, memory, datasets, tokens
        preflight(cfg.request(sae))
    return cfg


def read(path: Path, **overrides: Any) -> AtlasConfig:
    """``parse`` of an atlas file, with ``overrides`` (the command line's) replacing its keys first."""
    raw = read_yaml(Path(path), "atlas file")
    if not isinstance(raw, dict):
        raise ValueError(f"atlas file {str(path)!r}: give a mapping with keys among {list(TOP_KEYS)}")
    return parse({**raw, **{k: v for k, v in overrides.items() if v is not None}}, "atlas file")
