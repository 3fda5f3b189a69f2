"""The known-answers scores, printed: each method's labels against the planted truth at the CI's smoke size and at
the chapter's full size (the chapter's own ``measure``: the smoke profile's parameters, or the chapter's defaults
with every sweep; a cache of its own, so every number is computed here).

    python benchmarks/known_answers.py --size smoke    # about 20 s on 2 cores
    python benchmarks/known_answers.py --size full     # about 3 minutes on 2 cores

Prints, per label (kept, shifted, lost, new), its precision and recall with 95% intervals at the default
difficulty (and again on the real level when the profile's zoo is built: a zoo model's planted finetune, and a finetune
trained on planted token patterns against its control), the false "new" rate on the null finetune, the MCC of the SAE
and of each side of the crosscoder, the
AUROC of activation similarity, the verdict per severity against the true changed mass, and the easiest
difficulty on each sweep at which each label's precision falls below 0.9. Writes
``benchmarks/results/known_answers-<size>.json``; the diffing and features chapters quote the full one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="smoke", choices=("smoke", "full"))
    ap.add_argument("--cache", type=Path, help="cache directory (default: a new temporary one)")
    args = ap.parse_args()
    project_zoo = Path(__file__).resolve().parents[1] / ".cache" / "zoo"
    if args.cache is None:
        args.cache = Path(tempfile.mkdtemp(prefix="sae-transfer-known-"))
        # The real level reads a built zoo (its models, SAEs and text), which this run measures, never trains.
        if project_zoo.is_dir() and "SAE_TRANSFER_CACHE" not in os.environ:
            (args.cache / "zoo").symlink_to(project_zoo, target_is_directory=True)
    os.environ["SAE_TRANSFER_CACHE"] = str(args.cache)

    from sae_transfer.book.bench import write_record
    import torch

    from sae_transfer.book.chapters import get_chapter, resolve_params
    from sae_transfer.studies.known_answers import measure as known
    from sae_transfer.studies.known_answers import tables

    params = resolve_params(get_chapter("known_answers"), "smoke" if args.size == "smoke" else None)
    t0 = time.perf_counter()
    data = known.measure(known.KnownStudy.of(params))
    wall = time.perf_counter() - t0
    import pandas as pd

    pd.set_option("display.width", 160)
    print(f"size {args.size}: {params['n_features']} features in {params['d_model']} dimensions, "
          f"{wall:.0f} s on {os.cpu_count()} cores")
    print("\nthe dictionaries (default case)\n", tables.dictionaries(data).to_string())
    print("\nthe labels at the default difficulty\n", tables.labels(data["default"]).to_string())
    null = data["null"]["scores"]["new"]
    print(f"\nnull finetune: {null['n_new_latents']} of {null['n_live']} live latents called new "
          f"(false new rate {tables.fmt(null['false_new_rate'], 3)}); verdict {data['null']['verdict']['verdict']}")
    print(f"AUROC of activation similarity, changed against kept: {tables.fmt(data['default']['scores']['auroc'])}")
    print("\nthe verdict against the true changed mass")
    for r in data["severity"]:
        print(f"  severity {r['severity']:.2f}: changed mass {r['changed_mass']:.3f} -> {r['verdict']['words']}")
    print("\nwhere precision falls below 0.9\n", tables.breaking_points(data).to_string())
    real = data["planted"]
    if real is not None:
        rh = tables.real_headline(real)
        print(f"\nthe real level: {params['base']} with its SAE {params['sae']} at {real['hook']}, on "
              f"{params['dataset']}; a lost feature keeps a median {rh['real_kept_act_lost']:.2f} of its mean "
              f"activation, a kept one {rh['real_kept_act_kept']:.2f}\n", tables.labels(real["default"]).to_string())
        print(f"AUROC of activation similarity, changed against kept: {tables.fmt(real['default']['scores']['auroc'])}"
              f"; null finetune: {real['null']['scores']['new']['n_new_latents']} of "
              f"{real['null']['scores']['new']['n_live']} live latents called new, verdict "
              f"{real['null']['verdict']['verdict']}")
        print("\ncheck on the real model's planted finetunes\n", tables.real_verdicts(real).to_string())
    trained = data["trained"]
    if trained is not None:
        print(f"\nthe trained finetune: {trained['steps']} steps on text with {len(trained['patterns']['added'])} "
              "trigger and as many removed tokens planted, against a control finetune on the text as it is\n",
              tables.trained_behaviour(trained).to_string(), "\n\n", tables.trained_positions(trained).to_string(),
              "\n\n", tables.trained_methods(trained).to_string())
        s = trained["scores"]
        print(f"similarity lost beyond the control against exposure: Spearman {s['similarity']['spearman']:.2f} "
              f"[{s['similarity']['lo']:.2f}, {s['similarity']['hi']:.2f}]; exposure of the features labelled changed "
              f"on the planted finetune only, against those kept on both: AUROC {tables.fmt(s['labels']['auroc'])}")
    for axis in tables.SWEEPS:
        print(f"\nsweep: {tables.SWEEPS[axis]}\n", tables.sweep(data[axis], axis).round(3).to_string())
    h = tables.headline(data)
    labels = tables.labels(data["default"]).reset_index().to_dict(orient="records")
    write_record(f"known_answers-{args.size}", labels,
                 {"wall_seconds": wall, "real": None if data["planted"] is None else {
                     "labels": tables.labels(data["planted"]["default"]).reset_index().to_dict(orient="records"),
                     "verdicts": tables.real_verdicts(data["planted"]).reset_index().to_dict(orient="records"),
                     "headline": tables.real_headline(data["planted"])},
                  "trained": None if trained is None else {
                     "behaviour": tables.trained_behaviour(trained).reset_index().to_dict(orient="records"),
                     "positions": tables.trained_positions(trained).reset_index().to_dict(orient="records"),
                     "methods": tables.trained_methods(trained).reset_index().to_dict(orient="records"),
                     "headline": tables.trained_headline(trained)},
                  "breaking_points": tables.breaking_points(data).reset_index().to_dict(
                     orient="records"), "headline": {k: v for k, v in h.items() if isinstance(v, (int, float, str))}},
                 torch.get_num_threads(), profile=args.size, params=params)
    print(f"\nwrote {Path('benchmarks/results') / f'known_answers-{args.size}.json'}")


if __name__ == "__main__":
    main()
