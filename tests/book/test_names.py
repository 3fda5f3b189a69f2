"""Pages name models and files as the user wrote them; glue names and the kernel's specs do not change."""

from sae_transfer.book.preflight import absolute_paths, written_names
from sae_transfer.core import labels


def test_relative_paths_are_labelled_as_written_and_loaded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = {"base": "local:models/base", "finetunes": ["local:ft", "zoo:code"], "datasets": ["json:my.jsonl"],
               "sae": f"local:{tmp_path}/sae", "n_tokens": 8}
    params = absolute_paths(written)
    assert params["finetunes"] == [f"local:{tmp_path}/ft", "zoo:code"]
    names = written_names(written)
    assert names == {f"local:{tmp_path}/models/base": "models/base", f"local:{tmp_path}/ft": "ft",
                     f"json:{tmp_path}/my.jsonl": "my.jsonl"}  # an absolute path and a zoo spec: as they are
    try:
        labels.use_names(names)
        assert labels.short(params["finetunes"][0]) == "ft" and labels.short("zoo:code") == "code"
        assert labels.short(params["sae"]) == f"{tmp_path}/sae"
        assert labels.slug(params["finetunes"][0]) == "".join(c if c.isalnum() else "_" for c in f"{tmp_path}/ft")
    finally:
        labels.use_names({})
    assert labels.short(params["finetunes"][0]) == f"{tmp_path}/ft"
