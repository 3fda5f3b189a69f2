import json

import pytest

from sae_transfer.core.io import atomic_dir, fingerprint, read_yaml, write_json_atomic


def test_write_json_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "r.json"
    write_json_atomic(path, {"x": 1})
    write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_atomic_dir_interrupted_leaves_nothing_complete(tmp_path):
    final = tmp_path / "artifact"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(final) as tmp:
            (tmp / "weights").write_text("half")
            raise KeyboardInterrupt
    assert not final.exists()
    # nothing half-written: only the artifact's lock file, which filelock leaves in place (deleting it races)
    assert [p.name for p in tmp_path.iterdir()] == [".artifact.lock"]


def test_atomic_dir_success_replaces_previous(tmp_path):
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "old").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_fingerprint_is_order_independent_and_sensitive():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_yaml_file_read_again_follows_edits_and_gives_each_reader_its_own_copy(tmp_path):
    """``read_yaml`` memoises the parse by the file's text: an edit is read, a value changed by one reader is not
    what the next one gets, and an error is still one line naming the file."""
    f = tmp_path / "params.yaml"
    f.write_text("a: 1\nb: [1, 2]\n")
    first = read_yaml(f, "parameter file")
    first["b"].append(3)
    assert read_yaml(f, "parameter file") == {"a": 1, "b": [1, 2]}
    f.write_text("a: 2\nb: [1, 2]\n")
    assert read_yaml(f, "parameter file")["a"] == 2
    f.write_text("a: 1\na: 2\n")
    with pytest.raises(ValueError, match=r"parameter file .*params.yaml' is not valid YAML: key 'a' is given twice"):
        read_yaml(f, "parameter file")
