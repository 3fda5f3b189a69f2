"""Which of the base SAE's features keep their meaning in the finetune: per-feature scores, streamed.

Both models read the same token batches; the base SAE encodes each model's activation at its hook, and every
feature's statistics go to running sums (``accumulators.FeaturePairStats``: fp64 [d_sae] each, and a running
top-k of activations), so every feature is scored in constant memory.

Feature groups are chosen on a *selection* split of tokens and scored on a disjoint *evaluation* split (the seed
chose and scored on different samples by accident; here it is on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from sae_transfer.core.labels import short, slug
from sae_transfer.data.contexts import context_text
from sae_transfer.data.tokens import TokenSpec, check_token_spec, token_batches, token_windows
from sae_transfer.models.pairs import PairSetup, own_dataset
from sae_transfer.passes.accumulators import FeaturePairStats
from sae_transfer.passes.cache import cached, measurement_key
from sae_transfer.passes.feature_groups import select_groups
from sae_transfer.passes.outliers import finite_or_none, outlier_threshold
from sae_transfer.passes.stream import run_pass
from sae_transfer.studies.parameters import Config


@dataclass(frozen=True, kw_only=True)
class FeatureStudy(Config):
    """How features are chosen and scored: ``n_select`` tokens pick the groups, the next ``n_tokens`` of the same
    dataset score them. ``dataset`` empty: each zoo finetune on its own domain (prose for hub/local models)."""

    n_select: int
    n_tokens: int
    context_size: int
    batch_size: int
    n_regular: int
    n_dead: int
    top_k: int = 3
    outliers: str
    dataset: str
    seed: int = 0

    def splits(self, dataset: str) -> tuple[TokenSpec, TokenSpec]:
        select = TokenSpec(dataset, self.n_select, self.context_size, self.batch_size, self.seed)
        return select, select.after(self.n_tokens)


def pair_stats(setup: PairSetup, finetune: str, load, spec: TokenSpec, threshold: float, top_k: int) -> dict:
    """``FeaturePairStats`` of one pair over ``spec``'s tokens, from one streaming pass (cached)."""
    def run() -> dict:
        pair = load()
        (res,) = run_pass(pair.base, pair.finetune, token_batches(spec, pair.tokenizer, setup.zoo), [pair.hook],
                          [FeaturePairStats(pair.sae, pair.hook, threshold, top_k)], spec.n_batches(),
                          desc=f"features on {spec.dataset}", memory=setup.memory)
        return res
    key = measurement_key("feature-pair-stats", __name__, setup, finetune=finetune, tokens=spec,
                          threshold=finite_or_none(threshold), top_k=top_k)
    return cached("features", key, run)


def logit_similarity(sae, base_model, ft_model, chunk_bytes: int = 1 << 28) -> dict[str, Any]:
    """The seed's logit similarity: per feature, Pearson r over the vocabulary of ``W_dec[f] @ W_U`` of base vs
    finetune. The decoder row is the same on both sides, so this measures how far W_U moved, not the feature;
    the Frobenius ratio ||W_U_ft - W_U_base|| / ||W_U_base|| says so in one number.

    Streams over the vocabulary, fp64 sums: memory about ``chunk_bytes`` plus the decoder [d_sae, d_model],
    never a copy of W_U [d_model, vocab] (1 GB per model in fp64 for a 256K-token vocabulary)."""
    wd = sae.W_dec.detach().double().cpu()  # [d_sae, d_model]
    ub_all, uf_all = base_model.W_U.detach(), ft_model.W_U.detach()  # [d_model, vocab]
    vocab = ub_all.shape[1]
    step = max(1, chunk_bytes // (4 * 8 * wd.shape[0]))  # a, b, and two temporaries [d_sae, step] in fp64
    chunks = lambda u: (u[:, i:i + step].double().cpu() for i in range(0, vocab, step))  # noqa: E731
    # Centring W_U's columns on their mean centres every feature's logits over the vocabulary exactly.
    mean_b, mean_f = (sum(c.sum(1) for c in chunks(u)) / vocab for u in (ub_all, uf_all))
    sums = {k: torch.zeros(wd.shape[0], dtype=torch.float64) for k in ("aa", "bb", "ab")}
    diff_sq = base_sq = 0.0
    for ub, uf in zip(chunks(ub_all), chunks(uf_all)):
        a, b = wd @ (ub - mean_b[:, None]), wd @ (uf - mean_f[:, None])  # [d_sae, step], centred logits
        sums["aa"] += torch.einsum("fv,fv->f", a, a)
        sums["bb"] += torch.einsum("fv,fv->f", b, b)
        sums["ab"] += torch.einsum("fv,fv->f", a, b)
        diff_sq += float((uf - ub).pow(2).sum())
        base_sq += float(ub.pow(2).sum())
    sim = sums["ab"] / (sums["aa"] * sums["bb"]).sqrt().clamp_min(1e-30)
    return {"logit_sim": sim.tolist(), "unembed_frobenius_ratio": (diff_sq / base_sq) ** 0.5}


def cached_logit_similarity(setup: PairSetup, finetune: str, load) -> dict:
    def run() -> dict:
        pair = load()
        return logit_similarity(pair.sae, pair.base, pair.finetune)
    return cached("logit-sim", measurement_key("logit-similarity", __name__, setup, finetune=finetune), run)


def group_summary(scores: dict, groups: dict[str, list[int]], pool_sizes: dict[str, int] | None = None):
    """One row per group: sample size, activation and logit similarity, activation error, firing rates."""
    rows = []
    for name, idx in groups.items():
        t = {k: torch.tensor(scores[k], dtype=torch.float64)[idx] for k in (
            "act_sim", "logit_sim", "act_error", "density_base", "density_finetune", "max_base", "max_finetune",
            "decoder_cos", "encoder_cos") if k in scores}
        sim = t["act_sim"]
        ok = ~sim.isnan()
        row = {"group": name, "features": len(idx), "constant in one model": int((~ok).sum()),
               "activation sim (mean)": float(sim[ok].mean()) if ok.any() else float("nan"),
               "share above 0.8": float((sim[ok] > 0.8).double().mean()) if ok.any() else float("nan"),
               "logit sim (mean)": float(t["logit_sim"].mean()) if len(idx) else float("nan"),
               "activation error": float(t["act_error"].mean()) if len(idx) else float("nan"),
               "firing rate base": float(t["density_base"].mean()) if len(idx) else float("nan"),
               "firing rate finetune": float(t["density_finetune"].mean()) if len(idx) else float("nan"),
               "max act base": float(t["max_base"].mean()) if len(idx) else float("nan"),
               "max act finetune": float(t["max_finetune"].mean()) if len(idx) else float("nan")}
        if "decoder_cos" in t:
            row["decoder cos (mean)"] = float(t["decoder_cos"].mean()) if len(idx) else float("nan")
        if pool_sizes:
            row["in pool"] = pool_sizes[name]
        rows.append(row)
    return pd.DataFrame(rows).set_index("group")


def measure(setup: PairSetup, finetunes: list[str], study: FeatureStudy) -> dict[str, dict]:
    """Per finetune: groups chosen on a selection split, every feature scored on a disjoint evaluation split.

    Returns ``{finetune: {"dataset", "groups", "pool_sizes", "scores", "eval", "unembed_frobenius_ratio", ...}}``;
    ``scores`` holds per-feature lists [d_sae] (act_sim, logit_sim, act_error, densities, max activations).
    """
    out = {}
    loader = setup.loader()
    for ft in finetunes:
        ds = study.dataset or own_dataset(setup, ft)
        select, evals = study.splits(ds)
        check_token_spec(select)
        load = lambda ft=ft: loader(ft)  # noqa: E731
        threshold = outlier_threshold(setup, study.outliers, evals, load)
        sel = pair_stats(setup, ft, load, select, threshold, 0)
        ev = pair_stats(setup, ft, load, evals, threshold, study.top_k)
        logits = cached_logit_similarity(setup, ft, load)
        groups = select_groups(sel, study.n_regular, study.n_dead, study.seed)
        pools = {k: len(v) for k, v in select_groups(sel, 10**9, 10**9, study.seed).items()}
        scores = {k: ev[k] for k in ("act_sim", "act_error", "density_base", "density_finetune", "max_base",
                                     "max_finetune")}
        scores["logit_sim"] = logits["logit_sim"]
        out[ft] = {"dataset": ds, "groups": groups, "pool_sizes": pools, "scores": scores, "eval": ev,
                   "selection_tokens": sel["n_tokens"], "eval_spec": evals.as_dict(),
                   "threshold": finite_or_none(threshold),
                   "unembed_frobenius_ratio": logits["unembed_frobenius_ratio"]}
    return out


def all_features_summary(result: dict) -> dict[str, float]:
    """Activation similarity over every feature live in both models (NaNs counted, not dropped)."""
    sim = torch.tensor(result["scores"]["act_sim"], dtype=torch.float64)
    ok = ~sim.isnan()
    return {"features": len(sim), "undefined (constant in a model)": int((~ok).sum()),
            "activation sim (mean)": float(sim[ok].mean()), "share above 0.8": float((sim[ok] > 0.8).double().mean()),
            "logit sim (mean)": float(torch.tensor(result["scores"]["logit_sim"]).mean())}


def groups_table(results: dict[str, dict]) -> pd.DataFrame:
    """``group_summary`` of every finetune, stacked (index: finetune, group)."""
    return pd.concat({short(ft): group_summary(r["scores"], r["groups"], r["pool_sizes"])
                      for ft, r in results.items()}, names=["finetune"])


def all_features_table(results: dict[str, dict]) -> pd.DataFrame:
    out = pd.DataFrame.from_dict({short(ft): all_features_summary(r) for ft, r in results.items()}, orient="index")
    out.index.name = "finetune"
    return out


def headline(results: dict[str, dict], study: FeatureStudy) -> dict[str, Any]:
    """The numbers the chapter's prose glues, per finetune ``k`` (its short name): ``regular_sim_k``,
    ``regular_above08_k`` (%), ``regular_logit_k``, ``all_sim_k``, ``all_undefined_k``, ``frobenius_k``, pool sizes
    and the dataset each pair was scored on; and the group sample sizes."""
    summary, everything = groups_table(results), all_features_table(results)
    out: dict[str, Any] = {"n_regular": study.n_regular, "n_dead": study.n_dead}
    for ft, r in results.items():
        row, k = short(ft), slug(ft)  # table rows by short name; glue names glue-safe
        reg = summary.loc[(row, "regular")]
        out.update({f"regular_sim_{k}": reg["activation sim (mean)"], f"regular_above08_{k}": 100 * reg["share above 0.8"],
                    f"regular_logit_{k}": reg["logit sim (mean)"],
                    f"all_sim_{k}": everything.loc[row, "activation sim (mean)"],
                    f"all_undefined_{k}": int(everything.loc[row, "undefined (constant in a model)"]),
                    f"frobenius_{k}": r["unembed_frobenius_ratio"], f"dataset_{k}": short(r["dataset"]),
                    **{f"pool_{g}_{k}": n for g, n in r["pool_sizes"].items()}})
    out = {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}
    return {k: v for k, v in out.items() if v == v}  # a group with no features has no mean: left out, not NaN


# ------------------------------------------------------------------------------------------ contexts

def top_contexts(setup: PairSetup, result: dict, features: list[int], before: int = 12, after: int = 3,
                 n: int = 3) -> list[dict]:
    """The top-activating contexts of ``features`` in base and finetune, from the evaluation pass's top-k.

    The activating token is wrapped in ⟦ ⟧. Rows: feature, model, rank, activation, text."""
    tokenizer = setup.tokenizer()
    ev = result["eval"]
    windows = token_windows(TokenSpec(**result["eval_spec"]), tokenizer, setup.zoo)
    rows = []
    for f in features:
        for model in ("base", "finetune"):
            top = ev[f"top_{model}"]
            for rank, (v, t) in enumerate(zip(top["values"][f][:n], top["tokens"][f][:n])):
                if t < 0 or v <= 0:
                    continue
                rows.append({"feature": f, "model": model, "rank": rank + 1, "activation": float(v),
                             "context": context_text(tokenizer, windows, int(t), before, after)})
    return rows


def contexts_table(setup: PairSetup, results: dict[str, dict], n_show: int) -> pd.DataFrame:
    """Per pair, top contexts of the ``n_show`` regular features with the highest activation similarity
    ("transferred") and the ``n_show`` with the lowest ("broke")."""
    rows = []
    for ft, result in results.items():
        sims = pd.Series(result["scores"]["act_sim"]).iloc[result["groups"]["regular"]].dropna().sort_values()
        for verdict, feats in (("transferred", sims.index[::-1][:n_show]), ("broke", sims.index[:n_show])):
            rows += [{"finetune": short(ft), "verdict": verdict, "activation sim": float(sims[row["feature"]]),
                      **row} for row in top_contexts(setup, result, list(feats))]
    df = pd.DataFrame(rows)
    return df.set_index(["finetune", "verdict", "feature", "activation sim", "model", "rank"]) if rows else df
