"""A zoo's build as tasks: each artifact ``zoo.build`` makes (data, a model, an SAE, the card) that is not built
yet, after the artifacts it reads, run by ``core.workers`` one at a time or several at once (``jobs``).

Each artifact trains from its own seeds and reads only what it comes after, so the order it is built in does not
change it; a build that stops resumes at the artifacts still missing.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from filelock import FileLock, Timeout

from sae_transfer.core.memory import release
from sae_transfer.core.workers import Task, run_graph
from sae_transfer.zoo.build import build_card, build_data, build_model, build_sae, build_text, forget_corpora
from sae_transfer.zoo.fingerprints import (card_fingerprint, data_fingerprint, is_current, model_fingerprint,
                                           sae_fingerprint)
from sae_transfer.zoo.store import Zoo

#: A task's peak memory over the weights of the largest model it reads, with a floor for the interpreter and
#: its libraries. Training holds weights, gradients and AdamW's two moments and the activations kept for backward
#: (a full finetune of SmolLM2-135M peaked at 5.3 GB over 0.54 GB of weights, ``core.memory.release``); an SAE's
#: training reads the model's activations and is held to the same bound, so two trainings of a real model never
#: run together.
TRAINING_FACTOR = 10
FLOOR_BYTES = 1 << 30


def build_artifact(source: str, kind: str, name: str, device: str) -> float:
    """Build one artifact of the zoo ``source`` (``kind``: data, model, sae or card); its seconds."""
    zoo, t0 = Zoo.open(source), time.perf_counter()
    if kind == "data":
        build_data(zoo)
        build_text(zoo)
        forget_corpora()
    elif kind == "model":
        build_model(zoo, name, device)
    elif kind == "sae":
        build_sae(zoo, name, device)
    else:
        build_card(zoo, device)
    release()  # a finetune's optimiser state must not stay resident under the next step's peak
    return time.perf_counter() - t0


def _weights_bytes(zoo: Zoo, model: str) -> int:
    """Bytes of a built model's weights (its root's, for a finetune not yet built: the same shapes)."""
    while True:
        path = zoo.root / "models" / model / "model.safetensors"
        if path.exists() or zoo.recipe.models[model].parent is None:
            return path.stat().st_size if path.exists() else 0
        model = zoo.recipe.models[model].parent


def _peak(zoo: Zoo, models: Sequence[str]) -> int:
    return FLOOR_BYTES + TRAINING_FACTOR * max((_weights_bytes(zoo, m) for m in models), default=0)


def tasks_of(zoo: Zoo, device: str) -> list[Task]:
    """The tasks that build what ``zoo`` lacks, named ``<profile>/<kind> <name>``, each after what it reads."""
    recipe, root = zoo.recipe, zoo.root
    tasks: list[Task] = []

    def label(kind: str, name: str = "") -> str:
        return f"{zoo.profile}/{kind}" + (f" {name}" if name else "")

    def add(kind: str, name: str, after: list[str], models: list[str]) -> None:
        made = {t.name for t in tasks}  # what is built already needs no waiting for
        tasks.append(Task(label(kind, name), functools.partial(build_artifact, zoo.source, kind, name, device),
                          tuple(a for a in after if a in made), functools.partial(_peak, zoo, tuple(models))))

    if not all(is_current(root / part, data_fingerprint(recipe)) for part in ("data", "text")):
        add("data", "", [], [])
    for name, m in recipe.models.items():  # a recipe lists a parent before its finetunes
        if not is_current(root / "models" / name, model_fingerprint(recipe, name)):
            add("model", name, [label("data"), label("model", m.parent or "")], [name])
    for name, s in recipe.saes.items():
        if not is_current(root / "saes" / name, sae_fingerprint(recipe, name)):
            add("sae", name, [label("data"), label("model", s.model)], [s.model])
    if tasks or not _card_current(zoo):
        add("card", "", [t.name for t in tasks], list(recipe.models))
    return tasks


def _card_current(zoo: Zoo) -> bool:
    try:
        return json.loads((zoo.root / "card.json").read_text()).get("fingerprint") == card_fingerprint(zoo.recipe)
    except (OSError, ValueError):
        return False


#: Artifacts a zoo builds at once unless told: one, with every core. A training's matmuls (bf16 on these CPUs' AMX
#: units) use two cores nearly twice as well as one: the default book's zoos built two at a time with a core each
#: took each artifact 1.4-2.5 times as long (45 single-core minutes against 26 with two cores, 2026-12-06), and no
#: time was gained. Chapters, which gain from running two at once (``core.workers``), are the book's ``--jobs``.
ZOO_JOBS = 1


def build_zoos(sources: Sequence[str], device: str = "cpu", jobs: int | None = None) -> dict[str, dict]:
    """Build (or reuse) every artifact of each zoo (a profile or a recipe path) and return ``{source: card}``, each
    card with each step's seconds. ``jobs`` at once (default: ``ZOO_JOBS``). One build of a zoo at a time: a
    second one (another book on the same cache) waits, then finds it built."""
    zoos = {s: Zoo.open(s) for s in dict.fromkeys(sources)}
    roots: dict[Path, str] = {}
    for source, zoo in zoos.items():
        if (other := roots.setdefault(zoo.root, source)) != source and zoos[other].recipe != zoo.recipe:
            raise ValueError(f"zoo {other!r} and zoo {source!r} are both profile {zoo.profile!r} with different "
                             "recipes: they would be built in one directory; give one of them another profile name")
    with ExitStack() as held:
        for root in sorted(roots):  # in one order, so two builders never wait on each other
            held.callback(_acquire(zoos[roots[root]]).release)
        tasks = [t for source in roots.values() for t in tasks_of(zoos[source], device)]
        seconds = run_graph(_interleaved(tasks), ZOO_JOBS if jobs is None else jobs, desc="zoo")
        cards = {}
        for source, zoo in zoos.items():
            card = build_card(zoo, device)  # built by now: read back
            card["last_build_seconds"] = {name.partition("/")[2]: s for name, s in seconds.items()
                                          if name.partition("/")[0] == zoo.profile}
            cards[source] = card
    release()  # the book's process runs its chapters next, each in a kernel of its own: keep nothing resident
    return cards


def build_zoo(profile: str = "default", device: str = "cpu", jobs: int | None = None) -> dict:
    """``build_zoos`` of one zoo: its card."""
    return build_zoos([profile], device, jobs)[profile]


def _interleaved(tasks: list[Task]) -> list[Task]:
    """Tasks of several zoos taken from each in turn: two zoos build side by side rather than one after another."""
    by_zoo: dict[str, list[Task]] = {}
    for t in tasks:
        by_zoo.setdefault(t.name.partition("/")[0], []).append(t)
    queues, out = list(by_zoo.values()), []
    while any(queues):
        out += [q.pop(0) for q in queues if q]
    return out


def _acquire(zoo: Zoo) -> FileLock:
    """The zoo's build lock, held: at once if free, else after saying that another process is building it."""
    zoo.root.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(zoo.root.parent / f".{zoo.root.name}.build.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"zoo {zoo.profile!r}: another process is building it; waiting", flush=True)
        lock.acquire()
    return lock
