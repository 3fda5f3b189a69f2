"""The real family as a user who has it would bring it: ``book -f`` on SmolLM2-135M-Instruct and a code finetune of
it given as local directories, its SAE as sae_lens saved it, and text as JSON lines; wall time and each chapter's
peak memory against the budget.

    python benchmarks/own_family.py --work /tmp/own-family [--memory 2GB] [--steps 4]

Prepares ``--work`` from the built ``smollm2-smoke`` zoo (``python -m sae_transfer zoo build --profile
smollm2-smoke``) and the ``smoke`` zoo's text: ``base`` (the dequantized model, a ``save_pretrained`` directory),
``ft`` (``--steps`` AdamW steps of it on code, saved the same way), ``sae`` (the zoo's base SAE directory) and
``code.jsonl`` / ``prose.jsonl``; then builds the book of ``book.yaml`` there, in a cache of its own, and prints
each chapter's wall time and peak RSS. Writes ``results/own_family.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BOOK = """\
residuals: {{base: local:base, finetunes: [local:ft], sae: local:sae, datasets: [json:prose.jsonl, json:code.jsonl],
            n_tokens: 2048, context_size: 64, batch_size: 8, memory: {memory}}}
sae_metrics: {{base: local:base, finetunes: [local:ft], sae: local:sae, datasets: [json:code.jsonl],
              n_tokens: 2048, context_size: 64, batch_size: 4, check_tokens: 256, memory: {memory}}}
features: {{base: local:base, finetunes: [local:ft], sae: local:sae, dataset: json:code.jsonl, n_select: 2048,
           n_tokens: 2048, context_size: 64, batch_size: 8, n_regular: 50, n_dead: 10, recovery_tokens: 512,
           memory: {memory}}}
diffing: {{base: local:base, finetunes: [local:ft], sae: local:sae, base_data: json:prose.jsonl, twin: "",
          second_sae: "", train_tokens: 8192, n_tokens: 1024, context_size: 64, batch_size: 8, expansion: 2,
          k: 16, batch_tokens: 256, n_checkpoints: 0, n_show: 8, memory: {memory}}}
"""


def prepare(work: Path, steps: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sae_transfer.zoo.store import Zoo

    real, toy = Zoo.open("smollm2-smoke"), Zoo.open("smoke")
    shutil.copytree(real.root / "models" / "smollm2" / "hf", work / "base")
    shutil.copytree(real.root / "saes" / "smollm2", work / "sae")
    for domain in ("code", "prose"):
        shutil.copyfile(toy.text_file(domain, "heldout"), work / f"{domain}.jsonl")
    tok = AutoTokenizer.from_pretrained(work / "base")
    model = AutoModelForCausalLM.from_pretrained(work / "base", dtype=torch.float32)
    text = "".join(json.loads(line)["text"] for line in (work / "code.jsonl").read_text().splitlines())
    lines = [text[i: i + 400] for i in range(0, 400 * 4 * steps, 400)]  # 4 pieces of code a step
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for step in range(steps):
        ids = tok(lines[4 * step: 4 * step + 4], return_tensors="pt", truncation=True, max_length=64,
                  padding="max_length").input_ids
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(work / "ft")
    tok.save_pretrained(work / "ft")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--memory", default="2GB")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()

    from sae_transfer.book.bench import write_record
    from sae_transfer.core.paths import cache_dir

    work = args.work.resolve()
    if not (work / "ft").exists():
        work.mkdir(parents=True, exist_ok=True)
        prepare(work, args.steps)
    (work / "book.yaml").write_text(BOOK.format(memory=args.memory))
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work / "my-book", ignore_errors=True)
    cache.mkdir()
    (cache / "downloads").symlink_to(cache_dir() / "downloads")
    env = {**os.environ, "SAE_TRANSFER_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sae_transfer", "book", "-f", "book.yaml", "--out", "my-book"],
                          cwd=work, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"book -f failed with status {proc.returncode}")
    rows = []
    for chapter in ("residuals", "sae_metrics", "features", "diffing"):
        meta = json.loads((work / "my-book" / "runs" / "book" / chapter / "results.json").read_text())["meta"]
        rows.append({"chapter": chapter, "wall_s": round(meta["wall_seconds"], 1),
                     "peak_rss_mb": round(meta["peak_rss_mb"])})
        print(f"{chapter}: {meta['wall_seconds']:.0f} s, peak RSS {meta['peak_rss_mb']:.0f} MB (memory={args.memory})")
    weights_mb = sum(f.stat().st_size for d in ("base", "ft") for f in (work / d).glob("*.safetensors")) / 2**20
    print(f"book -f: {wall:.0f} s in all; the two models' fp32 weights: {weights_mb:.0f} MB")
    import torch

    write_record("own_family", rows, {"book_wall_s": round(wall, 1), "weights_mb": round(weights_mb),
                                      "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows)},
                 torch.get_num_threads(), memory=args.memory, steps=args.steps)


if __name__ == "__main__":
    main()
