"""How much faster a zoo trains in bf16-mixed precision than in fp32, on this machine.

    python benchmarks/precision.py                 # the default zoo's toy LM and SAE shapes (about 3 min)
    python benchmarks/precision.py --zoo smollm2   # also SmolLM2-135M's finetuning step and its SAE's training

A zoo recipe's ``precision`` (``zoo.recipe.PRECISIONS``) sets how its models and SAEs train. This times what it
changes, the two precisions in turn (fp32, bf16, fp32, bf16, ...) so a drift of the machine hits both alike:

- a training step of a language model as ``zoo.train.train_lm`` takes it (the default zoo's base-s shape, random
  weights and tokens; with ``--zoo smollm2``, SmolLM2-135M from its built zoo, as its finetunes train);
- an SAE's training as ``zoo.sae.train_sae`` runs it (sae_lens's runner: the model's forward to the hook and the
  SAE's steps), on the built zoo's base SAE recipe, over ``--sae-tokens`` tokens.

Prints each figure's median and the fp32 / bf16 ratio of the medians, and writes ``benchmarks/results/precision.json``
(with the machine, its CPU's bf16 support, the date and the commit). The ratio is the point: on a CPU without bf16
units (no AVX512-BF16 or AMX) bf16-mixed is slower than fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _step_seconds(model, tokens: torch.Tensor, loss_of, precision: str, steps: int) -> float:
    """Median seconds of one AdamW step of ``model`` on ``tokens`` [batch, ctx] (after one step not counted)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = loss_of(model, tokens, precision)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sae_tokens_per_s(zoo, name: str, tokens: int, precision: str) -> float:
    from sae_transfer.zoo.sae import train_sae

    s = zoo.recipe.saes[name]
    model = zoo.model(s.model)
    stream = zoo.streams("train", zoo.recipe.context_size)["prose"]
    t0 = time.perf_counter()
    train_sae(model, stream, s.hook, s.d_sae, tokens, s.sparsity, s.lr, 0, batch_tokens=s.batch_tokens,
              architecture=s.architecture, exclude_special=[zoo.bos_id] if zoo.recipe.pretrained else False,
              normalize=s.normalize, precision=precision)
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="default", help="built zoo whose base SAE recipe is timed (default: default); "
                    "smollm2 also times SmolLM2-135M's finetuning step")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (fp32, bf16) per figure")
    ap.add_argument("--steps", type=int, default=5, help="training steps timed per round")
    ap.add_argument("--sae-tokens", type=int, default=0,
                    help="tokens of SAE training per round (default: 204,800 toy, 40,960 real)")
    args = ap.parse_args()

    from transformer_lens import HookedTransformer

    from sae_transfer.book.bench import write_record
    from sae_transfer.zoo.build import architecture
    from sae_transfer.zoo.recipe import load_recipe
    from sae_transfer.zoo.store import Zoo, new_model
    from sae_transfer.zoo.train import hf_loss, tl_loss

    torch.manual_seed(0)
    figures: dict[str, tuple] = {}  # name -> (unit, measure(precision) -> float, higher is faster)
    toy = load_recipe("default")
    model = new_model(architecture(toy, toy.models["base-s"], toy.data.vocab_size))
    assert isinstance(model, HookedTransformer)
    tokens = torch.randint(0, toy.data.vocab_size, (toy.models["base-s"].batch_size, toy.context_size))
    figures["toy LM step (base-s shape)"] = ("s/step", lambda p: _step_seconds(model, tokens, tl_loss, p,
                                                                               args.steps), False)
    zoo = Zoo.open(args.zoo)
    if zoo.recipe.pretrained:
        from transformers import AutoModelForCausalLM

        root = next(m.name for m in zoo.recipe.models.values() if m.pretrained)
        hf = AutoModelForCausalLM.from_pretrained(str(zoo.root / "models" / root / "hf"), dtype=torch.float32)
        ft = next(m for m in zoo.recipe.models.values() if m.parent == root)
        real_tokens = torch.randint(0, hf.config.vocab_size, (ft.batch_size, zoo.recipe.context_size))
        figures["SmolLM2-135M finetuning step"] = ("s/step", lambda p: _step_seconds(hf, real_tokens, hf_loss, p,
                                                                                      args.steps), False)
    sae = next(iter(zoo.recipe.saes))
    n = args.sae_tokens or (40960 if zoo.recipe.pretrained else 204800)
    figures[f"SAE training ({args.zoo}'s {sae})"] = ("tokens/s", lambda p: _sae_tokens_per_s(zoo, sae, n, p), True)

    rows = []
    for name, (unit, measure, faster_is_higher) in figures.items():
        runs = {"fp32": [], "bf16-mixed": []}
        for _ in range(args.rounds):
            for precision in runs:
                runs[precision].append(measure(precision))
        med = {p: statistics.median(v) for p, v in runs.items()}
        speedup = med["bf16-mixed"] / med["fp32"] if faster_is_higher else med["fp32"] / med["bf16-mixed"]
        rows.append({"figure": name, "unit": unit, "fp32": med["fp32"], "bf16-mixed": med["bf16-mixed"],
                     "speedup": speedup, "rounds": args.rounds})
        print(f"{name}: fp32 {med['fp32']:.3g} {unit}, bf16-mixed {med['bf16-mixed']:.3g} {unit}: bf16-mixed "
              f"{speedup:.2f}x as fast (medians of {args.rounds})", flush=True)
    bf16_units = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    path = write_record("precision", rows, {"speedup": {r["figure"]: r["speedup"] for r in rows}},
                        torch.get_num_threads(), zoo=args.zoo, cpu_bf16=bf16_units,
                        cpu_capability=torch.backends.cpu.get_cpu_capability())
    print(f"CPU bf16 units: {bf16_units}; record: {path}")


if __name__ == "__main__":
    main()
