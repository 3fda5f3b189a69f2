"""``python -m sae_transfer check`` on the smoke zoo: verdicts consistent with the book, exit statuses, the report
and its schema, ``--watch``, ``--adapt``, bad input; and the verdict rules themselves."""

import json
import math

import pytest

from sae_transfer.cli import main
from sae_transfer.core import verdict as V

SMOKE = ["--zoo", "smoke", "--base", "zoo:base-s", "--sae", "zoo:base-s"]


# ------------------------------------------------------------------------------------------ the rules

def test_each_criterion_classifies_by_its_two_thresholds():
    assert V.EV_DROP.classify(0.01) == "transfers"
    assert V.EV_DROP.classify(0.1) == "degraded"
    assert V.EV_DROP.classify(0.5) == "broken"
    assert V.REGULAR_ACT_SIM.classify(0.95) == "transfers"
    assert V.REGULAR_ACT_SIM.classify(0.8) == "degraded"
    assert V.REGULAR_ACT_SIM.classify(0.5) == "broken"
    assert V.REGULAR_ACT_SIM.classify(math.nan) == "degraded"  # nothing measured never passes
    assert V.classify({"ev_drop": 0.0, "ce_recovered_drop": 0.0, "regular_act_sim": 0.6})["verdict"] == "broken"


def test_a_verdict_is_decided_only_when_both_ends_of_every_interval_agree():
    ok = {"ev_drop": (0.0, 0.01), "ce_recovered_drop": (-0.01, 0.0), "regular_act_sim": (0.95, 0.99)}
    assert V.decided(ok)
    assert not V.decided({**ok, "ev_drop": (0.0, 0.05)})  # straddles "transfers" / "degraded"
    # one criterion certainly broken decides "broken", however uncertain the others are
    assert V.decided({**ok, "ev_drop": (0.0, 0.15), "regular_act_sim": (0.3, 0.5)})
    assert not V.decided({**ok, "regular_act_sim": (0.6, 0.75)})


# ------------------------------------------------------------------------------------------ the command

def _check(args, tmp_path, name="out"):
    out = tmp_path / name
    status = main(["check", *SMOKE, *args, "--out", str(out)])
    return status, json.loads((out / "check.json").read_text()) if (out / "check.json").exists() else None


@pytest.fixture(scope="module")
def code_check(smoke_card, tmp_path_factory):
    out = tmp_path_factory.mktemp("check-code")
    status = main(["check", *SMOKE, "--finetune", "zoo:code", "--out", str(out)])
    return status, json.loads((out / "check.json").read_text()), out


def test_the_aggressive_code_finetune_is_broken_and_exits_11(code_check):
    status, data, out = code_check
    assert status == 11 and data["verdict"] == "broken" and data["exit_status"] == 11
    (r,) = data["results"]
    assert r["dataset"] == "zoo:code" and r["step"] == 120  # its own domain, its last step
    assert r["decided"] and r["criteria"]["regular_act_sim"] == "broken"
    m = r["metrics"]
    assert m["regular_act_sim"]["lo"] <= m["regular_act_sim"]["value"] <= m["regular_act_sim"]["hi"] < 0.7
    assert m["ev_drop"]["value"] == pytest.approx(m["ev_base"]["value"] - m["ev_finetune"]["value"])
    assert 0.5 < m["residual_cos"]["value"] < 0.99 and m["l0_ratio"]["value"] > 1
    # the features to re-check are the regular ones that fell most, lowest first, with their contexts
    sims = [f["act_sim"] for f in r["recheck"]]
    assert len(sims) == 10 and sims == sorted(sims) and sims[0] < 0.3
    assert all("⟦" in c["text"] for f in r["recheck"] for c in f["contexts"]["base"])


def test_the_report_follows_its_schema(code_check):
    _, data, out = code_check
    assert data["schema"] == 2 and data["thresholds"]["version"] == V.VERSION
    assert set(data["thresholds"]["criteria"]) == {c.key for c in V.CRITERIA}
    assert data["request"]["hook"] == "blocks.1.hook_resid_pre" and data["request"]["spec"]["max_tokens"] == 16384
    assert {"commit", "versions", "device"} <= set(data["provenance"])
    r = data["results"][0]
    assert r["tokens"] == r["batches"] * 8 * 64 and r["tokens"] <= 16384
    html = (out / "report.html").read_text()
    assert "Verdict: <b>broken</b>" in html and "criteria.png" in html
    assert (out / "criteria.png").stat().st_size > 5000


def test_the_gentle_math_finetune_transfers_or_degrades(smoke_card, tmp_path):
    status, data = _check(["--finetune", "zoo:math"], tmp_path)
    assert data["verdict"] in ("transfers", "degraded") and status == V.EXIT_STATUS[data["verdict"]]
    assert data["results"][0]["metrics"]["regular_act_sim"]["value"] > 0.9


def test_step_0_is_the_base_itself_and_transfers_exactly(smoke_card, tmp_path):
    status, data = _check(["--finetune", "zoo:code@0", "--dataset", "zoo:prose", "--tokens", "8192"], tmp_path)
    (r,) = data["results"]
    assert status == 0 and r["verdict"] == "transfers" and r["decided"]
    for key in ("ev_drop", "ce_recovered_drop"):
        assert r["metrics"][key]["value"] == 0.0 and r["metrics"][key]["lo"] == r["metrics"][key]["hi"] == 0.0
    assert r["metrics"]["regular_act_sim"]["value"] == pytest.approx(1.0, abs=1e-9)
    assert r["stopped_early"] and r["tokens"] == 4096  # decided at the first look: half the budget


def test_without_early_stopping_every_token_is_measured(smoke_card, tmp_path):
    _, data = _check(["--finetune", "zoo:code@0", "--dataset", "zoo:prose", "--tokens", "8192", "--no-early-stop"],
                     tmp_path)
    assert data["results"][0]["tokens"] == 8192 and not data["results"][0]["stopped_early"]


def test_watch_measures_every_checkpoint_in_order_and_plots_them(smoke_card, tmp_path):
    status, data = _check(["--watch", "zoo:code", "--tokens", "8192"], tmp_path)
    steps = [r["step"] for r in data["results"]]
    assert steps == [8, 15, 30, 60, 120]
    sims = [r["metrics"]["regular_act_sim"]["value"] for r in data["results"]]
    assert sims[0] > sims[-1] + 0.2  # similarity falls along finetuning
    assert data["results"][0]["verdict"] != "broken" and data["results"][-1]["verdict"] == "broken"
    assert status == V.EXIT_STATUS["broken"] and (tmp_path / "out" / "watch.png").stat().st_size > 5000


def test_adapt_repairs_the_code_finetunes_sae_to_the_native_saes_level(smoke_card, tmp_path):
    from sae_transfer.data.tokens import TokenSpec, token_windows
    from sae_transfer.models.load import load_local_sae
    from sae_transfer.passes.sae_metrics import sae_pass
    from sae_transfer.zoo import Zoo

    _, data = _check(["--finetune", "zoo:code", "--adapt", "--adapt-tokens", "200000"], tmp_path)
    a = data["adapt"]
    before, after = a["base_sae_on_finetune"], a["adapted_sae_on_finetune"]
    assert after["ev_token"] > before["ev_token"] + 0.05 and after["delta_ce"] < before["delta_ce"]
    zoo = Zoo.open("smoke")
    spec = data["request"]["spec"]
    r = data["results"][0]
    windows = token_windows(TokenSpec("zoo:code", spec["max_tokens"], spec["context_size"], spec["batch_size"]),
                            None, "smoke")[: r["tokens"] // spec["context_size"]]
    native = sae_pass(zoo.model("code"), zoo.sae("code"), "blocks.1.hook_resid_pre", windows.split(8),
                      r["outlier_threshold"] or math.inf)["kept"]
    assert after["ev_token"] >= native["ev_token"], (after["ev_token"], native["ev_token"])
    reloaded = load_local_sae(tmp_path / "out" / "adapted-sae", "cpu")  # saved in sae_lens format
    assert reloaded.cfg.d_sae == zoo.sae("base-s").cfg.d_sae


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("args, words", [
    (["--finetune", "zoo:nope"], "finetune='zoo:nope': no model 'nope'"),
    (["--finetune", "zoo:code", "--hook", "blocks.9.hook_resid_pre"], "hook='blocks.9.hook_resid_pre' names block 9 but base='zoo:base-s' has blocks 0..1"),
    (["--finetune", "zoo:code", "--tokens", "1024"], "tokens=1024 gives fewer than 4 batches"),
    (["--finetune", "zoo:code", "--dataset", "zoo:poetry"], "valid zoo datasets are"),
    (["--finetune", "zoo:code", "--context-size", "512"], "context_size=512 exceeds the base model's context"),
    (["--finetune", "zoo:mix"], "dataset: give --dataset"),
    (["--finetune", "zoo:code", "--watch", "zoo:code"], "give --finetune or --watch, not both"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(smoke_card, tmp_path, capsys, args, words):
    out = tmp_path / "out"
    assert main(["check", *SMOKE, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_an_sae_of_another_width_is_refused(smoke_card, tmp_path, capsys):
    args = ["check", "--zoo", "smoke", "--base", "zoo:base-s", "--sae", "zoo:base-m", "--finetune", "zoo:code",
            "--hook", "blocks.1.hook_resid_pre", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "sae='zoo:base-m' reads width 96 but base='zoo:base-s' has a residual stream of width 64" in \
        capsys.readouterr().err


def test_watch_orders_a_directory_of_checkpoints_by_the_number_in_their_names(tmp_path):
    from sae_transfer.check.run import step_of, watch_series

    for name in ("checkpoint-1000", "checkpoint-500", "checkpoint-50", "notes"):
        (tmp_path / name).mkdir()
    for name in ("checkpoint-1000", "checkpoint-500", "checkpoint-50"):
        (tmp_path / name / "config.json").write_text("{}")
    series = watch_series(str(tmp_path), "smoke")
    assert [s.rsplit("/", 1)[1] for s in series] == ["checkpoint-50", "checkpoint-500", "checkpoint-1000"]
    assert [step_of(s, i, "smoke") for i, s in enumerate(series)] == [50, 500, 1000]
    with pytest.raises(ValueError, match="no model directory"):
        watch_series(str(tmp_path / "notes"), "smoke")


def test_the_cli_keeps_the_chapters_preflight_apart_from_the_checks(smoke_card, tmp_path, capsys):
    """``run`` and ``check`` each reach their own preflight (a shadowed import once broke ``run``)."""
    out = tmp_path / "r"
    assert main(["run", "residuals", "--profile", "smoke", "-p", "base", "zoo:nope", "--out", str(out)]) == 2
    assert "no model 'nope'" in capsys.readouterr().err


def test_no_crash_exits_with_a_verdict_code(smoke_card, tmp_path):
    """A check killed mid-pass, or failing with an uncaught error, exits with a code no verdict has."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "sae_transfer", "check", *SMOKE, "--finetune", "zoo:code", "--no-early-stop",
           "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() not in V.EXIT_STATUS.values()
    crash = subprocess.run([sys.executable, "-c", "from sae_transfer import check; from sae_transfer.cli import main;"
                            " check.run = lambda *a, **k: 1 / 0; raise SystemExit(main(['check', " +
                            ", ".join(repr(a) for a in SMOKE) + ", '--finetune', 'zoo:code', '--out', "
                            f"{str(tmp_path / 'crash')!r}]))"], capture_output=True, text=True)
    assert crash.returncode == 1 and "ZeroDivisionError" in crash.stderr
    assert crash.returncode not in V.EXIT_STATUS.values() and 2 not in V.EXIT_STATUS.values()
