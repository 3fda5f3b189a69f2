"""Where atlas jobs run: submitit's executors, one API for all three.

- ``local``: subprocesses of this machine (``submitit.LocalExecutor``), as many at once as ``memory`` allows
  (``local_slots``), the cores split among them; each subprocess runs its share of the jobs one after another
  (``Group``), since starting one (importing torch, TransformerLens, sae_lens) takes longer than a small job;
- ``slurm``: one sbatch array for the jobs of a phase (``submitit.SlurmExecutor``), the options of ``Slurm``;
- ``debug``: each job in this process, one after another (``submitit.DebugExecutor``): for tests and debugging.

A job that fails is reported with its one-line error and the rest go on. The field's sweeps (diffing-toolkit,
SAEBench users) run sbatch arrays and skip finished outputs on a rerun; submitit gives the arrays, the local and
in-process executors for machines without a cluster, and the same job objects on each.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import submitit
from submitit.helpers import Checkpointable
from tqdm.auto import tqdm

from sae_transfer.atlas.config import Slurm
from sae_transfer.core.memory import budget_bytes

#: A local job may run this long before submitit stops it (its own default is 2 minutes).
LOCAL_TIMEOUT_MIN = 24 * 60


@dataclass
class Outcome:
    """What became of one job: its ``result``, or the one-line ``error`` it failed with."""

    name: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Group(Checkpointable):
    """Several jobs in one process, one after another; a job that fails leaves its error and the next one runs.
    Returns ``[(result, None) | (None, error line)]`` in the jobs' order."""

    jobs: tuple
    name: str = "group"

    def __call__(self) -> list[tuple[Any, str | None]]:
        out: list[tuple[Any, str | None]] = []
        for job in self.jobs:
            try:
                out.append((job(), None))
            except Exception as e:  # noqa: BLE001 - reported as that job's one line; the others go on
                out.append((None, error_line(e)))
        return out


def local_slots(job_bytes: int, memory: str, device: str, parallel: int = 0) -> int:
    """How many local jobs run at once: ``parallel`` if given, else as many as fit ``memory``'s budget at
    ``job_bytes`` each, at most one per core."""
    if parallel > 0:
        return parallel
    return max(1, min(os.cpu_count() or 1, budget_bytes(memory, device) // max(job_bytes, 1)))


def error_line(e: BaseException) -> str:
    """The last ``Name: message`` line of an error (a failed subprocess's carries the whole traceback)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", ln)]
    return (named[-1] if named else lines[-1] if lines else type(e).__name__)[:500]


def slurm_executor(folder: Path, slurm: Slurm, name: str):
    """A ``submitit.SlurmExecutor`` asking for ``slurm``'s resources, one array task per job."""
    ex = submitit.SlurmExecutor(folder=folder)
    params: dict[str, Any] = {"job_name": name, "time": slurm.time, "gpus_per_node": slurm.gpus_per_node or None,
                              "cpus_per_task": slurm.cpus_per_task, "array_parallelism": slurm.array_parallelism,
                              "ntasks_per_node": 1, "nodes": 1}
    for key in ("partition", "mem", "account", "qos", "constraint"):
        if getattr(slurm, key) is not None:
            params[key] = getattr(slurm, key)
    if slurm.setup:
        params["setup"] = list(slurm.setup)
    if slurm.additional:
        params["additional_parameters"] = dict(slurm.additional)
    try:
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    except ValueError as e:  # submitit names the parameter it does not know
        raise ValueError(f"slurm: {error_line(e)}") from None
    return ex


def submit_slurm(jobs: Sequence[Callable[[], Any]], folder: Path, slurm: Slurm, name: str) -> list:
    """Submit ``jobs`` as one sbatch array (``sbatch`` must be on the PATH); submitit's job handles."""
    return slurm_executor(folder, slurm, name).submit_array(list(jobs))


def run_jobs(jobs: Sequence[Callable[[], Any]], executor: str, folder: Path, *, slots: int = 1,
             slurm: Slurm | None = None, desc: str = "jobs") -> list[Outcome]:
    """Run every job (a picklable callable with a ``name``) on ``executor``; outcomes in the jobs' order."""
    folder.mkdir(parents=True, exist_ok=True)
    if not jobs:
        return []
    if executor == "debug":
        ex = submitit.DebugExecutor(folder=folder)
        return [_outcome(job, ex.submit(job)) for job in tqdm(jobs, desc=desc, unit="job")]
    if executor == "slurm":
        return _wait(jobs, submit_slurm(jobs, folder, slurm or Slurm(), desc), desc)
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    return _local(ex, jobs, slots, desc)


def _outcome(job, handle) -> Outcome:
    error = handle.exception()  # not .result(): the debug executor would open a debugger on a failure
    return Outcome(job.name, None if error else handle.result(), error_line(error) if error else None)


#: Seconds between two looks at a cluster's queue (submitit asks sacct, which a busy cluster rations).
QUEUE_POLL_S = 10


def _wrote(job) -> bool:
    """Whether ``job`` (one with an ``out`` path) has left its output."""
    return getattr(job, "out", None) is not None and Path(job.out).exists()


def _collect(units, handles, desc: str, total: int, poll_s: float, done=None) -> list[Outcome]:
    """The outcome of each submitted unit (a job, or a ``Group``), polled every ``poll_s`` seconds; the bar counts
    ``done(finished units)`` of ``total`` jobs (default: the finished units)."""
    out: dict[int, Outcome] = {}
    with tqdm(total=total, desc=desc, unit="job") as bar:
        while len(out) < len(units):
            for i, h in enumerate(handles):
                if i not in out and h.done():
                    out[i] = _outcome(units[i], h)
            bar.update((done(out) if done else len(out)) - bar.n)
            if len(out) < len(units):
                time.sleep(poll_s)
    return [out[i] for i in range(len(units))]


def _wait(jobs, handles, desc: str) -> list[Outcome]:
    """Outcomes of submitted cluster jobs, as they finish."""
    return _collect(jobs, handles, desc, len(jobs), QUEUE_POLL_S)


def _local(ex, jobs, slots: int, desc: str) -> list[Outcome]:
    """The jobs in ``slots`` subprocesses at once, each running every ``slots``-th job; the bar counts a job done
    when its output file appears (jobs with an ``out``) or its subprocess ends."""
    groups = [Group(tuple(jobs[i::slots])) for i in range(min(slots, len(jobs)))]
    handles = [ex.submit(g) for g in groups]
    out = _collect(groups, handles, desc, len(jobs), 0.2, done=lambda finished: sum(
        len(g.jobs) if i in finished else sum(map(_wrote, g.jobs)) for i, g in enumerate(groups)))
    results: list[Outcome] = [None] * len(jobs)  # type: ignore[list-item]
    for g, (group, o) in enumerate(zip(groups, out)):
        for k, job in enumerate(group.jobs):
            if o.error is not None:  # the subprocess itself died: every job of it without a whole output failed
                results[g + k * slots] = Outcome(job.name, None, None if _wrote(job) else o.error)
            else:
                res, err = o.result[k]
                results[g + k * slots] = Outcome(job.name, res, err)
    return results
