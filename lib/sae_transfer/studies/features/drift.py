"""Did the broken features die or turn? The base SAE fine-tuned on each finetune's activations: how far each
feature's decoder row and encoder column moved (direction drift), how many tokens of fine-tuning close the gap
to an SAE trained on the finetune (recovery), and how activation similarity falls along finetuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from sae_transfer.core.labels import short, slug
from sae_transfer.core.specs import is_zoo
from sae_transfer.data.tokens import TokenSpec
from sae_transfer.models.load import load_sae, resolve_device
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes import sae_metrics
from sae_transfer.passes.outliers import outlier_threshold
from sae_transfer.studies.features.measure import pair_stats
from sae_transfer.studies.parameters import Config
from sae_transfer.zoo.build import build_sae_finetune


@dataclass(frozen=True, kw_only=True)
class DriftStudy(Config):
    """``sae_finetune_tokens`` of SAE fine-tuning per zoo pair (0: skip drift and recovery) at ``lr``, saving
    ``n_checkpoints`` along the way; ``recovery_tokens`` per SAE for the recovery metrics; ``checkpoint_tokens``
    per finetune checkpoint for activation similarity along finetuning."""

    sae_finetune_tokens: int
    lr: float
    recovery_tokens: int
    checkpoint_tokens: int
    context_size: int
    batch_size: int
    outliers: str
    n_checkpoints: int = 3


def direction_drift(base_sae, tuned_sae) -> dict[str, list[float]]:
    """Per feature, cosine between the two SAEs' decoder rows and between their encoder columns [d_sae]."""
    def cos(a, b, dim):
        a, b = a.detach().double().cpu(), b.detach().double().cpu()
        return ((a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim)).clamp_min(1e-30)).tolist()
    return {"decoder_cos": cos(base_sae.W_dec, tuned_sae.W_dec, 1),
            "encoder_cos": cos(base_sae.W_enc, tuned_sae.W_enc, 0)}


def drift_summary(result: dict, drift: dict[str, list[float]]) -> dict[str, float]:
    """How far fine-tuning the SAE moved a pair's features (``result`` from ``features.measure``, ``drift`` from
    ``direction_drift``), and whether the regular features that moved are those that stopped firing alike."""
    reg = result["groups"]["regular"]
    dec, enc = pd.Series(drift["decoder_cos"]), pd.Series(drift["encoder_cos"])
    sim = pd.Series(result["scores"]["act_sim"])
    return {"decoder cos (all)": float(dec.mean()), "decoder cos (regular)": float(dec[reg].mean()),
            "share of regular with decoder cos < 0.9": float((dec[reg] < 0.9).mean()),
            "encoder cos (regular)": float(enc[reg].mean()),
            "Spearman: activation sim vs decoder cos (regular)": float(sim[reg].corr(dec[reg], method="spearman"))}


def recovery(setup: PairSetup, finetune: str, checkpoints: list[dict], dataset: str, study: DriftStudy) -> list[dict]:
    """The SAE-metric chapter's metrics on the finetune for: the base SAE, each fine-tuned checkpoint of it, and
    the SAE trained on the finetune itself (when the zoo has one)."""
    saes = [("base SAE", 0, setup.sae)]
    saes += [("base SAE fine-tuned", c["tokens"], f"local:{c['path']}") for c in checkpoints]
    native = setup.zoo_handle.native_sae(finetune)
    if native:
        saes.append(("native SAE (trained on the finetune)", None, native))
    spec = TokenSpec(dataset, study.recovery_tokens, study.context_size, study.batch_size)
    rows = []
    for label, tokens, sae in saes:
        res = sae_metrics.measure(setup.with_sae(sae), [finetune], [spec], study.outliers, include_base=False)
        r = res["finetunes"][finetune][dataset]["kept"]
        rows.append({"finetune": short(finetune), "sae": label, "fine-tuning tokens": tokens,
                     "delta CE": r["delta_ce"], "CE recovered": r["ce_recovered"], "EV per token": r["ev_token"],
                     "KL": r["kl"], "L0": r["l0"], "dead %": 100 * r["dead_frac"]})
    return rows


def checkpoint_similarity(setup: PairSetup, finetune: str, result: dict, n_tokens: int, outliers: str) -> list[dict]:
    """Activation similarity of the regular group (chosen on the final finetune's selection split, in ``result``
    from ``features.measure``) on every saved checkpoint of a zoo finetune, scored on the first ``n_tokens`` of
    the same evaluation split; step 0 is the base itself (similarity 1 by construction)."""
    saved = setup.zoo_handle.checkpoints(finetune)
    if saved is None:
        return []
    spec = TokenSpec(**{**result["eval_spec"], "n_tokens": min(n_tokens, result["eval_spec"]["n_tokens"])})
    rows = [{"finetune": saved.name, "step": 0, "regular: activation sim": 1.0, "regular: share above 0.8": 1.0}]
    loader = setup.loader()
    for step in (s for s in saved.steps if s > 0):
        ft = f"zoo:{saved.name}@{step}"
        load = lambda ft=ft: loader(ft)  # noqa: E731
        stats = pair_stats(setup, ft, load, spec, outlier_threshold(setup, outliers, spec, load), 0)
        sim = torch.tensor(stats["act_sim"], dtype=torch.float64)[result["groups"]["regular"]]
        ok = ~sim.isnan()
        rows.append({"finetune": saved.name, "step": step, "regular: activation sim": float(sim[ok].mean()),
                     "regular: share above 0.8": float((sim[ok] > 0.8).double().mean())})
    return rows


#: Why drift and recovery are missing where no SAE was fine-tuned on a finetune.
NOT_TUNED = ("No SAE was fine-tuned on a finetune here: the chapter fine-tunes the base SAE on the text it was "
             "trained on, which is known only for the project's own SAEs and finetunes (and only with "
             "`sae_finetune_tokens` > 0), so there is no drift or recovery to draw.")


def measure(setup: PairSetup, finetunes: list[str], results: dict[str, dict], study: DriftStudy) -> dict[str, Any]:
    """Drift, recovery and the checkpoint curve for every finetune (``results`` from ``features.measure``).

    Drift and recovery need a zoo finetune and a zoo SAE (the SAE is fine-tuned on the zoo's train split); other
    pairs get the checkpoint curve only where they have checkpoints. Returns ``{"drift": {finetune: {decoder_cos,
    encoder_cos}}, "summary": {finetune: drift_summary}, "recovery": rows, "checkpoints": rows}``.
    """
    zoo_pairs = [ft for ft in finetunes if is_zoo(ft) and is_zoo(setup.sae)]
    zoo_pairs = zoo_pairs if study.sae_finetune_tokens else []
    drift, recovered = {}, []
    base_sae = load_sae(setup.sae, setup.zoo, "cpu") if zoo_pairs else None
    for ft in zoo_pairs:
        tuned = build_sae_finetune(setup.zoo_handle, ft, setup.sae, study.sae_finetune_tokens, study.lr,
                                   study.n_checkpoints, resolve_device(setup.device))
        drift[ft] = direction_drift(base_sae, load_sae(f"local:{tuned[-1]['path']}", setup.zoo, "cpu"))
        recovered += recovery(setup, ft, tuned, results[ft]["dataset"], study)
    checkpoints = [row for ft in finetunes
                   for row in checkpoint_similarity(setup, ft, results[ft], study.checkpoint_tokens, study.outliers)]
    return {"drift": drift, "summary": {ft: drift_summary(results[ft], d) for ft, d in drift.items()},
            "recovery": recovered, "checkpoints": checkpoints}


# ------------------------------------------------------------------------------------------ tables, headline

def drift_table(result: dict) -> pd.DataFrame:
    rows = [{"finetune": short(ft), **s} for ft, s in result["summary"].items()]
    return pd.DataFrame(rows).set_index("finetune") if rows else pd.DataFrame()


def recovery_table(result: dict) -> pd.DataFrame:
    rec = pd.DataFrame(result["recovery"])
    if not len(rec):
        return rec
    rec["fine-tuning tokens"] = rec["fine-tuning tokens"].astype("Int64")  # the native SAE has none
    return rec.set_index(["finetune", "sae"])


def checkpoint_table(result: dict) -> pd.DataFrame:
    ckpt = pd.DataFrame(result["checkpoints"])
    return ckpt.set_index(["finetune", "step"]) if len(ckpt) else ckpt


def headline(result: dict, setup: PairSetup, study: DriftStudy, n_show: int) -> dict[str, Any]:
    """Per finetune ``k``: decoder and encoder cosines of the regular features (``dec_cos_regular_k``), the share
    that moved, their Spearman with activation similarity; recovery (base, first and final fine-tuned, native SAE);
    the first and final checkpoint's similarity. Plus the parameters the prose quotes."""
    out: dict[str, Any] = {"sae_finetune_tokens": study.sae_finetune_tokens, "n_show": n_show}
    for ft, s in result["summary"].items():
        k = slug(ft)
        out.update({f"dec_cos_regular_{k}": s["decoder cos (regular)"], f"enc_cos_regular_{k}": s["encoder cos (regular)"],
                    f"moved_regular_{k}": 100 * s["share of regular with decoder cos < 0.9"],
                    f"spearman_{k}": s["Spearman: activation sim vs decoder cos (regular)"]})
    rec = pd.DataFrame(result["recovery"])
    for label, g in rec.groupby("finetune") if len(rec) else ():
        name = slug(label)
        tuned, native = g[g["fine-tuning tokens"].notna()], g[g["fine-tuning tokens"].isna()]
        out.update({f"rec_base_ev_{name}": float(g["EV per token"].iloc[0]),
                    f"rec_first_tokens_{name}": int(g["fine-tuning tokens"].iloc[1]),
                    f"rec_first_ev_{name}": float(g["EV per token"].iloc[1]),
                    f"rec_final_ev_{name}": float(tuned["EV per token"].iloc[-1]),
                    f"rec_final_delta_ce_{name}": float(tuned["delta CE"].iloc[-1]),
                    f"rec_base_delta_ce_{name}": float(g["delta CE"].iloc[0])})
        if len(native):
            native_sae = short(setup.zoo_handle.native_sae(f"zoo:{name}"))
            out.update({f"rec_native_tokens_{name}": setup.zoo_handle.recipe.saes[native_sae].training_tokens,
                        f"rec_native_ev_{name}": float(native["EV per token"].iloc[0]),
                        f"rec_native_delta_ce_{name}": float(native["delta CE"].iloc[0])})
    ckpt = pd.DataFrame(result["checkpoints"])
    for name, g in ckpt.groupby("finetune") if len(ckpt) else ():
        out.update({f"ckpt_first_step_{name}": int(g["step"].iloc[1]),
                    f"ckpt_first_sim_{name}": float(g["regular: activation sim"].iloc[1]),
                    f"ckpt_final_sim_{name}": float(g["regular: activation sim"].iloc[-1])})
    return {k: v for k, v in out.items() if v == v}  # no regular features, no mean: left out, not NaN


def describe(feats: dict[str, Any], drift: dict[str, Any], finetunes: list[str]) -> dict[str, str]:
    """The chapter's reading in Markdown, written from the two headlines (``features.headline`` and ``headline``)
    for any finetunes: ``transfer`` (which features keep their meaning), ``unembedding`` (what logit similarity
    sees), ``drift`` (dead features and moved directions), ``recovery`` (SAE fine-tuning and the checkpoints)."""
    f, d = feats, drift
    names = [(ft, slug(ft)) for ft in finetunes if f"regular_sim_{slug(ft)}" in f]
    keeps = "; ".join(f"`{short(ft)}` keeps {f[f'regular_above08_{k}']:.1f}% of its regular features above 0.8 "
                      f"activation similarity on {f[f'dataset_{k}']} (mean {f[f'regular_sim_{k}']:.3f})"
                      for ft, k in names)
    logit = ", ".join(f"{f[f'regular_logit_{k}']:.3f} for `{short(ft)}`" for ft, k in names)
    frob = ", ".join(f"{f[f'frobenius_{slug(ft)}']:.3f} for `{short(ft)}`" for ft in finetunes)
    out = {"unembedding": "The relative change of the unembedding, ‖W_U(finetune) − W_U(base)‖ / ‖W_U(base)‖, "
                          f"is {frob}; logit similarities near 1 say little more than that."}
    out["transfer"] = ((f"On its own domain, {keeps}. " if names else "No finetune has regular features to score. ")
                       + "The seed found about 10% for Gemma/Python and a mean of 0.958 for Mistral/MetaMath (their "
                       f"numbers). Logit similarity of the regular features ({logit or 'none'}) follows the "
                       "unembedding's own move: as computed, it cannot see the features.")
    drift_lines = [f"{f.get(f'pool_dead_in_finetune_{k}', 0)} features fire in the base and never in `{short(ft)}`, "
                   f"{f.get(f'pool_dead_in_base_{k}', 0)} the reverse." for ft, k in names]
    spearman = []
    for ft, k in ((ft, slug(ft)) for ft in finetunes if f"dec_cos_regular_{slug(ft)}" in d):
        drift_lines.append(
            f"Fine-tuning the SAE on `{short(ft)}` turns its regular features' decoder rows to a mean cosine of "
            f"{d[f'dec_cos_regular_{k}']:.3f} with their old directions ({d[f'moved_regular_{k}']:.1f}% below 0.9) "
            f"and their encoder columns to {d[f'enc_cos_regular_{k}']:.3f}.")
        if f"spearman_{k}" in d:
            spearman.append(f"{d[f'spearman_{k}']:.2f} for `{short(ft)}`")
    if spearman:
        weak = all(abs(d[f"spearman_{slug(ft)}"]) < 0.3 for ft in finetunes if f"spearman_{slug(ft)}" in d)
        drift_lines.append(f"The Spearman correlation between a feature's direction change and its activation "
                           f"similarity is {', '.join(spearman)}" + (
                               ": how far a direction moved says little about whether the feature still fires on "
                               "the same tokens." if weak else "."))
    out["drift"] = " ".join(drift_lines) or NOT_TUNED
    rec = []
    for ft in finetunes:
        k = slug(ft)
        if f"rec_base_ev_{k}" in d:
            rec.append(f"After {d[f'rec_first_tokens_{k}']:,} tokens of fine-tuning, the base SAE's explained "
                       f"variance per token on `{short(ft)}` goes from {d[f'rec_base_ev_{k}']:.3f} to "
                       f"{d[f'rec_first_ev_{k}']:.3f}, and to {d[f'rec_final_ev_{k}']:.3f} after "
                       f"{d['sae_finetune_tokens']:,}; delta CE from {d[f'rec_base_delta_ce_{k}']:.3f} to "
                       f"{d[f'rec_final_delta_ce_{k}']:.3f}.")
            if f"rec_native_ev_{k}" in d:
                caught_up = d[f"rec_final_ev_{k}"] >= d[f"rec_native_ev_{k}"] - 0.01
                rec.append(f"The SAE trained on `{short(ft)}` from scratch "
                           f"({d[f'rec_native_tokens_{k}']:,} tokens) reaches {d[f'rec_native_ev_{k}']:.3f} "
                           f"(delta CE {d[f'rec_native_delta_ce_{k}']:.3f})"
                           + (": starting from the base SAE is the cheaper way to an SAE for the finetune, as Kissane "
                              "et al. found for Mistral's chat model." if caught_up else
                              ": the fine-tuned base SAE has not caught up with it in this budget."))
        name = short(ft).split("@")[0]
        if f"ckpt_first_sim_{name}" in d:
            rec.append(f"Along `{name}`'s own training, the regular features' mean activation similarity goes from "
                       f"{d[f'ckpt_first_sim_{name}']:.3f} after {d[f'ckpt_first_step_{name}']} steps to "
                       f"{d[f'ckpt_final_sim_{name}']:.3f}.")
    out["recovery"] = " ".join(rec) or "No pair was fine-tuned or has checkpoints here."
    return out
