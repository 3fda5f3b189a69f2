"""Checks a chapter's parameters against the world before any kernel starts: that the zoo it names is built and
holds the models, SAEs and checkpoints asked for, that local directories hold what they must, that JSON datasets
are readable, that base and finetune can be paired, and that the context fits the model. Each failure is one
line naming the parameter (``SpecError`` / ``ValueError``: exit status 2 from the CLI), except a value too large
for the pair or its text that the user left at its default: that one is lowered to the largest that fits
(``studies.parameters.Unfit``).

``chapters.resolve_params`` checks syntax and values alone; this needs the file system and a built zoo, so the
book runs it after building the zoo and ``run`` right after resolving parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae_transfer.book.chapters import say_fitted
from sae_transfer.core.specs import data_spec, is_zoo
from sae_transfer.data import answerable
from sae_transfer.data.tokens import TokenSpec, check_dataset_source, check_text_holds, windows_available, zoo_stream
from sae_transfer.methods.probes import prompt_ids
from sae_transfer.models.configs import check_reads
from sae_transfer.models.hooks import block_of
from sae_transfer.models.load import (SpecError, check_load_fits, check_pair_kinds, check_source, context_limit,
                                      load_tokenizer_for, n_layers_of)
from sae_transfer.studies.diffing.train import DiffingStudy, eval_specs, train_specs
from sae_transfer.studies.parameters import Unfit, fitted
from sae_transfer.studies.across.measure import check_inputs as across_inputs
from sae_transfer.studies.languages.measure import LanguagesStudy
from sae_transfer.studies.known_answers.planted import check_inputs as planted_inputs
from sae_transfer.studies.known_answers.trained import check_inputs as trained_inputs
from sae_transfer.studies.languages.measure import check_inputs as languages_inputs
from sae_transfer.studies.sizes.measure import check_inputs
from sae_transfer.zoo.store import Zoo


def _absolute(spec: str) -> str:
    kind, sep, ref = spec.partition(":")
    if sep and kind in ("local", "json") and ref and not Path(ref).is_absolute():
        return f"{kind}:{Path(ref).resolve()}"
    return spec


def absolute_paths(params: dict[str, Any]) -> dict[str, Any]:
    """``local:`` and ``json:`` paths and a zoo recipe path resolved against the directory the command runs in
    (the kernel runs in the run directory, where a relative path would name nothing), so the run records where
    they were."""
    out = dict(params)
    for name, value in params.items():
        if name == "zoo" and Path(value).suffix in (".yaml", ".yml") and not Path(value).is_absolute():
            out[name] = str(Path(value).resolve())  # a recipe path, read again inside the kernel
        elif isinstance(value, str):
            out[name] = _absolute(value)
        elif isinstance(value, list):
            out[name] = [_absolute(v) if isinstance(v, str) else v for v in value]
    return out


def written_names(params: dict[str, Any]) -> dict[str, str]:
    """``{absolute spec: the path as the user wrote it}`` for every ``local:`` and ``json:`` spec of ``params``:
    pages name a model or a text file as it was written (``ft``, ``data/code.jsonl``), not by the absolute path
    the kernel needs (``core.labels.short``)."""
    specs = [v for value in params.values() for v in (value if isinstance(value, list) else [value])
             if isinstance(v, str)]
    return {_absolute(s): s.partition(":")[2] for s in specs
            if s.partition(":")[0] in ("local", "json") and s.partition(":")[2] and _absolute(s) != s}


#: Chapters whose study is built from the zoo itself, not from the pairs given: they refuse other bases.
ZOO_ONLY = {"predict": "its cases are the saved checkpoints of the zoo's finetunes of the base"}


def preflight(params: dict[str, Any], chapter: str = "", left: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every check that needs no weights, on the parameters as the kernel will get them; returns them, each of
    the parameters ``left`` at their defaults (``chapters.left_at_default``) that does not fit the pair or its
    text lowered to the largest value that does (said on stderr)."""
    notes: list[str] = []
    params = fitted(lambda p: _checks(p, chapter), params, left, notes)
    say_fitted(chapter, notes)
    return params


def _checks(params: dict[str, Any], chapter: str) -> None:
    zoo = params.get("zoo", "default")
    base = params.get("base")
    finetunes = params.get("finetunes", []) or ([params["finetune"]] if params.get("finetune") else [])
    if chapter in ZOO_ONLY and base and not is_zoo(base):
        raise SpecError(f"base={base!r}: chapter {chapter!r} needs a zoo base ({ZOO_ONLY[chapter]}); "
                        "run it on the zoo, or run residuals, sae_metrics and features on your pair")
    if base:
        check_source(base, "base", zoo)
    if chapter in ZOO_ONLY and base:
        handle = Zoo.open(zoo)
        if not any(handle.checkpoints(f"zoo:{n}") for n in handle.finetunes_of(base)):
            bases = sorted({f"zoo:{m.parent}" for n, m in handle.recipe.models.items()
                            if m.parent and handle.checkpoints(f"zoo:{n}")})
            raise SpecError(f"base={base!r}: zoo profile {handle.profile!r} holds no finetune of it with saved "
                            f"checkpoints, and {ZOO_ONLY[chapter]}; bases that have them: {bases}")
    for ft in finetunes:
        if base:
            check_pair_kinds(base, ft)
        check_source(ft, "finetunes", zoo)
    if params.get("sae"):
        check_source(params["sae"], "sae", zoo, sae=True)
        if base:
            check_reads(base, params["sae"], params.get("hook", ""), zoo)
    if params.get("twin"):
        if chapter == "diffing" and base and is_zoo(base) != is_zoo(params["twin"]):
            raise SpecError(f"twin={params['twin']!r}: base={base!r} pairs only with a twin of the same source "
                            "(zoo with zoo); the crosscoder reads both on the same tokens")
        check_source(params["twin"], "twin", zoo)
    if params.get("second_sae"):
        check_source(params["second_sae"], "second_sae", zoo, sae=True)
    for name in ("small", "large", "other"):
        if params.get(name):
            check_source(params[name], name, zoo)
    for name in ("small_sae", "large_sae", "other_sae", "twin_sae"):
        if params.get(name):
            check_source(params[name], name, zoo, sae=True)
    if chapter == "sizes":
        for name in ("small", "large"):
            limit = context_limit(params[name], zoo)
            if limit and params["context_size"] > limit:
                raise SpecError(f"context_size={params['context_size']} exceeds {name}={params[name]!r}'s context "
                                f"of {limit} tokens; use context_size <= {limit}")
        for name in ("steer_from", "steer_to"):
            if params[name] not in params["datasets"]:
                raise SpecError(f"{name}={params[name]!r} is not one of datasets={params['datasets']}")
        check_inputs(params["large"], params["large_sae"], params["small"], params["small_sae"],
                     params["second_sae"], zoo)
    if chapter == "across":
        for role in ("other", "twin"):
            if params[role]:
                limit = context_limit(params[role], zoo)
                if limit and params["context_size"] > limit:
                    raise SpecError(f"context_size={params['context_size']} exceeds {role}={params[role]!r}'s "
                                    f"context of {limit} tokens; use context_size <= {limit}")
                across_inputs(params["base"], params["sae"], params[role], params[f"{role}_sae"],
                              params["second_sae"] if role == "other" else "", zoo, role)
    if chapter == "languages":
        languages_inputs(params["finetune"], LanguagesStudy.of(params))
    if chapter == "known_answers" and base:
        planted_inputs(base, params["sae"], params["planted_tokens"], zoo)
        trained_inputs(base, params["dataset"], params["pattern_tokens"], params["pattern_steps"], zoo)
    for dataset in _datasets(params):
        check_dataset_source(dataset)
    for name in ("base_text", "new_text"):  # a language is a zoo corpus only where the zoo's recipe adds it
        if params.get(name) and is_zoo(params[name]):
            Zoo.open(zoo).check_domain(data_spec(params[name]).ref, name)
    limit = context_limit(base, zoo) if base else None
    if limit and params.get("context_size", 0) > limit:
        raise SpecError(f"context_size={params['context_size']} exceeds the base model's context of {limit} "
                        f"tokens; use context_size <= {limit}")
    if base:
        _check_blocks(params, n_layers_of(base, zoo))
        _check_text(params, zoo)
    if chapter == "answerability" and base:
        _check_prompts(params, zoo)
    models = [(n, params[n]) for n in ("base", "twin", "small", "large") if params.get(n)]
    check_load_fits(models + [("finetunes", ft) for ft in finetunes], zoo, params.get("dtype", "float32"),
                    params.get("memory", "auto"), params.get("device", "auto"))
    if chapter == "sae_metrics":
        spec = TokenSpec("", params["n_tokens"], params["context_size"], params["batch_size"])
        if spec.n_batches() < 4:
            fits = spec.n_windows() // 4  # the largest batch_size that makes 4 batches of these tokens
            raise Unfit(f"n_tokens={spec.n_tokens} makes {spec.n_batches()} batch(es) of {spec.batch_size} "
                        f"windows of {spec.context_size} tokens; the intervals resample whole batches, so give "
                        "at least 4: " + (f"batch_size <= {fits} or " if fits else "")
                        + f"n_tokens >= {4 * spec.batch_size * spec.context_size}", "batch_size", fits or None)


def _check_blocks(params: dict[str, Any], n_layers: int | None) -> None:
    """``hook`` and ``layers`` name blocks the base has."""
    if not n_layers:
        return
    block = block_of(params.get("hook") or "")
    if block is not None and block >= n_layers:
        raise SpecError(f"hook={params['hook']!r} names block {block} but the base model has blocks "
                        f"0..{n_layers - 1}")
    bad = [layer for layer in params.get("layers", []) if layer >= n_layers]
    if bad:
        raise SpecError(f"layers={params['layers']!r}: the base model has blocks 0..{n_layers - 1}")


def _datasets(params: dict[str, Any]) -> list[str]:
    """Every dataset a chapter's parameters name (``datasets``, ``dataset``, the languages chapter's two texts)."""
    named = [params.get(k) for k in ("dataset", "base_text", "new_text")]
    return [*params.get("datasets", []), *(d for d in named if d)]


def _check_text(params: dict[str, Any], zoo: str) -> None:
    """Each dataset holds the tokens asked of it (``n_select`` + ``n_tokens`` windows of ``context_size``): a zoo
    base reads the zoo's token streams; any other base tokenizes the text (a ``json:`` file, a zoo domain's text)
    with its own tokenizer, here, before a model loads."""
    if "train_tokens" in params and not is_zoo(params["base"]):
        _check_training_text(params, zoo)
    if "n_tokens" not in params or "context_size" not in params:
        return
    ctx = params["context_size"]
    need = params["n_tokens"] + params.get("n_select", 0)
    asked = "n_tokens" if "n_select" not in params else "n_select + n_tokens"
    datasets = _datasets(params)
    zoo_base = is_zoo(params["base"])
    if zoo_base and "dataset" in params and not params["dataset"]:  # each zoo finetune on its own domain
        handle = Zoo.open(zoo)
        datasets += [d for ft in params.get("finetunes", []) if (d := handle.own_domain(ft))]
    tokenizer = None
    for dataset in dict.fromkeys(datasets):
        if zoo_base and is_zoo(dataset):
            zoo_stream(TokenSpec(dataset, need, ctx, 1), zoo, asked)
        else:
            tokenizer = tokenizer or load_tokenizer_for(params["base"], "base", zoo)
            check_text_holds(TokenSpec(dataset, need, ctx, 1), tokenizer, zoo, asked)


def _check_training_text(params: dict[str, Any], zoo: str) -> None:
    """The diffing chapter's text for a pair outside the zoo: its crosscoder trains on the first windows of
    ``base_data`` and is evaluated on the windows after them, so the text must hold both (refused here, before
    the models load, rather than inside the kernel under the name of an internal token count)."""
    study = DiffingStudy.of(params, n_train=params["train_tokens"])
    data = params["base_data"]  # a pair outside the zoo reads the base's data (``own_dataset``)
    (train,), (held_out,) = train_specs(study, [data]), eval_specs(study, [data])
    have = windows_available(held_out, load_tokenizer_for(params["base"], "base", zoo), zoo)
    need = held_out.skip + held_out.n_windows()
    if have is not None and have < need:
        fits = int(max(have - held_out.n_windows() - 1, 0) * study.context_size / 1.05)
        # fewer tokens than one crosscoder step is no training: then nothing fits
        fits = fits if fits >= params["batch_tokens"] else 0
        raise Unfit(f"train_tokens={study.n_train} and n_tokens={study.n_tokens} need {need} windows of "
                    f"{study.context_size} tokens of base_data={data!r} ({train.n_windows()} to train the "
                    f"crosscoder, then {held_out.n_windows()} to evaluate it) but it holds {have}; "
                    + (f"use train_tokens <= {fits} or give more text" if fits else "give more text"),
                    "train_tokens", fits or None)


def _check_prompts(params: dict[str, Any], zoo: str) -> None:
    """The answerability prompts are built here, with the base's tokenizer, as the kernel will build them: a
    tokenizer that makes them too long for ``max_tokens`` (or the model's context) leaves too few of a domain,
    refused here in one line rather than after the models load."""
    tokenizer = load_tokenizer_for(params["base"], "base", zoo)
    limit = min(params["max_tokens"], context_limit(params["base"], zoo) or params["max_tokens"])
    try:
        answerable.build(list(params["domains"]), params["n_train"], params["n_test"], params["seed"],
                         fits=lambda t: len(prompt_ids(tokenizer, t)) <= limit,
                         context_chars=params["context_chars"])
    except ValueError as e:
        raise SpecError(f"base={params['base']!r}: with its tokenizer and max_tokens={params['max_tokens']}, {e}") \
            from None
