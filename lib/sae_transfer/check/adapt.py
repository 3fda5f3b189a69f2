"""Repairing a base SAE for a finetune: continue training it on the finetune's activations for a token budget
(the feature chapter's recovery code, ``zoo.sae.finetune_sae``), and save it in sae_lens's format."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

from sae_transfer.core.io import atomic_dir
from sae_transfer.core.specs import data_spec, is_zoo
from sae_transfer.data.tokens import TokenSpec, token_windows
from sae_transfer.models.load import parse_spec
from sae_transfer.zoo.sae import finetune_sae
from sae_transfer.zoo.store import Zoo


def training_tokens_spec(dataset: str, n_tokens: int, context_size: int, after: TokenSpec) -> TokenSpec:
    """The tokens an SAE adapts on, disjoint from those it is measured on: a zoo domain's train split, or the
    windows of any other dataset that follow the measured ones (``after``)."""
    if is_zoo(dataset):
        domain = data_spec(dataset).ref
        return TokenSpec(f"zoo:{domain}/train", n_tokens, context_size, 32, after.seed)
    return TokenSpec(dataset, n_tokens, context_size, 32, after.seed, after.skip + after.n_windows())


def sae_directory(sae_spec: str, sae, zoo: str, scratch: Path) -> Path:
    """A directory holding the SAE in a format sae_lens can continue training from."""
    kind, ref = parse_spec(sae_spec, "sae", sae=True)
    if kind == "zoo":
        return Zoo.open(zoo).root / "saes" / ref
    if kind == "local":
        return Path(ref)
    sae.save_model(str(scratch))  # a hub SAE, already loaded: its weights and config as sae_lens writes them
    return scratch


def adapt(sae_spec: str, sae, finetune_model, windows, training_tokens: int, lr: float, seed: int, out: Path,
          zoo: str, device: str, batch_tokens: int = 4096) -> Path:
    """Fine-tune ``sae`` (loaded from ``sae_spec``) on ``finetune_model``'s activations over ``windows``
    [n, ctx] for ``training_tokens`` at ``lr``; the result is written atomically to ``out`` (an sae_lens
    directory, loadable as ``local:OUT``)."""
    with tempfile.TemporaryDirectory() as scratch, atomic_dir(out) as tmp, warnings.catch_warnings():
        # A small training set is read for several epochs on purpose; sae_lens warns of it at every pass.
        for message in ("The training dataset contains fewer samples", "All samples in the training dataset",
                        "To copy construct from a tensor"):
            warnings.filterwarnings("ignore", message=message)
        source = sae_directory(sae_spec, sae, zoo, Path(scratch) / "sae")
        ckpts = finetune_sae(source, finetune_model, windows, training_tokens, lr, seed, Path(scratch) / "train",
                             device, batch_tokens=min(batch_tokens, training_tokens), n_checkpoints=0,
                             bos_id=finetune_model.tokenizer.bos_token_id)
        final = Path(ckpts[-1]["path"])
        for f in final.iterdir():
            shutil.move(str(f), tmp / f.name)
    return out


def adaptation_windows(spec: TokenSpec, tokenizer, zoo: str):
    """The windows [n, ctx] of ``spec``, with a margin sae_lens's activation buffer reads past the budget."""
    margin = TokenSpec(spec.dataset, spec.n_tokens + 64 * spec.context_size, spec.context_size, spec.batch_size,
                       spec.seed, spec.skip)
    try:
        return token_windows(margin, tokenizer, zoo)
    except ValueError:
        return token_windows(spec, tokenizer, zoo)
