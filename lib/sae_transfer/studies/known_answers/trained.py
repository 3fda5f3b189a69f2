"""The real level's second form: a finetune trained on text with planted token patterns (``data.patterns``),
beside a control finetune trained on the same text left as it is.

Both start from the base and train every parameter on the same windows, in the same order, from the same seed;
their texts differ only in the token after each planted one. So the truth is in positions, not in features: what
the planted finetune learnt that the control did not, it learnt where the input is a planted token. The truth is
measured as well as planted (``truth``): the planted rule's probability after its triggers, the entropy after the
removed tokens, and how far the stream at the SAE's hook moved, planted against control, on planted positions and
elsewhere. Every method of the book then runs on (base, planted) and on (base, control), the control being the
floor a method's finding must clear: the crosscoder (the diffing chapter's kind) and its new latents (do they fire
where the plant is?), the base SAE's unexplained variance by position class, and ``check``'s verdict.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from sae_transfer.core.io import fingerprint
from sae_transfer.core.paths import cache_dir
from sae_transfer.core.stats import correlate
from sae_transfer.core.specs import data_spec, is_zoo
from sae_transfer.data.patterns import POSITION_CLASSES, Patterns
from sae_transfer.data.tokens import TokenSpec, token_batches, token_windows, windows_available
from sae_transfer.methods.crosscoder_classes import feature_classes, latent_classes, new_latents
from sae_transfer.models.load import SpecError, context_limit, load_tokenizer_for
from sae_transfer.passes.cache import cached, code_fingerprint, trained
from sae_transfer.studies.known_answers.planted import BATCH, CONTEXT, RealPair, verdict_of
from sae_transfer.studies.known_answers.scores import auroc, interval
from sae_transfer.studies.known_answers.train import KnownStudy, crosscoder
from sae_transfer.zoo.store import Zoo
from sae_transfer.zoo.train import train_lm

#: Windows per finetuning step.
STEP_WINDOWS = 16
#: The two finetunes: on the planted text, and on the same text as it is (the floor).
KINDS = ("planted", "control")
#: A new latent is "on the plant" when at least this share of its firing mass falls on planted positions.
ON_PLANT = 0.5


def check_inputs(base: str, dataset: str, pattern_tokens: int, pattern_steps: int, zoo: str) -> None:
    """Before any weights load: the training split of ``dataset`` holds the windows the two finetunes train on
    (``pattern_steps`` x ``STEP_WINDOWS`` windows of the real level's context)."""
    if not pattern_tokens:
        return
    context = min(CONTEXT, context_limit(base, zoo) or CONTEXT)
    spec = TokenSpec(str(data_spec(dataset).with_split("train")), pattern_steps * STEP_WINDOWS * context, context, 1)
    if is_zoo(base) and is_zoo(dataset):
        handle = Zoo.open(zoo)
        handle.check_domain(data_spec(dataset).ref)
        available = handle.streams("train", context)[data_spec(dataset).ref].n_windows()
    else:
        available = windows_available(spec, load_tokenizer_for(base, "base", zoo), zoo)
    if available is not None and available < spec.n_windows():
        raise SpecError(f"pattern_steps={pattern_steps} trains on {spec.n_windows()} windows of {context} tokens but "
                        f"the training split of dataset={dataset!r} holds {available}; use pattern_steps <= "
                        f"{available // STEP_WINDOWS} or give more text")


class _Text:
    """The finetunes' training text: windows drawn at random, planted or not; both kinds draw the same windows
    and the same planting seed at every step (``train_lm``'s generator), so their texts differ only by the plant."""

    def __init__(self, windows: torch.Tensor, patterns: Patterns | None):
        self.windows, self.patterns = windows, patterns

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        windows = self.windows[torch.from_numpy(rng.integers(0, len(self.windows), n))]
        seed = int(rng.integers(2**31))
        return self.patterns.apply(windows, torch.Generator().manual_seed(seed)) if self.patterns else windows


class TrainedPair:
    """The base and its two trained finetunes (``models``), one of them compared (``kind``): the known-answers
    pair interface the crosscoder's training and the evaluation pass read (paired activations, ``key``)."""

    #: No dictionary of true features to match the SAE's latents to.
    truth_is_sae = True

    def __init__(self, real: RealPair, study: KnownStudy):
        self.real, self.study = real, study
        tok, base = real.loaded.tokenizer, real.loaded.base
        spec = real.spec(study.pattern_steps * STEP_WINDOWS * real.context, study.seed + 5, train=True)
        self.train_windows = token_windows(spec, tok, study.zoo)  # [steps * STEP_WINDOWS, context]
        vocab = min(len(tok), base.cfg.d_vocab)
        special = tuple(sorted(i for i in set(tok.all_special_ids) if i is not None and i < vocab))
        self.patterns = Patterns.draw(self.train_windows, study.pattern_tokens, vocab, special, study.seed)
        self.logs: dict[str, Any] = {}
        self.models = {kind: self._finetune(kind) for kind in KINDS}
        self.kind = "planted"
        self.sae = real.sae
        self.d_in, self.n_total = self.sae.cfg.d_in, self.sae.cfg.d_sae

    def _train_key(self, kind: str) -> dict:
        s = self.study
        return {"real": self.real._identity, "code": code_fingerprint(__name__), "patterns": self.patterns.describe(),
                "kind": kind, "steps": s.pattern_steps, "lr": s.pattern_lr,
                "windows": [len(self.train_windows), s.seed + 5], "seed": s.seed}

    def _finetune(self, kind: str):
        """The base finetuned on the planted text (``planted``) or the text as it is (``control``), trained once per
        key (weights checked when opened)."""
        s, base = self.study, self.real.loaded.base
        key = {"what": "known-answers-finetune", **self._train_key(kind)}

        def train() -> tuple[dict, dict]:
            model = copy.deepcopy(base)
            text = _Text(self.train_windows, self.patterns if kind == "planted" else None)
            log = train_lm(model, {"text": text}, {"text": 1.0}, s.pattern_steps, STEP_WINDOWS, s.pattern_lr,
                           seed=s.seed + 11, warmup=max(1, s.pattern_steps // 10),
                           desc=f"known answers: {kind} finetune")
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            return state, {"final_loss": log.loss[-1], "tokens": log.tokens_seen}

        state, self.logs[kind] = trained("known-answers-finetune", key,
                                         cache_dir() / "known-answers" / f"finetune-{fingerprint(key)}.pt", train)
        model = copy.deepcopy(base)
        model.load_state_dict(state)
        return model.eval()

    def compared(self, kind: str) -> "TrainedPair":
        other = copy.copy(self)  # the models and text shared, not copied
        other.kind = kind
        return other

    @torch.no_grad()
    def acts(self, kind: str, tokens: torch.Tensor) -> torch.Tensor:
        """``kind``'s activation at the SAE's hook [B, T, d_in] (fp32, on the CPU)."""
        model = self.models[kind]
        return model(tokens.to(model.cfg.device), stop_at_layer=self.real.stop).float().cpu()

    def key(self) -> dict:
        return self._train_key(self.kind)

    def describe(self) -> dict:
        return {"patterns": self.patterns.describe(), "kind": self.kind, "base": self.study.base,
                "sae": self.study.sae, "hook": self.real.loaded.hook, "dataset": self.study.dataset}

    def paired(self, n_batches: int, batch_size: int, context: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        """Held-out batches: ``tokens`` [B, T], ``x_base`` and ``x_ft`` [B, T, d_in]."""
        spec = self.real.spec(n_batches * batch_size * context, seed, context=context, batch=batch_size)
        for tokens in token_batches(spec, self.real.loaded.tokenizer, self.study.zoo):
            yield {"tokens": tokens, "x_base": self.real.acts(tokens), "x_ft": self.acts(self.kind, tokens)}

    def training_batches(self, study: KnownStudy, seed: int) -> Iterator[torch.Tensor]:
        """Both models' activations [n, 2, d_in] of ``study.train_tokens`` training-split tokens and a few more,
        BOS left out."""
        spec = self.real.spec(int(study.train_tokens * 1.05) + 4 * study.batch_tokens, seed, train=True,
                              context=study.context_size, batch=study.batch_size * 4)
        for tokens in token_batches(spec, self.real.loaded.tokenizer, self.study.zoo):
            yield torch.stack([self.real.acts(tokens), self.acts(self.kind, tokens)], 2)[:, 1:].flatten(0, 1)


@torch.no_grad()
def truth(pair: TrainedPair, settings: KnownStudy) -> dict:
    """What the plant did, measured on held-out text: per model (base, planted, control) the planted rule's mean
    probability after its triggers, the mean entropy (nats) after removed tokens and the mean loss elsewhere; per
    position class the median distance at the SAE's hook between the planted finetune and the control, and between
    the control and the base (the drift both finetunes share), each over the base's norm; the number of positions
    of each class; per base-SAE feature its ``exposure``, the share of its firing mass (in the base) on planted
    positions (None where it never fires)."""
    models = {"base": pair.real.loaded.base, **pair.models}
    rule = {m: [0.0, 0] for m in models}
    entropy = {m: [0.0, 0] for m in models}
    loss = {m: [0.0, 0] for m in models}
    moved: dict[str, list] = {c: [] for c in POSITION_CLASSES}
    drift: dict[str, list] = {c: [] for c in POSITION_CLASSES}
    firing = {c: torch.zeros(pair.sae.cfg.d_sae, dtype=torch.float64) for c in POSITION_CLASSES}
    n_batches = -(-settings.n_tokens // (settings.batch_size * settings.context_size))
    spec = pair.real.spec(n_batches * settings.batch_size * settings.context_size, settings.seed + 1,
                          context=settings.context_size, batch=settings.batch_size)
    for tokens in tqdm(token_batches(spec, pair.real.loaded.tokenizer, pair.study.zoo), total=n_batches,
                       desc="known answers: what the plant did", unit="batch", leave=False):
        where = pair.patterns.positions(tokens)
        target = pair.patterns.target_of(tokens)
        # the prediction at position t is of token t + 1: the last position has no next token to score
        rule_at, erased_at, other_at = (m[:, :-1] for m in (where["added"], where["removed"], where["other"]))
        for m, model in models.items():
            logp = model(tokens.to(model.cfg.device)).float().cpu()[:, :-1].log_softmax(-1)  # [B, T-1, vocab]
            rule[m][0] += float(logp[rule_at].gather(-1, target[:, :-1][rule_at][:, None]).exp().sum())
            rule[m][1] += int(rule_at.sum())
            entropy[m][0] += float(-(logp[erased_at].exp() * logp[erased_at]).sum())
            entropy[m][1] += int(erased_at.sum())
            loss[m][0] += float(-logp[other_at].gather(-1, tokens[:, 1:][other_at][:, None].long()).sum())
            loss[m][1] += int(other_at.sum())
        xb, xp, xc = pair.real.acts(tokens), pair.acts("planted", tokens), pair.acts("control", tokens)
        norm = xb.norm(dim=-1).clamp_min(1e-12)
        f = pair.sae.encode(xb.to(pair.sae.dtype)).float()  # [B, T, d_sae]: one batch at a time
        for c in POSITION_CLASSES:
            moved[c].append(((xp - xc).norm(dim=-1) / norm)[where[c]])
            drift[c].append(((xc - xb).norm(dim=-1) / norm)[where[c]])
            firing[c] += f[where[c]].double().sum(0)
    mean = lambda s: s[0] / s[1] if s[1] else None  # noqa: E731
    median = lambda parts: float(torch.cat(parts).median()) if sum(map(len, parts)) else None  # noqa: E731
    total = sum(firing.values())
    exposure = ((firing["added"] + firing["removed"]) / total).where(total > 0, torch.nan)  # [d_sae]
    return {"rule_probability": {m: mean(v) for m, v in rule.items()},
            "entropy_after_removed": {m: mean(v) for m, v in entropy.items()},
            "loss_elsewhere": {m: mean(v) for m, v in loss.items()},
            "moved": {c: median(moved[c]) for c in POSITION_CLASSES},
            "drift": {c: median(drift[c]) for c in POSITION_CLASSES},
            "positions": {c: int(sum(map(len, moved[c]))) for c in POSITION_CLASSES},
            "log_vocab": float(np.log(pair.patterns.vocab)),
            "exposure": [None if np.isnan(e) else round(e, 5) for e in exposure.tolist()]}


@torch.no_grad()
def _by_position(pair: TrainedPair, cc, new: np.ndarray, settings: KnownStudy) -> dict:
    """One pass over the evaluation's tokens: the base SAE's unexplained variance per position class (base and
    finetune), and the new latents' firing mass per position class and firings per planted token."""
    sae = pair.sae
    new_idx = torch.from_numpy(np.nonzero(new)[0])
    planted_ids = torch.tensor(pair.patterns.added + pair.patterns.removed)
    err = {m: {c: 0.0 for c in POSITION_CLASSES} for m in ("base", "finetune")}
    moments = {m: [torch.zeros(sae.cfg.d_in, dtype=torch.float64), 0.0, 0] for m in ("base", "finetune")}
    mass = {c: torch.zeros(len(new_idx), dtype=torch.float64) for c in POSITION_CLASSES}
    fires = torch.zeros(len(planted_ids), len(new_idx))  # firings of each new latent on each planted token
    seen = torch.zeros(len(planted_ids))
    count = {c: 0 for c in POSITION_CLASSES}
    n_batches = -(-settings.n_tokens // (settings.batch_size * settings.context_size))
    for b in pair.paired(n_batches, settings.batch_size, settings.context_size, seed=settings.seed + 1):
        where = {c: m[:, 1:].flatten() for c, m in pair.patterns.positions(b["tokens"]).items()}
        tokens = b["tokens"][:, 1:].flatten()
        xs = {"base": b["x_base"][:, 1:].flatten(0, 1), "finetune": b["x_ft"][:, 1:].flatten(0, 1)}  # [n, d_in]
        for m, x in xs.items():
            e = (x - sae.decode(sae.encode(x.to(sae.dtype))).float()).pow(2).sum(-1).double()  # [n]
            for c in POSITION_CLASSES:
                err[m][c] += float(e[where[c]].sum())
                count[c] += int(where[c].sum()) if m == "base" else 0
            moments[m][0] += x.double().sum(0)
            moments[m][1] += float(x.double().pow(2).sum())
            moments[m][2] += len(x)
        f = cc.encode(cc.normalize(torch.stack([xs["base"], xs["finetune"]], 1)))[:, new_idx]  # [n, n_new]
        for c in POSITION_CLASSES:
            mass[c] += f[where[c]].double().sum(0)
        hit = tokens[:, None] == planted_ids[None, :]  # [n, 2 * pattern_tokens]
        fires += hit.float().T @ (f > 0).float()
        seen += hit.sum(0)
    variance = {m: s2 / n - float(s1.pow(2).sum()) / n**2 for m, (s1, s2, n) in moments.items()}  # per position
    total = sum(mass.values())
    share = (mass["added"] + mass["removed"]) / total.clamp_min(1e-12)  # [n_new]
    on = (share >= ON_PLANT) & (total > 0)
    found = (fires[:, on] >= 0.5 * seen[:, None].clamp_min(1)).any(1) & (seen > 0)
    return {"unexplained": {m: {c: err[m][c] / count[c] / variance[m] if count[c] else None
                                for c in POSITION_CLASSES} for m in err},
            "new": {"n": int(len(new_idx)), "on_plant": int(on.sum()),
                    "mass_on_plant": float((mass["added"] + mass["removed"]).sum() / total.sum())
                    if float(total.sum()) > 0 else None,
                    "tokens_found": int(found.sum()), "tokens_seen": int((seen > 0).sum())}}


def measure(study: KnownStudy, real: RealPair, evaluate: Callable) -> dict[str, Any] | None:
    """The second form as plain data: ``patterns``, the finetunes' training ``logs``, ``truth`` (what the plant
    did), and per kind (``planted``, ``control``) the crosscoder's classes and new latents by position, the base
    SAE's unexplained variance by position class, and ``check``'s verdict. None without ``pattern_tokens``.
    ``evaluate``: the chapter's one evaluation pass (``measure._evaluate``)."""
    if not study.pattern_tokens:
        return None
    pair = TrainedPair(real, study)
    settings = study.planted(real.context, BATCH)
    out: dict[str, Any] = {"patterns": pair.patterns.describe(), "logs": pair.logs, "steps": study.pattern_steps,
                           "lr": study.pattern_lr}
    key = {"what": "known-answers-trained-truth", "finetunes": {k: pair.compared(k).key() for k in KINDS},
           "study": settings.case()}
    out["truth"] = cached("known-answers", key, lambda: truth(pair, settings))
    for kind in KINDS:
        p = pair.compared(kind)

        def run() -> dict:
            cc, log = crosscoder(p, settings)
            ev = evaluate(p, p.sae, cc, settings)
            result = {"latents": ev["latents"], "features": ev["features"], "data": ev["data"]}
            classes = latent_classes(result)
            features = feature_classes(result, classes)
            new = new_latents(result, classes)
            return {"crosscoder": {**{k: v for k, v in log.items() if k not in ("step", "loss")},
                                   "heldout_fvu": ev["data"]["synthetic"]["fvu"]},
                    "latent_counts": {c: classes.count(c) for c in set(classes)},
                    "feature_counts": {c: features.count(c) for c in set(features) if c is not None},
                    "feature_classes": features, "act_sim": ev["pair_stats"]["act_sim"],
                    **_by_position(p, cc, new, settings),
                    "verdict": verdict_of(real.check_model(p.models[kind], settings))}

        key = {"what": "known-answers-trained-case", **p.key(),
               "study": settings.case(), "check": asdict(real.check_spec(settings))}
        out[kind] = cached("known-answers", key, run)
    out["scores"] = scores(out, study.n_boot, study.seed)
    return out


#: The crosscoder's labels of a base-SAE feature that say it changed.
CHANGED_LABELS = ("shifted", "lost")


def scores(out: dict, n_boot: int, seed: int) -> dict:
    """Where the planted finetune's methods point, against where the plant is, the control the floor:

    - ``similarity``: the Spearman correlation over base-SAE features of a feature's exposure with the activation
      similarity it loses on the planted finetune beyond the control (control's similarity minus planted's);
    - ``labels``: the AUROC of exposure for the features the crosscoder calls changed (``CHANGED_LABELS``) on the
      planted finetune but kept on the control, against those kept on both, with each group's median exposure;
    - ``unexplained``: per kind, the base SAE's unexplained variance on planted positions (added and removed,
      weighted by count) over that elsewhere.

    Intervals: 95% percentile bootstrap over features."""
    num = lambda v: np.array([np.nan if x is None else x for x in v], dtype=float)  # noqa: E731
    exposure = num(out["truth"]["exposure"])
    planted, control = (num(out[k]["act_sim"]) for k in KINDS)
    ok = ~(np.isnan(exposure) | np.isnan(planted) | np.isnan(control))
    similarity = correlate(exposure[ok], control[ok] - planted[ok], n_boot=n_boot, seed=seed)
    fp, fc = (np.array([str(c) for c in out[k]["feature_classes"]]) for k in KINDS)
    moved = np.isin(fp, CHANGED_LABELS) & (fc == "kept") & ~np.isnan(exposure)
    kept = (fp == "kept") & (fc == "kept") & ~np.isnan(exposure)
    y = np.concatenate([np.ones(moved.sum()), np.zeros(kept.sum())])
    s = np.concatenate([exposure[moved], exposure[kept]])
    labels = {"auroc": interval((y, s), auroc, n_boot, seed) if moved.any() and kept.any() else None,
              "n_changed": int(moved.sum()), "n_kept": int(kept.sum()),
              "exposure_changed": float(np.median(exposure[moved])) if moved.any() else None,
              "exposure_kept": float(np.median(exposure[kept])) if kept.any() else None}
    n = out["truth"]["positions"]
    unexplained = {}
    for k in KINDS:
        u = out[k]["unexplained"]["finetune"]
        on = [(u[c], n[c]) for c in ("added", "removed") if u[c] is not None and n[c]]
        at_plant = sum(v * w for v, w in on) / sum(w for _, w in on) if on else None
        unexplained[k] = at_plant / u["other"] if at_plant is not None and u["other"] else None
    return {"similarity": {"spearman": similarity["spearman"], "lo": similarity["spearman_lo"],
                           "hi": similarity["spearman_hi"], "n": similarity["n"]},
            "labels": labels, "unexplained_ratio": unexplained}
