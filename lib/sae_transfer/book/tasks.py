"""A chapter run as a task of ``core.workers``: what a worker process calls, and about how much memory it takes,
so that ``build.run_all`` can run several chapters at once within the machine's memory."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

from sae_transfer.book.chapters import Chapter
from sae_transfer.book.runner import ChapterFailed, run_chapter
from sae_transfer.core.workers import Task
from sae_transfer.models.configs import model_facts

#: The parameters that name a model a chapter loads.
MODEL_PARAMS = ("base", "twin", "other", "small", "large", "finetune", "finetunes")

#: A chapter's peak memory: a floor for the kernel and its libraries (the toy zoo's chapters peaked at 0.3-1.4 GB),
#: and a multiple of its largest model's weights: a pair at once, loading's copies and the passes' batches (the
#: real family's chapters peaked at 2.6-3.4 GB over SmolLM2's 0.54 GB; 2026-12-06, 2 cores).
FLOOR_BYTES = 3 << 29
WEIGHTS_FACTOR = 5


def chapter_peak(params: dict[str, Any]) -> int | None:
    """About the peak bytes of a run of a chapter with ``params``; None when a model's size is not known before it
    is downloaded (a hub model: the run goes alone)."""
    specs = [v for name in MODEL_PARAMS for v in _listed(params.get(name)) if v]
    largest = 0
    for spec in specs:
        facts = model_facts(spec, params.get("zoo", "default"))
        if facts is None:
            return None
        largest = max(largest, facts.n_params * 4)  # float32, as the chapters measure
    return FLOOR_BYTES + WEIGHTS_FACTOR * largest


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def run_one(chapter: Chapter, params: dict[str, Any], run_dir: Path, names: dict[str, str], label: str,
            progress: bool) -> tuple[dict | None, str | None]:
    """Run one chapter: ``(results, None)``, or ``(None, error line)`` when a cell failed (the book goes on and
    says so on the chapter's page). Anything else (a parameter the checks missed) is raised."""
    print(f"{label}: executing", flush=True)
    try:
        return run_chapter(chapter, params, run_dir, progress=progress, names=names), None
    except ChapterFailed as e:
        print(f"{label}: FAILED: {e}", flush=True)
        return None, str(e)


def chapter_task(label: str, chapter: Chapter, params: dict[str, Any], run_dir: Path, names: dict[str, str],
                 progress: bool) -> Task:
    """The task that runs ``chapter`` with ``params``, checked already: the worker gets the chapter without its
    parameters' checks (functions made inside functions, which a process cannot be sent)."""
    unchecked = replace(chapter, parameters=tuple(replace(p, check=None) for p in chapter.parameters))
    return Task(label, functools.partial(run_one, unchecked, params, run_dir, names, label, progress),
                memory=chapter_peak(params))
