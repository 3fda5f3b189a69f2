"""One byte-level BPE tokenizer for every zoo model, and token streams cut into training windows."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

EOT = "<|endoftext|>"


def train_tokenizer(texts_by_domain: dict[str, list[str]], vocab_size: int, out_dir: Path, seed: int):
    """Train a byte-level BPE on a mix of all domains and save it as a transformers tokenizer in ``out_dir``.

    Base and finetunes share this vocabulary, as real finetunes share their base's. Saved with
    ``save_pretrained`` because TransformerLens cannot use ``PreTrainedTokenizerFast(tokenizer_file=...)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    mix = [t for texts in texts_by_domain.values() for t in texts]
    random.Random(seed).shuffle(mix)  # BPE merges are order-sensitive at ties; fix the order
    tok.train_from_iterator(mix, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT,
                                   unk_token=EOT, model_max_length=1 << 20)
    fast.save_pretrained(out_dir)
    return load_tokenizer(out_dir)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def check_vocab(tokenizer) -> None:
    """Token streams are stored as uint16: a tokenizer with more ids cannot be stored (one line, before any text
    is tokenized)."""
    if len(tokenizer) > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"tokenizer of {len(tokenizer)} tokens: zoo token streams hold at most 65,536 token ids")


def separator_id(tokenizer) -> int:
    """The token between documents: ``<|endoftext|>`` where the vocabulary has it, else the tokenizer's EOS."""
    vocab = tokenizer.get_vocab()
    return vocab[EOT] if EOT in vocab or tokenizer.eos_token_id is None else tokenizer.eos_token_id


def bos_id(tokenizer) -> int | None:
    """The token every window starts with: the tokenizer's BOS; None for a model that has none."""
    return tokenizer.bos_token_id


def encode_documents(tokenizer, texts: list[str]) -> np.ndarray:
    """Concatenate documents into one uint16 stream, each followed by the separator token. Shape [n_tokens]."""
    eot = separator_id(tokenizer)
    if not texts:
        return np.zeros(0, dtype=np.uint16)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    flat = np.fromiter((t for doc in ids for t in (*doc, eot)), dtype=np.uint16,
                       count=sum(len(d) + 1 for d in ids))
    return flat


class TokenStream:
    """Windows of a token stream, each starting with BOS, as TransformerLens models expect.

    ``stream``: uint16 array [n_tokens]. Every window is [bos, t_i, ..., t_{i+ctx-2}]; with ``bos=None`` (a model
    without one) it is [t_i, ..., t_{i+ctx-1}].
    """

    def __init__(self, stream: np.ndarray, context_size: int, bos: int | None):
        if len(stream) < context_size:
            raise ValueError(f"stream of {len(stream)} tokens is shorter than context_size={context_size}")
        self.stream = stream
        self.ctx = context_size
        self.bos = bos
        self.body = context_size - (bos is not None)

    def _windows(self, starts: np.ndarray) -> torch.Tensor:
        idx = starts[:, None] + np.arange(self.body)[None, :]
        body = torch.from_numpy(self.stream[idx].astype(np.int64))
        if self.bos is None:
            return body
        return torch.cat([torch.full((len(starts), 1), self.bos, dtype=torch.long), body], dim=1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> torch.Tensor:
        """Random windows [batch_size, ctx] (training)."""
        return self._windows(rng.integers(0, len(self.stream) - self.ctx + 1, size=batch_size))

    def n_windows(self) -> int:
        return len(self.stream) // self.body

    def sequential(self, batch_size: int, n_windows: int | None = None):
        """Consecutive non-overlapping windows in batches of [<=batch_size, ctx] (evaluation, deterministic)."""
        total = self.n_windows() if n_windows is None else min(n_windows, self.n_windows())
        starts = np.arange(total) * self.body
        for i in range(0, total, batch_size):
            yield self._windows(starts[i:i + batch_size])
