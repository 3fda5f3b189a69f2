"""The zoo card as tables: data, models, SAE quality and base-SAE transfer, from ``card.json``."""

from __future__ import annotations

import pandas as pd

from sae_transfer.zoo.recipe import block_words

#: Quality bars for every zoo SAE on held-out prose of its own model (issue: zoo).
QUALITY_BARS = {"explained_variance": (">=", 0.8), "ce_loss_score": (">=", 0.9), "dead_fraction": ("<", 0.1),
                "l0_over_width": ("<", 0.1)}
#: A real model's SAE is held to what a practitioner would accept: at most 2% of its features active a token.
REAL_MODEL_BARS = {**QUALITY_BARS, "l0_over_width": ("<=", 0.02)}


def is_real(card: dict) -> bool:
    """Whether the card is a real pretrained family's (its root model is ``pretrained``)."""
    return any(m.get("pretrained") for m in card.get("recipe", {}).get("models", {}).values())


def quality_bars(card: dict) -> dict[str, tuple[str, float]]:
    return REAL_MODEL_BARS if is_real(card) else QUALITY_BARS


def _passes(value: float, op: str, bar: float) -> bool:
    return {">=": value >= bar, "<": value < bar, "<=": value <= bar}[op]


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
        passes = {k: _passes(e[k], op, v) for k, (op, v) in quality_bars(card).items()}
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
    if card.get("last_build_seconds"):  # what this build made; nothing when everything was built
        parts += ["", "build seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in card["last_build_seconds"].items())]
    return "\n".join(parts)


def transfer_sae(card: dict) -> str:
    """The SAE the card also evaluates on finetunes of its model (the base SAE)."""
    return next(n for n, s in card["saes"].items() if len({k.split("/")[0] for k in s["evals"]}) > 1)


def _own_domain(m: dict) -> str | None:
    """The one zoo domain a finetune trained on; None for roots and mixed-domain finetunes."""
    return next(iter(m["mix"])) if m["parent"] and len(m["mix"]) == 1 else None


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
        own = _own_domain(m)
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


# ------------------------------------------------------------------------------------------ prose

def describe(card: dict) -> dict[str, str]:
    """The zoo page's prose for any zoo, written from its card: ``tokenizer``, ``models``, ``saes`` and
    ``transfer`` paragraphs (Markdown), naming models as the card does and quoting its numbers."""
    models, saes = card["models"], card["saes"]
    roots = [n for n, m in models.items() if m["parent"] is None]
    finetunes = [n for n, m in models.items() if m["parent"]]
    real = is_real(card)
    text: dict[str, str] = {}
    vocab = f"{card['data']['vocab_size']:,}"
    if real:
        source = models[roots[0]]["pretrained"]["source"]
        text["tokenizer"] = (f"The texts are tokenized with the real model's own tokenizer ({vocab} tokens), read from "
                             f"the same file as its weights ({source}).")
    else:
        text["tokenizer"] = (f"One byte-level BPE tokenizer with {vocab} tokens is trained on a mix of all three "
                             "domains, so base and finetunes share a vocabulary as real finetunes do.")
    parts = []
    if real:
        root = models[roots[0]]
        conv = root["pretrained"]["conversion"]
        parts.append(f"`{roots[0]}` is a real pretrained model ({root['pretrained']['source']}): "
                     f"{root['arch']['n_layers']} layers, d_model {root['arch']['d_model']}, "
                     f"{root['n_params'] / 1e6:.0f}M parameters. It is dequantized to "
                     f"fp32, saved with `save_pretrained` and converted by TransformerLens; the converted model's "
                     f"logits match the Hugging Face model's to {conv['max_abs_logit_diff']:.1e} (logit standard "
                     f"deviation {conv['logit_std']:.1f}).")
    else:
        kinds = {n: block_words(models[n]["arch"]) for n in roots}
        sizes = ", ".join(f"`{n}` ({models[n]['arch']['n_layers']} layers, d_model {models[n]['arch']['d_model']}"
                          + (f"; {kinds[n]}" if len(set(kinds.values())) > 1 else "") + ")" for n in roots)
        built = (f"TransformerLens models of {next(iter(kinds.values()))}" if len(set(kinds.values())) == 1 else
                 "TransformerLens models of the blocks named")
        parts.append(f"The base models {sizes} are {built}, pretrained here on mostly prose with a small share of "
                     "code and math, as real base models have seen some of both.")
    gains = []
    for n in finetunes:
        m, own = models[n], _own_domain(models[n])
        what = f"`{n}` finetunes `{m['parent']}` on {own or ' and '.join(m['mix'])}"
        what += f" for {m['steps']} steps at learning rate {m['lr']:g} ({m['tokens_seen']:,} tokens)"
        if own:
            before, after = models[m["parent"]]["heldout_ce"][own], m["heldout_ce"][own]
            what += (f"; on held-out {own} its cross-entropy is {after:.3f} nats per token against its base's "
                     f"{before:.3f} (a gain of {before - after:.3f})")
        gains.append(what + ".")
    if finetunes:
        parts.append("Every finetune trains every parameter. " + " ".join(gains)
                     + " Checkpoints saved along each finetune let later chapters follow transfer step by step.")
    text["models"] = " ".join(parts)
    q = sae_quality(card)
    bars = quality_bars(card)
    sae_lines = []
    for n, s in saes.items():
        kind = "BatchTopK" if s["architecture"] == "batchtopk" else "ReLU (L1 penalty)"
        sae_lines.append(f"`{n}` ({kind}, {s['d_sae']:,} features at `{s['hook']}` of `{s['model']}`, trained on "
                         f"{s['training_tokens']:,} prose tokens) keeps {q[n]['l0']:.1f} features active per token "
                         f"({q[n]['l0_over_width']:.1%} of its width) and explains {q[n]['explained_variance']:.3f} of "
                         f"the variance of held-out prose, with a CE loss score of {q[n]['ce_loss_score']:.3f} and "
                         f"{q[n]['dead_fraction']:.1%} dead features.")
    met = sum(v["meets_bars"] for v in q.values())
    l0_op, l0_bar = bars["l0_over_width"]
    text["saes"] = (" ".join(sae_lines) + f" The bars: explained variance at least {bars['explained_variance'][1]}, "
                    f"CE loss score at least {bars['ce_loss_score'][1]}, dead features under "
                    f"{bars['dead_fraction'][1]:.0%}, L0 {'at most' if l0_op == '<=' else 'under'} {l0_bar:.0%} of the "
                    f"width; {met} of {len(q)} SAE{'s' if len(q) != 1 else ''} meet{'s' if len(q) == 1 else ''} "
                    "them all.")
    multi = [n for n, s in saes.items() if len({k.split("/")[0] for k in s["evals"]}) > 1]
    if multi:
        sae = multi[0]
        evals, root = saes[sae]["evals"], saes[sae]["model"]
        lines = []
        for n in finetunes:
            own = _own_domain(models[n])
            if own and f"{n}/{own}" in evals:
                e, b = evals[f"{n}/{own}"], evals[f"{root}/{own}"]
                lines.append(f"on `{n}`'s own domain ({own}) it explains {e['explained_variance']:.3f} of the "
                             f"variance (against {b['explained_variance']:.3f} on its own model's {own}) with a CE "
                             f"loss score of {e['ce_loss_score']:.3f} (against {b['ce_loss_score']:.3f})")
        text["transfer"] = (f"The `{sae}` SAE, trained on `{root}`: " + "; ".join(lines) + "."
                            if lines else f"The `{sae}` SAE on `{root}` and each of its finetunes, in the table.")
        # The two measures part ways on some rows (an SAE worse than the mean activation that still recovers the
        # loss): the page must not let "near 1" read as "works" on one of them alone.
        split = {k: e for k, e in evals.items() if (e["explained_variance"] > 0) != (e["ce_loss_score"] > 0)}
        if split:
            k, e = max(split.items(), key=lambda kv: abs(kv[1]["explained_variance"] - kv[1]["ce_loss_score"]))
            text["transfer"] += (f" The two measures part ways on {len(split)} of {len(evals)} rows: on `{k}` the "
                                 f"explained variance is {e['explained_variance']:.3f} and the CE loss score "
                                 f"{e['ce_loss_score']:.3f}, so a row is read by both, never by one alone.")
    else:
        text["transfer"] = "No SAE of this zoo is evaluated on a finetune of its model."
    return text
