"""What a content fingerprint of a local model costs: sha256 of a 1 GiB weight file, the first time and when
memoised (same path, size and modification time). Prints both; nothing is recorded.

    python benchmarks/fingerprint.py [--gib 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SAE_TRANSFER_CACHE"] = str(Path(tmp) / "cache")
        from sae_transfer.passes.cache import dir_fingerprint

        model = Path(tmp) / "model"
        model.mkdir()
        block = os.urandom(1 << 20)
        with open(model / "model.safetensors", "wb") as f:
            for _ in range(int(args.gib * 1024)):
                f.write(block)
        (model / "config.json").write_text("{}")
        t0 = time.perf_counter()
        dir_fingerprint(model)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        dir_fingerprint(model)
        warm = time.perf_counter() - t0
    print(f"{args.gib:g} GiB model: first fingerprint {cold:.2f} s ({args.gib / cold:.2f} GiB/s), "
          f"memoised {warm * 1000:.1f} ms")


if __name__ == "__main__":
    main()
