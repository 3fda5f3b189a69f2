"""Chapter discovery and parameter checking: every bad input is one line naming what is valid."""

import subprocess
import sys

import pytest

from sae_transfer.book.chapters import ParameterError, chapter_names, get_chapter, resolve_params


def test_toc_lists_chapters_with_parameters():
    assert "zoo" in chapter_names()
    zoo = get_chapter("zoo")
    assert zoo.title == "The model zoo"
    params = {p.name: p for p in zoo.parameters}
    assert params["zoo"].type == "str" and params["zoo"].default == "default"
    assert "run_dir" not in params  # runner-owned
    assert params["device"].doc


def test_profile_file_and_overrides_layer(tmp_path):
    zoo = get_chapter("zoo")
    assert resolve_params(zoo, "smoke")["zoo"] == "smoke"
    f = tmp_path / "p.yaml"
    f.write_text("zoo:\n  device: cpu\n")
    assert resolve_params(zoo, "smoke", [f]) == {"zoo": "smoke", "device": "cpu"}
    flat = tmp_path / "flat.yaml"
    flat.write_text("zoo: smoke\n")
    assert resolve_params(zoo, None, [flat], [("device", "cpu")])["zoo"] == "smoke"


@pytest.mark.parametrize("kwargs, message", [
    ({"overrides": [("zooo", "smoke")]}, "unknown parameter 'zooo' for chapter 'zoo'; valid parameters are"),
    ({"overrides": [("zoo", "tiny")]}, "valid profiles are ['default', 'smoke', 'smollm2', 'smollm2-smoke']"),
    ({"overrides": [("device", "gpu0")]}, "device='gpu0' is not a torch device"),
    ({"profile": "huge"}, "unknown profile 'huge'; valid profiles are ['default', 'smoke', 'smollm2', 'smollm2-smoke']"),
    ({"files": ["missing.yaml"]}, "parameter file 'missing.yaml' does not exist"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ParameterError) as e:
        resolve_params(get_chapter("zoo"), **kwargs)
    assert message in str(e.value)


def test_type_errors_name_the_type():
    from sae_transfer.book.chapters import Chapter, Parameter, coerce

    ch = Chapter("c", "C", None, (Parameter("n", "int", 1, ""), Parameter("x", "float", 1.0, "")))
    assert coerce(ch, "n", "12") == 12 and coerce(ch, "x", "3") == 3.0
    with pytest.raises(ParameterError, match="parameter 'n' of chapter 'c' must be int, got 'abc'"):
        coerce(ch, "n", "abc")
    with pytest.raises(ParameterError, match="must be int"):
        coerce(ch, "n", True)


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown chapter 'nope'; valid chapters are ['zoo'"),
    (["run", "zoo", "-p", "zooo", "1"], "unknown parameter 'zooo'"),
    (["book", "--profile", "huge"], "unknown profile 'huge'"),
    (["book", "--jobs", "0"], "--jobs=0: give a whole number of at least 1"),
    (["zoo", "build", "--profile", "smoke", "--jobs", "two"], "--jobs='two': give a whole number of at least 1"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "sae_transfer", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_cli_list_shows_parameters():
    out = subprocess.run([sys.executable, "-m", "sae_transfer", "list"], capture_output=True, text=True,
                         check=True).stdout
    assert "zoo (str, default \"default\")" in out and "profiles: default, smoke" in out


def test_a_part_holds_only_the_chapters_its_profile_lists(tmp_path, monkeypatch):
    """The real family has one size and one architecture: its part leaves the sizes and across chapters out, of the
    runs and of the toc."""
    import yaml

    from sae_transfer.book import build
    from sae_transfer.book.chapters import profile_chapters
    from sae_transfer.book.parts import Book, book_parts

    parts = book_parts("default")
    assert [p.profile for p in parts] == ["default", "smollm2"]
    assert parts[0].holds("sizes") and not parts[1].holds("sizes") and not parts[1].holds("diffing")
    assert parts[0].holds("across") and not parts[1].holds("across")
    assert parts[0].holds("known_answers") and not parts[1].holds("known_answers")  # no model: once a book
    assert profile_chapters("smollm2") == tuple(c for c in chapter_names()
                                                if c not in ("sizes", "across", "diffing", "known_answers"))
    book = Book(tmp_path, tuple(parts), tmp_path / "runs", "test")
    (tmp_path / "book").mkdir()
    toc = yaml.safe_load(build.write_toc(book).read_text())
    files = {p["caption"]: [c["file"] for c in p["chapters"]] for p in toc["parts"]}
    assert "book/chapters/sizes" in files["Chapters"]
    assert "book/smollm2/sizes" not in files[parts[1].caption] and "book/smollm2/residuals" in files[parts[1].caption]
    assert "book/smollm2/diffing" not in files[parts[1].caption]
    (tmp_path / "params" / "book").mkdir(parents=True)
    (tmp_path / "params" / "book" / "odd.yaml").write_text("chapters: [zoo, sizez]\n")
    monkeypatch.setattr("sae_transfer.book.chapters.params_dir", lambda: tmp_path / "params")
    with pytest.raises(ParameterError, match=r"profile 'odd': chapters=\['zoo', 'sizez'\] must list chapters"):
        profile_chapters("odd")


def test_each_notebook_parameters_cell_is_written_from_its_study():
    from sae_transfer.book.chapters import stale_parameter_cells

    stale = stale_parameter_cells()
    assert not stale, f"parameters cells differ from their Study ({stale}): run python -m sae_transfer launch"


def test_a_parameter_declared_once_in_a_study_reaches_every_view(tmp_path, monkeypatch, capsys):
    """A throwaway parameter added to one ``Study`` shows in the notebook's cell, ``list``, the checks of ``-p``
    and of YAML files, and the parameters page; nothing else is edited."""
    from dataclasses import dataclass

    from sae_transfer import cli
    from sae_transfer.book import chapters
    from sae_transfer.studies import parameters as P
    from sae_transfer.studies.residuals.study import Study

    @dataclass(frozen=True, kw_only=True)
    class WithThrowaway(Study):
        throwaway: int = P.param(7, "a parameter no chapter has", P.positive("throwaway", least=3))

    real = chapters.study_class
    monkeypatch.setattr(chapters, "study_class", lambda name: WithThrowaway if name == "residuals" else real(name))
    chapters.notebook_page.cache_clear()
    try:
        cell = chapters.declared_cell("residuals")
        assert 'throwaway: int = 7  # a parameter no chapter has\nrun_dir: str = ""' in cell
        assert chapters.stale_parameter_cells() == ["residuals"]  # the notebook must be rewritten: a test says so
        cli.cmd_list()
        assert "    throwaway (int, default 7): a parameter no chapter has" in capsys.readouterr().out
        ch = get_chapter("residuals")
        assert resolve_params(ch, overrides=[("throwaway", "4")])["throwaway"] == 4
        with pytest.raises(ParameterError, match=r"throwaway=2 must be an integer of at least 3"):
            resolve_params(ch, overrides=[("throwaway", "2")])
        f = tmp_path / "p.yaml"
        f.write_text("residuals:\n  throwaway: 1\n")
        with pytest.raises(ParameterError, match=r"throwaway=1 must be an integer of at least 3"):
            resolve_params(ch, files=[f])
        row = "| `throwaway` (int) | `7` | a parameter no chapter has; valid: an integer >= 3 |"
        assert row in chapters.parameters_markdown()
    finally:
        chapters.notebook_page.cache_clear()


def test_measurement_configs_are_built_by_keyword_from_the_parameters():
    from sae_transfer.studies.features.measure import FeatureStudy
    from sae_transfer.studies.features.study import Study

    with pytest.raises(TypeError):
        FeatureStudy(1024, 2048, 64, 8)  # noqa: keyword only
    defaults = {f: getattr(Study(), f) for f in ("n_select", "n_tokens", "context_size", "batch_size", "n_regular",
                                                 "n_dead", "outliers", "dataset")}
    study = FeatureStudy.of({**defaults, "unrelated": 1}, top_k=3)
    assert study.n_select == Study().n_select and study.top_k == 3 and study.seed == 0


def test_a_book_file_shaped_like_the_shipped_profiles_is_accepted(tmp_path):
    """``book -f`` takes a file with ``chapters: [...]`` beside its sections, as ``params/book/*.yaml`` have."""
    from sae_transfer.book.build import Book
    from sae_transfer.book.chapters import file_params
    from sae_transfer.core.paths import params_dir

    shipped = params_dir() / "book" / "smollm2.yaml"
    book = Book.from_files([shipped], tmp_path / "out")
    assert book.parts[0].chapters == ("zoo", "residuals", "sae_metrics", "features", "predict", "answerability",
                                      "languages", "atlas")
    assert file_params(shipped, get_chapter("residuals"))["n_tokens"] == 2048
    bad = tmp_path / "bad.yaml"
    bad.write_text("chapters: [residuals, featurs]\nresiduals:\n  n_tokens: 8\n")
    with pytest.raises(ParameterError, match=r"chapters=\['residuals', 'featurs'\] must list chapters"):
        Book.from_files([bad], tmp_path / "out2")


def test_a_book_of_local_models_and_json_text_builds_no_zoo():
    from sae_transfer.book.build import needs_zoo

    own = {"zoo": "default", "base": "local:/m/base", "finetunes": ["local:/m/ft"], "sae": "local:/m/sae",
           "datasets": ["json:/m/text.jsonl"], "n_tokens": 8}
    assert not needs_zoo("residuals", own)
    assert needs_zoo("residuals", {**own, "datasets": ["json:/m/text.jsonl", "zoo:prose"]})  # the zoo's text
    assert needs_zoo("sae_metrics", {**own, "base": "zoo:base-s"}) and needs_zoo("zoo", {"zoo": "smoke"})
