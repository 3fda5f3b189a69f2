"""The second level: a real model of the zoo (or the user's) with a planted finetune (``data.planted``), every method
run on the two models' real passes, and scored against the planted truth as the first level is.

The base's activations at its SAE's hook come from the model; the finetune's are the planted edit of them, exact
token by token, and ``check`` runs on the planted finetune as a model (``PlantedFinetune.model``) with its own
pass, loss included: the one criterion activations alone lack. What the cases share is loaded once (``RealPair``);
each case (the default, the null finetune, and per point of ``planted_severities`` a verdict) is cached under the
content of the base, its SAE and the text.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from sae_transfer.check.measure import CheckSpec, check_pass, live_base
from sae_transfer.core.specs import data_spec
from sae_transfer.data.planted import PlantedFinetune
from sae_transfer.data.synthetic import changed_mass
from sae_transfer.data.tokens import TokenSpec, token_batches, token_windows
from sae_transfer.models.configs import sae_facts
from sae_transfer.models.hooks import residual_index, writer_hook
from sae_transfer.models.load import SpecError, context_limit
from sae_transfer.models.pairs import PairSetup, load_one_side
from sae_transfer.passes.cache import cached, code_fingerprint, dataset_identity, measurement_key
from sae_transfer.passes.outliers import outlier_threshold
from sae_transfer.passes.sae_metrics import pass_plan
from sae_transfer.studies.known_answers.train import KnownStudy

#: Calibration tokens (the training split's, a seed of their own): which features live, how strong and frequent.
CALIBRATION_TOKENS = 8192
#: Tokens per window, or the model's context where it is shorter; windows per batch.
CONTEXT, BATCH = 128, 8
#: Batches ``check`` needs at least on the real pair: its intervals resample whole batches, and it may stop early
#: only after half of them.
MIN_CHECK_BATCHES = 8


def check_inputs(base: str, sae: str, planted_tokens: int, zoo: str) -> None:
    """Before any weights load: the SAE reads a stream some block writes (the edit sits on that block's output),
    and ``planted_tokens`` give ``check`` enough batches for its intervals."""
    facts = sae_facts(sae, zoo)
    if facts is not None and writer_hook(facts.hook) is None:
        raise SpecError(f"sae={sae!r} reads {facts.hook!r}, a stream no block writes; a planted finetune edits a "
                        "block's output: give an SAE of blocks.L.hook_resid_pre (L >= 1) or a hook_resid_post")
    context = min(CONTEXT, context_limit(base, zoo) or CONTEXT)
    least = MIN_CHECK_BATCHES * BATCH * context
    if planted_tokens < least:
        raise SpecError(f"planted_tokens={planted_tokens} gives check fewer than {MIN_CHECK_BATCHES} batches of "
                        f"{BATCH} windows of {context} tokens; use planted_tokens >= {least}")


class RealPair:
    """A base model, its SAE and text, loaded once, with one planted edit (``plant``): what the known-answers scores
    read of a pair (``data.synthetic.PlantedPair``'s interface: truth, directions, paired batches)."""

    def __init__(self, study: KnownStudy):
        self.study = study
        self.setup = PairSetup(study.base, study.sae, zoo=study.zoo, device=study.device, dtype=study.dtype,
                               memory=study.memory)
        self.loaded = load_one_side(study.base, study.sae, None, study.zoo, study.device, study.dtype)
        self.setup = replace(self.setup, hook=self.loaded.hook)
        self.sae = self.loaded.sae
        self.stop = residual_index(self.loaded.hook)
        self.context = min(CONTEXT, self.loaded.base.cfg.n_ctx)
        # The base, its SAE, the text and this code (``data.planted``'s with it): what every case's numbers depend
        # on beyond its edits and settings.
        self._identity = measurement_key("known-answers-planted", __name__, self.setup,
                                         data=dataset_identity(study.dataset, study.zoo),
                                         calibration=[CALIBRATION_TOKENS, study.seed + 3])
        cal = self.spec(CALIBRATION_TOKENS, study.seed + 3, train=True)
        self.calibration = torch.cat([self.acts(t)[:, 1:].flatten(0, 1) for t in token_batches(
            cal, self.loaded.tokenizer, study.zoo)])  # [~CALIBRATION_TOKENS, d_in]
        self.plant: PlantedFinetune | None = None

    def spec(self, n_tokens: int, seed: int, train: bool = False, context: int | None = None,
             batch: int = BATCH) -> TokenSpec:
        dataset = str(data_spec(self.study.dataset).with_split("train")) if train else self.study.dataset
        return TokenSpec(dataset, n_tokens, context or self.context, batch, seed)

    @torch.no_grad()
    def acts(self, tokens: torch.Tensor) -> torch.Tensor:
        """The base's activation at the SAE's hook [B, T, d_in] (fp32, on the CPU)."""
        base = self.loaded.base
        return base(tokens.to(base.cfg.device), stop_at_layer=self.stop).float().cpu()

    def with_edits(self, edits) -> "RealPair":
        """This pair with the planted edit ``edits`` (the models stay loaded)."""
        other = object.__new__(RealPair)
        other.__dict__.update(self.__dict__)
        other.plant = PlantedFinetune(self.sae, edits, self.calibration)
        return other

    # ---- what the scores read, as of a synthetic pair
    truth_is_sae = True

    def __getattr__(self, name: str):  # truth, D_base, D_ft, n_total, in_base, in_ft, indices, base_features
        if name == "plant" or self.__dict__.get("plant") is None:
            raise AttributeError(name)
        return getattr(self.plant, name)

    def describe(self) -> dict:
        return {**self.plant.describe(), "base": self.study.base, "sae": self.study.sae, "hook": self.loaded.hook,
                "dataset": self.study.dataset}

    def key(self) -> dict:
        return {"real": self._identity, "edits": asdict(self.plant.edits)}

    def paired(self, n_batches: int, batch_size: int, context: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        """Held-out batches of the text: ``x_base``, ``x_ft`` [B, T, d_in] and ``a_base``, ``a_ft`` [B, T, n_total]
        (``PlantedFinetune.coefficients``)."""
        spec = self.spec(n_batches * batch_size * context, seed, context=context, batch=batch_size)
        for tokens in token_batches(spec, self.loaded.tokenizer, self.study.zoo):
            x = self.acts(tokens)
            a_base, a_ft = self.plant.coefficients(x, tokens)
            yield {"x_base": x, "x_ft": self.plant.edit(x, tokens), "a_base": a_base, "a_ft": a_ft}

    def training_batches(self, study: KnownStudy, seed: int) -> Iterator[torch.Tensor]:
        """Both models' activations [n, 2, d_in] of ``study.train_tokens`` training-split tokens and a few more
        (the shuffle buffer holds some back), BOS left out."""
        spec = self.spec(int(study.train_tokens * 1.05) + 4 * study.batch_tokens, seed, train=True,
                         context=study.context_size, batch=study.batch_size * 4)
        for tokens in token_batches(spec, self.loaded.tokenizer, self.study.zoo):
            x = self.acts(tokens)
            yield torch.stack([x, self.plant.edit(x, tokens)], 2)[:, 1:].flatten(0, 1)

    # ---- check's verdict, on the planted finetune as a model
    def check_spec(self, study: KnownStudy) -> CheckSpec:
        return CheckSpec(max_tokens=study.n_tokens, min_tokens=study.n_tokens // 2, context_size=study.context_size,
                         batch_size=study.batch_size, n_boot=study.n_boot, seed=study.seed)

    def check_model(self, finetune, study: KnownStudy) -> dict:
        """``check``'s pass (``check.measure.check_pass``) on ``finetune`` (a HookedTransformer of the base's
        architecture) against the base, on held-out text: plain data, uncached."""
        spec = self.check_spec(study)
        tokens = spec.tokens(self.study.dataset)
        base, sae, hook = self.loaded.base, self.sae, self.loaded.hook
        windows = token_windows(tokens, self.loaded.tokenizer, self.study.zoo)
        threshold = outlier_threshold(self.setup, spec.outliers, tokens, lambda: self.loaded)
        r = check_pass(live_base(base, sae, hook, threshold, pass_plan(base, sae, spec.context_size,
                                                                       spec.batch_size, self.setup.memory)),
                       finetune, sae, hook, windows, threshold, spec, desc="known answers: check",
                       memory=self.setup.memory)
        r.pop("recheck")
        return {**r, "windows": windows[: r["batches"] * spec.batch_size]}

    def check(self, study: KnownStudy) -> dict:
        """``check_model`` of the planted finetune, cached; with the true changed mass on the tokens it measured."""
        def run() -> dict:
            finetune = self.plant.model(self.loaded.base, self.loaded.hook)
            r = self.check_model(finetune, study)
            del finetune
            windows = r.pop("windows")
            mass = torch.zeros(2, dtype=torch.float64)
            for t in windows.split(study.batch_size):
                a_base, a_ft = self.plant.coefficients(self.acts(t), t)
                mass += changed_mass(a_base[:, 1:].flatten(0, 1), a_ft[:, 1:].flatten(0, 1), self.plant.D_base,
                                     self.plant.D_ft)
            return {**r, "changed_mass": float(mass[0] / mass[1])}

        key = {"what": "known-answers-check", "code": code_fingerprint(__name__), **self.key(),
               "spec": asdict(self.check_spec(study))}
        return cached("known-answers", key, run)


def verdict_of(check: dict) -> dict:
    """The case's verdict in the first level's form, from ``check``'s result."""
    values = {k: check["metrics"][k]["value"] for k in ("ev_drop", "ce_recovered_drop", "regular_act_sim")}
    return {"values": values, "n_regular": check["n_regular"], "verdict": check["verdict"],
            "criteria": check["criteria"], "decided": check["decided"], "tokens": check["tokens"]}


def measure(study: KnownStudy, pair: RealPair, measure_case) -> dict[str, Any]:
    """The second level's planted edit as plain data: ``{"default", "null"}`` cases (``measure_case``'s, with
    ``check``'s verdict and the true changed mass on its tokens) and ``severity`` (per point of
    ``planted_severities``: ``check`` and the changed mass)."""
    real = study.planted(pair.context, BATCH)

    def case(edits) -> dict:
        p = pair.with_edits(edits)
        check = p.check(real)
        return {**measure_case(p, pair.sae, real, verdict=lambda: verdict_of(check)),
                "check_changed_mass": check["changed_mass"]}

    out: dict[str, Any] = {"default": case(study.edits()), "null": case(study.edits(share=0.0, new=0.0)),
                           "hook": pair.loaded.hook, "calibration_tokens": len(pair.calibration)}
    rows = []
    # the default case's share among the points, as the first level's severity sweep has it (its check is cached)
    for s in tqdm(sorted({*map(float, study.planted_severities), float(study.share)}),
                  desc="known answers: planted severities", leave=False):
        check = pair.with_edits(study.severity(s)).check(real)
        rows.append({"severity": s, "verdict": verdict_of(check), "changed_mass": check["changed_mass"]})
    out["severity"] = rows
    return out
