"""The zoo card as tables: data, models, SAE quality and base-SAE transfer, from ``card.json``."""

from __future__ import annotations

import pandas as pd

#: Quality bars for every zoo SAE on held-out prose of its own model (issue: zoo).
QUALITY_BARS = {"explained_variance": (">=", 0.8), "ce_loss_score": (">=", 0.9), "dead_fraction": ("<", 0.1),
                "l0_over_width": ("<", 0.1)}


def data_table(card: dict) -> pd.DataFrame:
    rows = [{"domain": d, "split": s, **v} for d, splits in card["data"]["splits"].items()
            for s, v in splits.items()]
    return pd.DataFrame(rows).set_index(["domain", "split"])


def models_table(card: dict) -> pd.DataFrame:
    rows = []
    for name, m in card["models"].items():
        a = m["arch"]
        rows.append({"model": name, "finetune of": m["parent"] or "-", "layers": a["n_layers"],
                     "d_model": a["d_model"], "parameters": m["n_params"], "train tokens": m["tokens_seen"],
                     "steps": m["steps"], "lr": m["lr"], "train minutes": round(m["train_seconds"] / 60, 1),
                     **{f"CE {d}": round(v, 3) for d, v in m["heldout_ce"].items()}})
    return pd.DataFrame(rows).set_index("model")


def sae_quality(card: dict) -> dict[str, dict[str, float | bool]]:
    """Each SAE's metrics on held-out prose of its own model, with a pass flag per bar."""
    out = {}
    for name, s in card["saes"].items():
        e = dict(s["evals"][f"{s['model']}/prose"])
        e["l0_over_width"] = e["l0"] / s["d_sae"]
        e["dead_fraction"] = s["dead_fraction"]  # over dead_tokens, more than the other evals see
        passes = {k: (e[k] >= v if op == ">=" else e[k] < v) for k, (op, v) in QUALITY_BARS.items()}
        out[name] = {**{k: e[k] for k in ("l0", "l0_over_width", "explained_variance", "ce_loss_score",
                                         "kl_div_score", "dead_fraction")},
                     "meets_bars": all(passes.values()), **{f"pass_{k}": ok for k, ok in passes.items()}}
    return out


def quality_summary(card: dict) -> dict[str, float]:
    """How many SAEs meet every bar, and the worst value of each metric across them (the zoo page's sentence)."""
    q = sae_quality(card).values()
    return {"n_saes": float(len(q)), "n_meeting_bars": float(sum(s["meets_bars"] for s in q)),
            "worst_dead_fraction": max(s["dead_fraction"] for s in q),
            "worst_l0_over_width": max(s["l0_over_width"] for s in q),
            "worst_explained_variance": min(s["explained_variance"] for s in q),
            "worst_ce_loss_score": min(s["ce_loss_score"] for s in q)}


def sae_table(card: dict) -> pd.DataFrame:
    q = sae_quality(card)
    rows = [{"SAE": n, "model": s["model"], "hook": s["hook"], "d_sae": s["d_sae"],
             "train tokens": s["training_tokens"], "L0": round(q[n]["l0"], 1),
             "L0/width": round(q[n]["l0_over_width"], 3), "explained var.": round(q[n]["explained_variance"], 3),
             "CE loss score": round(q[n]["ce_loss_score"], 3), "dead %": round(100 * q[n]["dead_fraction"], 2),
             "dead counted over tokens": s["dead_tokens"], "meets bars": q[n]["meets_bars"]}
            for n, s in card["saes"].items()]
    return pd.DataFrame(rows).set_index("SAE")


def transfer_table(card: dict, sae: str) -> pd.DataFrame:
    """One SAE evaluated on its own model and on each finetune of it, on every domain's held-out text."""
    rows = []
    for key, e in card["saes"][sae]["evals"].items():
        model, domain = key.split("/")
        rows.append({"model": model, "data": domain, "L0": round(e["l0"], 1),
                     "explained var.": round(e["explained_variance"], 3),
                     "CE loss score": round(e["ce_loss_score"], 3), "clean CE": round(e["ce_clean"], 3),
                     "CE with SAE": round(e["ce_with_sae"], 3)})
    return pd.DataFrame(rows).set_index(["model", "data"])


def format_card(card: dict) -> str:
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        parts = [f"zoo profile {card['profile']!r} (fingerprint {card['fingerprint']})", "",
                 "data (tokens per domain and split):", data_table(card).to_string(), "",
                 "models (held-out CE in nats/token):", models_table(card).to_string(), "",
                 "SAEs on held-out prose of their own model:", sae_table(card).to_string()]
        for sae, s in card["saes"].items():
            if len({k.split("/")[0] for k in s["evals"]}) > 1:
                parts += ["", f"SAE {sae!r} on its model and the finetunes:", transfer_table(card, sae).to_string()]
    if "last_build_seconds" in card:
        parts += ["", "build seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in card["last_build_seconds"].items())]
    return "\n".join(parts)


def transfer_sae(card: dict) -> str:
    """The SAE the card also evaluates on finetunes of its model (the base SAE)."""
    return next(n for n, s in card["saes"].items() if len({k.split("/")[0] for k in s["evals"]}) > 1)


def headline(card: dict) -> dict[str, float | int | str]:
    """Every number the zoo page glues: token counts per domain and split, held-out CE per model and domain
    (``ce_base_s_prose``), parameter counts, each finetune's CE gain on its own domain over its parent, each SAE's
    quality and the bars' summary, and the base SAE's explained variance and CE score on each finetune."""
    out: dict[str, float | int | str] = {"heldout_fraction": card["recipe"]["data"]["heldout_fraction"],
                                         "vocab_size": card["data"]["vocab_size"]}
    for (domain, split), row in data_table(card).iterrows():
        out[f"tokens_{domain}_{split}"] = int(row["tokens"])
    models = card["models"]
    for name, m in models.items():
        key = name.replace("-", "_")
        out.update({f"ce_{key}_{d}": v for d, v in m["heldout_ce"].items()})
        out[f"params_{key}"] = m["n_params"]
        own = next(iter(m["mix"])) if m["parent"] and len(m["mix"]) == 1 else None
        if own:
            out[f"ce_gain_{key}"] = models[m["parent"]]["heldout_ce"][own] - m["heldout_ce"][own]
    if {"code", "math"} <= set(models):
        out["lr_ratio"] = models["code"]["lr"] / models["math"]["lr"]
    for name, q in sae_quality(card).items():
        key = name.replace("-", "_")
        out.update({f"sae_{key}_{k}": float(v) for k, v in q.items() if not k.startswith("pass_")})
    out.update({f"saes_{k}": v for k, v in quality_summary(card).items()})
    for (model, data), row in transfer_table(card, transfer_sae(card)).iterrows():
        key = f"{model}_{data}".replace("-", "_")
        out[f"transfer_ev_{key}"] = float(row["explained var."])
        out[f"transfer_ce_score_{key}"] = float(row["CE loss score"])
    return out
