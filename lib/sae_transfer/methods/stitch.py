"""Model stitching: two affine maps between the residual streams of two models (a small and a large model of one
family, in the sizes chapter), and what they carry across (Chen et al. 2025, ``methods.md`` section D).

``up`` maps a small-model activation to the large model's, ``down`` the other way; both train jointly on the
same tokens with two reconstruction and two cycle terms:

    MSE(up(a), b) + MSE(down(b), a) + MSE(down(up(a)), a) + MSE(up(down(b)), b)

Each model's activations are first centred and scaled by one number so their mean squared norm is their width
(as the crosscoder scales), so neither side dominates the loss by its norm; ``affine`` gives the maps in raw units.

Everything the chapter carries across goes through ``affine``: an SAE (``collapse_sae``: a new SAE on the large
model, no activation ever mapped), a probe (read on ``map(b, "down")``), a steering direction (``map_direction``).
Shapes: ``a`` [n, d_small], ``b`` [n, d_large].
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from sae_transfer.passes.stream import shuffled


@dataclass(frozen=True)
class StitchConfig:
    """Adam, gradient clipping at 1, linear warm-up then cosine decay to zero; fp32 losses. The paper's lr is
    1e-4 for GPT-2 over many more tokens; the zoo's budget of a few hundred thousand tokens needs 1e-3."""

    n_tokens: int
    batch_tokens: int = 1024
    lr: float = 1e-3
    warmup: float = 0.05
    cycle: float = 1.0  # weight of the two cycle terms (the paper's a = 1)
    seed: int = 0


class Stitch(nn.Module):
    """The pair of maps, on centred and scaled activations. ``scale`` [2] and ``mean`` (small, large) are fixed
    from the first batch."""

    def __init__(self, d_small: int, d_large: int):
        super().__init__()
        self.d_small, self.d_large = d_small, d_large
        self.up = nn.Linear(d_small, d_large)
        self.down = nn.Linear(d_large, d_small)
        self.register_buffer("scale", torch.ones(2))
        self.register_buffer("mean", torch.zeros(2, max(d_small, d_large)))  # row 0 small, row 1 large

    def init(self, a: torch.Tensor, b: torch.Tensor, ridge: float = 1e-3) -> None:
        """Each side's mean and scale from a first sample (the maps see centred activations whose mean squared
        norm is their width: a residual stream's large mean would otherwise dominate every gradient step), and
        both maps at the ridge least-squares fit on it (the ridge keeps it defined when the sample has fewer tokens
        than dimensions). The paper starts from random maps; on correlated activations (singular values 0.5 to 2,
        the identity case of ``tests/test_stitch.py``) Adam from random left a model stitched to itself at diagonal
        0.68 after 120K tokens; from least squares the loss only refines it."""
        with torch.no_grad():
            normed = []
            for i, x in enumerate((a.float(), b.float())):
                self.mean[i, :x.shape[1]] = x.mean(0)
                self.scale[i] = (x.shape[1] / (x - x.mean(0)).pow(2).sum(-1).mean()).sqrt()
                normed.append(self._norm(x, i))
            for lin, (x, y) in ((self.up, normed), (self.down, normed[::-1])):
                gram = x.T @ x
                gram += ridge * gram.trace() / len(gram) * torch.eye(len(gram))
                lin.weight.copy_(torch.linalg.solve(gram, x.T @ y).T)
                lin.bias.zero_()

    def _norm(self, x: torch.Tensor, side: int) -> torch.Tensor:
        return (x.float() - self.mean[side, :x.shape[1]]) * self.scale[side]

    def losses(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four terms (mean over tokens of the squared error summed over dimensions, normalised units)."""
        an, bn = self._norm(a, 0), self._norm(b, 1)
        up, down = self.up(an), self.down(bn)
        mse = lambda x, y: (x - y).pow(2).sum(-1).mean()  # noqa: E731
        return {"up": mse(up, bn), "down": mse(down, an),
                "cycle_small": mse(self.down(up), an), "cycle_large": mse(self.up(down), bn)}

    def affine(self, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, c)`` with ``y = x @ P + c`` in raw units: ``up`` P [d_small, d_large], ``down`` [d_large, d_small]."""
        i, o = (0, 1) if direction == "up" else (1, 0)
        lin = self.up if direction == "up" else self.down
        d_in, d_out = lin.in_features, lin.out_features
        P = lin.weight.T * self.scale[i] / self.scale[o]
        c = (lin.bias - (self.mean[i, :d_in] * self.scale[i]) @ lin.weight.T) / self.scale[o] + self.mean[o, :d_out]
        return P.detach(), c.detach()

    def map(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """``x`` [n, d_in] mapped (fp32), on ``x``'s device whatever the stitch's."""
        P, c = self.affine(direction)
        return (x.float().to(P.device) @ P + c).to(x.device)

    def state(self) -> dict:
        return {"d_small": self.d_small, "d_large": self.d_large, "weights": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> "Stitch":
        st = cls(state["d_small"], state["d_large"])
        st.load_state_dict(state["weights"])
        return st.eval()


def _lr_factor(step: int, steps: int, warmup: float) -> float:
    warm = max(1, int(warmup * steps))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def fit_stitch(d_small: int, d_large: int, cfg: StitchConfig, batches: Callable[[], Iterable[torch.Tensor]],
               buffer_tokens: int = 16_384, log_every: int = 20) -> tuple[Stitch, dict]:
    """Train the maps on ``batches()``: [n, d_small + d_large] paired activations (the small model's first),
    totalling at least ``cfg.n_tokens``, drawn through a shuffle buffer (memory: the buffer, never the stream).
    Returns the maps (eval mode) and a log of the loss terms every ``log_every`` steps."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    st = Stitch(d_small, d_large)
    stream = shuffled(batches(), buffer_tokens, cfg.batch_tokens, g)
    first = next(stream, None)
    if first is None:
        raise ValueError("the stitch's activation stream is empty")
    st.init(first[:, :d_small], first[:, d_small:])
    opt = torch.optim.Adam(st.parameters(), lr=cfg.lr)
    steps = max(1, cfg.n_tokens // cfg.batch_tokens)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, cfg.warmup))
    log: dict[str, list] = {"step": [], "up": [], "down": [], "cycle_small": [], "cycle_large": []}
    bar = tqdm(total=steps, desc="train stitch", unit="step", leave=False)
    st.train()
    step = 0
    for batch in itertools.chain([first], stream):
        if step >= steps:
            break
        parts = st.losses(batch[:, :d_small], batch[:, d_small:])
        loss = parts["up"] + parts["down"] + cfg.cycle * (parts["cycle_small"] + parts["cycle_large"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(st.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            log["step"].append(step + 1)
            for k, v in parts.items():
                log[k].append(v.item())
            bar.set_postfix(up=f"{log['up'][-1]:.3f}", down=f"{log['down'][-1]:.3f}")
        step += 1
        bar.update()
    bar.close()
    if step < steps:
        raise ValueError(f"the stitch's activation stream ran out after {step * cfg.batch_tokens} of "
                         f"{cfg.n_tokens} tokens (stitch_tokens); give fewer or a dataset with more text")
    log["tokens"] = steps * cfg.batch_tokens
    log["config"] = asdict(cfg)
    return st.eval(), log


# ------------------------------------------------------------------------------------------ carrying across

def collapse_sae(sae, st: Stitch, hook: str):
    """The small model's SAE as an SAE of the large one (same class, same features), reading the large model's
    activation ``b`` as the small SAE would read ``down(b)`` and writing ``up`` of its reconstruction:

        W_enc' = P_down W_enc      b_enc' = c_down W_enc + b_enc
        W_dec' = W_dec P_up        b_dec' = b_dec P_up + c_up

    for an SAE that reads its input as it is; one that first subtracts its decoder bias (sae_lens's default) gets
    ``b_enc' = (c_down - b_dec) W_enc + b_enc + b_dec' W_enc'``, so that ``(b - b_dec') W_enc' + b_enc'`` is its
    pre-activation of ``down(b)``. Every
    other parameter (a JumpReLU threshold) carries over unchanged: pre-activations are the same numbers."""
    from sae_lens import SAE

    P_up, c_up = st.affine("up")
    P_down, c_down = st.affine("down")
    if sae.cfg.d_in != st.d_small:
        raise ValueError(f"the SAE reads width {sae.cfg.d_in} but the stitch maps from width {st.d_small}")
    state = {k: v.detach().float().clone() for k, v in sae.state_dict().items()}
    W_enc, b_enc, W_dec, b_dec = state["W_enc"], state["b_enc"], state["W_dec"], state["b_dec"]
    new_b_dec = b_dec @ P_up + c_up
    new_W_enc = P_down @ W_enc
    if sae.cfg.apply_b_dec_to_input:
        new_b_enc = (c_down - b_dec) @ W_enc + b_enc + new_b_dec @ new_W_enc
    else:
        new_b_enc = c_down @ W_enc + b_enc
    state.update(W_enc=new_W_enc, b_enc=new_b_enc, W_dec=W_dec @ P_up, b_dec=new_b_dec)
    cfg = sae.cfg.to_dict()
    cfg["d_in"] = st.d_large
    cfg["metadata"] = dict(cfg.get("metadata") or {}, hook_name=hook)
    with warnings.catch_warnings():  # sae_lens's advice on loading models with these kwargs: not a model load
        warnings.filterwarnings("ignore", message=r"\s*This SAE has non-empty model_from_pretrained_kwargs")
        out = SAE.from_dict(cfg)
    out.load_state_dict(state)
    return out.to(next(sae.parameters()).device).eval()


def map_probe(w: torch.Tensor, bias: float, st: Stitch) -> tuple[torch.Tensor, float]:
    """A linear probe ``a . w + bias`` on the small model, read on the large one through ``down``:
    ``b . (P_down w) + (c_down . w + bias)``. ``w`` [d_small] -> [d_large]."""
    P_down, c_down = st.affine("down")
    w = w.float()
    return P_down @ w, float(c_down @ w + bias)


def map_direction(v: torch.Tensor, st: Stitch, norm: float) -> torch.Tensor:
    """A small-model direction ``v`` [d_small] in the large model's space: ``v P_up`` (no bias: a difference of
    activations), scaled to ``norm``."""
    P_up, _ = st.affine("up")
    out = v.float() @ P_up
    return out * (norm / out.norm().clamp_min(1e-12))

