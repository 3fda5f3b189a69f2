"""Each chapter's launch notebook runs alone in a fresh virtual environment that has never seen the project: its
setup cell must install everything the chapter imports (QuantEcon's lesson: a polluted environment hides a missing
install). The setup cell installs from this checkout (``SAE_TRANSFER_SOURCE``) instead of cloning."""

import json
import os
import subprocess
import sys

import pytest

from sae_transfer.book import launch
from sae_transfer.book.chapters import chapter_names, get_chapter, resolve_params
from sae_transfer.core.paths import PROJECT_ROOT, cache_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, smoke_card):
    """A venv with only what Colab has before the setup cell: a kernel and papermill to drive it."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(PROJECT_ROOT / "requirements.lock"),
                    "ipykernel", "papermill"], check=True)
    probe = subprocess.run([str(py), "-c", "import sae_transfer"], capture_output=True)
    assert probe.returncode != 0, "the fresh venv must not see the project before the setup cell runs"
    return py


@pytest.mark.parametrize("chapter", chapter_names())
def test_launch_notebook_runs_alone(fresh_venv, chapter, tmp_path):
    params = {**resolve_params(get_chapter(chapter), "smoke"), "run_dir": ""}
    out = tmp_path / f"{chapter}.ipynb"
    env = {**os.environ, "SAE_TRANSFER_SOURCE": str(PROJECT_ROOT), "SAE_TRANSFER_CACHE": str(cache_dir()),
           "PYTHONPATH": ""}
    proc = subprocess.run([str(fresh_venv), "-m", "papermill", str(launch.LAUNCH_DIR / "book" / "chapters" /
                                                                    f"{chapter}.ipynb"), str(out),
                           "-k", "python3", "-y", json.dumps(params), "--cwd", str(tmp_path)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = json.loads(out.read_text())
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
    # the chapter recorded its numbers where a notebook opened by hand puts them
    numbers = json.loads((tmp_path / "scratch-run" / "numbers.json").read_text())["numbers"]
    assert numbers["in_short"].strip()
