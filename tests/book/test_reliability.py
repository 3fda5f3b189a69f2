"""Every careless input is one line on stderr and exit status 2 before any kernel starts, and nothing is left
half-written or silently mixed: concurrent runs, failed runs over good ones, damaged zoo files, failing
chapters in a book."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sae_transfer.book.chapters import Chapter, Parameter, ParameterError
from sae_transfer.book.runner import ChapterFailed, run_chapter
from tests.book.test_runner import NOTEBOOK

SLOW_NOTEBOOK = NOTEBOOK.replace('rep.number("n_squared", n * n)', 'import time\ntime.sleep(6)\nrep.number("n_squared", n * n)')


def cli(*argv, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "sae_transfer", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, env=None if env is None else {**os.environ, **env})


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A user's own pair as they save it (a Llama-style base and finetune, an SAE saved by sae_lens, JSON-lines
    text), and the ways such files go wrong: weights missing or cut off, a line that is not JSON, ..."""
    from tests.test_docs import own_pair

    root = tmp_path_factory.mktemp("own")
    own_pair(root, n_lines=400)
    (root / "short.jsonl").write_text('{"text": "a b c"}\n')
    (root / "text_not_str.jsonl").write_text('{"text": "hello there"}\n{"text": 5}\n')
    (root / "line_not_json.jsonl").write_text('{"text": "hello there"}\nnot json\n')
    for name, keep in (("no_weights", lambda f: "safetensors" not in f.name), ("cut_weights", lambda f: True)):
        (root / name).mkdir()
        for f in filter(keep, (root / "base").iterdir()):
            shutil.copy(f, root / name)
    weights = root / "cut_weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    for name, keep in (("sae_cfg_only", lambda f: f.name == "cfg.json"), ("sae_cut", lambda f: True)):
        (root / name).mkdir()
        for f in filter(keep, (root / "sae").iterdir()):
            shutil.copy(f, root / name)
    weights = root / "sae_cut" / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return root


def _files(tmp_path):
    """Inputs the cases below point at."""
    (tmp_path / "bad.yaml").write_text("n_tokens: [1, 2\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "unterminated\n')
    (tmp_path / "notext.jsonl").write_text('{"body": "hello"}\n')
    (tmp_path / "featurs.yaml").write_text("featurs:\n  n_tokens: 8\n")
    (tmp_path / "list.yaml").write_text("- residuals\n- features\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "emptyrecipe.yaml").write_text("seed: 0\n")
    (tmp_path / "mixed.yaml").write_text("n_tokens: 8\nresiduals:\n  n_tokens: 8\n")
    local = tmp_path / "local_model"
    local.mkdir()
    (local / "config.json").write_text('{"model_type": "gpt2", "n_positions": 64}')
    (local / "tokenizer.json").write_text("{}")
    from sae_transfer.core.paths import params_dir

    shutil.copy(params_dir() / "zoo" / "smoke.yaml", tmp_path / "unbuilt.yaml")
    recipe = (params_dir() / "zoo" / "smoke.yaml").read_text().replace("n_layers: 2,", "n_layers: two,", 1)
    (tmp_path / "typo_recipe.yaml").write_text(recipe)
    (tmp_path / "bad_recipe.yaml").write_text("models: {a: [1\n")
    toy = "seed: 0\nmodels:\n  a: {n_layers: 2, d_model: 8, n_heads: 2, d_mlp: 16, steps: 10, lr: 0.001, mix: {prose: 1.0}}\n"
    (tmp_path / "checkpoints_past_steps.yaml").write_text(
        toy + "  b: {parent: a, steps: 10, lr: 0.001, mix: {code: 1.0}, checkpoints: [0.5, 2.0]}\n")
    (tmp_path / "sae_past_blocks.yaml").write_text(
        toy + "saes:\n  a: {model: a, hook: blocks.5.hook_resid_pre, d_sae: 16, training_tokens: 1000, l1: 1.0}\n")
    (tmp_path / "twice.yaml").write_text("n_tokens: 8\nn_tokens: 16\n")
    (tmp_path / "bad_value_section.yaml").write_text("residuals:\n  n_tokens: -5\n")


SMOKE = ["--profile", "smoke"]
OWN = ["-p", "base", "local:{o}/base", "-p", "finetunes", "[local:{o}/ft]", "-p", "datasets", "[json:{o}/text.jsonl]"]
CASES = {
    "yaml_malformed": (["run", "residuals", *SMOKE, "-f", "{t}/bad.yaml"], "is not valid YAML: "),
    "yaml_is_dir": (["run", "residuals", *SMOKE, "-f", "{t}/adir"], "is a directory; give a YAML file"),
    "recipe_malformed": (["run", "residuals", "-p", "zoo", "{t}/bad_recipe.yaml"], "is not valid YAML"),
    "recipe_bad_value": (["zoo", "build", "--profile", "{t}/typo_recipe.yaml"], "n_layers='two' must be int"),
    "out_empty": (["run", "residuals", *SMOKE, "--out", ""], "--out is empty"),
    "out_is_file": (["run", "residuals", *SMOKE, "--out", "{t}/afile"], "is a file; give a directory"),
    "out_uncreatable": (["run", "residuals", *SMOKE, "--out", "{t}/afile/sub"], "cannot be created"),
    "zoo_not_built": (["run", "residuals", "-p", "zoo", "{t}/unbuilt.yaml"], "is not built; run: python -m "
                      "sae_transfer zoo build --profile {t}/unbuilt.yaml"),
    "zoo_no_such_model": (["run", "residuals", *SMOKE, "-p", "base", "zoo:nosuch"], "no model 'nosuch' in zoo"),
    "zoo_no_such_step": (["run", "residuals", *SMOKE, "-p", "finetunes", "[zoo:code@99999]"],
                         "saves no checkpoint at step 99999; saved steps are [0, "),
    "finetunes_empty": (["run", "residuals", *SMOKE, "-p", "finetunes", "[]"], "finetunes=[]: give at least one"),
    "local_empty_dir": (["run", "residuals", "-p", "base", "local:{t}/empty_dir", "-p", "finetunes",
                         "[local:{t}/empty_dir]"], "holds no config.json"),
    "local_sae_empty_dir": (["run", "sae_metrics", *SMOKE, "-p", "sae", "local:{t}/empty_dir"], "holds no cfg.json"),
    "json_missing": (["run", "residuals", *SMOKE, "-p", "datasets", "[json:{t}/nope.jsonl]"], "no such file"),
    "json_empty": (["run", "residuals", *SMOKE, "-p", "datasets", "[json:{t}/empty.jsonl]"], "is empty"),
    "json_malformed": (["run", "residuals", *SMOKE, "-p", "datasets", "[json:{t}/broken.jsonl]"],
                       "line 1 is not JSON"),
    "json_no_text": (["run", "residuals", *SMOKE, "-p", "datasets", "[json:{t}/notext.jsonl]"],
                     "records need a 'text' string; line 1: it has ['body']"),
    "context_too_small": (["run", "residuals", *SMOKE, "-p", "context_size", "1"], "context_size=1 must be an "
                          "integer of at least 2"),
    "context_too_large": (["run", "residuals", *SMOKE, "-p", "context_size", "4096"],
                          "exceeds the base model's context of"),
    "section_misspelled": (["run", "features", *SMOKE, "-f", "{t}/featurs.yaml"],
                           "section 'featurs' is not a chapter (did you mean 'features'?)"),
    "sections_mixed": (["run", "residuals", *SMOKE, "-f", "{t}/mixed.yaml"], "mixes sections"),
    "zoo_with_local": (["run", "residuals", *SMOKE, "-p", "finetunes", "[local:{t}/local_model]"],
                       "a zoo model pairs only with a zoo model"),
    "predict_needs_zoo": (["run", "predict", "-p", "base", "local:{t}/local_model"],
                          "chapter 'predict' needs a zoo base"),
    "text_runs_out": (["run", "residuals", *SMOKE, "-p", "n_tokens", "99999999"],
                      "n_tokens=99999999 needs 1562500 windows of 64 tokens but zoo:prose holds"),
    "text_runs_out_own_domain": (["run", "features", *SMOKE, "-p", "n_tokens", "99999999"],
                                 "n_select + n_tokens="),
    "hook_beyond_the_model": (["run", "sae_metrics", *SMOKE, "-p", "hook", "blocks.9.hook_resid_pre"],
                              "names block 9 but base='zoo:base-s' has blocks 0..1"),
    "layers_beyond_the_model": (["run", "answerability", *SMOKE, "-p", "layers", "[7]"],
                                "layers=[7]: the base model has blocks 0..1"),
    "negative_lr": (["run", "features", *SMOKE, "-p", "sae_finetune_lr", "-1"],
                    "sae_finetune_lr=-1.0 must be a positive"),
    "too_few_batches": (["run", "sae_metrics", *SMOKE, "-p", "n_tokens", "128"], "give at least 4: n_tokens >= "),
    "too_few_batches_of_this_size": (["run", "sae_metrics", *SMOKE, "-p", "n_tokens", "1024", "-p", "batch_size", "8"],
                                     "makes 2 batch(es) of 8 windows of 64 tokens; the intervals resample whole "
                                     "batches, so give at least 4: batch_size <= 4 or n_tokens >= 2048"),
    "memory_too_small_to_load": (["run", "residuals", *OWN, "-p", "memory", "64KiB"],
                                 "memory='64KiB' leaves 0.06 MiB beyond the weights on this machine, but loading "
                                 "base='local:{o}/base' takes about "),
    "memory_too_small_to_load_check": (["check", "--base", "local:{o}/base", "--finetune", "local:{o}/ft", "--sae",
                                        "local:{o}/sae", "--dataset", "json:{o}/text.jsonl", "--memory", "64KiB"],
                                       "while its Hugging Face weights are converted; set memory to at least "),
    "memory_unparsable": (["run", "sae_metrics", *SMOKE, "-p", "memory", "lots"], "memory='lots': use 'auto', a size"),
    "memory_check": (["check", "--zoo", "smoke", "--base", "zoo:base-s", "--sae", "zoo:base-s", "--finetune",
                      "zoo:code", "--memory", "150%"], "memory='150%': use 'auto'"),
    "book_unknown_profile": (["book", "--profile", "huge"], "unknown profile 'huge'; valid profiles are"),
    "diffing_k_zero": (["run", "diffing", *SMOKE, "-p", "k", "0"], "k=0 must be an integer of at least 1"),
    "diffing_twin_missing": (["run", "diffing", *SMOKE, "-p", "twin", "zoo:nope"],
                             "twin='zoo:nope': no model 'nope' in zoo profile 'smoke'"),
    "diffing_twin_other_source": (["run", "diffing", *SMOKE, "-p", "twin", "hub:gpt2"],
                                  "twin='hub:gpt2': base='zoo:base-s' pairs only with a twin of the same source"),
    "diffing_second_sae_unparsable": (["run", "diffing", *SMOKE, "-p", "second_sae", "foo"],
                                      "second_sae='foo': unknown source"),
    "sizes_sae_width": (["run", "sizes", *SMOKE, "-p", "small_sae", "zoo:base-m"],
                        "small_sae='zoo:base-m' reads width 96 but small='zoo:base-s' has a residual stream of "
                        "width 64"),
    "sizes_second_sae_other_layer": (["run", "sizes", *SMOKE, "-p", "second_sae", "zoo:base-s-seed1"],
                                     "second_sae='zoo:base-s-seed1' reads width 64 but large='zoo:base-m'"),
    "sizes_steer_not_a_dataset": (["run", "sizes", *SMOKE, "-p", "steer_to", "zoo:code/train"],
                                  "steer_to='zoo:code/train' is not one of datasets="),
    "sizes_stitch_tokens": (["run", "sizes", *SMOKE, "-p", "stitch_tokens", "100"],
                            "stitch_tokens=100 must be an integer of at least 4096"),
    "book_file_without_out": (["book", "-f", "{t}/featurs.yaml"], "-f FILE and --out DIR go together"),
    "book_file_and_profile": (["book", *SMOKE, "-f", "{t}/featurs.yaml", "--out", "{t}/out"], "not both"),
    "book_file_missing": (["book", "-f", "{t}/nope.yaml", "--out", "{t}/out"], "nope.yaml' does not exist"),
    "book_file_bad_section": (["book", "-f", "{t}/featurs.yaml", "--out", "{t}/out"],
                              "section 'featurs' is not a chapter (did you mean 'features'?)"),
    "book_file_list": (["book", "-f", "{t}/list.yaml", "--out", "{t}/out"], "list.yaml' is not a mapping"),
    "book_file_empty": (["book", "-f", "{t}/empty.yaml", "--out", "{t}/out"], "empty.yaml' is empty"),
    "recipe_without_models": (["run", "zoo", "-p", "zoo", "{t}/emptyrecipe.yaml"], "zoo recipe: models is empty"),
    "check_device_meta": (["check", "--zoo", "smoke", "--base", "zoo:base-s", "--sae", "zoo:base-s", "--finetune",
                           "zoo:code", "--device", "meta"], "device='meta' cannot run a model here"),
    "predict_base_without_finetunes": (["run", "predict", *SMOKE, "-p", "base", "zoo:twin"],
                                       "base='zoo:twin': zoo profile 'smoke' holds no finetune of it"),
    "seed_negative": (["run", "answerability", *SMOKE, "-p", "seed", "-1"], "seed=-1 must be a non-negative integer"),
    # what needs a model's or an SAE's configuration (never its weights), checked before any kernel
    "hook_typo": (["run", "sae_metrics", *OWN, "-p", "sae", "local:{o}/sae", "-p", "hook", "blocks.1.hook_resid_prr"],
                  "hook='blocks.1.hook_resid_prr' is not a hook of base='local:{o}/base'; close matches: "
                  "['blocks.1.hook_resid_pre'"),
    "hook_not_the_saes": (["run", "sae_metrics", *OWN, "-p", "sae", "local:{o}/sae", "-p", "hook",
                           "blocks.1.hook_resid_post"], "but sae='local:{o}/sae' was trained at 'blocks.1.hook_resid_pre'"),
    "sae_width_not_the_models": (["run", "sae_metrics", *SMOKE, "-p", "sae", "zoo:base-m"],
                                 "sae='zoo:base-m' reads width 96 but base='zoo:base-s' has a residual stream of width 64"),
    "sae_without_weights": (["run", "sae_metrics", *OWN, "-p", "sae", "local:{o}/sae_cfg_only"],
                            "the directory holds no sae_weights.safetensors"),
    "sae_weights_cut_off": (["run", "sae_metrics", *OWN, "-p", "sae", "local:{o}/sae_cut"],
                            "sae_weights.safetensors is cut off"),
    "model_without_weights": (["run", "residuals", "-p", "base", "local:{o}/no_weights", "-p", "finetunes",
                               "[local:{o}/ft]"], "the directory holds no model.safetensors or"),
    "model_weights_cut_off": (["run", "residuals", "-p", "base", "local:{o}/base", "-p", "finetunes",
                               "[local:{o}/cut_weights]"], "model.safetensors is cut off ("),
    "hub_offline": (["run", "residuals", "-p", "base", "hub:gpt2", "-p", "finetunes", "[hub:gpt2]"],
                    "base='hub:gpt2': not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    "sae_lens_release_unknown": (["run", "sae_metrics", *OWN, "-p", "sae", "sae_lens:gemma-scope-2b-pt-rez:x"],
                                 "sae_lens has no release 'gemma-scope-2b-pt-rez'; close matches: ['gemma-scope-2b-pt-res'"),
    "sae_lens_id_unknown": (["run", "sae_metrics", *OWN, "-p", "sae", "sae_lens:gemma-scope-2b-pt-res:nope"],
                            "release 'gemma-scope-2b-pt-res' has no SAE 'nope'"),
    "json_too_short": (["run", "residuals", *OWN, "-p", "datasets", "[json:{o}/short.jsonl]"],
                       "n_tokens=49152 needs 384 windows of 128 tokens but dataset='json:{o}/short.jsonl' holds 0"),
    "json_too_short_for_check": (["check", "--base", "local:{o}/base", "--finetune", "local:{o}/ft", "--sae",
                                  "local:{o}/sae", "--dataset", "json:{o}/text.jsonl", "--tokens", "999999"],
                                 "tokens=999999 needs 7813 windows of 128 tokens but dataset='json:{o}/text.jsonl' "
                                 "holds"),
    "json_text_not_a_string": (["run", "residuals", *OWN, "-p", "datasets", "[json:{o}/text_not_str.jsonl]"],
                               "text_not_str.jsonl': records need a 'text' string; line 2: 'text' is int"),
    "json_line_not_json": (["run", "residuals", *OWN, "-p", "datasets", "[json:{o}/line_not_json.jsonl]"],
                           "line_not_json.jsonl': line 2 is not JSON"),
    "check_hub_offline": (["check", "--base", "hub:gpt2", "--finetune", "hub:gpt2", "--sae", "local:{o}/sae",
                           "--dataset", "json:{o}/text.jsonl"], "not in the local Hugging Face cache"),
    "check_without_weights": (["check", "--base", "local:{o}/no_weights", "--finetune", "local:{o}/ft", "--sae",
                               "local:{o}/sae", "--dataset", "json:{o}/text.jsonl"], "holds no model.safetensors"),
    "check_hook_typo": (["check", "--base", "local:{o}/base", "--finetune", "local:{o}/ft", "--sae", "local:{o}/sae",
                         "--hook", "blocks.1.hook_resid_prr", "--dataset", "json:{o}/text.jsonl"],
                        "is not a hook of base="),
    "diffing_text_too_short_to_train": (["run", "diffing", "-p", "base", "local:{o}/base", "-p", "finetunes",
                                         "[local:{o}/ft]", "-p", "sae", "local:{o}/sae", "-p", "twin", "", "-p",
                                         "second_sae", "", "-p", "base_data", "json:{o}/text.jsonl", "-p",
                                         "train_tokens", "307200"],
                                        "train_tokens=307200 and n_tokens=16384 need 2649 windows of 128 tokens of "
                                        "base_data='json:{o}/text.jsonl' (2521 to train the crosscoder, then 128 to "
                                        "evaluate it) but it holds"),
    "run_device_meta": (["run", "residuals", *SMOKE, "-p", "device", "meta"], "device='meta' cannot run a model here"),
    # checks across parameters (a Study's ``check``)
    "demo_tokens_past_the_context": (["run", "predict", *SMOKE, "-p", "demo_tokens", "100000"],
                                     "demo_tokens=100000 leaves no room for a query in context_size=64; use "
                                     "demo_tokens <= 62"),
    "expansion_past_memory": (["run", "diffing", *SMOKE, "-p", "expansion", "1000000", "-p", "memory", "1GB"],
                              "expansion=1000000: a crosscoder of 64000000 latents on width 64 needs 244.14 GiB to "
                              "train, over memory='1GB'"),
    # files
    "cache_not_writable": (["run", "residuals", *SMOKE], "cache directory {t}/afile/cache cannot be written"),
    "yaml_key_twice": (["run", "residuals", *SMOKE, "-f", "{t}/twice.yaml"], "key 'n_tokens' is given twice at line 2"),
    "book_file_error_names_its_section": (["book", "-f", "{t}/bad_value_section.yaml", "--out", "{t}/out"],
                                          "bad_value_section.yaml', section 'residuals': n_tokens=-5 must be"),
    "recipe_checkpoints_past_steps": (["zoo", "build", "--profile", "{t}/checkpoints_past_steps.yaml"],
                                      "models.b.checkpoints=[0.5, 2.0]: [2.0] are not fractions of its steps"),
    "recipe_sae_past_the_blocks": (["zoo", "build", "--profile", "{t}/sae_past_blocks.yaml"],
                                   "saes.a.hook='blocks.5.hook_resid_pre'; a zoo SAE reads blocks.L.hook_resid_pre or "
                                   "blocks.L.hook_resid_post of its model, L in 0..1"),
}
ENV = {"cache_not_writable": {"SAE_TRANSFER_CACHE": "{t}/afile/cache"}}


def _in_process(argv: list, env: dict, monkeypatch, capsys) -> tuple[int, str]:
    """``python -m sae_transfer argv`` as ``__main__`` runs it, in this process (a process of its own costs seconds
    of imports a case; ``test_bad_input_exits_2_as_a_process`` keeps the process path): exit status and stderr."""
    from sae_transfer.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    return rc, capsys.readouterr().err


def _case(case: str, tmp_path: Path, own: Path | None = None) -> tuple[list[str], str, dict]:
    """A case's argv, message and environment, its files written under ``tmp_path`` and its placeholders filled
    (``{t}``: ``tmp_path``, ``{o}``: the own pair's directory); a run writes under ``tmp_path / "out"`` unless the
    case names its own ``--out``, so "nothing written" can be checked."""
    _files(tmp_path)
    argv, message = CASES[case]
    fill = lambda text: text.replace("{t}", str(tmp_path)).replace("{o}", str(own))  # noqa: E731
    argv, message = [fill(a) for a in argv], fill(message)
    env = {k: fill(v) for k, v in ENV.get(case, {}).items()}
    if "--out" not in argv and argv[0] == "run":
        argv = [*argv, "--out", str(tmp_path / "out")]
    return argv, message, env


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_before_any_kernel(case, tmp_path, smoke_card, own, monkeypatch, capsys):
    argv, message, env = _case(case, tmp_path, own)
    t0 = time.perf_counter()
    rc, err = _in_process(argv, env, monkeypatch, capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err, err
    assert not (tmp_path / "out").exists()  # no kernel started, nothing written
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("case", ["yaml_malformed", "text_runs_out", "recipe_bad_value"])
def test_bad_input_exits_2_as_a_process(case, tmp_path, smoke_card):
    """The process path the in-process cases skip: ``__main__``'s exit status, stderr alone."""
    argv, message, env = _case(case, tmp_path)
    assert not env
    proc = cli(*argv)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_default_too_large_for_the_pair_is_lowered_and_a_value_given_is_refused(own, capsys):
    """Defaults fit the pair: the diffing chapter's default ``train_tokens`` (307,200) needs more text than this
    pair's file holds, so it is lowered to the largest that fits, said on stderr; the same value given is refused,
    and the lowered value, given, passes."""
    from sae_transfer.book.chapters import get_chapter, left_at_default, resolve_params
    from sae_transfer.book.preflight import preflight
    from sae_transfer.studies.parameters import Unfit

    chapter = get_chapter("diffing")
    given = [("base", f"local:{own}/base"), ("finetunes", f"[local:{own}/ft]"), ("sae", f"local:{own}/sae"),
             ("twin", ""), ("second_sae", ""), ("base_data", f"json:{own}/text.jsonl")]
    params = resolve_params(chapter, overrides=given)
    left = left_at_default(chapter, overrides=given)
    assert "train_tokens" in left and "base" not in left
    with pytest.raises(Unfit, match=r"^train_tokens=307200 and n_tokens=16384 need .* use train_tokens <= (\d+)") as e:
        preflight(params, "diffing")  # nothing left at its default: refused
    fitted = preflight(params, "diffing", left)
    assert fitted["train_tokens"] == e.value.fits and 1024 <= e.value.fits < 307200
    assert {k: v for k, v in fitted.items() if k != "train_tokens"} == {k: v for k, v in params.items()
                                                                      if k != "train_tokens"}
    err = capsys.readouterr().err
    assert f"diffing: using train_tokens={e.value.fits} (its default 307200 does not fit: train_tokens=307200" in err
    assert preflight(fitted, "diffing") == fitted


def test_a_default_expansion_past_memory_is_lowered_in_the_parameters(capsys, smoke_card):
    """A check across parameters (the crosscoder's width against ``memory``, width 64 on the smoke zoo: 256 KiB a
    unit of expansion) lowers the default and refuses the same value given."""
    from sae_transfer.book.chapters import get_chapter, resolve_params

    chapter = get_chapter("diffing")
    given = [("zoo", "smoke"), ("memory", "1MB")]
    assert chapter.defaults()["expansion"] == 8
    assert resolve_params(chapter, overrides=given)["expansion"] == 3  # 1e6 // 262144
    assert "diffing: using expansion=3 (its default 8 does not fit: expansion=8: a crosscoder" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="^expansion=8: .* use expansion <= 3$"):
        resolve_params(chapter, overrides=[*given, ("expansion", "8")])


# ------------------------------------------------------------------------------------------ run directories

def _chapter(tmp_path, text=NOTEBOOK, name="failing"):
    src = tmp_path / f"{name}.md"
    src.write_text(text)
    return Chapter(name, name.title(), src, (Parameter("n", "int", 1, "a number"),))


def test_a_second_run_into_a_busy_directory_is_refused(tmp_path):
    slow = _chapter(tmp_path, SLOW_NOTEBOOK)
    out = tmp_path / "out"
    first = {}
    thread = threading.Thread(target=lambda: first.update(run_chapter(slow, {"n": 1}, out, progress=False)))
    thread.start()
    while not list(tmp_path.glob(".tmp-out-*")):
        time.sleep(0.05)
    with pytest.raises(ParameterError, match="is in use by another run"):
        run_chapter(slow, {"n": 5}, out, progress=False)
    thread.join()
    results = json.loads((out / "results.json").read_text())
    assert results["numbers"] == {"n_squared": 1} == first["numbers"] and results["meta"]["params"] == {"n": 1}
    assert json.loads((out / "run.json").read_text())["params"] == {"n": 1}


def test_a_failed_run_never_mixes_with_the_run_before(tmp_path):
    chapter = _chapter(tmp_path)
    out = tmp_path / "out"
    run_chapter(chapter, {"n": 1}, out, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    failed = tmp_path / "out.failed"
    with pytest.raises(ChapterFailed, match=f"partial notebook kept at {failed}/failing.ipynb"):
        run_chapter(chapter, {"n": 3}, out, progress=False)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # the good run
    assert sorted(p.name for p in failed.iterdir()) == [".sae-transfer", "failing.ipynb", "figures", "run.json"]
    assert json.loads((failed / "run.json").read_text())["params"] == {"n": 3}
    with pytest.raises(ChapterFailed, match=f"partial notebook kept at {failed}/failing.ipynb"):
        run_chapter(chapter, {"n": 5}, out, progress=False)  # a second failure replaces the first, beside the good run
    assert json.loads((failed / "run.json").read_text())["params"] == {"n": 5}
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))
    shutil.rmtree(out)
    with pytest.raises(ChapterFailed, match=f"partial notebook kept at {out}/failing.ipynb"):
        run_chapter(chapter, {"n": 3}, out, progress=False)  # nothing good to keep: the failure is the run


def test_a_killed_runs_leftovers_are_cleared(tmp_path):
    chapter = _chapter(tmp_path)
    (tmp_path / ".tmp-out-abc123").mkdir()  # as kill -9 leaves it
    run_chapter(chapter, {"n": 1}, tmp_path / "out", progress=False)
    assert not (tmp_path / ".tmp-out-abc123").exists()


# ------------------------------------------------------------------------------------------ damaged zoo files

def test_a_damaged_zoo_file_is_named_and_rebuilt(tmp_path, monkeypatch, smoke_root):
    from sae_transfer.zoo import Zoo
    from sae_transfer.zoo.fingerprints import is_current, model_fingerprint

    copy = tmp_path / "cache" / "zoo" / "smoke"
    shutil.copytree(smoke_root, copy)
    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(tmp_path / "cache"))
    zoo = Zoo.open("smoke")
    assert zoo.root == copy
    model_dir = copy / "models" / "base-s"
    assert is_current(model_dir, model_fingerprint(zoo.recipe, "base-s"))
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as a full disk leaves it
    with pytest.raises(ValueError, match=f"zoo file {weights} is damaged"):
        zoo.model("base-s")
    with pytest.warns(UserWarning, match="is damaged .model.safetensors.; rebuilding it"):
        assert not is_current(model_dir, model_fingerprint(zoo.recipe, "base-s"))  # zoo build rebuilds it


# ------------------------------------------------------------------------------------------ the book

def test_the_book_runs_every_chapter_and_lists_failures(tmp_path, monkeypatch):
    from sae_transfer.book import build

    ok, bad, ok2 = (_chapter(tmp_path, NOTEBOOK, "first"), _chapter(tmp_path, NOTEBOOK, "broken"),
                    _chapter(tmp_path, NOTEBOOK, "last"))
    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "all_chapters", lambda: [ok, bad, ok2])
    monkeypatch.setattr(build, "chapter_names", lambda: ["first", "broken", "last"])
    monkeypatch.setattr("sae_transfer.book.parts.resolve_params",
                        lambda c, *a, **k: {"n": 3 if c.name == "broken" else 1})
    monkeypatch.setattr(build, "build_html", lambda book: book.html_dir)
    book = build.Book(tmp_path, (build.Part("smoke", "Chapters", "chapters"),), tmp_path / "runs", "test")
    with pytest.raises(ChapterFailed, match=r"1 of 3 chapters failed \(chapters/broken\)"):
        build.build_book(book)
    pages = sorted(p.name for p in (tmp_path / "book" / "chapters").iterdir())
    # the chapter after the failure ran too; the failed one's notice sits at its own path, where links point
    assert pages == ["broken.ipynb", "first.ipynb", "last.ipynb"]
    notice = json.loads((tmp_path / "book" / "chapters" / "broken.ipynb").read_text())
    assert "This page failed in this build" in "".join(notice["cells"][0]["source"])
    status = (tmp_path / "book" / "status.md").read_text()
    assert "## Failed chapters" in status and "ZeroDivisionError: boom at n=3" in status
    assert "[First]" in status and "[Last]" in status


def test_relative_paths_resolve_where_the_command_runs(tmp_path, monkeypatch):
    from sae_transfer.book.preflight import absolute_paths

    monkeypatch.chdir(tmp_path)
    params = {"base": "local:ft", "finetunes": ["local:../x", "zoo:code"], "datasets": ["json:d.jsonl", "zoo:prose"],
              "zoo": "recipes/mine.yaml", "sae": "sae_lens:rel:id", "n_tokens": 8}
    out = absolute_paths(params)
    assert out["base"] == f"local:{tmp_path / 'ft'}" and out["finetunes"] == [f"local:{tmp_path.parent / 'x'}",
                                                                             "zoo:code"]
    assert out["datasets"] == [f"json:{tmp_path / 'd.jsonl'}", "zoo:prose"]
    assert out["zoo"] == str(tmp_path / "recipes" / "mine.yaml")
    assert out["sae"] == "sae_lens:rel:id" and out["n_tokens"] == 8


@pytest.mark.parametrize("argv", [["run", "zoo", *SMOKE], ["book", "-f", "{t}/zoo.yaml"],
                                  ["check", "--zoo", "smoke", "--base", "zoo:base-s", "--sae", "zoo:base-s",
                                   "--finetune", "zoo:code"]], ids=["run", "book", "check"])
def test_a_directory_the_project_did_not_write_is_never_replaced(argv, tmp_path, smoke_card):
    """``--out`` on a directory holding a user's files is refused in one line, before anything runs, and every file
    stays as it was; a directory a run wrote is reused."""
    (tmp_path / "zoo.yaml").write_text("zoo:\n  zoo: smoke\n")
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("\\chapter{Results}\n")
    (out / "_toc.yml").write_text("format: jb-book\n")
    proc = cli(*[a.replace("{t}", str(tmp_path)) for a in argv], "--out", out)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "holds files this project did not write (first: '_toc.yml')" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["_toc.yml", "thesis.tex"]
    assert (out / "thesis.tex").read_text() == "\\chapter{Results}\n"


def test_a_run_directory_is_marked_and_rerun_in_place(tmp_path, smoke_card):
    out = tmp_path / "run"
    for _ in range(2):
        proc = cli("run", "zoo", *SMOKE, "--out", out)
        assert proc.returncode == 0, proc.stderr
    assert (out / ".sae-transfer").is_file() and (out / "results.json").is_file()
