"""How far finetuning moves the residual stream: per-layer similarity of base and finetune activations, from
one streaming pass per (pair, dataset) over the residual after the embeddings and after every block."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sae_transfer.core.labels import short, slug
from sae_transfer.core.specs import is_zoo
from sae_transfer.data.tokens import TokenSpec, check_token_spec, token_batches
from sae_transfer.models.configs import sae_facts
from sae_transfer.models.hooks import layer_label, residual_hooks, residual_index
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.accumulators import ResidualSimilarity
from sae_transfer.passes.cache import cached, measurement_key
from sae_transfer.passes.stream import run_pass

#: The paper's global mean cosine similarity (Kutsyk et al. 2025, section 3): their numbers, quoted.
PAPER_COSINE = {"Gemma-2b vs Python-code finetune (theirs)": 0.6691,
                "Mistral-7B vs MetaMath (theirs)": 0.9648}


def measure(setup: PairSetup, finetunes: list[str], tokens: list[TokenSpec], sae: str = "") -> list[dict[str, Any]]:
    """One record per (finetune, token spec): ``{"finetune", "dataset", "layers": [ResidualSimilarity result per
    residual hook, embeddings first], "at": the index in "layers" the summary describes, "sae_hook"}``. ``at`` is
    the residual stream ``sae`` reads (its training hook, from its config), else the middle layer. Each pass is
    cached; models load once per finetune, and only if some pass is not cached."""
    for spec in tokens:
        check_token_spec(spec)
    facts = sae_facts(sae, setup.zoo) if sae else None
    sae_hook = facts.hook if facts and residual_index(facts.hook) is not None else ""
    loader = setup.loader()
    out = []
    for ft in finetunes:
        for spec in tokens:
            def run(ft=ft, spec=spec) -> dict:
                pair = loader(ft)
                hooks = residual_hooks(pair.base.cfg.n_layers)
                layers = run_pass(pair.base, pair.finetune, token_batches(spec, pair.tokenizer, setup.zoo), hooks,
                                  [ResidualSimilarity(h, spec.context_size) for h in hooks], spec.n_batches(),
                                  desc=f"{setup.base} vs {ft} on {spec.dataset}",
                                  memory=setup.memory)
                return {"layers": layers}
            key = measurement_key("residual-similarity", __name__, setup, finetune=ft, tokens=spec)
            layers = cached("residuals", key, run)["layers"]
            at = residual_index(sae_hook) if sae_hook else None
            out.append({"finetune": ft, "dataset": spec.dataset, "layers": layers, "sae_hook": sae_hook,
                        "at": at if at is not None and at < len(layers) else len(layers) // 2})
    return out


def summarised(record: dict) -> dict:
    """A record's result at the layer its summary describes (``measure``'s ``at``)."""
    return record["layers"][record["at"]]


def where(record: dict) -> str:
    """The summarised layer in words: the SAE's, or the middle one."""
    hook = summarised(record)["hook"]
    if not record["sae_hook"]:
        return f"the middle layer ({hook})"
    same = "" if hook == record["sae_hook"] else f", the same stream as {hook}"
    return f"the layer the SAE reads ({record['sae_hook']}{same})"


def measure_checkpoints(setup: PairSetup, finetunes: list[str], n_tokens: int, context_size: int,
                        batch_size: int, sae: str = "") -> list[dict]:
    """Similarity at the summarised layer (``measure``'s ``at``) of the base with each saved checkpoint of every
    single-domain zoo finetune, on the domain it was finetuned on, in step order. Hub, local and mixed-domain
    finetunes are skipped."""
    if not is_zoo(setup.base):
        return []
    zoo = setup.zoo_handle
    rows = []
    for ft in finetunes:
        saved, domain = zoo.checkpoints(ft), zoo.own_domain(ft)
        if not saved or not domain:
            continue
        spec = TokenSpec(domain, n_tokens, context_size, batch_size)
        records = measure(setup, [f"zoo:{saved.name}@{step}" for step in saved.steps], [spec], sae)
        rows += [{"finetune": saved.name, "step": step, "tokens_seen": step * saved.tokens_per_step,
                  "cosine": summarised(r)["cos_mean"], "relative distance": summarised(r)["rel_dist_mean"],
                  "last-layer cosine": r["layers"][-1]["cos_mean"]} for step, r in zip(saved.steps, records)]
    return rows


# ------------------------------------------------------------------------------------------ tables, headline

def summary_table(records: list[dict]) -> pd.DataFrame:
    """One row per (finetune, dataset) at the summarised layer, the paper's two pairs beside them."""
    rows = []
    for rec in records:
        r = summarised(rec)
        rows.append({"pair": f"base vs {short(rec['finetune'])}", "data": short(rec["dataset"]), "hook": r["hook"],
                     "cosine": r["cos_mean"], "relative distance": r["rel_dist_mean"], "distance": r["dist_mean"],
                     "base norm": r["norm_base_mean"], "BOS cosine": r["pos0"]["cos"]})
    rows += [{"pair": pair, "data": "base's pretraining data", "cosine": cos} for pair, cos in PAPER_COSINE.items()]
    return pd.DataFrame(rows).set_index(["pair", "data"])


def layer_table(records: list[dict]) -> pd.DataFrame:
    """Mean cosine similarity per layer (columns) for each (finetune, dataset) (rows)."""
    return pd.DataFrame({(short(rec["finetune"]), short(rec["dataset"])):
                         {layer_label(r["hook"]): r["cos_mean"] for r in rec["layers"]} for rec in records}).T


def checkpoint_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def headline(records: list[dict], checkpoints: list[dict]) -> dict[str, Any]:
    """Per (finetune, dataset) ``k`` (``code_prose``): cosine ``cos_k`` and relative distance ``rel_k`` at the
    summarised layer, BOS cosine, embedding and last-layer cosine; per finetune its first and final checkpoint's
    cosine; the tokens each pass measured, the summarised hook and that layer in words."""
    out: dict[str, Any] = {}
    for rec in records:
        k, r = slug(rec["finetune"], rec["dataset"]), summarised(rec)
        out.update({f"cos_{k}": r["cos_mean"], f"rel_{k}": r["rel_dist_mean"], f"bos_cos_{k}": r["pos0"]["cos"],
                    f"last_cos_{k}": rec["layers"][-1]["cos_mean"], f"embed_cos_{k}": rec["layers"][0]["cos_mean"]})
    out["n_tokens_measured"] = summarised(records[0])["n_tokens"]
    out["summary_hook"] = summarised(records[0])["hook"]
    out["summary_where"] = where(records[0])
    for name, g in pd.DataFrame(checkpoints).groupby("finetune") if checkpoints else ():
        out.update({f"ckpt_first_cos_{name}": float(g["cosine"].iloc[1]), f"ckpt_first_step_{name}": int(g["step"].iloc[1]),
                    f"ckpt_final_cos_{name}": float(g["cosine"].iloc[-1])})
    return out


def describe(records: list[dict], checkpoints: list[dict], own: dict[str, str]) -> str:
    """The chapter's reading in Markdown, written from the records for any finetunes: each finetune on its own
    data (``own``: finetune -> dataset) and on the first dataset, its checkpoints' path where it has them, and,
    for the pair that moved most, how the layers and the BOS position compare."""
    rec = {(r["finetune"], r["dataset"]): r for r in records}
    first = records[0]["dataset"]
    lines = []
    for ft, ds in own.items():
        r = summarised(rec[(ft, ds)])
        on_first = (f"; on {short(first)}, {summarised(rec[(ft, first)])['cos_mean']:.3f}"
                    if ds != first and (ft, first) in rec else "")
        lines.append(f"`{short(ft)}` on {short(ds)}: mean cosine {r['cos_mean']:.3f} with the base at "
                     f"{where(rec[(ft, ds)])}, relative distance {r['rel_dist_mean']:.3f}{on_first}.")
    for name, g in pd.DataFrame(checkpoints).groupby("finetune", sort=False) if checkpoints else ():
        lines.append(f"After {int(g['step'].iloc[1])} steps `{name}` is already at {g['cosine'].iloc[1]:.3f} and "
                     f"ends at {g['cosine'].iloc[-1]:.3f} after {int(g['step'].iloc[-1])}.")
    ft, ds = min(own.items(), key=lambda kv: summarised(rec[kv])["cos_mean"])
    layers = rec[(ft, ds)]["layers"]
    low = min(layers, key=lambda r: r["cos_mean"])
    lowest = (", the lowest of all" if low is layers[-1] else
              f"; the lowest is {low['cos_mean']:.3f}, at {layer_label(low['hook'])}")
    lines.append(f"For the pair that moved most, `{short(ft)}` on {short(ds)}, the embeddings keep cosine "
                 f"{layers[0]['cos_mean']:.3f} and the last layer {layers[-1]['cos_mean']:.3f}{lowest}; the BOS "
                 f"position, left out above, has {summarised(rec[(ft, ds)])['pos0']['cos']:.3f} at that layer.")
    return " ".join(lines)


def by_hook(records: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    """``{(finetune, dataset): {hook: result}}``: the records as the figures read them."""
    return {(rec["finetune"], rec["dataset"]): {r["hook"]: r for r in rec["layers"]} for rec in records}


__all__ = ["PAPER_COSINE", "by_hook", "checkpoint_table", "describe", "headline", "layer_table", "measure",
           "measure_checkpoints", "summarised", "summary_table"]
