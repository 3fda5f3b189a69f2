"""Which of the base SAE's features keep their meaning in the finetune: per-feature scores, streamed.

Both models read the same token batches; the base SAE encodes each model's activation at its hook, and every
feature's statistics go to running sums (fp64, [d_sae] each) and a running top-k of its activations, so every
feature is scored in constant memory.

Feature groups are chosen on a *selection* split of tokens and scored on a disjoint *evaluation* split (the seed
chose and scored on different samples by accident; here it is on purpose).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .sae_metrics import FIRING

#: log10(activation + EPS) in the seed's activation error.
EPS = 1e-10
#: Regular features: log10 density in [-5, -1] in both models (the seed's band).
REGULAR = (-5.0, -1.0)


class FeaturePairStats:
    """Per-feature statistics of one SAE on base (x) and finetune (y) activations of the same tokens.

    ``update(tokens, base, finetune)`` as every streaming-pass accumulator. Position 0 (BOS) and tokens where
    either model's residual norm exceeds ``threshold`` (outliers) are left out. Memory: O(d_sae * top_k),
    whatever the number of tokens.
    """

    SUMS = ("x", "y", "xx", "yy", "xy", "log_err")

    def __init__(self, sae, hook: str, threshold: float = math.inf, top_k: int = 0):
        self.sae, self.hook, self.threshold, self.k = sae, hook, threshold, top_k
        d = sae.cfg.d_sae
        self.n = 0
        self.n_outliers = 0
        self.tokens_seen = 0  # global index of the next token, outliers included: contexts are found by it
        self.s = {k: torch.zeros(d, dtype=torch.float64) for k in self.SUMS}
        self.fires = {m: torch.zeros(d, dtype=torch.long) for m in ("x", "y")}
        self.max = {m: torch.zeros(d, dtype=torch.float64) for m in ("x", "y")}
        self.top = {m: (torch.full((d, top_k), -1.0), torch.full((d, top_k), -1, dtype=torch.long))
                    for m in ("x", "y")}

    @torch.no_grad()
    def update(self, tokens, base: dict, finetune: dict) -> None:
        a, b = base[self.hook], finetune[self.hook]  # [B, T, d_model]
        B, T = a.shape[:2]
        idx = self.tokens_seen + torch.arange(B * T)
        self.tokens_seen += B * T
        keep = (a.float().norm(dim=-1) <= self.threshold) & (b.float().norm(dim=-1) <= self.threshold)
        self.n_outliers += int((~keep[:, 1:]).sum())
        keep[:, 0] = False  # BOS: features that fire only there correlate perfectly and say nothing about text
        keep = keep.flatten().cpu()
        fx = self.sae.encode(a.to(self.sae.dtype)).flatten(0, 1).cpu()[keep]  # [n, d_sae]
        fy = self.sae.encode(b.to(self.sae.dtype)).flatten(0, 1).cpu()[keep]
        idx = idx[keep]
        self.n += fx.shape[0]
        x, y = fx.double(), fy.double()
        s = self.s
        s["x"] += x.sum(0)
        s["y"] += y.sum(0)
        s["xx"] += (x * x).sum(0)
        s["yy"] += (y * y).sum(0)
        s["xy"] += (x * y).sum(0)
        s["log_err"] += ((x + EPS).log10() - (y + EPS).log10()).abs().sum(0)
        for m, f in (("x", fx), ("y", fy)):
            self.fires[m] += (f > FIRING).sum(0)
            self.max[m] = torch.maximum(self.max[m], f.double().max(0).values)
            if self.k:
                self._merge_top(m, f, idx)

    def _merge_top(self, m: str, f: torch.Tensor, idx: torch.Tensor) -> None:
        k = min(self.k, f.shape[0])
        vals, pos = f.T.topk(k, dim=1)  # [d_sae, k]
        old_v, old_i = self.top[m]
        v = torch.cat([old_v, vals.float()], 1)
        i = torch.cat([old_i, idx[pos]], 1)
        best = v.topk(self.k, dim=1).indices
        self.top[m] = (v.gather(1, best), i.gather(1, best))

    def result(self) -> dict[str, Any]:
        """Per-feature lists [d_sae] (plain floats; NaN where a correlation is undefined)."""
        n, s = self.n, self.s
        if n == 0:
            raise ValueError("FeaturePairStats: every token was an outlier or no batch was seen")
        mx, my = s["x"] / n, s["y"] / n
        vx, vy = s["xx"] / n - mx**2, s["yy"] / n - my**2
        cov = s["xy"] / n - mx * my
        const = (vx <= 1e-20) | (vy <= 1e-20)
        act_sim = torch.where(const, torch.full_like(cov, float("nan")), cov / (vx * vy).clamp_min(1e-40).sqrt())
        out = {
            "n_tokens": n, "n_outliers": self.n_outliers,
            "act_sim": act_sim.tolist(),
            "constant_base": int((vx <= 1e-20).sum()), "constant_finetune": int((vy <= 1e-20).sum()),
            "density_base": (self.fires["x"].double() / n).tolist(),
            "density_finetune": (self.fires["y"].double() / n).tolist(),
            "max_base": self.max["x"].tolist(), "max_finetune": self.max["y"].tolist(),
            "mean_base": mx.tolist(), "mean_finetune": my.tolist(),
            "act_error": (s["log_err"] / n).tolist(),
        }
        if self.k:
            for m, name in (("x", "base"), ("y", "finetune")):
                v, i = self.top[m]
                out[f"top_{name}"] = {"values": v.tolist(), "tokens": i.tolist()}
        return out


# ------------------------------------------------------------------------------------------ measuring

def _pair_loader(base: str, finetune: str, sae: str, hook: str, zoo: str, device: str, dtype: str):
    """A function returning the loaded (base, finetune, SAE), loading on first call only."""
    from .models import load_pair

    held: list = []

    def load():
        if not held:
            held.append(load_pair(base, finetune, sae, hook or None, zoo, device, dtype))
        return held[0]
    return load


def pair_stats(load, spec, threshold: float, top_k: int, key: dict, zoo: str) -> dict:
    """``FeaturePairStats`` of one pair over ``spec``'s tokens, from one streaming pass (cached)."""
    from .datasets import token_batches
    from .stream import cached, run_pass

    def run() -> dict:
        pair = load()
        (res,) = run_pass(pair.base, pair.finetune, token_batches(spec, pair.tokenizer, zoo), [pair.hook],
                          [FeaturePairStats(pair.sae, pair.hook, threshold, top_k)], spec.n_batches(),
                          desc=f"features on {spec.dataset}")
        return res
    return cached("features", {**key, "tokens": spec.as_dict(), "threshold": _finite(threshold), "top_k": top_k,
                               "what": "feature-pair-stats", "v": 2}, run)


def _finite(x: float):
    return x if math.isfinite(x) else None


def own_dataset(finetune: str, zoo: str, default: str = "zoo:prose") -> str:
    """The zoo domain a single-domain zoo finetune was trained on; ``default`` for anything else."""
    from .zoo.build import own_domain

    return own_domain(finetune, zoo) or default


def logit_similarity(sae, base_model, ft_model, chunk: int = 1024) -> dict[str, Any]:
    """The seed's logit similarity: per feature, Pearson r over the vocabulary of ``W_dec[f] @ W_U`` of base vs
    finetune. The decoder row is the same on both sides, so this measures how far W_U moved, not the feature;
    the Frobenius ratio ||W_U_ft - W_U_base|| / ||W_U_base|| says so in one number."""
    wd = sae.W_dec.detach().double().cpu()  # [d_sae, d_model]
    ub, uf = base_model.W_U.detach().double().cpu(), ft_model.W_U.detach().double().cpu()  # [d_model, vocab]
    sims = []
    for rows in wd.split(chunk):
        a, b = rows @ ub, rows @ uf  # [chunk, vocab]
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        sims.append((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30))
    return {"logit_sim": torch.cat(sims).tolist(),
            "unembed_frobenius_ratio": float((uf - ub).norm() / ub.norm())}


def select_groups(selection: dict, n_regular: int, n_dead: int, seed: int) -> dict[str, list[int]]:
    """Feature groups from the selection split's densities, each a seeded sample of at most the given count.

    ``regular``: log10 density in [-5, -1] in both models; ``dead_in_base`` / ``dead_in_finetune``: never fire
    in that model, fire in the other ("exclusively dead")."""
    db = torch.tensor(selection["density_base"])
    df = torch.tensor(selection["density_finetune"])
    lb, lf = (db + 1e-10).log10(), (df + 1e-10).log10()
    lo, hi = REGULAR
    pools = {"regular": ((lb >= lo) & (lb <= hi) & (lf >= lo) & (lf <= hi)),
             "dead_in_base": (db == 0) & (df > 0), "dead_in_finetune": (df == 0) & (db > 0)}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, mask in pools.items():
        idx = mask.nonzero().flatten()
        n = n_regular if name == "regular" else n_dead
        pick = idx[torch.randperm(len(idx), generator=g)[:n]] if len(idx) > n else idx
        out[name] = sorted(pick.tolist())
    return out


def group_summary(scores: dict, groups: dict[str, list[int]], pool_sizes: dict[str, int] | None = None):
    """One row per group: sample size, activation and logit similarity, activation error, firing rates."""
    import pandas as pd

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


def measure_features(base: str, finetunes: list[str], sae: str, n_select: int, n_tokens: int, context_size: int,
                     batch_size: int, n_regular: int = 1000, n_dead: int = 100, top_k: int = 3,
                     outliers: str = "2x", hook: str = "", dataset: str = "", zoo: str = "default",
                     device: str = "auto", dtype: str = "float32", seed: int = 0) -> dict[str, dict]:
    """Per finetune: groups chosen on a selection split, every feature scored on a disjoint evaluation split.

    ``dataset`` empty: each zoo finetune on the domain it was finetuned on (prose for hub/local models).
    Returns ``{finetune: {"dataset", "groups", "pool_sizes", "scores", "eval", "unembed_frobenius_ratio"}}``;
    ``scores`` holds per-feature lists [d_sae] (act_sim, logit_sim, act_error, densities, max activations).
    """
    from .datasets import TokenSpec, check_token_spec
    from .sae_metrics import Outliers, base_mean_norm, sae_identity
    from .stream import model_identity

    rule = Outliers.parse(outliers)
    out = {}
    for ft in finetunes:
        ds = dataset or own_dataset(ft, zoo)
        select = TokenSpec(ds, n_select, context_size, batch_size, seed)
        evals = select.after(n_tokens)
        check_token_spec(select)
        load = _pair_loader(base, ft, sae, hook, zoo, device, dtype)
        threshold = rule.threshold(lambda: base_mean_norm(base, sae, hook, evals, zoo, dtype, load))
        key = {"base": model_identity(base, zoo), "finetune": model_identity(ft, zoo), "sae": sae_identity(sae, zoo),
               "hook": hook or "the SAE's own", "dtype": dtype}
        sel = pair_stats(load, select, threshold, 0, key, zoo)
        ev = pair_stats(load, evals, threshold, top_k, key, zoo)
        logits = cached_logit_similarity(load, key)
        groups = select_groups(sel, n_regular, n_dead, seed)
        pools = {k: len(v) for k, v in select_groups(sel, 10**9, 10**9, seed).items()}
        scores = {k: ev[k] for k in ("act_sim", "act_error", "density_base", "density_finetune", "max_base",
                                     "max_finetune")}
        scores["logit_sim"] = logits["logit_sim"]
        out[ft] = {"dataset": ds, "groups": groups, "pool_sizes": pools, "scores": scores, "eval": ev,
                   "selection_tokens": sel["n_tokens"], "eval_spec": {**evals.as_dict(), "skip": evals.skip},
                   "threshold": _finite(threshold),
                   "unembed_frobenius_ratio": logits["unembed_frobenius_ratio"]}
    return out


def cached_logit_similarity(load, key: dict) -> dict:
    from .stream import cached

    def run() -> dict:
        pair = load()
        return logit_similarity(pair.sae, pair.base, pair.finetune)
    return cached("logit-sim", {**key, "what": "logit-similarity", "v": 1}, run)


def all_features_summary(result: dict) -> dict[str, float]:
    """Activation similarity over every feature live in both models (NaNs counted, not dropped)."""
    sim = torch.tensor(result["scores"]["act_sim"], dtype=torch.float64)
    ok = ~sim.isnan()
    return {"features": len(sim), "undefined (constant in a model)": int((~ok).sum()),
            "activation sim (mean)": float(sim[ok].mean()), "share above 0.8": float((sim[ok] > 0.8).double().mean()),
            "logit sim (mean)": float(torch.tensor(result["scores"]["logit_sim"]).mean())}


# ------------------------------------------------------------------------------------------ contexts

def top_contexts(result: dict, features: list[int], tokenizer, zoo: str, before: int = 12, after: int = 3,
                 n: int = 3) -> list[dict]:
    """The top-activating contexts of ``features`` in base and finetune, from the evaluation pass's top-k.

    The activating token is wrapped in ⟦ ⟧. Rows: feature, model, rank, activation, text."""
    from .datasets import TokenSpec, token_batches

    ev = result["eval"]
    windows = torch.cat(list(token_batches(TokenSpec(**result["eval_spec"]), tokenizer, zoo)))
    context_size = windows.shape[1]
    rows = []
    for f in features:
        for model in ("base", "finetune"):
            top = ev[f"top_{model}"]
            for rank, (v, t) in enumerate(zip(top["values"][f][:n], top["tokens"][f][:n])):
                if t < 0 or v <= 0:
                    continue
                w, p = divmod(int(t), context_size)
                ids = windows[w].tolist()
                text = (tokenizer.decode(ids[max(1, p - before):p]) + "⟦" + tokenizer.decode([ids[p]]) + "⟧"
                        + tokenizer.decode(ids[p + 1:p + 1 + after]))
                rows.append({"feature": f, "model": model, "rank": rank + 1, "activation": float(v),
                             "context": text.replace("\n", "⏎")})
    return rows


# ------------------------------------------------------------------------------------------ direction drift

def finetuned_sae(finetune: str, sae: str, zoo: str, training_tokens: int, lr: float, n_checkpoints: int,
                  device: str = "cpu", data: str = "prose") -> list[dict]:
    """The zoo base SAE fine-tuned on a zoo finetune's activations, with intermediate checkpoints.

    Trained on the zoo's ``data`` train split, the data every zoo SAE is trained on, so the fine-tuning sees a
    new model, not new text (as Kissane et al. fine-tuned base SAEs on the chat model's activations). A
    fingerprinted directory under ``<cache>/sae-finetunes/``, written atomically; returns
    ``[{"tokens": int, "path": str}]`` in token order.
    """
    import json

    from .io import atomic_dir, fingerprint, write_json_atomic
    from .paths import cache_dir
    from .provenance import resolve_device
    from .sae_metrics import sae_identity
    from .stream import model_identity
    from .zoo.build import load_zoo_model, token_streams, zoo_dir
    from .zoo.recipe import load_recipe
    from .zoo.sae import finetune_sae

    if not (finetune.startswith("zoo:") and sae.startswith("zoo:")):
        raise ValueError(f"finetune={finetune!r}, sae={sae!r}: SAE fine-tuning needs a zoo model and a zoo SAE "
                         "(it trains on the zoo's train split)")
    recipe = load_recipe(zoo)
    name = sae.removeprefix("zoo:")
    key = {"sae": sae_identity(sae, zoo), "model": model_identity(finetune, zoo), "tokens": training_tokens,
           "lr": lr, "n_checkpoints": n_checkpoints, "data": data, "v": 1}
    label = "".join(c if c.isalnum() else "_" for c in f"{name}-on-{finetune.removeprefix('zoo:')}")
    out = cache_dir() / "sae-finetunes" / f"{label}-{fingerprint(key)}"
    if not (out / "checkpoints.json").exists():
        root = zoo_dir(recipe.profile)
        device = resolve_device(device)
        model = load_zoo_model(root, finetune.removeprefix("zoo:"), device=device)
        stream = token_streams(root / "data", "train", recipe.context_size)[data]
        with atomic_dir(out) as tmp:
            ckpts = finetune_sae(root / "saes" / name, model, stream, training_tokens, lr, recipe.seed, tmp, device,
                                 batch_tokens=recipe.saes[name].batch_tokens, n_checkpoints=n_checkpoints)
            write_json_atomic(tmp / "checkpoints.json", {"key": key, "checkpoints": [
                {"tokens": c["tokens"], "dir": Path(c["path"]).name} for c in ckpts]})
    ckpts = json.loads((out / "checkpoints.json").read_text())["checkpoints"]
    return [{"tokens": c["tokens"], "path": str(out / c["dir"])} for c in ckpts]


def direction_drift(base_sae, tuned_sae) -> dict[str, list[float]]:
    """Per feature, cosine between the two SAEs' decoder rows and between their encoder columns [d_sae]."""
    def cos(a, b, dim):
        a, b = a.detach().double().cpu(), b.detach().double().cpu()
        return ((a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim)).clamp_min(1e-30)).tolist()
    return {"decoder_cos": cos(base_sae.W_dec, tuned_sae.W_dec, 1),
            "encoder_cos": cos(base_sae.W_enc, tuned_sae.W_enc, 0)}


def native_sae(finetune: str, zoo: str) -> str | None:
    """The zoo SAE trained on ``finetune`` itself, if the zoo has one."""
    from .zoo.recipe import load_recipe

    if not finetune.startswith("zoo:"):
        return None
    name = finetune.removeprefix("zoo:").partition("@")[0]
    for sae_name, s in load_recipe(zoo).saes.items():
        if s.model == name:
            return f"zoo:{sae_name}"
    return None


def native_sae_tokens(finetune: str, zoo: str) -> int:
    """Training tokens of the zoo SAE trained on ``finetune`` (see ``native_sae``)."""
    from .zoo.recipe import load_recipe

    return load_recipe(zoo).saes[native_sae(finetune, zoo).removeprefix("zoo:")].training_tokens


def recovery(base: str, finetune: str, sae: str, checkpoints: list[dict], dataset: str, n_tokens: int,
             context_size: int, batch_size: int, outliers: str, zoo: str, device: str, dtype: str) -> list[dict]:
    """The SAE-metric chapter's metrics on the finetune for: the base SAE, each fine-tuned checkpoint of it, and
    the SAE trained on the finetune itself (when the zoo has one)."""
    from .sae_metrics import measure

    saes = [("base SAE", 0, sae)] + [("base SAE fine-tuned", c["tokens"], f"local:{c['path']}") for c in checkpoints]
    native = native_sae(finetune, zoo)
    if native:
        saes.append(("native SAE (trained on the finetune)", None, native))
    rows = []
    for label, tokens, spec in saes:
        res = measure(base, [finetune], spec, [dataset], n_tokens, context_size, batch_size, outliers, "", zoo,
                      device, dtype, include_base=False)
        r = res["finetunes"][finetune][dataset]["kept"]
        rows.append({"finetune": finetune.removeprefix("zoo:"), "sae": label, "fine-tuning tokens": tokens,
                     "delta CE": r["delta_ce"], "CE recovered": r["ce_recovered"], "EV per token": r["ev_token"],
                     "KL": r["kl"], "L0": r["l0"], "dead %": 100 * r["dead_frac"]})
    return rows


# ------------------------------------------------------------------------------------------ along finetuning

def checkpoint_similarity(base: str, finetune: str, sae: str, result: dict, n_tokens: int, outliers: str, zoo: str,
                          device: str, dtype: str) -> list[dict]:
    """Activation similarity of the regular group (chosen on the final finetune's selection split, in
    ``result`` from ``measure_features``) on every saved checkpoint of a zoo finetune, scored on the first
    ``n_tokens`` of the same evaluation split; step 0 is the base itself (similarity 1 by construction)."""
    from .datasets import TokenSpec
    from .sae_metrics import Outliers, base_mean_norm, sae_identity
    from .stream import model_identity
    from .zoo.build import saved_checkpoints

    saved = saved_checkpoints(finetune, zoo)
    if saved is None:
        return []
    name, steps, _ = saved
    spec = TokenSpec(**{**result["eval_spec"], "n_tokens": min(n_tokens, result["eval_spec"]["n_tokens"])})
    groups = result["groups"]
    rows = [{"finetune": name, "step": 0, "regular: activation sim": 1.0, "regular: share above 0.8": 1.0}]
    for step in (s for s in steps if s > 0):
        ft = f"zoo:{name}@{step}"
        load = _pair_loader(base, ft, sae, "", zoo, device, dtype)
        threshold = Outliers.parse(outliers).threshold(lambda: base_mean_norm(base, sae, "", spec, zoo, dtype, load))
        key = {"base": model_identity(base, zoo), "finetune": model_identity(ft, zoo), "sae": sae_identity(sae, zoo),
               "hook": "the SAE's own", "dtype": dtype}
        stats = pair_stats(load, spec, threshold, 0, key, zoo)
        sim = torch.tensor(stats["act_sim"], dtype=torch.float64)[groups["regular"]]
        ok = ~sim.isnan()
        rows.append({"finetune": name, "step": step, "regular: activation sim": float(sim[ok].mean()),
                     "regular: share above 0.8": float((sim[ok] > 0.8).double().mean())})
    return rows


def drift_summary(result: dict, drift: dict[str, list[float]]) -> dict[str, float]:
    """How far fine-tuning the SAE moved a pair's features (``result`` from ``measure_features``, ``drift`` from
    ``direction_drift``), and whether the regular features that moved are those that stopped firing alike."""
    import pandas as pd

    reg = result["groups"]["regular"]
    dec, enc = pd.Series(drift["decoder_cos"]), pd.Series(drift["encoder_cos"])
    sim = pd.Series(result["scores"]["act_sim"])
    return {"decoder cos (all)": float(dec.mean()), "decoder cos (regular)": float(dec[reg].mean()),
            "share of regular with decoder cos < 0.9": float((dec[reg] < 0.9).mean()),
            "encoder cos (regular)": float(enc[reg].mean()),
            "Spearman: activation sim vs decoder cos (regular)": float(sim[reg].corr(dec[reg], method="spearman"))}


def shown_contexts(result: dict, n_show: int, tokenizer, zoo: str) -> list[dict]:
    """Top contexts of the ``n_show`` regular features with the highest activation similarity ("transferred")
    and the ``n_show`` with the lowest ("broke"); rows as ``top_contexts`` plus verdict and similarity."""
    import pandas as pd

    sims = pd.Series(result["scores"]["act_sim"]).iloc[result["groups"]["regular"]].dropna().sort_values()
    rows = []
    for verdict, feats in (("transferred", sims.index[::-1][:n_show]), ("broke", sims.index[:n_show])):
        for row in top_contexts(result, list(feats), tokenizer, zoo):
            rows.append({"verdict": verdict, "activation sim": float(sims[row["feature"]]), **row})
    return rows
