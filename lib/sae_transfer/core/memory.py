"""How much memory a pass may use, and how a batch is cut to fit it.

A measurement's *batch* (``TokenSpec.batch_size`` windows) is a statistical unit: intervals resample whole
batches, and the per-token explained variance centres on the batch's mean. How many windows go through the model
at once (the *micro-batch*) and how many positions' vocabulary-sized logits exist at once (the *logit chunk*)
are a matter of memory only; they are derived here from a budget and never change a result beyond float
summation order, so they are not part of any cache key.

The budget is ``memory``: ``auto`` (half of the memory available when the pass starts: MemAvailable on CPU,
free memory on a GPU), a size (``8GB``, ``512MiB``) or a share of what is available (``30%``). It bounds what the
pass allocates on top of the weights already loaded; the estimate below is deliberately generous and
``benchmarks/memory.py`` holds it against measured peaks.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
VALID = "'auto', a size such as '8GB' or '512MiB', or a share of free memory such as '30%'"
#: The share of available memory ``auto`` gives a pass.
AUTO_SHARE = 0.5


def check_memory(value: str) -> None:
    """One-line error naming ``memory`` unless it parses; nothing measured."""
    _parse(value)


def _parse(value) -> tuple[str, float]:
    text = str(value).strip().lower()
    if text == "auto":
        return "share", AUTO_SHARE
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text):
        share = float(m.group(1)) / 100
        if 0 < share <= 1:
            return "share", share
    elif m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", text):
        size = float(m.group(1)) * _UNITS[m.group(2) or ""]
        if size >= 1:
            return "bytes", size
    raise ValueError(f"memory={value!r}: use {VALID}")


def available_bytes(device: str) -> int:
    """Memory a pass could take now: free memory of the GPU, or the kernel's MemAvailable on CPU."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def budget_bytes(memory: str, device: str) -> int:
    """The bytes ``memory`` allows on ``device`` now."""
    kind, value = _parse(memory)
    return int(value) if kind == "bytes" else int(value * available_bytes(device))


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**20:.2f} MiB"


@dataclass(frozen=True)
class PassShape:
    """What sizes a pass's memory: the model's widths (``cfg`` of a HookedTransformer), the SAE's width and the
    window length. Byte counts are generous upper estimates of what TransformerLens allocates."""

    d_model: int
    d_mlp: int
    n_heads: int
    d_vocab: int
    d_sae: int
    context: int
    act_bytes: int  # bytes per element of the model's activations (4 in fp32, 2 in bf16/fp16)

    @classmethod
    def of(cls, cfg, d_sae: int, context: int) -> "PassShape":
        return cls(cfg.d_model, cfg.d_mlp or 4 * cfg.d_model, cfg.n_heads, cfg.d_vocab, d_sae, context,
                   torch.finfo(cfg.dtype).bits // 8)

    def window_bytes(self) -> int:
        """Peak bytes one window adds: the activations kept through the batch (the hook's activation, its
        reconstruction, three final residuals) plus the larger of one block's transient activations and the
        SAE's encode (pre-activations, activations, firing masks and the accumulators' temporaries, fp32)."""
        t, e = self.context, self.act_bytes
        kept = t * self.d_model * (2 * e + 3 * 4)
        sae = 6 * t * self.d_sae * 4
        return kept + max(self._block_bytes(), sae)

    def _block_bytes(self) -> int:
        """One window's transient activations inside a block: TransformerLens's residual copies, norms, q/k/v,
        MLP hidden states, and fp32 attention scores and pattern [heads, T, T]."""
        t = self.context
        return t * (14 * self.d_model + 4 * self.d_mlp) * self.act_bytes + 4 * self.n_heads * t * t * 4

    def stream_window_bytes(self, n_hooks: int) -> int:
        """Peak bytes one window adds to the residual pass (``stream.run_pass``): both models' activations at
        ``n_hooks`` hooks, plus the larger of one block's transients and the pair accumulators' SAE encodes."""
        kept = 2 * n_hooks * self.context * self.d_model * self.act_bytes
        return kept + max(self._block_bytes(), 2 * self.window_bytes() if self.d_sae else 0)

    def logit_row_bytes(self) -> int:
        """Bytes per position of the chunked logit statistics: the model-dtype logits and four fp32
        vocabulary-sized tensors (clean log-probabilities and probabilities, an intervention's logits and
        log-probabilities)."""
        return self.d_vocab * (self.act_bytes + 5 * 4)


@dataclass(frozen=True)
class Plan:
    """How a batch of ``batch_size`` windows goes through a pass within ``budget`` bytes."""

    micro_batch: int  # windows per forward pass
    logit_rows: int  # positions whose vocabulary-sized logits exist at once
    budget: int
    estimate: int  # bytes the plan is estimated to use at its peak

    def describe(self) -> str:
        return (f"{self.micro_batch} window(s) a forward pass, logits {self.logit_rows} positions at a time, "
                f"estimated peak {gib(self.estimate)} of a {gib(self.budget)} budget")


def micro_batch(window: int, batch_size: int, budget: int, context: int, memory: str = "") -> int:
    """The most windows (at most ``batch_size``) of ``window`` bytes each that fit ``budget``; a one-line
    ``ValueError`` naming ``memory`` when not even one does."""
    if window > budget:
        raise ValueError(f"memory={memory or gib(budget)!r} leaves {gib(budget)} for the pass, but one window of "
                         f"{context} tokens needs about {gib(window)} with this model; give memory of at least "
                         f"{gib(window)} or a shorter context_size")
    return int(min(batch_size, budget // window))


#: On CPU, the largest activation tensor worth allocating at once. Fresh multi-megabyte tensors cost page faults
#: that can exceed the arithmetic (an fp32 log-softmax over [4096, 4096] took 20 ms fresh, 5 ms in 256-row
#: chunks; a toy model's forward ran 1.36x faster at 2,048 tokens than at 4,096), so the CPU plan stays near it.
CPU_TENSOR_BYTES = 8 * 2**20


def plan(shape: PassShape, batch_size: int, budget: int, memory: str = "", device: str = "cpu") -> Plan:
    """The largest micro-batch (at most ``batch_size`` windows) and logit chunk that fit ``budget`` bytes.

    Logits get at most a quarter of the budget (and never more rows than a micro-batch has positions). On CPU
    both are further held near ``CPU_TENSOR_BYTES`` per tensor, which is faster there; a GPU gets the largest that
    fit. Raises a one-line ``ValueError`` naming ``memory`` when not even one window fits.
    """
    row = shape.logit_row_bytes()
    window = shape.window_bytes()
    whole = batch_size * shape.context * shape.d_model * shape.act_bytes  # the hook's activation, whole batch
    rows = max(1, min((budget - whole) // 4 // row, batch_size * shape.context))
    left = budget - whole - rows * row
    micro = min(batch_size, left // window) if left > 0 else 0
    if micro < 1:
        need = whole + window + min(row * shape.context, max(row, budget // 4))
        raise ValueError(f"memory={memory or gib(budget)!r} leaves {gib(budget)} for the pass, but batches of "
                         f"{batch_size} windows of {shape.context} tokens, one window at a time, need about "
                         f"{gib(need)} with this model and SAE; give memory of at least {gib(need)}, a smaller "
                         "batch_size or a shorter context_size")
    if not str(device).startswith("cuda"):
        widest = max(shape.d_mlp, shape.d_model) * shape.act_bytes
        micro = max(1, min(micro, CPU_TENSOR_BYTES // (shape.context * widest)))
        # ... but never under 128 rows: a thinner unembedding matmul loses more than the page faults cost
        # (SmolLM2's 49K vocabulary: the three logit passes took 1.35 s for 1,024 tokens at 42 rows, 0.94 s at 128).
        rows = max(1, min(rows, max(128, CPU_TENSOR_BYTES // (4 * shape.d_vocab))))
    rows = min(rows, micro * shape.context)
    return Plan(int(micro), int(rows), int(budget), int(whole + micro * window + rows * row))


def release() -> None:
    """Collect garbage and hand the freed heap back to the operating system.

    Between the steps of a long process (the zoo build): glibc keeps what a step freed in its arenas, so without
    this a full finetune of SmolLM2 (5.3 GB at its peak, AdamW's state and the activations kept for backward)
    leaves about 4 GB resident, and the SAE trained next peaks on top of it (8.6 GB measured). ``malloc_trim``
    exists only in glibc; elsewhere the collection alone runs."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
