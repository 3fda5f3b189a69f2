"""Across languages: the base SAE on a finetune of the base into another language, read two ways.

- **The verdict**, on text in each language: ``check``'s one pass (``check.measure.check_pass``: every SAE metric
  on base and finetune over the same token batches, the three criteria with intervals over batches, the verdict).
- **Cross-lingual features**, on parallel verses (``data.verses``): every base-SAE feature's largest activation on
  each verse, read alone, in the base's language and in the finetune's, on the base and on the finetune. A feature
  is *language-general* when it fires in both languages and its activations over verses correlate with those on
  the translations; *language-specific* when it fires in one language only. Beside the translation, two
  references of the same statistic: the verses paired with the wrong translation (shuffled: the floor chance
  gives) and with a second translation in the base's language (the ceiling a paraphrase gives). Seed 000's
  stability question, for languages.

``measure(setup, finetune, study)``: both parts cached by every input; the classes and their shares, with
intervals over features, are computed from the cached per-feature numbers (``classes``, ``shares``), so a
threshold changes nothing measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sae_transfer.core.stats import paired_difference, share_interval
from sae_transfer.check.measure import MIN_BATCHES, CheckSpec, check_pass, live_base
from sae_transfer.data import verses
from sae_transfer.data.tokens import check_token_spec, token_windows
from sae_transfer.models.hooks import stop_layer
from sae_transfer.models.load import parse_spec
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.cache import cached, dataset_identity, measurement_key
from sae_transfer.passes.outliers import outlier_threshold
from sae_transfer.passes.sae_metrics import pass_plan
from sae_transfer.studies.parameters import Config

#: Correlations with the translations at which the figure reads the share of language-general features.
GENERAL_LEVELS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
#: The classes of a feature on one model, in the order tables show them.
CLASSES = ("general", "shared, uncorrelated", "base language only", "new language only", "silent")


@dataclass(frozen=True, kw_only=True)
class LanguagesStudy(Config):
    """``n_tokens`` per dataset for the verdict (all measured: no early stop, so both languages read the same
    amount), ``n_verses`` parallel held-out verses in each translation; ``min_rate``, ``general_corr`` and
    ``transfer_corr`` the thresholds of the classes (applied to cached numbers)."""

    base_text: str
    new_text: str
    base_language: str
    new_language: str
    ceiling: str
    n_tokens: int
    n_verses: int
    context_size: int
    batch_size: int
    outliers: str
    min_rate: float
    general_corr: float
    transfer_corr: float
    n_boot: int
    seed: int

    def check_spec(self) -> CheckSpec:
        return CheckSpec(max_tokens=self.n_tokens, min_tokens=self.n_tokens, context_size=self.context_size,
                         batch_size=self.batch_size, outliers=self.outliers, n_recheck=0, early_stop=False,
                         n_boot=self.n_boot, seed=self.seed)

    @property
    def translations(self) -> tuple[str, ...]:
        return (self.base_language, self.new_language) + ((self.ceiling,) if self.ceiling else ())

    def verse_params(self) -> dict[str, Any]:
        """What the verse pass depends on (the thresholds do not: they classify its numbers)."""
        return {"translations": list(self.translations), "n_verses": self.n_verses,
                "context_size": self.context_size, "seed": self.seed}


# ------------------------------------------------------------------------------------------ the verdict

def verdict(setup: PairSetup, finetune: str, dataset: str, study: LanguagesStudy, loader) -> dict[str, Any]:
    """``check``'s pass of the base SAE on ``finetune`` against the base, on ``study.n_tokens`` of ``dataset``:
    every metric with its interval over token batches, the criteria and the verdict. Cached."""
    spec = study.check_spec()
    key = measurement_key("languages-check", __name__, setup, finetune=finetune, tokens=spec.tokens(dataset),
                          check=asdict(spec))

    def run() -> dict[str, Any]:
        pair = loader(finetune)
        windows = token_windows(spec.tokens(dataset), pair.tokenizer, setup.zoo)
        threshold = outlier_threshold(setup, spec.outliers, spec.tokens(dataset), lambda: pair)
        base = live_base(pair.base, pair.sae, pair.hook, threshold,
                         pass_plan(pair.base, pair.sae, spec.context_size, spec.batch_size, setup.memory))
        r = check_pass(base, pair.finetune, pair.sae, pair.hook, windows, threshold, spec,
                       desc=f"check on {dataset}", memory=setup.memory)
        return {k: v for k, v in r.items() if k != "recheck"}

    return cached("languages-check", key, run)


# ------------------------------------------------------------------------------------------ verses

#: Verses a forward pass reads at most: they are short (tens of tokens), and a forward's fixed cost dominates
#: small batches on CPU; the memory plan cuts it further where it must.
VERSE_BATCH = 64


@torch.inference_mode()
def verse_activations(model, sae, hook: str, tokenizer, texts: list[str], context_size: int, memory: str = "auto",
                      desc: str = "verses") -> torch.Tensor:
    """[n_texts, d_sae]: each SAE feature's largest activation over each text's tokens, every text read alone
    (BOS-led, cut at ``context_size`` tokens, BOS itself left out), in batches of texts of similar length that fit
    ``memory``. The largest rather than the mean: a verse and its translation differ in length, and a feature that
    fires on one word should count the same in a long verse as in a short one."""
    bos = tokenizer.bos_token_id
    lead = [bos] if bos is not None else []
    ids = [(lead + tokenizer(t, add_special_tokens=False)["input_ids"])[:context_size] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding in each batch
    micro = pass_plan(model, sae, max(map(len, ids)), VERSE_BATCH, memory).micro_batch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop = stop_layer([hook], model.cfg.n_layers)
    out = torch.zeros(len(ids), sae.cfg.d_sae)
    for i in tqdm(range(0, len(ids), micro), desc=desc, unit="batch", leave=False):
        rows = order[i:i + micro]
        width = max(len(ids[r]) for r in rows)
        tokens = torch.full((len(rows), width), pad, dtype=torch.long)
        keep = torch.zeros(len(rows), width, dtype=torch.bool)
        for j, r in enumerate(rows):
            tokens[j, :len(ids[r])] = torch.tensor(ids[r])
            keep[j, len(lead):len(ids[r])] = True  # right padding: a causal model's real tokens never see it
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, stop_at_layer=stop,
                                        return_type=None)
        f = sae.encode(cache[hook].to(sae.dtype)).float()  # [micro, width, d_sae]
        out[rows] = f.masked_fill(~keep.to(f.device)[..., None], 0.0).amax(1).cpu()
    return out


def pearson_columns(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per column, the Pearson correlation of ``a`` [n, d] with ``b`` [n, d] over the n rows; NaN where either
    column is constant (a feature that never fires on those verses)."""
    a, b = a.double(), b.double()
    a, b = a - a.mean(0), b - b.mean(0)
    den = (a.pow(2).sum(0) * b.pow(2).sum(0)).sqrt()
    r = (a * b).sum(0) / den
    return torch.where(den > 1e-12, r, torch.full_like(r, float("nan"))).numpy()


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n) that moves every index: each verse paired with another verse's
    translation."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


def _listed(x: np.ndarray) -> list:
    return [None if v != v else float(v) for v in np.asarray(x, dtype=float)]


def verse_stats(setup: PairSetup, finetune: str, study: LanguagesStudy, loader) -> dict[str, Any]:
    """Per feature, on the base (``before``) and on the finetune (``after``): the share of verses it fires on in
    each translation, and its correlation over verses between the base's language and the finetune's, the same
    with the translations shuffled, and with the second translation in the base's language; and between base
    and finetune in each language (``transfer``). Cached; no [verses, d_sae] matrix outlives the pass."""
    key = measurement_key("languages-verses", __name__, setup, finetune=finetune,
                          verses=dataset_identity(f"verses:{study.base_language}", setup.zoo), **study.verse_params())

    def run() -> dict[str, Any]:
        every = verses.parallel(study.translations, "heldout")
        # a seeded sample from every held-out chapter, in book order (the first verses would be a few books')
        pick = np.sort(np.random.default_rng(study.seed).choice(len(every), study.n_verses, replace=False))
        rows = [every[i] for i in pick]
        pair = loader(finetune)
        acts = {}
        for side, model in (("before", pair.base), ("after", pair.finetune)):
            acts[side] = {lang: verse_activations(model, pair.sae, pair.hook, pair.tokenizer,
                                                  [r[lang] for r in rows], study.context_size, setup.memory,
                                                  desc=f"{side}: verses in {lang}")
                          for lang in study.translations}
        ref, lang = study.base_language, study.new_language
        shuffle = torch.from_numpy(derangement(len(rows), study.seed))
        out: dict[str, Any] = {"n_verses": len(rows), "d_sae": int(pair.sae.cfg.d_sae),
                               "example": {k: rows[0][k] for k in study.translations}}
        for side, a in acts.items():
            out[side] = {"rate": {t: _listed((x > 0).double().mean(0).numpy()) for t, x in a.items()},
                         "corr": _listed(pearson_columns(a[ref], a[lang])),
                         "corr_shuffled": _listed(pearson_columns(a[ref], a[lang][shuffle]))}
            if study.ceiling:
                out[side]["corr_ceiling"] = _listed(pearson_columns(a[ref], a[study.ceiling]))
        out["transfer"] = {t: _listed(pearson_columns(acts["before"][t], acts["after"][t])) for t in (ref, lang)}
        return out

    return cached("languages-verses", key, run)


# ------------------------------------------------------------------------------------------ classes and shares

def _arr(x: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in x], dtype=float)


def classes(side: dict, ref: str, lang: str, min_rate: float, general_corr: float,
            corr: str = "corr", other: str | None = None) -> np.ndarray:
    """Each feature's class (an index into ``CLASSES``) on one model from its verse numbers: firing (on at least
    ``min_rate`` of the verses) in both languages with a correlation of at least ``general_corr`` (``corr``: with
    the translations, shuffled ones or the ceiling's, whose rates ``other`` names), firing in both without it,
    in one language only, or in neither."""
    other = other or lang
    a, b = _arr(side["rate"][ref]) >= min_rate, _arr(side["rate"][other]) >= min_rate
    r = np.nan_to_num(_arr(side[corr]), nan=-1.0)
    out = np.full(len(a), CLASSES.index("silent"))
    out[a & b] = CLASSES.index("shared, uncorrelated")
    out[a & b & (r >= general_corr)] = CLASSES.index("general")
    out[a & ~b] = CLASSES.index("base language only")
    out[~a & b] = CLASSES.index("new language only")
    return out


def shares(stats: dict, study: LanguagesStudy) -> dict[str, Any]:
    """The shares of every class before and after the finetune, over the features that fire on the verses in
    either language on either model (the same features on both sides, so the change is paired); the general share
    with the translations shuffled (floor) and with a second translation in the base's language (ceiling); the
    change in the general share; and, per class on the base, the share of features that transfer in each language
    (correlation over verses between base and finetune of at least ``transfer_corr``)."""
    ref, lang, args = study.base_language, study.new_language, (study.min_rate, study.general_corr)
    cls = {side: classes(stats[side], ref, lang, *args) for side in ("before", "after")}
    silent = CLASSES.index("silent")
    alive = (cls["before"] != silent) | (cls["after"] != silent)
    general = CLASSES.index("general")
    boot = (study.n_boot, study.seed)
    out: dict[str, Any] = {"n_alive": int(alive.sum()), "n_features": int(len(alive)), "classes": {}, "general": {},
                           "curve": {}}
    pairings = {"translation": {}, "shuffled": {"corr": "corr_shuffled"}}
    if study.ceiling:
        pairings["second translation"] = {"corr": "corr_ceiling", "other": study.ceiling}
    for side, c in cls.items():
        out["classes"][side] = {name: share_interval(c[alive] == i, *boot) for i, name in enumerate(CLASSES)}
        out["general"][side] = {p: share_interval(classes(stats[side], ref, lang, *args, **kw)[alive] == general, *boot)
                                for p, kw in pairings.items()}
        out["curve"][side] = {p: {str(t): share_interval(classes(stats[side], ref, lang, study.min_rate, t, **kw)[alive]
                                                 == general, *boot) for t in GENERAL_LEVELS}
                              for p, kw in pairings.items()}
    out["general_change"] = paired_difference(cls["after"][alive] == general, cls["before"][alive] == general, *boot)
    transfer = {t: np.nan_to_num(_arr(stats["transfer"][t]), nan=-1.0) >= study.transfer_corr for t in (ref, lang)}
    out["transfer"] = {}
    for i, name in enumerate(CLASSES[:-1]):
        members = alive & (cls["before"] == i)
        out["transfer"][name] = {"n": int(members.sum()),
                                 **{t: share_interval(transfer[t][members], *boot) for t in (ref, lang)}}
    out["moved"] = {name: int((alive & (cls["before"] == general) & (cls["after"] == i)).sum())
                    for i, name in enumerate(CLASSES)}
    return out


# ------------------------------------------------------------------------------------------ the study

def check_batches(n_tokens: int, batch_size: int, context_size: int) -> None:
    """The verdict's tokens make the batches its intervals resample (``MIN_BATCHES``)."""
    need = MIN_BATCHES * batch_size * context_size
    if n_tokens < need:
        raise ValueError(f"n_tokens={n_tokens}: the verdict's intervals resample whole batches and need at least "
                         f"{MIN_BATCHES} of {batch_size} x {context_size} tokens; use n_tokens >= {need} or a "
                         "smaller batch_size")


def check_inputs(finetune: str, study: LanguagesStudy) -> None:
    """One-line errors naming the parameter, before any model loads."""
    parse_spec(finetune, "finetune")
    check_batches(study.n_tokens, study.batch_size, study.context_size)
    for name, dataset in (("base_text", study.base_text), ("new_text", study.new_text)):
        try:
            check_token_spec(study.check_spec().tokens(dataset))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    for lang in study.translations:
        verses.check_language(lang)
    held = len(verses.parallel(study.translations, "heldout"))
    if held < study.n_verses:
        raise ValueError(f"n_verses={study.n_verses}: the held-out chapters hold {held} verses that "
                         f"{list(study.translations)} all have; use n_verses <= {held}")


def measure(setup: PairSetup, finetune: str, study: LanguagesStudy) -> dict[str, Any]:
    """Everything the chapter shows (see the module docstring)."""
    check_inputs(finetune, study)
    loader = setup.loader()
    checks = {name: verdict(setup, finetune, dataset, study, loader)
              for name, dataset in (("base_text", study.base_text), ("new_text", study.new_text))}
    stats = verse_stats(setup, finetune, study, loader)
    per_feature = {side: {"rate_base": stats[side]["rate"][study.base_language],
                          "rate_new": stats[side]["rate"][study.new_language], "corr": stats[side]["corr"]}
                   for side in ("before", "after")}
    return {"checks": checks, "features": per_feature, "datasets": {"base_text": study.base_text, "new_text": study.new_text},
            "shares": shares(stats, study), "verses": {k: stats[k] for k in ("n_verses", "d_sae", "example")},
            "specs": {"base": setup.base, "sae": setup.sae, "finetune": finetune},
            "languages": {"base_language": study.base_language, "new_language": study.new_language,
                          "ceiling": study.ceiling},
            "thresholds": {"min_rate": study.min_rate, "general_corr": study.general_corr,
                           "transfer_corr": study.transfer_corr}}
