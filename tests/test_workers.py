"""Tasks on worker processes (``core.workers``): order, the cores split, memory bounding what runs together, a
failure stopping what has not started, and the measurement cache computing an entry once for processes at once.
The zoo's build as tasks (``zoo.plan``) and a chapter's memory (``book.tasks``) are read here too."""

import functools
import json
import os
import time

import pytest

from sae_transfer.core.workers import Task, _fits, check_jobs, run_graph, threads_per_job

GIB = 1 << 30


def _value(x):
    return x


def _where(pause: float = 0.0) -> dict:
    """Which process ran this, with how many threads, and when it started and ended."""
    import torch

    start = time.time()
    time.sleep(pause)
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
            "start": start, "end": time.time()}


def _fail():
    raise ValueError("n_tokens=3: too few")


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_in_turn_a_task_runs_after_those_it_needs_in_this_process():
    seen = []

    def note(name):
        seen.append(name)
        return name.upper()

    tasks = [Task("b", lambda: note("b"), after=("a",)), Task("a", lambda: note("a")), Task("c", lambda: note("c"))]
    assert run_graph(tasks, 1) == {"a": "A", "b": "B", "c": "C"}
    assert seen == ["a", "b", "c"]  # b waits for a; otherwise the order given


def test_bad_graphs_and_jobs_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="not given"):
        run_graph([Task("a", lambda: 1, after=("z",))], 2)
    with pytest.raises(ValueError, match="repeat"):
        run_graph([Task("a", lambda: 1), Task("a", lambda: 2)], 1)
    with pytest.raises(ValueError, match="wait on each other"):
        run_graph([Task("a", lambda: 1, after=("b",)), Task("b", lambda: 1, after=("a",))], 1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="--jobs"):
            check_jobs(bad)


def test_memory_bounds_what_starts_beside_running_tasks():
    assert _fits(5 * GIB, [], jobs=2, limit=GIB)  # alone, even over the limit
    assert _fits(GIB, [2 * GIB], jobs=2, limit=4 * GIB)
    assert not _fits(3 * GIB, [2 * GIB], jobs=2, limit=4 * GIB)
    assert not _fits(GIB, [GIB], jobs=1, limit=4 * GIB)
    assert not _fits(None, [GIB], jobs=2, limit=4 * GIB)  # of unknown size: alone
    assert not _fits(GIB, [None], jobs=2, limit=4 * GIB)


@pytest.mark.slow
def test_two_at_once_in_fresh_processes_with_the_cores_split():
    tasks = [Task("a", functools.partial(_where, 2.0)), Task("b", functools.partial(_where, 2.0)),
             Task("c", functools.partial(_value, 3), after=("a",))]
    out = run_graph(tasks, 2, limit=8 * GIB)
    a, b = out["a"], out["b"]
    assert out["c"] == 3
    assert a["pid"] != b["pid"] != os.getpid() and a["pid"] != os.getpid()
    assert _overlap(a, b)
    share = threads_per_job(2)
    assert a["threads"] == b["threads"] == share and a["omp"] == str(share)


@pytest.mark.slow
def test_tasks_too_large_together_run_one_after_the_other():
    big = functools.partial(_where, 1.0)
    out = run_graph([Task("a", big, memory=3 * GIB), Task("b", big, memory=3 * GIB)], 2, limit=4 * GIB)
    assert not _overlap(out["a"], out["b"])


@pytest.mark.slow
def test_a_failure_is_raised_and_what_needs_it_never_runs(tmp_path):
    tasks = [Task("bad", _fail), Task("after", functools.partial(_value, 1), after=("bad",))]
    with pytest.raises(ValueError, match="n_tokens=3"):
        run_graph(tasks, 2)
    with pytest.raises(ValueError, match="n_tokens=3"):
        run_graph(tasks, 1)


def _measure_once(log: str) -> int:
    from sae_transfer.passes.cache import cached

    def compute():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.5)
        return 42

    return cached("twice", {"what": "one entry"}, compute)


@pytest.mark.slow
def test_a_measurement_two_processes_ask_for_at_once_is_computed_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "computed.txt"
    job = functools.partial(_measure_once, str(log))
    out = run_graph([Task("a", job), Task("b", job)], 2, limit=8 * GIB)
    assert out == {"a": 42, "b": 42}
    assert len(log.read_text().split()) == 1  # the second waited for the entry and read it
    entries = list((tmp_path / "cache" / "measure").glob("twice-*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["result"] == 42


def test_a_zoo_build_is_planned_as_tasks_each_after_what_it_reads(tmp_path, monkeypatch):
    from sae_transfer.zoo.plan import tasks_of
    from sae_transfer.zoo.store import Zoo

    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(tmp_path / "cache"))
    zoo = Zoo.open("smoke")
    tasks = {t.name: t for t in tasks_of(zoo, "cpu")}
    recipe, p = zoo.recipe, zoo.profile
    assert set(tasks) == {f"{p}/data", f"{p}/card"} | {f"{p}/model {m}" for m in recipe.models} | {
        f"{p}/sae {s}" for s in recipe.saes}
    for name, m in recipe.models.items():
        want = {f"{p}/data"} | ({f"{p}/model {m.parent}"} if m.parent else set())
        assert set(tasks[f"{p}/model {name}"].after) == want
    for name, s in recipe.saes.items():
        assert set(tasks[f"{p}/sae {name}"].after) == {f"{p}/data", f"{p}/model {s.model}"}
    assert set(tasks[f"{p}/card"].after) == set(tasks) - {f"{p}/card"}
    assert tasks[f"{p}/model {next(iter(recipe.models))}"].peak() == 1 << 30  # nothing built yet: the floor


@pytest.mark.slow
def test_a_built_zoo_plans_nothing(smoke_card):
    from sae_transfer.zoo.plan import tasks_of
    from sae_transfer.zoo.store import Zoo

    assert tasks_of(Zoo.open("smoke"), "cpu") == []


@pytest.mark.slow
def test_a_chapters_memory_follows_its_largest_model(smoke_card):
    from sae_transfer.book.tasks import FLOOR_BYTES, WEIGHTS_FACTOR, chapter_peak
    from sae_transfer.models.configs import model_facts

    small = model_facts("zoo:base-s", "smoke").n_params
    assert chapter_peak({"zoo": "smoke", "base": "zoo:base-s", "finetunes": ["zoo:code"]}) == (
        FLOOR_BYTES + WEIGHTS_FACTOR * 4 * max(small, model_facts("zoo:code", "smoke").n_params))
    assert chapter_peak({"zoo": "smoke", "n_tokens": 10}) == FLOOR_BYTES
    assert chapter_peak({"zoo": "smoke", "base": "hub:gpt2"}) is None  # not known before download: alone


def test_every_chapters_task_can_be_sent_to_a_worker(tmp_path):
    """A worker receives its task pickled: a chapter's parameter checks (closures) must not travel with it. The
    default book's first cold build with two jobs stopped here."""
    import pickle

    from sae_transfer.book.chapters import all_chapters
    from sae_transfer.book.tasks import chapter_task

    for chapter in all_chapters():
        task = chapter_task(chapter.name, chapter, {"n_tokens": 8}, tmp_path / chapter.name, {}, progress=False)
        sent = pickle.loads(pickle.dumps(task.run))
        assert sent.args[0].name == chapter.name and sent.args[0].defaults() == chapter.defaults()
