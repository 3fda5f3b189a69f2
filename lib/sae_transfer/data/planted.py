"""A real model's planted finetune: the base model with the residual stream its SAE reads edited, feature by feature,
so that every feature's fate is known by construction (the second level of the known-answers chapter).

The base SAE writes each token's activation as ``x = sum_i f_i(x) w_i + b + error``, ``w_i`` its decoder row in the
model's units (``written_directions``). The planted finetune changes the terms of ``Edits.share`` of the SAE's
living features (a third each, as ``data.synthetic`` plants them) and adds new ones, leaving the error, the bias
and every other term as they are:

- **shifted**: the feature's term ``f_i w_i`` written along a direction turned by ``Edits.angle`` degrees
  (same tokens, same activation, same norm);
- **rarer**: its term kept on ``Edits.rarer_keep`` of the vocabulary (a seeded hash of the token id), removed on
  the rest;
- **lost**: its term removed everywhere;
- **new**: ``Edits.new`` times the living features' count of random unit directions, each added on its own trigger
  tokens (a seeded hash of the token id, as many of the vocabulary as a living feature of the base fires on) with
  the living features' median firing magnitude.

In the notation of ``data.synthetic``, with ``a_base`` the SAE's coefficients along its unit decoder directions
(``f_i ||w_i||``) and ``a_ft`` the planted ones: ``x_ft = x + a_ft @ D_ft - a_base @ D_base``, exact on every
token. Position 0 (BOS) is never edited. The edit sits where the block before the SAE's hook writes the stream
(``models.hooks.writer_hook``), so the finetune runs every layer after it on the edited stream: its loss, and what
any method reads downstream, follow from the edit. Truth here is in the SAE's own features: how well the SAE
matches "true features" is the first level's question, not this one's.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import torch

from sae_transfer.data.synthetic import TRUE_CLASSES, Edits, planted_classes, turned
from sae_transfer.models.hooks import writer_hook

#: The hash's modulus (a prime): ``(token * a + b) mod P / P`` is a seeded uniform number per token id.
_P = 2_147_483_647


class PlantedFinetune:
    """The planted edit of one base SAE's features (``Edits``), drawn from ``calibration`` [n, d_in]: the base's
    activations at the SAE's hook (BOS left out), which say which features live (fire on it), how often (a new
    feature's trigger share) and how strongly (its magnitude).

    ``truth`` [n_total]: each feature's planted class (``TRUE_CLASSES``), the SAE's ``d_sae`` features first, then
    the new ones; ``D_base``, ``D_ft`` [n_total, d_in] unit rows; ``in_base``, ``in_ft`` [n_total] bool."""

    #: The truth is the SAE's own features: matching its latents to it is trivial, and not scored.
    truth_is_sae = True

    def __init__(self, sae, edits: Edits, calibration: torch.Tensor):
        edits.validate()
        self.edits = edits
        W = written_directions(sae, calibration)  # [d_sae, d_in]
        self.d_sae, d = W.shape
        self.d_in = d
        self.norms = W.norm(dim=-1).clamp_min(1e-12)  # [d_sae]
        with torch.no_grad():
            coef = sae.encode(calibration.to(sae.dtype)).float().cpu() * self.norms  # [n, d_sae]
        fires = (coef > 0).float().mean(0)  # [d_sae]
        living = torch.nonzero(fires > 0).flatten()
        if len(living) < 3:
            raise ValueError(f"the SAE has {len(living)} features that fire on the calibration tokens: nothing to "
                             "plant")
        g = torch.Generator().manual_seed(1_000_003 + edits.seed)
        order = living[torch.randperm(len(living), generator=g)]
        n_new = round(edits.new * len(living))
        self.n_total = self.d_sae + n_new
        self.truth = truth = planted_classes(order.tolist(), self.d_sae, n_new, edits.share)
        new_dirs = torch.randn(n_new, d, generator=g)
        self.D_base = torch.cat([W / self.norms[:, None], new_dirs / new_dirs.norm(dim=-1, keepdim=True)])
        self.D_ft = turned(self.D_base, self.indices("shifted"), edits.angle, g)
        firing = coef.where(coef > 0, torch.nan).nanmean(0)[living]  # each living feature's mean firing coefficient
        self.new_magnitude = float(firing.median())
        self.new_share = fires[living][torch.randint(len(living), (n_new,), generator=g)]  # [n_new]
        mask = lambda classes: torch.tensor([c in classes for c in truth])  # noqa: E731
        self.in_base, self.in_ft, self.rarer = ~mask(("new",)), ~mask(("lost",)), mask(("rarer",))
        self._rarer_idx = torch.tensor(self.indices("rarer"), dtype=torch.long)
        self._new_idx = torch.tensor(self.indices("new"), dtype=torch.long)
        self._hash_rarer = torch.randint(1, _P, (2, len(self._rarer_idx)), generator=g)
        self._hash_new = torch.randint(1, _P, (2, n_new), generator=g)
        self._sae = sae

    def indices(self, cls: str) -> list[int]:
        return [i for i, c in enumerate(self.truth) if c == cls]

    @property
    def base_features(self) -> list[int]:
        """The features the base uses (the SAE's), in dictionary order."""
        return list(range(self.d_sae))

    def describe(self) -> dict:
        """Plain data: the edits, the planted counts, and the new features' magnitude and trigger share."""
        return {"edits": asdict(self.edits), "n_total": self.n_total,
                "counts": {c: self.truth.count(c) for c in TRUE_CLASSES},
                "new_magnitude": self.new_magnitude,
                "new_share": float(self.new_share.mean()) if len(self.new_share) else None}

    @torch.no_grad()
    def coefficients(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_base, a_ft)`` [B, T, n_total]: the SAE's coefficients of ``x`` [B, T, d_in] along its unit decoder
        directions, and the planted finetune's, for token ids ``tokens`` [B, T] (position 0 left as it is)."""
        f = self._sae.encode(x.to(self._sae.dtype)).float() * self.norms.to(x.device)
        a_base = torch.cat([f, f.new_zeros(*f.shape[:-1], self.n_total - self.d_sae)], -1)
        a_ft = a_base * self.in_ft.to(x.device)
        t = tokens.long()[..., None]
        if len(self._rarer_idx):
            keep = _uniform(t, self._hash_rarer.to(x.device)) < self.edits.rarer_keep  # [B, T, n_rarer]
            a_ft[..., self._rarer_idx] *= keep
        if len(self._new_idx):
            on = _uniform(t, self._hash_new.to(x.device)) < self.new_share.to(x.device)  # [B, T, n_new]
            a_ft[..., self._new_idx] = on * self.new_magnitude
        a_ft[:, 0] = a_base[:, 0]
        return a_base, a_ft

    def edit(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The planted finetune's activation [B, T, d_in] where the base's is ``x`` on ``tokens`` [B, T]."""
        a_base, a_ft = self.coefficients(x, tokens)
        delta = a_ft @ self.D_ft.to(x.device) - a_base @ self.D_base.to(x.device)
        return x + delta.to(x.dtype)

    def model(self, base, hook: str):
        """A copy of ``base`` (a HookedTransformer) with the edit where the stream at ``hook`` is written: the
        planted finetune as a model that every pass of the book runs unchanged."""
        writer = writer_hook(hook)
        if writer is None:
            raise ValueError(f"hook={hook!r}: a planted finetune edits a block's output; use an SAE on "
                             "blocks.L.hook_resid_pre (L >= 1) or blocks.L.hook_resid_post")
        model = copy.deepcopy(base)
        seen: dict[str, torch.Tensor] = {}

        def remember(module, args, kwargs):
            tokens = args[0] if args else kwargs.get("input")
            if torch.is_tensor(tokens) and not tokens.is_floating_point():
                seen["tokens"] = tokens  # a pass resumed from a stream (float input) never reaches the edit

        model.register_forward_pre_hook(remember, with_kwargs=True)
        model.add_hook(writer, lambda act, hook: self.edit(act, seen["tokens"]), is_permanent=True)
        return model


@torch.no_grad()
def written_directions(sae, x: torch.Tensor) -> torch.Tensor:
    """What each feature adds to the SAE's reconstruction per unit of activation, in the model's units [d_sae, d_in]:
    ``W_dec``, divided by any input scaling the SAE folds out on decoding (sae_lens's ``normalize_activations``).
    Refused, naming the setting, when decoding is not affine in the activations on ``x`` [n, d_in] (a per-token
    rescaling): no feature then writes a fixed term."""
    dtype, device, n = sae.W_dec.dtype, sae.W_dec.device, sae.cfg.d_sae
    zero = sae.decode(torch.zeros(1, n, dtype=dtype, device=device))  # [1, d_in]
    parts = []
    for start in range(0, n, 512):  # 512 unit activations at a time: never a [d_sae, d_sae] identity
        rows = torch.arange(start, min(start + 512, n), device=device)
        unit = torch.zeros(len(rows), n, dtype=dtype, device=device)
        unit[torch.arange(len(rows), device=device), rows] = 1
        parts.append(sae.decode(unit) - zero)
    W = torch.cat(parts)  # [d_sae, d_in]
    f = sae.encode(x[:512].to(dtype).to(W.device))
    if not torch.allclose(sae.decode(f), f @ W + zero, rtol=1e-3, atol=1e-3 * float(zero.norm()) + 1e-4):
        raise ValueError(f"sae: its decoder is not affine (normalize_activations="
                         f"{getattr(sae.cfg, 'normalize_activations', None)!r}); a planted finetune edits fixed "
                         "feature terms")
    return W.float().cpu()


def _uniform(tokens: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """A seeded uniform number in [0, 1) per token id and column: ``tokens`` [..., 1] int64, ``ab`` [2, m] ->
    [..., m]."""
    return ((tokens * ab[0] + ab[1]) % _P).float() / _P
