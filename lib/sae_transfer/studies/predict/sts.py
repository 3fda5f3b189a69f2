"""The SAE-based Transferability Score (STS; Zhang et al., ICLR 2026, seed 004), its baselines, and a test of the
paper's own claim: that STS, computed from the base model alone before finetuning, forecasts how much finetuning on
one domain changes the model's performance on each other domain.

Here the performance change is the change in held-out next-token CE on the evaluated domain (finetune minus
base), the analogue of the paper's accuracy change for models without benchmarks; its magnitude is the target.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from sae_transfer.core.labels import short, slug
from sae_transfer.core.stats import correlate
from sae_transfer.data.tokens import TokenSpec, token_windows
from sae_transfer.models.hooks import stop_layer

#: Numbers of shifted dimensions N swept (the paper uses 100, on SAEs of 16K to 131K features).
SWEEP = (10, 30, 100, 300)

#: What the paper reports for its claim (Pearson r with the magnitude of the accuracy change, three 7-9B models).
PAPER = {"STS": "0.60 to 0.90", "raw activations": "0.03", "data similarity": "0.11"}

#: Predictors of the claim, each computable without the finetuned model.
CLAIM_PREDICTORS = ("STS_ICL", "STS_act", "raw ICL shift", "unigram similarity", "steps x lr")
TARGET = "|CE change|"


@torch.no_grad()
def sts(model, sae, hook: str, demos: torch.Tensor, queries: torch.Tensor, n_shift: int = 100,
        sweep: tuple[int, ...] = SWEEP) -> dict[str, Any]:
    """STS of the base ``model`` with ``sae`` at ``hook``, and the raw-activation baseline, from one pair of passes.

    ``demos`` [n, Ld]: BOS-led windows of the finetuning data (in-context demonstrations); ``queries`` [n, Lq]:
    BOS-led windows of the evaluated domain. ``h(x)``: the SAE's features at the query's tokens read alone;
    ``h(demos + x)``: at the same tokens after the demonstration. Shifted dimensions D_N: the N features with the
    largest E||h_j(demos + x) - h_j(x)||². Per the paper (not their notebook, which squares activations and
    subtracts rows of different prompts position by position): STS_ICL = E_x Σ_{j∈D_N} ||h_j(demos + x) -
    h_j(x)||², STS_act = E_x Σ_{j∈D_N} h_j(x); expectations over queries and their token positions.
    ``raw_icl``: the same shift on the raw activation at ``hook``, E||x(demos + q) - x(q)||² over every dimension
    (no SAE, no selection). ``by_n``: STS at each N of ``sweep`` no wider than the SAE.
    """
    stop = stop_layer([hook], model.cfg.n_layers)
    device = model.cfg.device
    body = queries.shape[1] - 1

    def acts(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, cache = model.run_with_cache(tokens.to(device), names_filter=hook, stop_at_layer=stop, return_type=None)
        x = cache[hook][:, -body:]  # [n, body, d_in]
        return x.double().cpu(), sae.encode(x.to(sae.dtype)).double().cpu()  # and [n, body, d_sae]

    x_alone, alone = acts(queries)
    x_primed, primed = acts(torch.cat([demos, queries[:, 1:]], 1))
    shift = (primed - alone).pow(2).mean((0, 1))  # [d_sae]

    def score(n: int) -> dict[str, float]:
        top = shift.topk(min(n, len(shift))).indices
        return {"sts_icl": float(shift[top].sum()), "sts_act": float(alone[..., top].sum(-1).mean())}

    top = shift.topk(min(n_shift, len(shift))).indices
    return {**score(n_shift), "shifted": sorted(top.tolist()),
            "raw_icl": float((x_primed - x_alone).pow(2).sum(-1).mean()),
            "by_n": {str(n): score(n) for n in sweep if n <= len(shift)}}


def unigram_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of the token-count vectors of two sets of windows (BOS left out): the data-similarity
    baseline, between the finetuning data and the evaluated domain."""
    a, b = a[:, 1:].flatten(), b[:, 1:].flatten()
    n = int(max(a.max(), b.max())) + 1
    ca, cb = torch.bincount(a, minlength=n).double(), torch.bincount(b, minlength=n).double()
    return float(ca @ cb / (ca.norm() * cb.norm()))


def demo_windows(domains: tuple[str, ...], n: int, length: int, zoo: str, seed: int = 0) -> torch.Tensor:
    """``n`` BOS-led windows [n, length] of the zoo's train split, the domains taking turns (a mixed finetune)."""
    per = -(-n // len(domains))
    parts = [token_windows(TokenSpec(f"zoo:{d}/train", per * length, length, per, seed), None, zoo) for d in domains]
    return torch.stack([parts[i % len(domains)][i // len(domains)] for i in range(n)])


# ------------------------------------------------------------------------------------------ the paper's claim

def claim_cases(rows: list[dict]) -> pd.DataFrame:
    """The predict chapter's rows (``predict.measure``) as cases of the claim: every finetune checkpoint after step
    0 on every domain, with the signed and absolute CE change and the predictors."""
    df = pd.DataFrame(rows)
    df = df[df["step"] > 0].copy()
    df[TARGET] = df["CE change"].abs()
    df["final"] = df["step"] == df.groupby("name")["step"].transform("max")
    keep = ["name", "step", "dataset", "final", "CE change", TARGET, *CLAIM_PREDICTORS]
    return df[keep].assign(dataset=df["dataset"].map(short)).reset_index(drop=True)


def claim_table(rows: list[dict], n_boot: int = 2000) -> pd.DataFrame:
    """Pearson and Spearman r (bootstrap intervals over cases) of each predictor with |CE change|: over the final
    checkpoints (the paper's setting: one finetuned model per finetuning dataset), over every checkpoint, and
    within each finetune."""
    cases = claim_cases(rows)
    scopes = {"final checkpoints": cases[cases["final"]], "all checkpoints": cases}
    scopes.update({f"finetune {name}": g for name, g in cases.groupby("name")})
    out = [{"cases": scope, "predictor": p, **correlate(g[p], g[TARGET], n_boot)}
           for scope, g in scopes.items() for p in CLAIM_PREDICTORS]
    return pd.DataFrame(out).set_index(["cases", "predictor"])


def sweep_table(rows: list[dict], n_boot: int = 2000) -> pd.DataFrame:
    """STS_ICL's Pearson r with |CE change| on the final checkpoints, for each number of shifted dimensions N."""
    df = pd.DataFrame(rows)
    df = df[df["step"] > 0]
    final = df[df["step"] == df.groupby("name")["step"].transform("max")]
    out = []
    for n in sorted({int(n) for by in final["STS by N"] for n in by}):
        x = [by[str(n)]["sts_icl"] if str(n) in by else float("nan") for by in final["STS by N"]]
        out.append({"N": n, **correlate(x, final["CE change"].abs(), n_boot)})
    return pd.DataFrame(out).set_index("N")


def verdict(r: dict) -> str:
    """Whether one correlation supports the paper's claim: its Pearson r at least the paper's lowest (0.6) with an
    interval above 0; an interval above 0 alone; the paper's range in the estimate but not in the interval; or
    none of these."""
    strong, resolved = r["pearson"] >= 0.6, r["pearson_lo"] > 0
    if strong and resolved:
        return "supports the claim"
    if resolved:
        return "agrees in sign, weaker than the paper's"
    if strong:
        return ("reaches the paper's range in its estimate, but its interval includes 0: these cases neither "
                "confirm nor refute the claim")
    return "does not support the claim"


def claim_headline(table: pd.DataFrame) -> dict[str, Any]:
    """``claim_<scope>_<predictor>`` Pearson r and its interval, for the pooled scopes."""
    out: dict[str, Any] = {}
    for (scope, p), r in table.iterrows():
        if scope.startswith("finetune "):
            continue
        k = slug(f"{scope.split()[0]}_{p}").lower()
        out.update({f"claim_{k}": r["pearson"], f"claim_{k}_lo": r["pearson_lo"], f"claim_{k}_hi": r["pearson_hi"]})
    out["claim_n_final"] = int(table.loc[("final checkpoints", "STS_ICL"), "n"])
    out["claim_n_all"] = int(table.loc[("all checkpoints", "STS_ICL"), "n"])
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items() if v == v}


def claim_text(table: pd.DataFrame) -> str:
    """The plain statement of whether the claim holds here, written from the table."""
    def says(scope: str, p: str) -> str:
        r = table.loc[(scope, p)]
        if r["pearson"] != r["pearson"]:
            return f"{p} is undefined over the {scope} (a constant predictor)"
        return f"{p} {r['pearson']:.2f} [{r['pearson_lo']:.2f}, {r['pearson_hi']:.2f}]"
    final = table.loc[("final checkpoints", "STS_ICL")]
    n = int(final["n"])
    return (f"Over the {n} cases of a finetune's last checkpoint on a domain (one finetuned model per finetuning "
            f"dataset, the paper's setting), Pearson r with the magnitude of the CE change is: "
            f"{says('final checkpoints', 'STS_ICL')}, "
            f"{says('final checkpoints', 'STS_act')}; the baselines {says('final checkpoints', 'raw ICL shift')}, "
            f"{says('final checkpoints', 'unigram similarity')}. The paper reports {PAPER['STS']} for STS, "
            f"{PAPER['raw activations']} for raw activations and {PAPER['data similarity']} for data similarity "
            f"(their numbers, 7-9B models and benchmark accuracy). Here STS_ICL **{verdict(final)}**"
            + (f" (with {n} cases an interval is wide: the test has little power)." if n < 20 else ".")
            + f" The trivial baseline, finetuning compute, known before finetuning too: "
            f"{says('final checkpoints', 'steps x lr')}. Over every checkpoint ({says('all checkpoints', 'STS_ICL')}; "
            f"compute {says('all checkpoints', 'steps x lr')}), STS cannot follow the change along training: it is "
            "computed before finetuning, so it is the same for every checkpoint of a finetune on a domain.")


def sts_inputs(train_domains: tuple[str, ...], dataset: str, tokenizer, zoo: str, examples: int, demo_tokens: int,
               context_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(demonstrations [n, demo_tokens], queries [n, context_size - demo_tokens]) for one case."""
    query_len = context_size - demo_tokens
    demos = demo_windows(train_domains, examples, demo_tokens, zoo)
    queries = token_windows(TokenSpec(dataset, examples * query_len, query_len, examples, seed=1), tokenizer, zoo)
    return demos, queries


def describe_sweep(sweep: pd.DataFrame) -> str:
    """One sentence on how STS_ICL's correlation moves with N."""
    ok = sweep.dropna(subset=["pearson"])
    if not len(ok):
        return "No N gives a defined correlation."
    parts = ", ".join(f"N = {n}: {r['pearson']:.2f}" for n, r in ok.iterrows())
    return f"STS_ICL's Pearson r with the magnitude of the CE change on the final checkpoints, by N: {parts}."
