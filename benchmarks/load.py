"""How long loading a zoo model takes, and what TransformerLens's ``to(dtype)`` costs of it.

    python benchmarks/load.py --zoo smollm2-smoke --model smollm2 [--loads 5] [--via tl]

Loads the model ``--loads`` times as every chapter does (``models.load_model``: weights from the zoo, then the
dtype), and prints the median seconds of a load and of its dtype step. ``--via tl`` takes the dtype step through
``HookedTransformer.to`` as the project did before ``convert.quiet_to`` bypassed it, for an A/B of whole
processes. Needs the zoo built (``python -m sae_transfer zoo build --profile ZOO``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", default="smollm2-smoke")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--via", choices=("project", "tl"), default="project")
    args = ap.parse_args()

    from sae_transfer.core.convert import quiet_to
    from sae_transfer.zoo.store import Zoo

    zoo = Zoo.open(args.zoo)
    loads, dtype_steps = [], []
    for _ in range(args.loads):
        t0 = time.perf_counter()
        model = zoo.model(args.model)
        t1 = time.perf_counter()
        if args.via == "tl":
            with contextlib.redirect_stdout(io.StringIO()):
                model = model.to(torch.float32)
        else:
            model = quiet_to(model, torch.float32)
        t2 = time.perf_counter()
        loads.append(t2 - t0)
        dtype_steps.append(t2 - t1)
        del model
    n_tensors = len(zoo.model(args.model).state_dict())
    print(f"{args.zoo}:{args.model} ({n_tensors} tensors), dtype step via {args.via}, {torch.get_num_threads()} "
          f"threads: load {statistics.median(loads):.2f} s, of which the dtype step "
          f"{statistics.median(dtype_steps):.3f} s (medians of {args.loads})")


if __name__ == "__main__":
    main()
