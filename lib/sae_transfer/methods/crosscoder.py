"""A BatchTopK crosscoder: one dictionary over two models' activations at one hook.

Each latent ``j`` has one encoder row per model and one decoder direction per model, ``W_dec[j, m]``; the latent's
activation is read from both models' activations of the same token together, and each model's activation is
reconstructed from its own decoders. Whether a latent belongs to the base, the finetune or both is read from its
decoder norms (``relative_norms``).

Why BatchTopK and not L1: an L1 penalty on ``f_j * sum_m ||d_j^m||`` pays to shrink one model's decoder to zero
whenever that model uses the latent a little less ("complete shrinkage"), so latents look model-specific that are
not. BatchTopK keeps the ``k * batch`` largest scores ``f_j * sum_m ||d_j^m||`` of a batch with no penalty on
size; at inference a threshold estimated in training replaces the batch (Bussmann et al. 2024; Minder et al.
2025, "Robustly identifying concepts introduced during chat fine-tuning using crosscoders").

Why written here: ``dictionary_learning`` (the reference crosscoder code) ships its crosscoder only from git, its
PyPI release (0.1.0) has none and pins ``nnsight<0.4``; sae_lens has no crosscoder. The model is 100 lines.

Each model's activations are scaled by one number so their mean squared norm is ``d_in`` (``scale``), as the
crosscoder papers do, so neither model dominates the loss by its norm. Shapes: ``x`` [n, 2, d_in] (model 0 the
base, model 1 the finetune), latents [n, d_sae].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from sae_transfer.passes.stream import shuffled


@dataclass(frozen=True)
class CrosscoderConfig:
    """``k``: latents active per token on average (BatchTopK); ``n_models``: 2 (base, finetune)."""

    d_in: int
    d_sae: int
    k: int
    n_models: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """Adam with a linear warm-up and a linear decay over the last ``decay`` share of steps; fp32 losses.

    ``aux``: weight of the AuxK loss (Gao et al. 2024) that lets latents dead for ``dead_tokens`` tokens
    reconstruct the residual error, so few latents die."""

    n_tokens: int
    batch_tokens: int = 1024
    lr: float = 1e-3
    warmup: float = 0.02
    decay: float = 0.2
    aux: float = 1 / 32
    dead_tokens: int = 20_000
    seed: int = 0


class Crosscoder(nn.Module):
    def __init__(self, cfg: CrosscoderConfig):
        super().__init__()
        self.cfg = cfg
        M, d, s = cfg.n_models, cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.zeros(M, d, s))
        self.b_enc = nn.Parameter(torch.zeros(s))
        self.W_dec = nn.Parameter(torch.zeros(s, M, d))
        self.b_dec = nn.Parameter(torch.zeros(M, d))
        self.register_buffer("scale", torch.ones(M))  # multiplies each model's raw activations
        self.register_buffer("threshold", torch.zeros(()))  # inference: scores below it are zeroed

    def init(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Scales and decoder bias from a first sample of raw activations ``x`` [n, M, d]; each latent's decoders
        start as one random unit direction shared by every model, the encoders as their transpose.

        Why shared: drawn independently, a latent's two decoders started near-orthogonal and 300K tokens of training
        left them so (median cosine 0.12 between the base and a finetune three steps from it); shared, a decoder
        cosine below 1 is what the data moved. Why unit norm: at norm 0.1, 85% of a zoo pair's latents were dead
        after 300K tokens (BatchTopK ranks by activation times decoder norm, and early winners grew their norms and
        kept winning); at unit norm, 6.5%."""
        with torch.no_grad():
            self.scale.copy_((self.cfg.d_in / x.float().pow(2).sum(-1).mean(0)).sqrt())
            self.b_dec.copy_((x.float() * self.scale[:, None]).mean(0))
            w = torch.randn(self.cfg.d_sae, 1, self.cfg.d_in, generator=generator)
            self.W_dec.copy_((w / w.norm(dim=-1, keepdim=True)).expand_as(self.W_dec))
            self.W_enc.copy_(self.W_dec.permute(1, 2, 0))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale[:, None]

    def decoder_norms(self) -> torch.Tensor:
        """[d_sae, M]"""
        return self.W_dec.norm(dim=-1)

    def pre_acts(self, xn: torch.Tensor) -> torch.Tensor:
        """Normalised activations [n, M, d] -> pre-activations before the ReLU [n, d_sae]."""
        return torch.einsum("nmd,mds->ns", xn - self.b_dec, self.W_enc) + self.b_enc

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """What BatchTopK ranks: ReLU activations [n, d_sae] times each latent's summed decoder norms."""
        return h * self.decoder_norms().sum(1)

    def encode(self, xn: torch.Tensor) -> torch.Tensor:
        """Latents [n, d_sae] of normalised activations at inference: scores above the learnt threshold (training
        keeps the batch's top ``k * n`` scores instead, in ``fit``)."""
        h = torch.relu(self.pre_acts(xn))
        return h * (self.scores(h) > self.threshold)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """[n, d_sae] -> [n, M, d] normalised reconstructions."""
        return torch.einsum("ns,smd->nmd", f, self.W_dec) + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw activations [n, M, d] -> (latents [n, d_sae], normalised reconstruction [n, M, d])."""
        f = self.encode(self.normalize(x))
        return f, self.decode(f)

    def state(self) -> dict:
        return {"config": asdict(self.cfg), "weights": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict) -> "Crosscoder":
        cc = cls(CrosscoderConfig(**state["config"]))
        cc.load_state_dict(state["weights"])
        return cc


def relative_norms(decoders: torch.Tensor) -> torch.Tensor:
    """Per latent of ``decoders`` [d_sae, 2, d] (trained or least-squares), ``||d_ft|| / (||d_base|| + ||d_ft||)``
    [d_sae]: 0 base-only, 1 finetune-only, 0.5 shared."""
    n = decoders.detach().norm(dim=-1)
    return n[:, 1] / n.sum(1).clamp_min(1e-12)


def decoder_cosines(decoders: torch.Tensor) -> torch.Tensor:
    """Cosine between each latent's base and finetune decoder directions [d_sae] of ``decoders`` [d_sae, 2, d]."""
    w = decoders.detach()
    return torch.nn.functional.cosine_similarity(w[:, 0], w[:, 1], dim=-1)


def _lr_factor(step: int, steps: int, train: TrainConfig) -> float:
    warm = max(1, int(train.warmup * steps))
    if step < warm:
        return (step + 1) / warm
    start = int((1 - train.decay) * steps)
    return 1.0 if step < start else max(0.0, (steps - step) / max(1, steps - start))


def fit(cfg: CrosscoderConfig, train: TrainConfig, batches: Callable[[], Iterable[torch.Tensor]],
        buffer_tokens: int = 16_384, log_every: int = 20) -> tuple[Crosscoder, dict]:
    """Train a crosscoder on raw paired activations.

    ``batches()`` yields [n, M, d] activations (BOS positions already left out) totalling at least
    ``train.n_tokens``. Returns the crosscoder (eval mode, its inference threshold set to the mean of each step's
    smallest kept score) and a log: ``loss``/``fvu`` every ``log_every`` steps, ``tokens``, ``dead`` share."""
    g = torch.Generator().manual_seed(train.seed)
    cc = Crosscoder(cfg)
    stream = shuffled(batches(), buffer_tokens, train.batch_tokens, g)
    first = next(stream)
    cc.init(first, g)
    opt = torch.optim.Adam(cc.parameters(), lr=train.lr, betas=(0.9, 0.999))
    steps = max(1, train.n_tokens // train.batch_tokens)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, train))
    since_fired = torch.zeros(cfg.d_sae)
    k_aux = max(1, cfg.d_in // 2)
    thresholds, log = [], {"step": [], "loss": [], "fvu": []}
    cc.train()
    bar = tqdm(total=steps, desc="train crosscoder", unit="step", leave=False)

    def chain():
        yield first
        yield from stream

    for step, x in enumerate(chain()):
        if step >= steps:
            break
        xn = cc.normalize(x)
        pre = cc.pre_acts(xn)
        h = torch.relu(pre)
        score = cc.scores(h)
        n_keep = min(cfg.k * len(h), score.numel())
        top = score.flatten().topk(n_keep)
        mask = torch.zeros_like(score).flatten().scatter_(0, top.indices, 1.0).view_as(score)
        f = h * mask
        recon = cc.decode(f)
        err = xn - recon
        total = (xn - xn.mean(0)).pow(2).sum()
        loss = err.pow(2).sum(-1).sum(-1).mean()
        fired = (f > 0).any(0)
        since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + len(x))
        dead = since_fired > train.dead_tokens
        if train.aux and dead.any():
            # AuxK: the dead latents' largest pre-activations reconstruct what the live ones leave over. Taken
            # before the ReLU, so a latent whose pre-activation is negative everywhere still gets a gradient.
            kd = min(k_aux, int(dead.sum()))
            vals, idx = pre.masked_fill(~dead, -torch.inf).topk(kd, dim=1)
            aux_f = torch.zeros_like(h).scatter_(1, idx, vals)
            aux_recon = torch.einsum("ns,smd->nmd", aux_f, cc.W_dec)
            resid = err.detach()
            aux_loss = (resid - aux_recon).pow(2).sum() / resid.pow(2).sum().clamp_min(1e-12)
            loss = loss + train.aux * aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(cc.parameters(), 1.0)
        opt.step()
        sched.step()
        kept = top.values.detach()
        if (kept > 0).any():  # a batch with fewer positive scores than k x batch keeps zeros: not a threshold
            thresholds.append(float(kept[kept > 0].min()))
        if step % log_every == 0 or step == steps - 1:
            log["step"].append(step)
            log["loss"].append(float(loss.detach()))
            log["fvu"].append(float(err.detach().pow(2).sum() / total.clamp_min(1e-12)))
            bar.set_postfix(fvu=f"{log['fvu'][-1]:.3f}")
        bar.update(1)
    bar.close()
    done = min(step + 1, steps)
    if done < steps:
        raise ValueError(f"crosscoder: the activation stream ran out after {done * train.batch_tokens} tokens; "
                         f"train_tokens asks for {train.n_tokens}: give more text or a smaller train_tokens")
    # The threshold averages the second half of training, when scores have settled.
    cc.threshold.fill_(sum(thresholds[len(thresholds) // 2:]) / max(1, len(thresholds) - len(thresholds) // 2))
    cc.eval()
    log.update(tokens=done * train.batch_tokens, steps=done,
               dead=float((since_fired > train.dead_tokens).double().mean()), threshold=float(cc.threshold))
    return cc, log


def fvu(cc: Crosscoder, x: torch.Tensor) -> torch.Tensor:
    """Fraction of variance unexplained per model [M] of raw activations ``x`` [n, M, d] (a test helper; the
    chapter accumulates the same sums over batches)."""
    with torch.no_grad():
        xn = cc.normalize(x)
        err = (xn - cc(x)[1]).pow(2).sum(-1).sum(0)
        return err / (xn - xn.mean(0)).pow(2).sum(-1).sum(0)

