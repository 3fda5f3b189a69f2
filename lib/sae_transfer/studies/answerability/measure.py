"""The answerability study: probes trained on each domain and tested on every domain and template, at every
layer, their directions against the SAE's decoder, and the bridge to finetuning (base probes on finetunes).

``measure(...)`` returns plain, JSON-able data (cached on disk like every measurement); the ``*_table``
functions turn it into the chapter's tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sae_transfer.core.labels import short
from sae_transfer.data import answerable
from sae_transfer.methods import probes
from sae_transfer.methods.probes import RESIDUAL, Probe, fit_probes, probe_names, score
from sae_transfer.models.hooks import depth_order, probe_hooks
from sae_transfer.models.pairs import PairSetup
from sae_transfer.passes.cache import cached, measurement_key, model_identity
from sae_transfer.studies.parameters import Config


def _rows(examples: list[answerable.Example], **where) -> np.ndarray:
    return np.array([i for i, e in enumerate(examples) if all(getattr(e, k) == v for k, v in where.items())])


def decoder_cosines(fitted: dict[str, Probe], sae, n_single: int = 5) -> dict[str, Any]:
    """Cosine of the residual probe's direction with the decoder rows of the selected SAE features: each of
    the top ``n_single`` alone (signed so the feature points toward "answerable"), and the k-sparse probes'
    weighted sums of their decoder rows."""
    w = fitted[RESIDUAL].direction()
    W_dec = sae.W_dec.detach().float().cpu().numpy()

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    top = max((p for p in fitted.values() if p.kind == "sae"), key=lambda p: p.k)
    single = []
    for rank, f in enumerate(top.features[:n_single]):
        sign = 1.0 if top.info["train_auroc"][rank] >= 0.5 else -1.0
        single.append({"rank": rank + 1, "feature": int(f), "cosine": cos(w, sign * W_dec[f])})
    combined = {name: cos(w, p.direction() @ W_dec[p.features]) for name, p in fitted.items() if name != RESIDUAL}
    return {"single": single, "combined": combined,
            "random_abs_mean": math.sqrt(2 / (math.pi * W_dec.shape[1]))}


@dataclass(frozen=True, kw_only=True)
class ProbeStudy(Config):
    """The probe study's data and probes: prompt ``domains``, ``n_train`` / ``n_test`` prompts per domain, the
    probed ``layers`` (block indices; empty: every block), k of each sparse probe, the longest prompt and context,
    and ``checkpoints``: carry the base's probes to every saved checkpoint of zoo finetunes too."""

    domains: tuple[str, ...]
    n_train: int
    n_test: int
    layers: tuple[int, ...]
    ks: tuple[int, ...]
    checkpoints: bool
    max_tokens: int
    context_chars: int
    batch_size: int
    n_boot: int
    seed: int

    def __post_init__(self) -> None:
        answerable.check_sizes(self.n_train, self.n_test)
        answerable.check_domains(list(self.domains))


def models_to_probe(setup: PairSetup, finetunes: list[str], checkpoints: bool) -> list[tuple[str, int | None, bool]]:
    """``(spec, step, final)`` of every model the base's probes are carried to: each finetune's saved checkpoints
    (zoo finetunes, when ``checkpoints``) and the finetune itself, last."""
    out = []
    for ft in finetunes:
        saved = setup.zoo_handle.checkpoints(ft)
        steps = list(saved.steps) if saved else [None]
        out += [(f"{ft}@{s}", s, False) for s in steps[:-1] if checkpoints and s != 0]
        out.append((ft, steps[-1], True))
    return out


def measure(setup: PairSetup, finetunes: list[str], probe: ProbeStudy) -> dict[str, Any]:
    """Everything the chapter shows (cached on disk by its inputs). See the module docstring."""
    if not finetunes:
        raise ValueError("finetunes=[]: give at least one finetuned model spec")
    models = models_to_probe(setup, finetunes, probe.checkpoints)
    key = measurement_key("answerability", __name__, setup, finetunes=[model_identity(spec, setup.zoo)
                                                                       for spec, _, _ in models], **asdict(probe))

    def run() -> dict[str, Any]:
        load = setup.loader()
        pair = load(finetunes[0])
        limit = min(probe.max_tokens, pair.base.cfg.n_ctx)
        examples = answerable.build(list(probe.domains), probe.n_train, probe.n_test, probe.seed,
                                    context_chars=probe.context_chars,
                                    fits=lambda t: len(probes.prompt_ids(pair.tokenizer, t)) <= limit)
        texts = [e.text for e in examples]
        hooks = sorted(set(probe_hooks(pair.base.cfg.n_layers, probe.layers)) | {pair.hook}, key=depth_order)
        acts = probes.last_token_acts(pair.base, pair.tokenizer, texts, hooks, pair.sae, pair.hook,
                                      probe.batch_size, desc="base prompts")
        return _analyse(examples, acts, hooks, pair, models, load, probe.ks, probe.n_boot, probe.seed,
                        probe.batch_size)

    return cached("answerability", key, run)


def _analyse(examples, acts, hooks, pair, models, load, ks, n_boot, seed, batch_size) -> dict[str, Any]:
    hook = pair.hook
    domains = list(dict.fromkeys(e.domain for e in examples))
    train = {d: _rows(examples, domain=d, split="train") for d in domains}
    test = {d: _rows(examples, domain=d, split="test") for d in domains}
    fitted = {d: fit_probes(acts, hook, examples, train[d], ks, seed)
              for d in tqdm(domains, desc="probes per domain", unit="domain", leave=False)}

    matrix = {name: {d: {} for d in domains} for name in probe_names(ks)}
    for d in domains:
        for e in domains:
            for name, m in score(fitted[d], acts, hook, examples, test[e], n_boot, seed).items():
                matrix[name][d][e] = m

    templates = []
    for d in tqdm(domains, desc="probes per template", unit="domain", leave=False):
        for t in range(answerable.N_TEMPLATES):
            t_fit = fit_probes(acts, hook, examples, _rows(examples, domain=d, split="train", template=t), ks, seed)
            for u in range(answerable.N_TEMPLATES):
                rows = _rows(examples, domain=d, split="test", template=u)
                for name, m in score(t_fit, acts, hook, examples, rows, n_boot, seed).items():
                    templates.append({"domain": d, "train template": t, "test template": u, "probe": name,
                                      "auroc": m["auroc"], "accuracy": m["accuracy"]})

    layer_rows = []
    for h in tqdm(hooks, desc="residual probes per layer", unit="hook", leave=False):
        for d in domains:
            y_tr = np.array([examples[i].label for i in train[d]])
            groups = np.array([examples[i].item for i in train[d]])
            p = fitted[d][RESIDUAL] if h == hook else probes.fit_residual(acts[h][train[d]], y_tr, groups, seed)
            for e in domains:
                y_te = np.array([examples[i].label for i in test[e]])
                m = probes.bootstrap_metrics(y_te, p.predict_proba(acts[h][test[e]]), n_boot, seed)
                layer_rows.append({"hook": h, "train": d, "test": e, "auroc": m["auroc"]})

    cosines = {d: decoder_cosines(fitted[d], pair.sae) for d in domains}

    bridge = _bridge(examples, fitted, hook, models, load, ks, n_boot, seed, batch_size, domains, train, test)
    return {"examples": [e.as_dict() for e in examples], "hooks": hooks, "sae_hook": hook, "domains": domains,
            "ks": list(ks), "matrix": matrix, "templates": templates, "layers": layer_rows, "cosines": cosines,
            "bridge": bridge}


def _rows_of(where: dict, trained_on: str, metrics: dict[str, dict[str, float]]) -> list[dict]:
    keep = ("auroc", "auroc_lo", "auroc_hi", "accuracy")
    return [{**where, "probe": name, "trained on": trained_on, **{k: m[k] for k in keep}}
            for name, m in metrics.items()]


def _bridge(examples, fitted, hook, models, load, ks, n_boot, seed, batch_size, domains, train, test) -> list[dict]:
    """Base-trained probes on each finetune (and checkpoint) on the test split, in domain; for each final
    finetune also probes retrained on its own activations, the ceiling a probe can reach there."""
    rows = []
    all_test = np.concatenate([test[d] for d in domains])
    for spec, step, final in tqdm(models, desc="finetunes", unit="model", leave=False):
        ft = spec.partition("@")[0]
        pair = load(spec)
        idx = np.arange(len(examples)) if final else all_test
        sub = [examples[i] for i in idx]
        got = probes.last_token_acts(pair.finetune, pair.tokenizer, [e.text for e in sub], [hook], pair.sae, hook,
                                     batch_size, desc=f"{spec} prompts")
        acts = {k: np.zeros((len(examples), v.shape[1]), dtype=v.dtype) for k, v in got.items()}
        for k, v in got.items():
            acts[k][idx] = v
        for d in domains:
            where = {"finetune": ft, "step": step, "final": final, "domain": d}
            rows += _rows_of(where, "base", score(fitted[d], acts, hook, examples, test[d], n_boot, seed))
            if final:
                own = fit_probes(acts, hook, examples, train[d], ks, seed)
                rows += _rows_of(where, "finetune", score(own, acts, hook, examples, test[d], n_boot, seed))
    return rows


# ------------------------------------------------------------------------------------------ tables

def matrix_table(result: dict, probe: str, metric: str = "auroc"):
    """Train domain (rows) x test domain (columns) for one probe."""
    m = result["matrix"][probe]
    return pd.DataFrame({e: {d: m[d][e][metric] for d in m} for e in result["domains"]}).loc[result["domains"]]


def probe_summary(result: dict):
    """Per probe: mean in-domain and out-of-domain AUROC and accuracy, and the worst out-of-domain AUROC."""
    rows = {}
    for name in probe_names(result["ks"]):
        m = result["matrix"][name]
        ins = [m[d][d] for d in result["domains"]]
        outs = [m[d][e] for d in result["domains"] for e in result["domains"] if d != e]
        rows[name] = {"in-domain AUROC": np.mean([x["auroc"] for x in ins]),
                      "out-of-domain AUROC": np.mean([x["auroc"] for x in outs]) if outs else np.nan,
                      "worst out-of-domain AUROC": min((x["auroc"] for x in outs), default=np.nan),
                      "in-domain accuracy": np.mean([x["accuracy"] for x in ins]),
                      "out-of-domain accuracy": np.mean([x["accuracy"] for x in outs]) if outs else np.nan}
    return pd.DataFrame(rows).T


def matrix_tables(result: dict) -> dict[str, pd.DataFrame]:
    """``matrix_table`` of every probe, in probe order."""
    return {name: matrix_table(result, name) for name in probe_names(result["ks"])}


def in_domain_table(result: dict, metric: str = "auroc"):
    """In-domain ``metric`` (auroc or accuracy) with its 95% bootstrap interval, per probe (rows) and domain."""
    def cell(m: dict) -> str:
        return f"{m[metric]:.3f} [{m[metric + '_lo']:.3f}, {m[metric + '_hi']:.3f}]"
    return pd.DataFrame({d: {name: cell(m[d][d]) for name, m in result["matrix"].items()}
                         for d in result["domains"]}).loc[probe_names(result["ks"])]


def template_table(result: dict):
    """Mean AUROC per probe and domain when the test template is the training one and when it is the other."""
    df = pd.DataFrame(result["templates"])
    df["test on"] = np.where(df["train template"] == df["test template"], "same template", "other template")
    t = df.pivot_table(index="probe", columns=["domain", "test on"], values="auroc", aggfunc="mean")
    order = [(d, w) for d in result["domains"] for w in ("same template", "other template")]
    t = t.loc[probe_names(result["ks"]), order]
    t.columns = [f"{d}: {w}" for d, w in t.columns]
    return t


def layer_auroc_table(result: dict):
    """Residual probe AUROC per hook: in domain and out of domain (means over domains)."""
    df = pd.DataFrame(result["layers"])
    df["where"] = np.where(df["train"] == df["test"], "in-domain AUROC", "out-of-domain AUROC")
    return df.pivot_table(index="hook", columns="where", values="auroc", aggfunc="mean").loc[result["hooks"]]


def cosine_table(result: dict):
    """Per training domain: cosine of the residual probe with the top features' decoder rows, alone and
    combined by each k-sparse probe, and the mean |cosine| of a random direction for scale."""
    rows = {}
    for d in result["domains"]:
        c = result["cosines"][d]
        row = {f"top-{s['rank']} feature": s["cosine"] for s in c["single"]}
        row.update({f"{name} combined": v for name, v in c["combined"].items()})
        row["random |cos|"] = c["random_abs_mean"]
        rows[d] = row
    return pd.DataFrame(rows).T


def bridge_table(result: dict, trained_on: str = "base"):
    """In-domain AUROC of probes on each finetune's final weights, averaged over domains, per probe."""
    df = pd.DataFrame(result["bridge"])
    df = df[df["final"] & (df["trained on"] == trained_on)].assign(finetune=lambda d: d["finetune"].map(short))
    return df.pivot_table(index="probe", columns="finetune", values="auroc", aggfunc="mean").loc[
        probe_names(result["ks"])]


def bridge_baseline(result: dict) -> dict[str, float]:
    """In-domain AUROC of each probe on the base itself: where the bridge figure's curves start."""
    return probe_summary(result)["in-domain AUROC"].to_dict()


def bridge_probes(result: dict) -> tuple[str, ...]:
    """The probes the bridge figure follows: the residual probe, one SAE feature, the widest sparse probe."""
    return RESIDUAL, "SAE k=1", f"SAE k={max(result['ks'])}"


def bridge_drop(result: dict) -> dict[str, float]:
    """Mean over finetunes and domains of (base probe AUROC on the base - on the finetune), per probe."""
    base = {(name, d): result["matrix"][name][d][d]["auroc"] for name in result["matrix"] for d in result["domains"]}
    rows = [r for r in result["bridge"] if r["final"] and r["trained on"] == "base"]
    return {name: float(np.mean([base[(name, r["domain"])] - r["auroc"] for r in rows if r["probe"] == name]))
            for name in probe_names(result["ks"])}


TIE = 0.005  # AUROC differences below this are stated as ties in the prose


def _word(a: float, b: float, above: str = "above", below: str = "below", tie: str = "level with") -> str:
    return tie if abs(a - b) < TIE else above if a > b else below


def headline(result: dict) -> dict[str, Any]:
    """The numbers (and the comparisons, as words) the chapter's prose states."""
    s = probe_summary(result)
    sae = s[s.index != RESIDUAL]
    best_in, best_out = sae["in-domain AUROC"].idxmax(), sae["out-of-domain AUROC"].idxmax()
    drop = bridge_drop(result)
    k_max = f"SAE k={max(result['ks'])}"
    cos = cosine_table(result)
    layers = layer_auroc_table(result)
    examples = result["examples"]
    out = {
        "n_train": sum(e["split"] == "train" for e in examples) // len(result["domains"]),
        "n_test": sum(e["split"] == "test" for e in examples) // len(result["domains"]),
        "n_domains": len(result["domains"]),
        "residual_in": s.loc[RESIDUAL, "in-domain AUROC"], "residual_out": s.loc[RESIDUAL, "out-of-domain AUROC"],
        "sae1_in": s.loc["SAE k=1", "in-domain AUROC"], "sae1_out": s.loc["SAE k=1", "out-of-domain AUROC"],
        "best_in_probe": best_in, "best_in": sae.loc[best_in, "in-domain AUROC"],
        "best_out_probe": best_out, "best_out": sae.loc[best_out, "out-of-domain AUROC"],
        "residual_vs_best_in": _word(s.loc[RESIDUAL, "in-domain AUROC"], sae.loc[best_in, "in-domain AUROC"]),
        "residual_vs_best_out": _word(s.loc[RESIDUAL, "out-of-domain AUROC"], sae.loc[best_out, "out-of-domain AUROC"]),
        "residual_worst_out": s.loc[RESIDUAL, "worst out-of-domain AUROC"],
        "sae1_worst_out": s.loc["SAE k=1", "worst out-of-domain AUROC"],
        "best_layer": layers["in-domain AUROC"].idxmax(), "best_layer_in": layers["in-domain AUROC"].max(),
        "sae_layer_in": layers.loc[result["sae_hook"], "in-domain AUROC"],
        "cos_top1_mean": cos["top-1 feature"].mean(), "cos_top1_abs_mean": cos["top-1 feature"].abs().mean(),
        "cos_kmax_mean": cos[f"{k_max} combined"].mean(), "cos_random": cos["random |cos|"].iloc[0],
        "k_max": max(result["ks"]), "tie": TIE,
        "drop_residual": drop[RESIDUAL], "drop_sae1": drop["SAE k=1"], "drop_kmax": drop[k_max],
        "sae1_vs_residual_drop": _word(drop["SAE k=1"], drop[RESIDUAL], "more than", "less than",
                                       "about as much as"),
    }
    diag = {d: result["matrix"][RESIDUAL][d][d]["auroc"] for d in result["domains"]}
    out.update({"best_domain": max(diag, key=diag.get), "best_domain_auroc": max(diag.values()),
                "worst_domain": min(diag, key=diag.get), "worst_domain_auroc": min(diag.values())})
    t = template_table(result)
    same = t[[c for c in t.columns if c.endswith(": same template")]].mean(axis=1)
    other = t[[c for c in t.columns if c.endswith(": other template")]].mean(axis=1)
    out.update({"template_same_residual": same[RESIDUAL], "template_other_residual": other[RESIDUAL],
                "template_same_sae1": same["SAE k=1"], "template_other_sae1": other["SAE k=1"]})
    own = bridge_table(result, "finetune").mean(axis=1)
    out.update({"retrained_residual": own[RESIDUAL], "retrained_sae1": own["SAE k=1"]})
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}
