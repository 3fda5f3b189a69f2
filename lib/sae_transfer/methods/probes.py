"""Answerability probes on the last prompt token: a residual-stream logistic probe and k-sparse SAE probes.

Representations are one vector per prompt (the last token's activation), so the SAE features of a whole
dataset are [n_prompts, d_sae]: a few thousand rows, not a token stream. Every choice a probe makes
(regularization, which features) is made on its training split only; cross-validation folds group the two
labels of one item, so a fold never holds the partner of a training example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sae_transfer.models.hooks import stop_layer

KS = (1, 2, 5, 10, 20, 50)
CS = np.logspace(-4, 2, 7)  # inverse L2 strengths the cross-validation chooses from


# ------------------------------------------------------------------------------------------ representations

def prompt_ids(tokenizer, text: str) -> list[int]:
    """BOS then the prompt's tokens: how every window in the book starts."""
    return [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def last_token_acts(model, tokenizer, texts: list[str], hooks: list[str], sae=None, sae_hook: str | None = None,
                    batch_size: int = 32, desc: str = "prompts") -> dict[str, np.ndarray]:
    """The last prompt token's activation at each hook, {hook: [n, d_model]}, and with an SAE its feature
    activations there, ``"sae"``: [n, d_sae] (float32). Prompts are right-padded, so padding never reaches
    an earlier position under the causal mask."""
    ids = [prompt_ids(tokenizer, t) for t in texts]
    # Batches of similar length waste little on padding; rows go back to the caller's order at the end.
    order = np.argsort([len(i) for i in ids], kind="stable")
    wanted = set(hooks) | ({sae_hook} if sae is not None else set())
    stop = stop_layer(wanted, model.cfg.n_layers)
    device = model.cfg.device
    out: dict[str, list[np.ndarray]] = {h: [] for h in sorted(wanted)} | ({"sae": []} if sae is not None else {})
    for i in tqdm(range(0, len(ids), batch_size), desc=desc, unit="batch", leave=False):
        chunk = [ids[j] for j in order[i:i + batch_size]]
        lengths = torch.tensor([len(c) for c in chunk], device=device)
        tokens = torch.full((len(chunk), int(lengths.max())), tokenizer.pad_token_id or 0, dtype=torch.long,
                            device=device)
        for j, c in enumerate(chunk):
            tokens[j, :len(c)] = torch.tensor(c, device=device)
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted, stop_at_layer=stop,
                                        return_type=None)
        rows = torch.arange(len(chunk), device=device)
        for h in wanted:
            out[h].append(cache[h][rows, lengths - 1].float().cpu().numpy())
        if sae is not None:
            x = cache[sae_hook][rows, lengths - 1].to(sae.dtype)
            out["sae"].append(sae.encode(x).float().cpu().numpy())
        del cache
    inverse = np.argsort(order)
    return {k: np.concatenate(v)[inverse] for k, v in out.items()}


# ------------------------------------------------------------------------------------------ probes

def _folds(groups: np.ndarray, n_splits: int = 5):
    """Cross-validation folds that keep each group (a prompt item: both labels, both templates) whole; fewer
    than ``n_splits`` when there are fewer groups (a small ``n_train``), never fewer than two."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"the probes' cross-validation needs prompts of at least 2 items; got {n_groups} "
                         "(raise n_train)")
    return list(GroupKFold(n_splits=min(n_splits, n_groups)).split(np.zeros(len(groups)), groups=groups))


def feature_auroc(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-feature AUROC of ``F`` [n, d] against binary labels ``y`` [n] (ties share ranks; 0.5 = useless)."""
    from scipy.stats import rankdata

    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(F, axis=0)
    return (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)


@dataclass
class Probe:
    """A fitted logistic probe. ``features``: the SAE features it reads (None: the whole residual)."""

    kind: str  # "residual" or "sae"
    k: int | None
    features: np.ndarray | None
    model: Any  # sklearn Pipeline (StandardScaler, LogisticRegressionCV)
    info: dict = field(default_factory=dict)

    def inputs(self, X: np.ndarray) -> np.ndarray:
        return X if self.features is None else X[:, self.features]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self.inputs(X))[:, 1]

    def direction(self) -> np.ndarray:
        """The weight vector in the input's own units (undoing the standardization)."""
        scaler, lr = self.model[0], self.model[-1]
        return lr.coef_[0] / scaler.scale_


def _fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Log loss, not AUROC, picks C: AUROC ignores a probe's scale (a 1-sparse probe scores the same at every C),
    # so the threshold that accuracy depends on would be left to the strongest regularization. liblinear: a few
    # thousand rows at most, and on nearly separable data lbfgs crawls at weak regularization.
    clf = LogisticRegressionCV(Cs=CS, cv=_folds(groups), scoring="neg_log_loss", solver="liblinear",
                               random_state=seed, l1_ratios=(0.0,), use_legacy_attributes=False)
    return make_pipeline(StandardScaler(), clf).fit(X, y)


def fit_residual(X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> Probe:
    """Logistic regression on the residual [n, d_model]; L2 strength (``CS``) by grouped 5-fold CV on these
    rows only, scored by log loss."""
    m = _fit(X, y, groups, seed)
    return Probe("residual", None, None, m, {"C": float(np.ravel(m[-1].C_)[0])})


def rank_features(F: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features ordered by |AUROC - 0.5| on (training) rows ``F`` [n, d_sae]; returns (order, auroc)."""
    auroc = feature_auroc(F, y)
    # Ties (e.g. features that never fire: AUROC 0.5) are broken by the mean difference between labels.
    diff = np.abs(F[y == 1].mean(0) - F[y == 0].mean(0))
    return np.lexsort((-diff, -np.abs(auroc - 0.5))), auroc


def fit_sparse(F: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int, order: np.ndarray, seed: int = 0) -> Probe:
    """Logistic regression on the top ``k`` features of ``order`` (k = 1: one feature, a scale and a bias)."""
    feats = np.asarray(order[:k])
    return Probe("sae", k, feats, _fit(F[:, feats], y, groups, seed))


# ------------------------------------------------------------------------------------------ metrics

def bootstrap_metrics(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """Accuracy (threshold 0.5) and AUROC of probabilities ``p`` [n], each with a percentile bootstrap
    interval over the examples (resamples with a single label are redrawn from the rest)."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    correct = ((p >= 0.5) == (y == 1)).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    yb = y[idx]
    n1 = yb.sum(1)
    ok = (n1 > 0) & (n1 < len(y))
    idx, yb, n1 = idx[ok], yb[ok], n1[ok]
    ranks = rankdata(p[idx], axis=1)
    auc_b = ((ranks * yb).sum(1) - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1))
    acc_b = correct[idx].mean(1)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    auc = float(feature_auroc(p[:, None], y)[0])
    return {"accuracy": float(correct.mean()), "accuracy_lo": float(np.percentile(acc_b, lo)),
            "accuracy_hi": float(np.percentile(acc_b, hi)), "auroc": auc,
            "auroc_lo": float(np.percentile(auc_b, lo)), "auroc_hi": float(np.percentile(auc_b, hi))}


RESIDUAL = "residual"


def probe_names(ks=KS) -> list[str]:
    return [RESIDUAL] + [f"SAE k={k}" for k in ks]


def fit_probes(acts: dict[str, np.ndarray], hook: str, examples, rows: np.ndarray, ks=KS,
               seed: int = 0) -> dict[str, Probe]:
    """The residual probe at ``hook`` and a k-sparse SAE probe for each k, all fitted on ``rows`` only."""
    y = np.array([examples[i].label for i in rows])
    groups = np.array([examples[i].item for i in rows])
    out = {RESIDUAL: fit_residual(acts[hook][rows], y, groups, seed)}
    order, auroc = rank_features(acts["sae"][rows], y)
    for k in ks:
        out[f"SAE k={k}"] = fit_sparse(acts["sae"][rows], y, groups, k, order, seed)
        out[f"SAE k={k}"].info["train_auroc"] = auroc[order[:k]].tolist()
    return out


def _inputs(name: str, acts: dict[str, np.ndarray], hook: str) -> np.ndarray:
    return acts[hook] if name == RESIDUAL else acts["sae"]


def score(fitted: dict[str, Probe], acts: dict[str, np.ndarray], hook: str, examples, rows: np.ndarray,
          n_boot: int, seed: int) -> dict[str, dict[str, float]]:
    """Every probe's accuracy and AUROC (with bootstrap intervals) on ``rows``."""
    y = np.array([examples[i].label for i in rows])
    return {name: bootstrap_metrics(y, p.predict_proba(_inputs(name, acts, hook)[rows]), n_boot, seed)
            for name, p in fitted.items()}
