"""Where a forward pass spends its time, and how close it comes to the machine's matmul limit.

    python benchmarks/forward.py --zoo default [--real-zoo smollm2]

For each model (the zoo's base; the real family's when ``--real-zoo`` names a built one), at the micro-batch the
SAE-metric pass uses on this device (``memory.plan``):

1. **The matmul limit**: the best GFLOP/s of a plain fp32 matmul at the model's own shapes (tokens x d_model x
   d_mlp, tokens x d_mlp x d_model, tokens x d_model x d_model), the most this hardware does on this model's work.
2. **The forward**: TransformerLens's forward through every block (``stop_at_layer``), in tokens/s and GFLOP/s
   (projections, MLP and the full T x T attention TransformerLens computes), as a fraction of the limit; under
   ``torch.no_grad`` and ``torch.inference_mode``.
3. **Where the time goes**: one block's norms, attention and MLP called alone, times the number of blocks; the
   rest of the forward (residual adds, hook points, Python) by difference; the unembedding with its final norm
   and log-softmax at the pass's logit chunk; the SAE's encode and decode; and the torch profiler's top
   operators of one forward by their own CPU time.
4. **The weights' layout** (``core.convert.kernel_layout``): the same forward with the weights laid out as
   TransformerLens stores them (its per-call copies made), the two models in turn; the ratio of the medians and
   whether the outputs are bit-identical.
5. **Hugging Face's forward** of the same weights (the real family's converted directory): tokens/s and the
   largest difference of the last block's input from TransformerLens's, to say whether it would be worth
   computing with it instead.

Median of 5 runs each, 2 threads. Writes ``benchmarks/results/forward.json``, shown in the SAE-metrics chapter's
appendix.
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(f, n: int = 5) -> float:
    """Median seconds of ``f()`` over ``n`` runs after one warm-up."""
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[n // 2]


def block_flops(cfg, tokens: int, context: int) -> float:
    """FLOPs of one block on ``tokens`` tokens in windows of ``context``: projections, the full T x T scores and
    pattern-value product TransformerLens computes, and the MLP (gated: three matrices)."""
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    kv = cfg.n_key_value_heads or h
    proj = 2 * d * (h * dh + 2 * kv * dh + h * dh)
    attn = 2 * 2 * context * h * dh
    gated = cfg.act_fn in ("silu", "swiglu") or getattr(cfg, "gated_mlp", False)
    mlp = 2 * d * cfg.d_mlp * (3 if gated else 2)
    return tokens * (proj + attn + mlp)


def matmul_limit(m: int, d: int, d_mlp: int) -> float:
    """Best GFLOP/s over the model's matmul shapes at ``m`` rows."""
    best = 0.0
    for k, n in ((d, d_mlp), (d_mlp, d), (d, d)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        best = max(best, 2 * m * k * n / timed(lambda: a @ b, 9) / 1e9)
    return best


def layout_ab(model, tokens: torch.Tensor, n: int = 7) -> dict:
    """``model`` (laid out by ``kernel_layout``) against a copy with every weight contiguous, as TransformerLens
    stores it: median seconds of each forward (to the logits), timed in turn, and whether the logits agree bit
    for bit."""
    import statistics

    from sae_transfer.core.convert import plain_layout

    plain = plain_layout(model)
    runs = {"kernel": model, "plain": plain}
    times = {k: [] for k in runs}
    for _ in range(n + 1):
        for k, m in runs.items():
            t0 = time.perf_counter()
            m(tokens)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    return {"layout_speedup": med["plain"] / med["kernel"], "layout_identical": bool(torch.equal(model(tokens),
                                                                                                  plain(tokens)))}


def measure(label: str, pair, context: int, hf_dir: str | None) -> dict:
    from sae_transfer.core.memory import PassShape, budget_bytes, plan
    from sae_transfer.passes.sae_metrics import log_probs

    model, sae = pair.base, pair.sae
    cfg = model.cfg
    p = plan(PassShape.of(cfg, sae.cfg.d_sae, context), 32, budget_bytes("auto", "cpu"))
    tokens = torch.randint(0, cfg.d_vocab, (p.micro_batch, context), generator=torch.Generator().manual_seed(0))
    if pair.tokenizer.bos_token_id is not None:
        tokens[:, 0] = pair.tokenizer.bos_token_id
    n_tok, n = tokens.numel(), cfg.n_layers
    flops = n * block_flops(cfg, n_tok, context)
    limit = matmul_limit(n_tok, cfg.d_model, cfg.d_mlp)
    with torch.no_grad():
        t_nograd = timed(lambda: model(tokens, stop_at_layer=n))
    with torch.inference_mode():
        t_fwd = timed(lambda: model(tokens, stop_at_layer=n))
        resid = model(tokens, stop_at_layer=n)
        x = model(tokens, stop_at_layer=n // 2)
        blk = model.blocks[n // 2]
        y = blk.ln1(x)
        parts = {"norms": 2 * timed(lambda: blk.ln1(x)), "attention": timed(lambda: blk.attn(y, y, y)),
                 "mlp": timed(lambda: blk.mlp(blk.ln2(x))) - timed(lambda: blk.ln2(x))}
        t_block = timed(lambda: blk(x))
        parts = {k: n * v for k, v in parts.items()}
        parts["adds, hooks, Python"] = max(0.0, t_fwd - sum(parts.values()))
        flat = resid.flatten(0, 1)
        rows = p.logit_rows

        def unembed():
            for i in range(0, flat.shape[0], rows):
                log_probs(model, flat[i:i + rows])
        parts["unembedding + log-softmax (one pass)"] = timed(unembed)
        xs = x.flatten(0, 1)
        parts["SAE encode + decode"] = timed(lambda: sae.decode(sae.encode(xs)))
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(tokens, stop_at_layer=n)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ops)
        top_ops = {e.key: e.self_cpu_time_total / total for e in ops[:8]}
        layout = layout_ab(model, tokens)
    out = {"model": label, "top_ops": top_ops, "n_layers": n, "d_model": cfg.d_model, "d_vocab": cfg.d_vocab,
           "micro_batch": p.micro_batch,
           "tokens_per_forward": n_tok, "matmul_limit_gflops": limit,
           "forward_tokens_per_s": n_tok / t_fwd, "forward_gflops": flops / t_fwd / 1e9,
           "fraction_of_limit": flops / t_fwd / 1e9 / limit, "no_grad_over_inference_mode": t_nograd / t_fwd,
           "block_s": t_block, **layout, "seconds": {k: v for k, v in parts.items()},
           "shares": {k: v / sum(parts.values()) for k, v in parts.items()}}
    if hf_dir:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        body = hf.get_decoder()
        with torch.inference_mode():
            t_hf = timed(lambda: body(tokens))
            # hidden_states[k] is block k's input (the last entry is after the final norm): compare the last
            # block's input with TransformerLens's blocks.{n-1}.hook_resid_pre
            theirs = body(tokens, output_hidden_states=True).hidden_states[n - 1]
            ours = model(tokens, stop_at_layer=n - 1)
        out.update({"hf_tokens_per_s": n_tok / t_hf, "hf_over_tl_speed": t_fwd / t_hf,
                    "hf_max_abs_diff": float((theirs - ours).abs().max()),
                    "resid_max_abs": float(ours.abs().max())})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="default")
    ap.add_argument("--real-zoo", default="")
    ap.add_argument("--context-size", type=int, default=128)
    a = ap.parse_args()
    from sae_transfer.models.load import load_pair
    from sae_transfer.zoo.store import Zoo

    torch.set_num_threads(2)
    rows = []
    for zoo in [a.zoo, *([a.real_zoo] if a.real_zoo else [])]:
        handle = Zoo.open(zoo)
        root = next(iter(handle.recipe.models))
        pair = load_pair(f"zoo:{root}", f"zoo:{handle.finetunes_of(root)[0]}", f"zoo:{root}", zoo=zoo, device="cpu")
        hf_dir = handle.root / "models" / root / "hf"  # a real family's converted checkpoint
        r = measure(f"{zoo}: {root}", pair, a.context_size, str(hf_dir) if hf_dir.exists() else None)
        rows.append(r)
        print(f"{r['model']}: {r['tokens_per_forward']} tokens a forward; matmul limit {r['matmul_limit_gflops']:.0f} "
              f"GFLOP/s; forward {r['forward_tokens_per_s']:,.0f} tokens/s = {r['forward_gflops']:.0f} GFLOP/s = "
              f"{100 * r['fraction_of_limit']:.0f}% of the limit (no_grad {r['no_grad_over_inference_mode']:.2f}x "
              "the time of inference_mode)")
        for k, v in r["seconds"].items():
            print(f"    {k:>38}: {1000 * v:8.1f} ms  {100 * r['shares'][k]:5.1f}%")
        print("    torch profiler, the forward's top operators by own CPU time: "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["top_ops"].items()))
        print(f"    weights laid out for TransformerLens's kernels: forward to the logits {r['layout_speedup']:.2f}x as "
              f"fast as with its own layout; logits {'bit-identical' if r['layout_identical'] else 'DIFFER'}")
        if "hf_tokens_per_s" in r:
            print(f"    Hugging Face forward: {r['hf_tokens_per_s']:,.0f} tokens/s ({r['hf_over_tl_speed']:.2f}x "
                  f"TransformerLens), the last block's input differs by {r['hf_max_abs_diff']:.2e} (largest "
                  f"|residual| {r['resid_max_abs']:.0f})")
        del pair
    from sae_transfer.book.bench import write_record

    flat = [{**{k: v for k, v in r.items() if k not in ("seconds", "shares", "top_ops")},
             **{f"op {k}": v for k, v in r["top_ops"].items()},
             **{f"share {k}": v for k, v in r["shares"].items()}} for r in rows]
    print(f"written to {write_record('forward', flat, {'rows': len(flat)}, threads=2, zoo=a.zoo, real_zoo=a.real_zoo)}")


if __name__ == "__main__":
    main()
