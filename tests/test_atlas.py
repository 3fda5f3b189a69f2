"""The atlas: many finetunes of one base, one job each, the base's passes computed once.

On the smoke zoo's 13 finetune checkpoints: the atlas's numbers equal ``check``'s on the same tokens, whatever the
executor; the stored passes are the same bytes from any process; a rerun skips what is whole; a killed atlas
resumes; a store that was edited, or of other tokens, is refused; the sbatch script carries what was asked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from sae_transfer import atlas, check
from sae_transfer.atlas import base_store
from sae_transfer.atlas.config import Slurm
from sae_transfer.atlas.engine import submit_slurm
from sae_transfer.atlas.job import finished as finished_job
from sae_transfer.atlas.run import plan
from sae_transfer.cli import main

pytestmark = pytest.mark.slow

CONFIG = {"base": "zoo:base-s", "saes": ["zoo:base-s"], "datasets": ["zoo:code"], "zoo": "smoke",
          "finetunes": [{"checkpoints": "zoo:code"}, {"checkpoints": "zoo:math"}, {"checkpoints": "zoo:mix"}],
          "check": {"tokens": 8192, "batch_size": 8}, "executor": "debug"}
#: What a row holds that is not a number of the check (where, when and with what it was computed).
BOOKKEEPING = ("seconds", "job", "store", "made_commit", "made_device", "made_host", "made_versions")


def _write(tmp: Path, **changes) -> Path:
    path = tmp / "atlas.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **changes}))
    return path


def _numbers(rows: list[dict]) -> dict[str, dict]:
    return {r["finetune"]: {k: v for k, v in r.items() if k not in BOOKKEEPING} for r in rows}


@pytest.fixture(scope="module")
def debug_atlas(smoke_card, tmp_path_factory):
    """The atlas of every smoke checkpoint, in this process: (config file, out, store, summary, rows)."""
    tmp = tmp_path_factory.mktemp("atlas")
    path = _write(tmp)
    out, store = tmp / "out", tmp / "store"
    summary = atlas.run(atlas.read(path), out, store)
    return path, out, store, summary, atlas.read_rows(out)


def test_every_checkpoint_is_one_job_and_the_base_runs_once(debug_atlas):
    _, _, _, s, rows = debug_atlas
    assert s["jobs"] == 13 and s["ran"] == 13 and s["failed"] == [] and s["rows"] == 13
    assert s["base_jobs"] == 1 and s["models_loaded"] == 14  # N + 1 models, where N checks load 2N
    assert [r["finetune"] for r in rows][:5] == [f"zoo:code@{s}" for s in (8, 15, 30, 60, 120)]
    assert s["store_bytes"] > 0 and all(r["verdict"] in ("transfers", "degraded", "broken") for r in rows)
    assert all(r["made_commit"] and r["made_versions"]["torch"] for r in rows)  # provenance on every row
    # the zoo's recipe gives each checkpoint's compute; the weights moved further the longer it trained
    code = [r for r in rows if r["finetune"].startswith("zoo:code@")]
    assert [r["steps_x_lr"] for r in code] == pytest.approx([s * 3e-3 for s in (8, 15, 30, 60, 120)])
    assert all(a["weight_deviation"] < b["weight_deviation"] for a, b in zip(code, code[1:]))


def test_the_atlas_equals_check_on_the_same_tokens(debug_atlas):
    path, _, _, _, rows = debug_atlas
    cfg = atlas.read(path)
    data = check.run(cfg.request(cfg.saes[0]), Path(os.devnull))
    assert len(data["results"]) == len(rows) == 13
    for r, c in zip(rows, data["results"]):
        assert (r["finetune"], r["step"], r["verdict"], r["tokens"]) == (c["finetune"], c["step"], c["verdict"],
                                                                         c["tokens"])
        for k, m in c["metrics"].items():  # equal, not close: the same code on the same bytes
            assert (r[k], r[f"{k}_lo"], r[f"{k}_hi"]) == (m["value"], m["lo"], m["hi"]), (r["finetune"], k)


def test_a_rerun_skips_every_whole_job_and_loads_no_model(debug_atlas):
    path, out, store, _, rows = debug_atlas
    s = atlas.run(atlas.read(path), out, store)
    assert (s["skipped"], s["ran"], s["base_jobs"], s["models_loaded"]) == (13, 0, 0, 0)
    assert atlas.read_rows(out) == rows


def test_local_jobs_in_subprocesses_store_the_same_bytes_and_numbers(debug_atlas, tmp_path):
    path, _, store, _, rows = debug_atlas
    s = atlas.run(atlas.read(path, executor="local", parallel=2), tmp_path / "out", tmp_path / "store")
    assert s["slots"] == 2 and s["ran"] == 13 and s["failed"] == []
    manifests = [json.loads(p.read_text())["shards"] for root in (store, tmp_path / "store")
                 for p in sorted(root.glob("pass-*/store.json"))]
    assert manifests[0] == manifests[1]  # every shard the same sha256, computed in another process
    got, want = _numbers(atlas.read_rows(tmp_path / "out")), _numbers(rows)
    for ft, w in want.items():  # one thread per job instead of two: float64 weight sums may differ in the last bit
        assert got[ft].pop("weight_deviation") == pytest.approx(w.pop("weight_deviation"), rel=1e-12)
        assert got[ft] == w


def test_a_killed_atlas_resumes_with_only_the_unfinished_jobs(debug_atlas, tmp_path):
    path, _, store, _, rows = debug_atlas
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sae_transfer", "atlas", "-f", str(path), "--executor", "local", "--parallel",
           "1", "--out", str(out), "--store", str(store)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list((out / "jobs").glob("*.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the atlas and its running job, mid-way
    proc.wait()
    finished = len(list((out / "jobs").glob("*.json")))
    assert 2 <= finished < 13
    jobs = plan(atlas.read(path), out, store).finetune_jobs
    assert sum(finished_job(j.out, j.key) is not None for j in jobs) == finished  # every output there is whole
    s = atlas.run(atlas.read(path), out, store)
    assert s["skipped"] == finished and s["ran"] == 13 - finished and s["failed"] == []
    assert _numbers(atlas.read_rows(out)) == _numbers(rows)


def test_a_store_resumes_shard_by_shard(debug_atlas, tmp_path):
    path, _, store, _, _ = debug_atlas
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (pass_dir,) = copy.glob("pass-*")
    whole = json.loads((pass_dir / "store.json").read_text())
    (pass_dir / "store.json").unlink()  # killed before the manifest: 3 shards lost, one cut short
    for i in (13, 14, 15):
        (pass_dir / f"shard-{i:05d}.safetensors").unlink()
    (pass_dir / "shard-00012.safetensors").write_bytes(b"cut")
    cfg = atlas.read(path)
    setup = plan(cfg, tmp_path / "out", copy).base_jobs[0].setup
    (m,) = base_store.build(setup, cfg.spec, cfg.datasets, copy)
    assert m["computed"] == 4 and m["shards"] == whole["shards"]


def test_an_edited_store_fails_its_jobs_in_one_line_and_the_rest_go_on(debug_atlas, tmp_path, capsys):
    path, _, store, _, _ = debug_atlas
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (pass_dir,) = copy.glob("pass-*")
    shard = pass_dir / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    cfg = _write(tmp_path, finetunes=["zoo:code@8", "zoo:math@8"])
    status = main(["atlas", "-f", str(cfg), "--out", str(tmp_path / "out"), "--store", str(copy)])
    failed = re.findall(r"^failed: .*$", capsys.readouterr().err.replace("\r", "\n"), re.M)
    assert status == 1 and len(failed) == 2 and all("differs from its record" in line for line in failed)
    assert not list((tmp_path / "out" / "jobs").glob("*.json"))


def test_a_store_of_other_tokens_is_refused(debug_atlas):
    path, _, store, _, _ = debug_atlas
    (pass_dir,) = store.glob("pass-*")
    ref = base_store.StoreRef(pass_dir, json.loads((pass_dir / "store.json").read_text())["key"])
    stored = base_store.StoredBase(ref)
    with pytest.raises(RuntimeError, match="token ids differ"):
        stored(0, torch.zeros(8, 64, dtype=torch.long))


def test_the_sbatch_script_carries_the_requested_options(debug_atlas, tmp_path, monkeypatch):
    path, out, store, _, _ = debug_atlas
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 4242'\n")
    (bin_dir / "srun").write_text("#!/bin/sh\n")  # submitit looks for it to know it is on a cluster
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    slurm = Slurm(partition="gpu", gpus_per_node=1, cpus_per_task=8, mem="64G", time=90, array_parallelism=4,
                  account="interp", setup=("module load cuda/12.4",), additional=(("exclusive", True),))
    jobs = plan(atlas.read(path), out, store).finetune_jobs
    handles = submit_slurm(jobs, tmp_path / "submitit", slurm, "atlas")
    assert [h.job_id for h in handles[:2]] == ["4242_0", "4242_1"]
    script = handles[0].paths.submission_file.read_text()
    for option in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64G", "--time=90",
                   f"--array=0-{len(jobs) - 1}%4", "--account=interp", "--job-name=atlas", "--exclusive"):
        assert f"#SBATCH {option}\n" in script, option
    assert "module load cuda/12.4" in script and "submitit.core._submit" in script


@pytest.mark.parametrize("change, words", [
    ({"executor": "ray"}, "executor='ray': use one of"),
    ({"colour": "blue"}, "unknown key(s) ['colour']"),
    ({"finetunes": [{"checkpoint": "zoo:code"}]}, "neither a model spec nor {checkpoints"),
    ({"finetunes": ["zoo:nope"]}, "finetune='zoo:nope'"),
    ({"check": {"tokens": "many"}}, "check.tokens='many': give an integer"),
    ({"slurm": {"time": 0}}, "slurm.time=0: give a positive integer"),
    ({"datasets": []}, "datasets: give a spec or a non-empty list"),
])
def test_bad_atlas_files_are_one_line_and_exit_2_before_any_job(smoke_card, tmp_path, capsys, change, words):
    status = main(["atlas", "-f", str(_write(tmp_path, **change)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
