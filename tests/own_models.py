"""A user's own model pair, made offline: a tiny checkpoint of one architecture from its config with random
weights, a finetune of a few optimizer steps on the user's text, an SAE saved by sae_lens, and that text as JSON
lines; no checkpoint series. The own-models suite (``tests/test_own_models.py``) and the loading benchmark
(``benchmarks/load_memory.py --synthetic``) build their pairs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: What each architecture stands for in the suite. Gemma 3 keeps its real vocabulary size (262,144 rows: the
#: unembedding is most of such a model, as it is of gemma-3-270m); the hidden size stays small so it is fast.
ARCHITECTURES = {
    "llama": "rotary positions, grouped-query attention, RMS norm, a gated MLP",
    "gemma3": "Gemma 3: a vocabulary of 262,144 tokens, tied embeddings, sliding-window layers, QK norm",
    "gpt2": "learned positions, LayerNorm, a plain MLP",
}
WORDS = ("def add ( a , b ) : return a + b # the model reads a sentence about code and math and then it writes "
         "another one where x = y * 2 and the sum of the list is printed").split()


def config(arch: str, n_layers: int = 3, d_model: int = 64, vocab: int | None = None):
    """A Hugging Face config of ``arch`` with ``n_layers`` blocks of width ``d_model``."""
    import transformers as t

    # No padding index: a zero embedding row for the token that doubles as BOS would keep its residual at zero.
    heads = dict(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.1,
                 num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model, pad_token_id=None)
    return {
        "llama": lambda: t.LlamaConfig(vocab_size=vocab or 512, **heads),
        "gemma3": lambda: t.Gemma3TextConfig(vocab_size=vocab or 262_144, head_dim=16, query_pre_attn_scalar=16,
                                             sliding_window=16, **heads),
        "gpt2": lambda: t.GPT2Config(vocab_size=vocab or 512, n_embd=d_model, n_layer=n_layers, n_head=4,
                                     n_positions=128, initializer_range=0.1),
    }[arch]()


def text_lines(n_lines: int, seed: int = 0) -> list[str]:
    """``n_lines`` of 48 words each, drawn (seeded) from a small code-and-prose vocabulary."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(WORDS), (n_lines, 48), generator=g)
    return [" ".join(WORDS[i] for i in row) for row in idx.tolist()]


def write_jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))


def finetune(model, tokenizer, lines: list[str], steps: int, seed: int = 1, lr: float = 1e-3) -> None:
    """``steps`` AdamW steps of next-token loss on ``lines`` (batches of 4, 32 tokens): a finetune that moved."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        batch = lines[4 * step: 4 * step + 4]
        ids = tokenizer(batch, return_tensors="pt", truncation=True, max_length=32, padding="max_length").input_ids
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def save_sae(directory: Path, hook: str, d_in: int, d_sae: int, seed: int = 3) -> None:
    """A standard SAE at ``hook`` saved by sae_lens; negative encoder biases so features fire on some tokens."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook,
                                                                                     prepend_bos=True)))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)
    sae.save_model(str(directory))


def make_pair(root: Path, arch: str, hook: str, n_lines: int = 600, steps: int = 8, **cfg) -> dict:
    """``root/{base,ft,sae,text.jsonl}`` for ``arch``; returns the model config's sizes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sae_transfer.zoo.tokens import train_tokenizer

    lines = text_lines(n_lines)
    torch.manual_seed(0)
    c = config(arch, **cfg)
    model = AutoModelForCausalLM.from_config(c)
    model.save_pretrained(root / "base")
    train_tokenizer({"text": lines[:200]}, 300, root / "base", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(root / "base")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    finetune(model, tokenizer, lines[-4 * steps:], steps)
    model.save_pretrained(root / "ft")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (root / "ft" / f).write_bytes((root / "base" / f).read_bytes())
    d_model = getattr(c, "hidden_size", None) or c.n_embd
    save_sae(root / "sae", hook, d_model, 2 * d_model)
    write_jsonl(root / "text.jsonl", lines)
    return {"d_model": d_model, "vocab": c.vocab_size, "n_layers": cfg.get("n_layers", 3)}
