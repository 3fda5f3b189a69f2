"""``python -m sae_transfer``: list and run chapters, build the book, build and describe the zoo, check an SAE
on a finetune, write the book's launch notebooks.

Bad input (unknown chapter, parameter, profile, wrong type or value, missing file) prints one line naming
what is wrong and what would be valid, and exits with status 2 before any kernel starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sae_transfer import atlas, check
from sae_transfer.book import launch
from sae_transfer.book.build import Book, build_book
from sae_transfer.book.chapters import (
    ParameterError,
    all_chapters,
    get_chapter,
    left_at_default,
    profiles,
    read_yaml,
    resolve_params,
    write_parameter_cells,
)
from sae_transfer.book.preflight import absolute_paths, preflight, written_names
from sae_transfer.book.runner import check_out_dir, run_chapter, run_lock
from sae_transfer.check.measure import MIN_BATCHES
from sae_transfer.check.report import line, provenance, write
from sae_transfer.core.io import atomic_dir, mark_ours
from sae_transfer.core.paths import cache_dir, check_cache_writable
from sae_transfer.core.workers import check_jobs
from sae_transfer.models.load import context_limit, resolve_device
from sae_transfer.studies.parameters import MEMORY_DOC, rule_of
from sae_transfer.zoo import Zoo, build_zoo
from sae_transfer.zoo.card import format_card


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sae_transfer", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("list", help="chapters with their parameters, types, defaults and docs")

    run = sub.add_parser("run", help="execute one chapter with papermill into a run directory")
    run.add_argument("chapter")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a parameter (VALUE parsed as YAML for non-string parameters); repeatable")
    run.add_argument("-f", "--file", action="append", default=[], type=Path,
                     help="YAML file of parameters (flat, or one section per chapter); repeatable")
    run.add_argument("--profile", help="start from this profile's parameters (params/book/<profile>.yaml)")
    run.add_argument("--out", help="run directory (default: <cache>/runs/<chapter>/<timestamp>)")

    book = sub.add_parser("book", help="run every chapter (reusing up-to-date runs) and build the HTML book")
    book.add_argument("--profile", help="parameter profile (params/book/<profile>.yaml); default: default")
    book.add_argument("-f", "--file", action="append", default=[], type=Path,
                      help="your own parameter file (a section per chapter); repeatable; needs --out")
    book.add_argument("--out", type=Path, help="directory to build a book of your parameter files in")
    book.add_argument("--force", action="store_true", help="re-execute every chapter even if up to date")
    book.add_argument("--device", help="override the device parameter of every chapter (e.g. cuda)")
    book.add_argument("--jobs", help=JOBS_HELP)

    sub.add_parser("launch", help="write the chapters' parameters cells from their Study, and launch/: the "
                                  "notebooks the book's Colab buttons open (commit both)")

    zoo = sub.add_parser("zoo", help="the offline model zoo")
    zsub = zoo.add_subparsers(dest="zoo_cmd", required=True)
    zb = zsub.add_parser("build", help="build what is missing of a zoo profile, then print its card")
    zb.add_argument("--profile", default="default", help="smoke, default, or a path to a recipe .yaml")
    zb.add_argument("--device", default="auto")
    zb.add_argument("--jobs", help=ZOO_JOBS_HELP)
    zl = zsub.add_parser("list", help="print the zoo card of a built profile")
    zl.add_argument("--profile", default="default")

    chk = sub.add_parser("check", help="does a base SAE still work on a finetune? exit 0 transfers, 10 degraded, "
                                       "11 broken (2: bad input; 1 or a signal's code: the check itself failed)")
    chk.add_argument("--base", required=True,
                     help="the model the SAE was trained on: zoo:NAME, hub:ORG/NAME or local:DIR")
    chk.add_argument("--finetune", action="append", default=[],
                     help="the finetune to check (same sources); repeat for a series of checkpoints")
    chk.add_argument("--watch", help="every checkpoint of a zoo finetune (zoo:NAME) or every model directory in DIR, "
                                     "in training order")
    chk.add_argument("--sae", required=True, help="zoo:NAME, sae_lens:RELEASE:SAE_ID or local:DIR")
    chk.add_argument("--dataset", action="append", default=[],
                     help="zoo:DOMAIN, verses:LANG, json:PATH or hub:NAME; repeatable (default: a zoo finetune's own "
                          "domain)")
    chk.add_argument("--hook", default="", help="hook to splice at (default: the SAE's own)")
    chk.add_argument("--zoo", default="default", help="zoo profile that zoo: specs refer to")
    chk.add_argument("--tokens", type=int, default=16384, help="at most this many tokens per dataset")
    chk.add_argument("--min-tokens", type=int, help="measure at least this many before stopping early "
                                                    "(default: half of --tokens)")
    chk.add_argument("--no-early-stop", action="store_true", help="measure every token even once decided")
    chk.add_argument("--context-size", type=int, help="tokens per window (default: 128, or the model's context)")
    chk.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    chk.add_argument("--outliers", default="2x", help="outlier norm: none, NX (times the base's mean norm) or N")
    chk.add_argument("--device", default="auto")
    chk.add_argument("--dtype", default="float32")
    chk.add_argument("--memory", default="auto", help=MEMORY_DOC.replace("%", "%%"))
    chk.add_argument("--out", type=Path, help="report directory (default: <cache>/checks/<time>)")
    chk.add_argument("--json", action="store_true", help="print check.json to stdout instead of the verdict lines")
    chk.add_argument("--adapt", action="store_true",
                     help="fine-tune the SAE on the (last) finetune and report it before and after")
    chk.add_argument("--adapt-tokens", type=int, default=200_000, help="tokens of SAE fine-tuning for --adapt")
    chk.add_argument("--adapt-lr", type=float, default=1e-3, help="learning rate of SAE fine-tuning for --adapt")
    at = sub.add_parser("atlas", help="many finetunes of one base, one job each (local, SLURM or debug), the base's "
                                      "passes computed once; one table out")
    at.add_argument("-f", "--file", type=Path, help="the atlas file (YAML: base, saes, datasets, finetunes, check, "
                                                     "executor, slurm)")
    at.add_argument("--example", action="store_true", help="print an example atlas file, every key explained")
    at.add_argument("--executor", choices=("local", "slurm", "debug"), help="overrides the file's executor")
    at.add_argument("--parallel", type=int, help="local jobs at once (default: as many as memory allows)")
    at.add_argument("--out", type=Path, help="atlas directory (default: <cache>/atlas/<file name>); rerun into "
                                             "the same one to resume")
    at.add_argument("--store", type=Path, help="where the base's passes are kept (default: <cache>/base-passes; "
                                               "on a cluster, a shared file system)")
    return p


def cmd_atlas(args) -> int:
    if args.example:
        print(atlas.EXAMPLE.read_text(), end="")
        return 0
    if args.file is None:
        raise ParameterError("atlas: give -f ATLAS.yaml (python -m sae_transfer atlas --example prints one)")
    cfg = atlas.read(args.file, executor=args.executor, parallel=args.parallel)
    out = check_out_dir(args.out if args.out is not None else cache_dir() / "atlas" / args.file.stem)
    with run_lock(out):
        s = atlas.run(cfg, out, args.store)
    print(f"atlas: {s['jobs']} finetune jobs: {s['ran']} ran, {s['skipped']} already done, {len(s['failed'])} "
          f"failed; {s['base_jobs']} base job(s); {s['rows']} rows in {out / 'atlas.jsonl'}")
    for f in s["failed"]:
        print(f"failed: {f['job']}: {f['error']}", file=sys.stderr)
    return 1 if s["failed"] else 0


def cmd_list() -> None:
    for c in all_chapters():
        print(f"{c.name}: {c.title}")
        for p in c.parameters:
            valid = rule_of(p.check)
            print(f"    {p.name} ({p.type}, default {json.dumps(p.default)}): {p.doc}"
                  + (f"; valid: {valid}" if valid else ""))
    print(f"profiles: {', '.join(profiles())}")


def cmd_run(args) -> None:
    chapter = get_chapter(args.chapter)
    written = resolve_params(chapter, args.profile, args.file, args.param)
    params = absolute_paths(written)
    out = check_out_dir(Path(args.out)) if args.out is not None else None
    params = preflight(params, chapter.name, left_at_default(chapter, args.profile, args.file, args.param))
    results = run_chapter(chapter, params, out, names=written_names(written))
    print(f"chapter {chapter.name!r} done in {results['meta']['wall_seconds']:.0f} s: "
          f"{len(results['numbers'])} numbers, {len(results['figures'])} figures in {results['meta']['run_dir']}")


def _book(args) -> Book:
    if args.file or args.out:
        if args.profile:
            raise ParameterError("book: give --profile, or -f FILE with --out DIR, not both")
        if not (args.file and args.out):
            raise ParameterError("book: -f FILE and --out DIR go together (a book of your parameter files is built "
                                 "in a directory of its own)")
        for f in args.file:
            read_yaml(f, "parameter file")  # a missing or broken file fails here, in one line
        return Book.from_files(args.file, check_out_dir(args.out), written_out=str(args.out))
    profile = args.profile or "default"
    if profile not in profiles():
        raise ParameterError(f"unknown profile {profile!r}; valid profiles are {profiles()}")
    return Book.from_profile(profile)


def cmd_zoo(args) -> None:
    if args.zoo_cmd == "build":
        print(format_card(build_zoo(args.profile, device=resolve_device(args.device), jobs=_jobs(args.jobs))))
    else:
        print(format_card(Zoo.open(args.profile).card()))


def check_request(args):
    """The ``check`` arguments as a ``CheckRequest``, every cheap check done (one-line errors)."""
    if args.watch and args.finetune:
        raise ParameterError("check: give --finetune or --watch, not both")
    finetunes = check.watch_series(args.watch, args.zoo) if args.watch else tuple(args.finetune)
    ctx = args.context_size or min(128, context_limit(args.base, args.zoo) or 128)
    min_tokens = args.min_tokens if args.min_tokens is not None else min(
        args.tokens, max(args.tokens // 2, MIN_BATCHES * ctx * args.batch_size))
    spec = check.CheckSpec(max_tokens=args.tokens, min_tokens=min_tokens, context_size=ctx,
                           batch_size=args.batch_size, outliers=args.outliers, early_stop=not args.no_early_stop)
    if args.adapt and args.adapt_tokens <= 0:
        raise ParameterError(f"adapt_tokens={args.adapt_tokens}: give a positive number of tokens for --adapt")
    return check.preflight(check.CheckRequest(
        args.base, finetunes, args.sae, tuple(args.dataset), args.hook, args.zoo, args.device, args.dtype, spec,
        args.adapt_tokens if args.adapt else 0, args.adapt_lr, args.memory))


def cmd_check(args) -> int:
    req = check_request(args)
    out = check_out_dir(args.out if args.out is not None else
                        cache_dir() / "checks" / time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    with atomic_dir(out) as work:  # a failed or killed check leaves an earlier report whole, and no half of its own
        mark_ours(work)
        data = check.run(req, work, final=out)
        data["provenance"] = provenance(req.device)
        write(work, data)
    if args.json:
        print((out / "check.json").read_text(), end="")
    else:
        for r in data["results"]:
            print(line(r))
        print(f"report: {out / 'report.html'}")
    return data["exit_status"]


JOBS_HELP = "chapters at once, the cores split among them (default: 2 on a CPU of 2 cores or more, 1 on a GPU)"
ZOO_JOBS_HELP = "artifacts at once, the cores split among them (default: 1, with every core: trainings use them well)"


def _jobs(text: str | None) -> int | None:
    """``--jobs`` as a whole number of at least 1, or None (the default); a one-line ``ValueError`` otherwise."""
    if text is None:
        return None
    try:
        jobs = int(text)
    except ValueError:
        jobs = text
    check_jobs(jobs)
    return jobs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd in ("run", "book", "zoo", "check", "atlas"):
            check_cache_writable()
        if args.cmd == "check":
            return cmd_check(args)
        if args.cmd == "atlas":
            return cmd_atlas(args)
        if args.cmd == "list":
            cmd_list()
        elif args.cmd == "run":
            cmd_run(args)
        elif args.cmd == "book":
            build_book(_book(args), force=args.force, device=args.device, jobs=_jobs(args.jobs))
        elif args.cmd == "zoo":
            cmd_zoo(args)
        elif args.cmd == "launch":
            for name in write_parameter_cells():
                print(f"notebooks/{name}.md: parameters cell written from its Study")
            print(f"{len(launch.write())} launch notebooks in {launch.LAUNCH_DIR}")
    except ValueError as e:  # ParameterError, and bad recipes, specs and paths from lib: one clear line
        _error(e)
        return 2
    except (RuntimeError, OSError) as e:  # ChapterFailed, a failed book build, a full disk
        _error(e)
        return 1
    return 0


def _error(e: Exception) -> None:
    """One line on stderr, whatever the exception's text holds (a cell's error can span lines)."""
    print("error: " + " ".join(str(e).split("\n")), file=sys.stderr)
