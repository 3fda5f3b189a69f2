"""Your own models, as a user brings them: for each of three architectures TransformerLens converts (a
Llama-style model; Gemma 3 with its 262,144-token vocabulary; GPT-2, with learned positions), a checkpoint made
from its config with random weights, a finetune of a few optimizer steps, an SAE saved by sae_lens and text as
JSON lines, with no checkpoint series (``tests/own_models.py``). ``book -f`` on each, from relative paths, builds
with warnings as errors; every chapter gives its page, and a section the pair cannot fill says why; the pages
name the models as the file wrote them, say nothing of the zoo, and link only to what exists.

The README's commands themselves run as written in ``tests/test_docs.py``.
"""

import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sae_transfer.core.paths import cache_dir
from tests.own_models import ARCHITECTURES, make_pair

pytestmark = pytest.mark.slow

#: The SAE's hook per architecture: block inputs and outputs, early and late, so the pages' layer follows it.
HOOKS = {"llama": "blocks.1.hook_resid_pre", "gemma3": "blocks.2.hook_resid_post", "gpt2": "blocks.1.hook_resid_post"}
CHAPTERS = ("residuals", "sae_metrics", "features", "diffing", "answerability")
#: The crosscoder's learning rate: one that trains it (latent pages named as written), and for GPT-2 one that does
#: not in this budget (the page then says so in every place a class would be, and writes no latent pages).
DIFFING_LR = {"llama": 0.01, "gemma3": 0.01, "gpt2": 0.0001}
BOOK = """\
residuals: {{base: local:base, finetunes: [local:ft], sae: local:sae, datasets: [json:text.jsonl],
            n_tokens: 1024, context_size: 64, batch_size: 4}}
sae_metrics: {{base: local:base, finetunes: [local:ft], sae: local:sae, datasets: [json:text.jsonl],
              n_tokens: 1024, context_size: 64, batch_size: 4, check_tokens: 128, memory: 1GB}}
features: {{base: local:base, finetunes: [local:ft], sae: local:sae, dataset: json:text.jsonl, n_select: 1024,
           n_tokens: 1024, context_size: 64, batch_size: 8, n_regular: 20, n_dead: 5, recovery_tokens: 256}}
diffing: {{base: local:base, finetunes: [local:ft], sae: local:sae, base_data: json:text.jsonl, twin: "",
          second_sae: "", train_tokens: 32768, n_tokens: 1024, context_size: 64, batch_size: 8, expansion: 2, k: 8,
          batch_tokens: 256, lr: {lr}, n_checkpoints: 0, n_show: 4}}
answerability: {{base: local:base, finetunes: [local:ft], sae: local:sae, layers: [1], n_train: 8, n_test: 8,
                ks: [1, 2], batch_size: 8, n_boot: 50}}
"""


def visible_text(page: Path) -> str:
    """What a reader sees of a page: no scripts, styles or code blocks (the hidden parameters cell and the
    Reproduce box hold specs and the run's absolute paths on purpose)."""
    t = re.sub(r"(?s)<script.*?</script>|<style.*?</style>|<pre.*?</pre>", "", page.read_text())
    t = html.unescape(re.sub(r"<[^>]+>", " ", t))
    return " ".join(t.split()).replace("\u2019", "'")  # words as read: one space, the typographer's apostrophe


def broken_links(root: Path) -> list[str]:
    """Relative links of every HTML page under ``root`` whose target file does not exist."""
    out = []
    for page in root.rglob("*.html"):
        if "_static" in page.parts:  # the theme's own templates
            continue
        for href in re.findall(r'href="([^"#?]+)', page.read_text()):
            if re.match(r"^[a-z]+:|^//", href):
                continue
            if not (page.parent / href).exists():
                out.append(f"{page.relative_to(root)} -> {href}")
    return out


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def book(request, tmp_path_factory, smoke_card):
    """The pair of one architecture and its book, built in a cache of its own (the answerability prompts' sources,
    downloaded by package name for the smoke zoo, linked in; no zoo)."""
    arch = request.param
    root = tmp_path_factory.mktemp(f"own-{arch}")
    sizes = make_pair(root, arch, HOOKS[arch])
    (root / "book.yaml").write_text(BOOK.format(lr=DIFFING_LR[arch]))
    (root / "cache").mkdir()
    (root / "cache" / "downloads").symlink_to(cache_dir() / "downloads")
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(root / "cache"), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "sae_transfer", "book", "-f", "book.yaml", "--out", "my-book"],
                          cwd=root, capture_output=True, text=True, env=env)
    assert not (root / "cache" / "zoo").exists()  # no spec names the zoo: it is never built
    return arch, root, sizes, proc


def test_the_book_builds_every_chapter_with_warnings_as_errors(book):
    arch, root, sizes, proc = book
    assert proc.returncode == 0, proc.stderr[-3000:]
    html_dir = root / "my-book" / "book" / "_build" / "html" / "book"
    for chapter in CHAPTERS:
        assert (html_dir / "chapters" / f"{chapter}.html").exists(), chapter
        results = json.loads((root / "my-book" / "runs" / "book" / chapter / "results.json").read_text())
        floats = [v for v in results["numbers"].values() if isinstance(v, float)]
        assert floats and all(math.isfinite(v) for v in floats), chapter
        print(f"{arch}: {chapter} peak RSS {results['meta']['peak_rss_mb']:.0f} MB")
    assert not (root / "my-book" / "book" / "status.md").read_text().count("Failed chapters")


def test_pages_are_true_for_this_pair(book):
    arch, root, sizes, proc = book
    assert proc.returncode == 0, proc.stderr[-3000:]
    html_dir = root / "my-book" / "book" / "_build" / "html" / "book"
    pages = {c: visible_text(html_dir / "chapters" / f"{c}.html") for c in CHAPTERS}
    pages["intro"] = visible_text(html_dir / "intro.html")
    for name, text in pages.items():
        assert not re.search(r"\bzoo\b", text, re.I), (name, re.findall(r".{80}\bzoo\b.{80}", text, re.I | re.S)[:3])
        assert str(root) not in text, name  # names as written: "ft", not the absolute path
    assert "base vs ft" in pages["residuals"] and "text.jsonl" in pages["sae_metrics"]
    # The residual summary is at the SAE's layer, and the SAE-metric page describes this model's BOS.
    assert f"the layer the SAE reads ({HOOKS[arch]}" in pages["residuals"]
    assert "the BOS token's residual norm at the SAE's hook is" in pages["sae_metrics"]
    # What the pair lacks is said where it would have been shown.
    assert "no curve along finetuning to draw" in pages["residuals"]
    assert "Not shown: benchmarks/stream_pass.py measured the project's own models" in pages["residuals"]


def test_no_link_in_the_book_is_broken(book):
    arch, root, sizes, proc = book
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert broken_links(root / "my-book" / "book" / "_build" / "html") == []


def test_the_diffing_pages_are_named_as_written(book):
    arch, root, sizes, proc = book
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((root / "my-book" / "runs" / "book" / "diffing" / "results.json").read_text())
    latents = list((root / "my-book").rglob("latent-*.html"))
    page = visible_text(root / "my-book" / "book" / "_build" / "html" / "book" / "chapters" / "diffing.html")
    assert results["numbers"]["h_trained"] == (arch != "gpt2")
    if arch == "gpt2":  # did not train: said in the box and in each place a class would be; no latent pages
        assert "The crosscoder did not train" in page and page.count("Not reported: the crosscoder did not train") >= 7
        assert not latents and "No latent pages" in page
        return
    assert latents and {p.parent.name for p in latents} == {"ft"} and "Open the latent pages" in page
