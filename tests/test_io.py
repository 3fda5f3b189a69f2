import json

import pytest

from sae_transfer.core.io import atomic_dir, fingerprint, write_json_atomic


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
