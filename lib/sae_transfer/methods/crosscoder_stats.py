"""Streaming-pass accumulators of crosscoders (the diffing and known-answers chapters): a crosscoder's latents on
one dataset, and two SAEs of one model compared feature by feature; and the join of a crosscoder's latents with a
base SAE's features (``join_sae``). Running sums only ([d_sae] vectors, a fixed-bin histogram per latent and a
running top-k); ``update(tokens, base, finetune)`` as every pair accumulator (``accumulators.py``)."""

from __future__ import annotations

from typing import Any

import torch

from sae_transfer.methods.crosscoder import decoder_cosines, relative_norms
from sae_transfer.passes.accumulators import FIRING, Bins, RunningTopK

#: log10 of nonzero latent activations, per latent (the feature pages' histograms).
LATENT_BINS = Bins(-2.0, 2.0, 32)


class CrosscoderStats:
    """A crosscoder's latents on the paired activations of one dataset.

    Keeps per latent: firing count, sum of activations and of squares, a log10 histogram, the top-k activations
    with their global token index, and the sums of latent scaling (``beta``): for latent ``j`` and the direction of
    side ``s``, ``beta[m|s]_j = sum f_j (d_j^s . e_m^(j)) / (||d_j^s||^2 sum f_j^2)``, how much of model ``m``'s
    activation the latent explains along that direction, ``e_m^(j)`` being model ``m``'s reconstruction error with
    latent ``j``'s own term added back (Minder et al. 2025). Per model: the reconstruction error and the moments
    that give the fraction of variance unexplained. For the least-squares decoders (``refit_decoders``): the
    latents' Gram matrix ``F^T F`` [d_sae, d_sae] and ``F^T (x_m - b_dec_m)`` [M, d_sae, d], fp64, fixed in size.
    Position 0 (BOS) is left out."""

    def __init__(self, cc, hook: str, top_k: int = 8):
        self.cc, self.hook, self.k = cc, hook, top_k
        d_sae, M = cc.cfg.d_sae, cc.cfg.n_models
        self.n = 0
        self.tokens_seen = 0
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
        self.fires, self.f_sum, self.f_sq = z(d_sae), z(d_sae), z(d_sae)
        self.hist = torch.zeros(d_sae, LATENT_BINS.n, dtype=torch.long)
        self.top = RunningTopK(d_sae, top_k)
        self.beta_num = z(M, M, d_sae)  # [model m, direction side s, latent]
        self.err, self.x_sum, self.x_sq = z(M), z(M, cc.cfg.d_in), z(M)
        self.gram, self.cross = z(d_sae, d_sae), z(M, d_sae, cc.cfg.d_in)

    @torch.no_grad()
    def update(self, tokens, base: dict, finetune: dict) -> None:
        a, b = base[self.hook], finetune[self.hook]  # [B, T, d]
        B, T = a.shape[:2]
        idx = (self.tokens_seen + torch.arange(B * T)).view(B, T)[:, 1:].flatten()
        self.tokens_seen += B * T
        x = torch.stack([a[:, 1:], b[:, 1:]], 2).flatten(0, 1).float()  # [n, M, d]
        cc = self.cc
        xn = cc.normalize(x)
        f = cc.encode(xn)  # [n, d_sae]
        err = xn - cc.decode(f)  # [n, M, d]
        self.n += len(f)
        fd = f.double()
        self.fires += (f > FIRING).sum(0)
        self.f_sum += fd.sum(0)
        self.f_sq += (fd * fd).sum(0)
        nz = f > FIRING
        bins = ((f.clamp_min(1e-30).log10() - LATENT_BINS.lo) / (LATENT_BINS.hi - LATENT_BINS.lo) * LATENT_BINS.n)
        bins = bins.floor().clamp(0, LATENT_BINS.n - 1).long()
        latent = torch.arange(f.shape[1]).expand_as(f)
        flat = (latent * LATENT_BINS.n + bins)[nz]
        self.hist.view(-1).index_add_(0, flat, torch.ones(len(flat), dtype=torch.long))
        W = cc.W_dec.detach()  # [d_sae, M, d]
        for s in range(cc.cfg.n_models):
            for m in range(cc.cfg.n_models):
                # d_j^s . e_m^(j) = d_j^s . err_m + f_j (d_j^s . d_j^m)
                proj = err[:, m] @ W[:, s].T  # [n, d_sae]
                own = (W[:, s] * W[:, m]).sum(-1).double()  # d_j^s . d_j^m
                self.beta_num[m, s] += (fd * proj.double()).sum(0) + own * (fd * fd).sum(0)
        self.gram += fd.T @ fd
        self.cross += torch.einsum("ns,nmd->msd", fd, (xn - cc.b_dec.detach()).double())
        self.err += err.double().pow(2).sum((0, 2))
        self.x_sum += xn.double().sum(0)
        self.x_sq += xn.double().pow(2).sum((0, 2))
        if self.k:
            self.top.update(f, idx)

    def end_batch(self) -> None:
        pass

    def result(self) -> dict[str, Any]:
        """Per-latent lists [d_sae], per-model lists [M] (``fvu``), and ``beta[m][s]`` lists [d_sae]."""
        n = max(self.n, 1)
        W = self.cc.W_dec.detach().double()
        sq = W.pow(2).sum(-1)  # [d_sae, M]
        den = sq.T * self.f_sq  # [s, d_sae]
        beta = self.beta_num / den.clamp_min(1e-30)  # [m, s, d_sae]
        beta = torch.where(self.f_sq > 0, beta, torch.full_like(beta, float("nan")))
        total = self.x_sq - self.x_sum.pow(2).sum(-1) / n
        return {"n_tokens": self.n, "density": (self.fires / n).tolist(), "mean": (self.f_sum / n).tolist(),
                "hist": self.hist.tolist(), "hist_edges": LATENT_BINS.edges(),
                "top_values": self.top.values.tolist(), "top_tokens": self.top.index.tolist(),
                "beta": beta.tolist(), "fvu": (self.err / total).tolist()}


def refit_decoders(stats: list[CrosscoderStats], ridge: float = 1e-6) -> torch.Tensor:
    """Each model's least-squares decoders for the crosscoder's latents on the evaluation tokens of every dataset:
    ``D_m = (F^T F + ridge * mean diag * I)^-1 F^T (x_m - b_dec_m)``, returned as [d_sae, M, d] (fp32).

    Why: trained decoders keep the mark of their initialisation when training is short (a latent's two decoders
    drawn independently stayed near-orthogonal for a finetune three steps from its base; drawn shared, they stayed
    close for an unrelated twin). Given the latents, the least-squares decoders do not depend on it: they are what
    each model's activations say about each latent, so the relative norms and decoder cosines read from them."""
    gram = sum(s.gram for s in stats)
    cross = sum(s.cross for s in stats)
    lam = ridge * float(gram.diagonal().mean().clamp_min(1e-30))
    a = gram + lam * torch.eye(len(gram), dtype=gram.dtype)
    return torch.stack([torch.linalg.solve(a, cross[m]) for m in range(len(cross))], 1).float()


def join_sae(cc, refit: torch.Tensor, sae_W_dec: torch.Tensor, sae_stats: dict) -> tuple[dict, dict]:
    """A crosscoder's latents and a base SAE's features, joined by decoder direction, as the classes
    (``crosscoder_classes``) read them: ``latents`` (per crosscoder latent [d_cc]: relative norm and decoder cosine
    of the least-squares decoders ``refit`` [d_cc, M, d] and of the trained ones, their norms, the closest base-SAE
    feature to the finetune-side decoder and its cosine) and ``features`` (per SAE feature [n_sae]: the closest
    base-side decoder and its cosine, with the feature's activation similarity and densities from ``sae_stats``,
    a ``FeaturePairStats`` result). ``sae_W_dec`` [n_sae, d]."""
    sae_dec = torch.nn.functional.normalize(sae_W_dec.detach().float().cpu(), dim=-1)  # [n_sae, d]
    cc_dec = torch.nn.functional.normalize(refit, dim=-1)
    best_for_feature = (sae_dec @ cc_dec[:, 0].T).max(1)  # the base SAE against the base-side decoders
    best_for_latent = (sae_dec @ cc_dec[:, 1].T).max(0)  # finetune-side decoders: what "new" is tested on
    latents = {"rel_norm": relative_norms(refit).tolist(), "decoder_cos": decoder_cosines(refit).tolist(),
               "norms": refit.norm(dim=-1).tolist(), "trained_rel_norm": relative_norms(cc.W_dec).tolist(),
               "trained_decoder_cos": decoder_cosines(cc.W_dec).tolist(),
               "sae_match": best_for_latent.indices.tolist(), "sae_match_cos": best_for_latent.values.tolist()}
    features = {"match": best_for_feature.indices.tolist(), "match_cos": best_for_feature.values.tolist(),
                "act_sim": sae_stats["act_sim"], "density_base": sae_stats["density_base"],
                "density_finetune": sae_stats["density_finetune"]}
    return latents, features


class MatchedCorrelation:
    """Two SAEs of one model on the same tokens: per feature ``i`` of ``sae_a``, the Pearson correlation of its
    activation with that of feature ``match[i]`` of ``sae_b``, and its firing rate. Reads the base side only;
    position 0 (BOS) is left out."""

    def __init__(self, sae_a, sae_b, match: list[int], hook: str):
        self.a, self.b, self.hook = sae_a, sae_b, hook
        self.match = torch.tensor(match)
        d = len(match)
        self.n = 0
        self.s = {k: torch.zeros(d, dtype=torch.float64) for k in ("x", "y", "xx", "yy", "xy")}
        self.fires = torch.zeros(d, dtype=torch.long)

    @torch.no_grad()
    def update(self, tokens, base: dict, finetune: dict) -> None:
        act = base[self.hook][:, 1:].flatten(0, 1)
        x = self.a.encode(act.to(self.a.dtype)).double()
        y = self.b.encode(act.to(self.b.dtype))[:, self.match].double()
        self.n += len(x)
        self.fires += (x > FIRING).sum(0)
        for k, v in (("x", x), ("y", y), ("xx", x * x), ("yy", y * y), ("xy", x * y)):
            self.s[k] += v.sum(0)

    def end_batch(self) -> None:
        pass

    def result(self) -> dict[str, Any]:
        n, s = max(self.n, 1), self.s
        vx, vy = s["xx"] / n - (s["x"] / n) ** 2, s["yy"] / n - (s["y"] / n) ** 2
        cov = s["xy"] / n - s["x"] * s["y"] / n**2
        ok = (vx > 1e-20) & (vy > 1e-20)
        r = torch.where(ok, cov / (vx * vy).clamp_min(1e-40).sqrt(), torch.full_like(cov, float("nan")))
        return {"n_tokens": self.n, "corr": r.tolist(), "density_a": (self.fires.double() / n).tolist()}
