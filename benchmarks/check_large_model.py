"""Time ``check`` on a model of a real large model's shapes: Gemma-2-2B (2.6B parameters, 256K vocabulary) with
random weights, its "finetune" every weight moved a little, and a random 16K-feature SAE at block 12.

    python benchmarks/check_large_model.py --tokenizer DIR --text FILE --device cuda --dtype bfloat16

The weights are random, so the verdict means nothing; the time and memory are what a user's Gemma-2-2B check
costs (the same shapes, the same code path: local directories converted and verified, the SAE loaded by
sae_lens). ``--tokenizer``: any Hugging Face tokenizer directory whose ids fit the vocabulary (SmolLM2's from the
real zoo does); ``--text``: a JSON-lines file with a ``text`` field. Prints the check's wall time (loading and
conversion included, then the pass alone), tokens per second and peak GPU memory; writes
``benchmarks/results/check_large_model.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

#: Gemma-2-2B's shapes (google/gemma-2-2b's config.json).
GEMMA2_2B = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, vocab_size=256000, max_position_embeddings=8192,
                 query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
                 attn_logit_softcapping=50.0, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                 rope_theta=10000.0, bos_token_id=2, eos_token_id=1, pad_token_id=0)
HOOK = "blocks.12.hook_resid_post"


def build(root: Path, tokenizer_dir: Path, d_sae: int, dtype: torch.dtype, device: str) -> dict[str, str]:
    """Base, finetune and SAE directories under ``root``; returns their specs."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Gemma2Config(**GEMMA2_2B)
    config.architectures = ["Gemma2ForCausalLM"]
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma2ForCausalLM(config).to(dtype)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    with torch.no_grad():  # the "finetune": every weight moved by 5% of its own spread
        for p in model.parameters():
            p.add_(0.05 * p.float().std() * torch.randn_like(p, dtype=torch.float32).to(p.dtype))
    model.save_pretrained(root / "ft")
    tok.save_pretrained(root / "ft")
    del model
    sae = StandardSAE(StandardSAEConfig(d_in=GEMMA2_2B["hidden_size"], d_sae=d_sae,
                                        metadata=SAEMetadata(hook_name=HOOK, prepend_bos=True)))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)  # features fire on some tokens, not all
    sae.save_model(str(root / "sae"))
    return {"base": f"local:{root / 'base'}", "ft": f"local:{root / 'ft'}", "sae": f"local:{root / 'sae'}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--text", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--workdir", type=Path, help="where the models are written (default: a temporary directory)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    from sae_transfer.check import CheckRequest, CheckSpec, run
    from sae_transfer.core.provenance import device_description
    from sae_transfer.models.load import check_dtype

    root = a.workdir or Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    specs = build(root, a.tokenizer, a.d_sae, check_dtype(a.dtype), a.device)
    build_s = time.perf_counter() - t0
    rows = []
    for early in (True, False):
        spec = CheckSpec(max_tokens=a.tokens, min_tokens=a.tokens // 2, context_size=128, batch_size=a.batch_size,
                         early_stop=early)
        req = CheckRequest(specs["base"], (specs["ft"],), specs["sae"], (f"json:{a.text}",), device=a.device,
                           dtype=a.dtype, spec=spec)
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        data = run(req, root / "out")
        wall = time.perf_counter() - t0
        (r,) = data["results"]
        rows.append({"early_stop": early, "wall_s": wall, "pass_s": r["seconds"], "tokens": r["tokens"],
                     "tokens_per_s": r["tokens"] / r["seconds"], "verdict": r["verdict"],
                     "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else None})
        print(json.dumps(rows[-1]))
    summary = {"device": device_description(a.device), "dtype": a.dtype, "build_s": build_s,
               "model": "Gemma-2-2B shapes, random weights", "d_sae": a.d_sae, "hook": HOOK}
    print(json.dumps(summary))
    if not a.no_record:
        from sae_transfer.book.bench import write_record

        write_record("check_large_model", rows, summary, torch.get_num_threads(), tokens=a.tokens,
                     batch_size=a.batch_size)


if __name__ == "__main__":
    main()
