"""Tasks on worker processes that split this machine's cores: a book's chapters (``book --jobs``), a zoo's
artifacts (``zoo build --jobs``).

At this project's sizes a torch process gets far less than twice one core's work out of two cores (small matmuls,
and Python between them): on the project's 2-core machines, two of the default book's toy chapters ran in 364 s one
after the other with 2 threads each and took 516 s of single-thread time, so two at once with one thread each
finish them in about 0.7 of the time. ``jobs`` worker processes run at once, each with ``cores // jobs`` threads;
``jobs=1`` runs every task in this process, in order, as a build always did.

Thread count changes the last bits of a float sum (a reduction is split differently), so a run records the threads
it had (``core.provenance.device_description``); the same machine and ``jobs`` give the same bits.

Memory bounds what runs together: each task says about how much it takes at its peak (``Task.memory``, bytes), and
tasks start together only while their sum stays within ``limit`` (default: ``core.memory``'s ``auto`` budget, half
of what is free). A task of unknown size, or larger than the limit, runs alone.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_transfer.core.memory import budget_bytes

#: The thread-count variables of the math libraries torch may use; a worker sets each for itself and for the
#: processes it starts (a chapter's kernel).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Task:
    """One piece of work: ``run()`` (picklable: a module-level function or a ``functools.partial`` of one), once
    every task named in ``after`` has finished. ``memory``: its peak in bytes, about; None when not known, or a
    function asked when the task is ready (what it reads may not exist before the tasks it comes after)."""

    name: str
    run: Callable[[], Any]
    after: tuple[str, ...] = ()
    memory: int | None | Callable[[], int | None] = 0

    def peak(self) -> int | None:
        return self.memory() if callable(self.memory) else self.memory


def default_jobs(device: str | None = "cpu") -> int:
    """Two at once on a CPU of two cores or more; one on a GPU, whose memory (not its cores) is what a task fills."""
    if device is not None and str(device).startswith("cuda"):
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def check_jobs(jobs: int) -> None:
    """One-line error naming ``--jobs`` unless it is a whole number of at least 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs={jobs!r}: give a whole number of at least 1 (tasks at once; 1 runs them in turn)")


def threads_per_job(jobs: int) -> int:
    """Each of ``jobs`` workers' share of this machine's cores."""
    return max(1, (os.cpu_count() or 1) // jobs)


def _start_worker(threads: int) -> None:
    # The variables reach the processes a worker starts (a chapter's kernel); torch here is already imported. Each
    # worker's own progress bars would interleave with the others': the parent draws one bar for all tasks.
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    os.environ["TQDM_DISABLE"] = "1"
    torch.set_num_threads(threads)


def run_graph(tasks: Sequence[Task], jobs: int, desc: str = "tasks", limit: int | None = None) -> dict[str, Any]:
    """Every task's result, ``{name: run()}``. A task starts once those it comes ``after`` have finished, the
    earliest given first among those ready that fit beside the running ones: ``jobs`` at once, each in a fresh
    worker process (a finished task's memory goes back with its process), their ``memory`` within ``limit`` bytes
    together; or all in this process, in turn, when ``jobs`` is 1. A task that raises stops new ones from
    starting; its error is raised once the running ones end."""
    check_jobs(jobs)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    if unknown := sorted({a for t in tasks for a in t.after} - set(names)):
        raise ValueError(f"tasks come after tasks that are not given: {unknown}")
    if jobs == 1:
        results: dict[str, Any] = {}
        for task in _in_order(tasks):
            results[task.name] = task.run()
        return results
    return _on_workers(list(tasks), jobs, desc, budget_bytes("auto", "cpu") if limit is None else limit)


def _in_order(tasks: Sequence[Task]) -> list[Task]:
    """``tasks`` with each after the tasks it needs, otherwise in the order given."""
    ordered: list[Task] = []
    left = list(tasks)
    while left:
        ready = next((t for t in left if all(a in {o.name for o in ordered} for a in t.after)), None)
        if ready is None:
            raise ValueError(f"tasks wait on each other: {[t.name for t in left]}")
        ordered.append(ready)
        left.remove(ready)
    return ordered


def _fits(peak: int | None, running: list[int | None], jobs: int, limit: int) -> bool:
    """Whether a task of ``peak`` bytes may start beside tasks of ``running`` peaks."""
    if not running:
        return True
    return len(running) < jobs and peak is not None and None not in running and peak + sum(running) <= limit


def _on_workers(waiting: list[Task], jobs: int, desc: str, limit: int) -> dict[str, Any]:
    _in_order(waiting)  # a cycle is refused before any process starts
    results: dict[str, Any] = {}
    running: dict[Future, Task] = {}
    peaks: dict[Future, int | None] = {}
    failure: BaseException | None = None
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(threads_per_job(jobs),), max_tasks_per_child=1)
    with pool, tqdm(total=len(waiting), desc=desc, unit="task") as bar:
        while waiting or running:
            for task in [t for t in waiting if all(a in results for a in t.after)]:
                if not _fits(peak := task.peak(), list(peaks.values()), jobs, limit):
                    continue  # a smaller one behind it may fit; it runs once the running ones make room
                future = pool.submit(task.run)
                running[future], peaks[future] = task, peak
                waiting.remove(task)
            bar.set_postfix_str(", ".join(t.name for t in running.values()), refresh=True)
            if not running:  # what is left waits on a task that failed
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                peaks.pop(future)
                try:
                    results[task.name] = future.result()
                except BrokenProcessPool:
                    # A worker imports the main module of the process that started it; a script that starts work
                    # at its top level starts it again there, and the worker dies.
                    failure = failure or RuntimeError(
                        f"task {task.name!r}: its worker process died before it finished (killed for memory, or "
                        "started from a script that runs at its top level: guard that with if __name__ == "
                        "'__main__':, or run with jobs=1)")
                    waiting.clear()
                except BaseException as e:  # noqa: BLE001 - raised below, once the running tasks end
                    failure = failure or e
                    waiting.clear()
                bar.update(1)
    if failure is not None:
        raise failure
    return results
