"""The README's and the "Using the project" pages' commands, run as written.

Every line of a ```bash block is a command a reader will paste. They run here in order, page by page, in a
directory holding what the pages say a reader has (``base``, ``ft`` and ``sae`` saved as a user saves them,
``my_text.jsonl``), with ``python`` the project's interpreter. A command that cannot run here says why on the page
itself (``# not run by the docs test: REASON``); ``make`` targets are what CI itself runs.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sae_transfer.core.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow
PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "book" / "using").glob("*.md"))]
SKIP = "# not run by the docs test:"
VERDICTS = {0, 10, 11}  # check's exit statuses that are verdicts


def commands(page: Path) -> list[tuple[str, str | None]]:
    """(command, reason it is not run, or None) for every command of the page's bash blocks."""
    out = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", page.read_text(), re.S | re.M):
        for cmd in re.sub(r"\\\n\s*", "", block).splitlines():
            cmd = cmd.strip()
            if not cmd:
                continue
            reason = cmd.split(SKIP, 1)[1].strip() if SKIP in cmd else None
            out.append((cmd.split(SKIP, 1)[0].strip(), reason))
    return out


def test_every_page_has_commands_and_every_skip_a_reason():
    for page in PAGES:
        found = commands(page)
        assert found or page.name == "benchmarks.md", f"{page.name}: no bash block"
        assert all(reason is None or reason for _, reason in found), page.name


def _tiny_llama(directory: Path, seed: int) -> None:
    """A Llama-style checkpoint of 2 blocks with a 256-token context, saved as a user saves one."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from sae_transfer.zoo.tokens import train_tokenizer

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      initializer_range=0.1)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(directory)
    train_tokenizer({"prose": ["the quick brown fox jumps over the lazy dog " * 20] * 5}, 300, directory, seed=0)


def own_pair(root: Path, n_lines: int) -> None:
    """A user's own pair in ``root``: Llama-style ``base`` and ``ft`` (two seeds), an SAE saved by sae_lens
    (``sae``) and ``n_lines`` of JSON-lines text (``text.jsonl``)."""
    from tests.test_walkthrough import _sae

    _tiny_llama(root / "base", 0)
    _tiny_llama(root / "ft", 1)
    _sae(root / "sae", training_format=False)
    words = "the model reads a sentence about code and math and then it writes another one".split()
    (root / "text.jsonl").write_text("".join(json.dumps({"text": " ".join(words[(i + j) % 15] for j in range(40))})
                                             + "\n" for i in range(n_lines)))


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory, smoke_card):
    from tests.test_walkthrough import _sae

    root = tmp_path_factory.mktemp("reader")
    _tiny_llama(root / "base", seed=0)
    _tiny_llama(root / "ft", seed=0)
    from transformers import AutoModelForCausalLM

    ft = AutoModelForCausalLM.from_pretrained(root / "ft")
    with torch.no_grad():  # the "finetune": every weight moved a little
        for p in ft.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ft.save_pretrained(root / "ft")
    _sae(root / "sae", training_format=True)
    words = "the model reads a sentence about code and math and then it writes another one".split()
    with open(root / "my_text.jsonl", "w") as f:
        for i in range(2000):
            f.write(json.dumps({"text": " ".join(words[(i + j) % len(words)] for j in range(40))}) + "\n")
    return root


def _run(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    python = Path(sys.executable)
    cmd = re.sub(r"^(\.venv/bin/)?python ", f"{shlex.quote(str(python))} ", cmd)
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_commands_run_as_written(page, reader_dir):
    ran = 0
    for cmd, reason in commands(page):
        if reason is not None or cmd.startswith("make "):
            continue
        done = _run(cmd, reader_dir)
        ok = done.returncode in VERDICTS if " sae_transfer check " in f" {cmd} " else done.returncode == 0
        assert ok, f"{page.name}: `{cmd}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        ran += 1
    assert ran or page.name == "benchmarks.md", f"{page.name}: no command ran"
