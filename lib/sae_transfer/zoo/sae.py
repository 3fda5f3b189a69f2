"""Training and evaluating the zoo's SAEs with sae_lens (offline: ``override_model``, ``override_dataset``)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from sae_transfer.zoo.tokens import TokenStream


#: What sae_lens says that is untrue of, or does not apply to, the zoo's use of it, so a build's log holds none of it:
#: its dataset-size check counts rows against tokens (800,000 tokens in 6,314 windows of 128 is one epoch, not
#: many); the overrides are how the zoo passes its own model and token windows; the tensor-copy hint is about
#: sae_lens's own code; and the zoo loads its models itself, never through sae_lens's model kwargs.
NOT_FOR_US = ("The training dataset contains fewer samples", "To copy construct from a tensor",
              "\nThis SAE has non-empty model_from_pretrained_kwargs", "You just passed in a")


@contextlib.contextmanager
def quiet_sae_lens() -> Iterator[None]:
    """sae_lens without ``NOT_FOR_US``'s warnings and log lines; every other warning stays."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOT_FOR_US)

    logger = logging.getLogger("sae_lens")
    with warnings.catch_warnings():
        for text in NOT_FOR_US:
            warnings.filterwarnings("ignore", message=re.escape(text))
        logger.addFilter(keep)
        try:
            yield
        finally:
            logger.removeFilter(keep)


def token_dataset(stream: TokenStream, n_windows: int):
    """A ``datasets.Dataset`` with a ``tokens`` column of BOS-led windows [n_windows, ctx], as sae_lens reads."""
    from datasets import Dataset

    rows = torch.cat(list(stream.sequential(1024, n_windows)))
    if len(rows) < n_windows:
        raise ValueError(f"asked for {n_windows} windows but the stream holds {len(rows)}")
    return Dataset.from_dict({"tokens": rows.tolist()})


ARCHITECTURES = ("standard", "batchtopk")


def _sae_config(architecture: str, d_in: int, d_sae: int, sparsity: float, n_steps: int, device: str,
                normalize: str = "none"):
    """``standard``: ReLU with an L1 penalty of weight ``sparsity``. ``batchtopk``: ``sparsity`` features active
    per token on average over a batch, saved by sae_lens as a JumpReLU SAE, so L0 is free to change on a finetune."""
    from sae_lens import BatchTopKTrainingSAEConfig, StandardTrainingSAEConfig

    if architecture == "standard":
        return StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=sparsity,
                                         l1_warm_up_steps=max(1, n_steps // 10), dtype="float32", device=device,
                                         normalize_activations=normalize)
    if architecture == "batchtopk":
        return BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=sparsity, dtype="float32", device=device,
                                          normalize_activations=normalize)
    raise ValueError(f"architecture={architecture!r}; valid architectures are {list(ARCHITECTURES)}")


def _runner_config(model, hook_name: str, d_sae: int, context_size: int, training_tokens: int, sparsity: float,
                   lr: float, seed: int, device: str, batch_tokens: int, out_dir: Path | None,
                   architecture: str = "standard", exclude_special: bool | list[int] = False,
                   normalize: str = "none", precision: str = "fp32"):
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig

    n_steps = training_tokens // batch_tokens
    return LanguageModelSAERunnerConfig(
        sae=_sae_config(architecture, model.cfg.d_model, d_sae, sparsity, n_steps, device, normalize),
        model_name="zoo", hook_name=hook_name, dataset_path="", is_dataset_tokenized=True, streaming=False,
        context_size=context_size, prepend_bos=False, training_tokens=training_tokens,
        train_batch_size_tokens=batch_tokens, store_batch_size_prompts=32,
        # sae_lens sizes its mixing buffer as n_batches_in_buffer * context_size tokens; keep two batches.
        n_batches_in_buffer=2 * -(-batch_tokens // context_size),
        lr=lr, lr_warm_up_steps=max(1, n_steps // 20), lr_decay_steps=max(1, n_steps // 5),
        # The input scale (normalize="expected_average_only_in") from 32 batches of 32 windows, not sae_lens's
        # default 1,000: a mean norm settles long before, and 1,000 batches of a real model are minutes of CPU.
        n_batches_for_norm_estimate=32,
        dead_feature_window=max(1, n_steps // 4), feature_sampling_window=max(1, n_steps // 4),
        seed=seed, device=device, dtype="float32", n_checkpoints=0, save_final_checkpoint=False,
        output_path=str(out_dir) if out_dir is not None else None, verbose=False,
        logger=LoggingConfig(log_to_wandb=False), exclude_special_tokens=exclude_special,
        # bf16-mixed (``zoo.recipe.PRECISIONS``): sae_lens's own autocast of the model's forward that gives the
        # activations and of the SAE's passes; its weights, Adam and the loss stay fp32.
        autocast_lm=precision == "bf16-mixed", autocast=precision == "bf16-mixed",
    )


def train_sae(model, stream: TokenStream, hook_name: str, d_sae: int, training_tokens: int, sparsity: float,
              lr: float, seed: int, device: str = "cpu", batch_tokens: int = 4096, out_dir: Path | None = None,
              architecture: str = "standard", exclude_special: bool | list[int] = False, normalize: str = "none",
              precision: str = "fp32"):
    """Train an SAE on ``model``'s activations at ``hook_name``; save it to ``out_dir``.

    ``sparsity`` is the L1 coefficient (``standard``) or the mean number of active features k (``batchtopk``).
    ``exclude_special``: token ids whose positions the SAE never trains on (sae_lens's ``exclude_special_tokens``).
    ``precision``: the zoo's (``zoo.recipe.PRECISIONS``).

    Returns the trained sae_lens SAE. Windows are taken in order from ``stream`` (the train split).
    """
    from sae_lens import LanguageModelSAETrainingRunner

    n_windows = -(-training_tokens // stream.ctx) + 64
    cfg = _runner_config(model, hook_name, d_sae, stream.ctx, training_tokens, sparsity, lr, seed, device,
                         batch_tokens, out_dir, architecture, exclude_special, normalize, precision)
    # The runner never seeds torch with cfg.seed: the SAE's initialisation and the activation buffer's shuffling
    # draw from the global generator, so without this the SAE would depend on what the process did before.
    with torch.random.fork_rng(), quiet_sae_lens():
        torch.manual_seed(seed)
        runner = LanguageModelSAETrainingRunner(
            cfg, override_model=model, override_dataset=token_dataset(stream, min(n_windows, stream.n_windows())))
        # sae_lens logs every evaluation at INFO; the zoo's own tqdm bar is the progress that matters.
        logging.getLogger("sae_lens").setLevel(logging.WARNING)
        return runner.run()


def evaluate_sae(sae, model, stream: TokenStream, n_windows: int, batch_prompts: int = 16,
                 exclude_special: bool | list[int] = False) -> dict[str, float]:
    """sae_lens's own evals (L0, explained variance, CE loss score, KL score, dead fraction) on ``stream``.

    A reference the project's streaming metrics are cross-checked against; not the book's main metric code.
    ``exclude_special``: token ids left out of every metric and never spliced (sae_lens's convention).
    """
    from sae_lens import ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    ds = token_dataset(stream, n_windows)
    batch_prompts = min(batch_prompts, n_windows)
    # A buffer of two batches: the evals read n_windows windows, and a larger buffer would run the model over the
    # dataset again and again to fill it (32 batches of 16 windows: minutes of a real model's time per eval).
    with quiet_sae_lens():
        store = ActivationsStore.from_sae(model=model, sae=sae, dataset=ds, context_size=stream.ctx,
                                          streaming=False, store_batch_size_prompts=batch_prompts,
                                          n_batches_in_buffer=2, train_batch_size_tokens=batch_prompts * stream.ctx,
                                          device=str(next(model.parameters()).device))
    n_batches = max(1, n_windows // batch_prompts)
    cfg = EvalConfig(batch_size_prompts=batch_prompts, n_eval_reconstruction_batches=n_batches,
                     compute_kl=True, compute_ce_loss=True, n_eval_sparsity_variance_batches=n_batches,
                     compute_l2_norms=True, compute_sparsity_metrics=True, compute_variance_metrics=True,
                     compute_featurewise_density_statistics=True)
    with contextlib.redirect_stdout(io.StringIO()), quiet_sae_lens():
        metrics, feature_metrics = run_evals(sae, store, model, ActivationScaler(), cfg,
                                             exclude_special_tokens=exclude_special)
    density = torch.tensor(feature_metrics["feature_density"])
    return {
        "l0": float(metrics["sparsity"]["l0"]),
        "explained_variance": float(metrics["reconstruction_quality"]["explained_variance"]),
        "mse": float(metrics["reconstruction_quality"]["mse"]),
        "ce_loss_score": float(metrics["model_performance_preservation"]["ce_loss_score"]),
        "ce_clean": float(metrics["model_performance_preservation"]["ce_loss_without_sae"]),
        "ce_with_sae": float(metrics["model_performance_preservation"]["ce_loss_with_sae"]),
        "kl_div_score": float(metrics["model_behavior_preservation"]["kl_div_score"]),
        "dead_fraction": float((density == 0).float().mean()),
        "d_sae": int(sae.cfg.d_sae),
    }


def dead_fraction(sae, model, stream: TokenStream, n_windows: int, batch_prompts: int = 16,
                  exclude_special: bool | list[int] = False) -> float:
    """Share of features that never fire on ``n_windows`` windows of ``stream`` (sae_lens's sparsity evals
    only: one forward pass per batch, no CE or KL)."""
    from sae_lens import ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    batch_prompts = min(batch_prompts, n_windows)
    with quiet_sae_lens():
        store = ActivationsStore.from_sae(model=model, sae=sae, dataset=token_dataset(stream, n_windows),
                                          context_size=stream.ctx, streaming=False,
                                          store_batch_size_prompts=batch_prompts, n_batches_in_buffer=2,
                                          train_batch_size_tokens=batch_prompts * stream.ctx,
                                          device=str(next(model.parameters()).device))
    cfg = EvalConfig(batch_size_prompts=batch_prompts,
                     n_eval_sparsity_variance_batches=max(1, n_windows // batch_prompts),
                     compute_sparsity_metrics=True, compute_featurewise_density_statistics=True)
    with contextlib.redirect_stdout(io.StringIO()), quiet_sae_lens():
        _, feature_metrics = run_evals(sae, store, model, ActivationScaler(), cfg,
                                       exclude_special_tokens=exclude_special)
    return float((torch.tensor(feature_metrics["feature_density"]) == 0).float().mean())


def run_evals_on_windows(sae, model, windows: torch.Tensor, batch_prompts: int) -> dict[str, float]:
    """``sae_lens.evals.run_evals`` on exactly ``windows`` [n, ctx] (BOS-led token ids), every token counted.

    ``run_evals`` draws its reconstruction batches and then its sparsity batches from one activation store; a
    fresh store for each makes both see the same windows, in order, as the project's streaming metrics do.
    The reference that ``sae_metrics`` is cross-checked and benchmarked against.
    """
    from datasets import Dataset
    from sae_lens import ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    n, ctx = windows.shape
    if n % batch_prompts:
        raise ValueError(f"{n} windows do not split into batches of {batch_prompts}")
    ds = Dataset.from_dict({"tokens": windows.tolist()})
    device = str(next(model.parameters()).device)

    def evals(**what) -> tuple[dict, dict]:
        cfg = EvalConfig(batch_size_prompts=batch_prompts, n_eval_reconstruction_batches=n // batch_prompts,
                         n_eval_sparsity_variance_batches=n // batch_prompts, **what)
        with contextlib.redirect_stdout(io.StringIO()), quiet_sae_lens():
            store = ActivationsStore.from_sae(model=model, sae=sae, dataset=ds, context_size=ctx, streaming=False,
                                              store_batch_size_prompts=batch_prompts, n_batches_in_buffer=2,
                                              train_batch_size_tokens=batch_prompts * ctx, device=device)
            return run_evals(sae, store, model, ActivationScaler(), cfg, exclude_special_tokens=False)

    loss, _ = evals(compute_kl=True, compute_ce_loss=True)
    sparsity, features = evals(compute_l2_norms=True, compute_sparsity_metrics=True, compute_variance_metrics=True,
                               compute_featurewise_density_statistics=True)
    perf, behav = loss["model_performance_preservation"], loss["model_behavior_preservation"]
    recon = sparsity["reconstruction_quality"]
    density = torch.tensor(features["feature_density"])
    return {"l0": float(sparsity["sparsity"]["l0"]), "ev_token": float(recon["explained_variance_legacy"]),
            "ev_global": float(recon["explained_variance"]), "mse": float(recon["mse"]), "cos": float(recon["cossim"]),
            "norm_ratio": float(sparsity["shrinkage"]["l2_ratio"]) if "shrinkage" in sparsity else float("nan"),
            "ce_clean": float(perf["ce_loss_without_sae"]), "ce_spliced": float(perf["ce_loss_with_sae"]),
            "ce_zero": float(perf["ce_loss_with_ablation"]), "ce_recovered": float(perf["ce_loss_score"]),
            "kl": float(behav["kl_div_with_sae"]), "kl_zero": float(behav["kl_div_with_ablation"]),
            "dead_frac": float((density == 0).float().mean())}


def training_recipe(sae_dir: Path, original=None) -> tuple[str, float]:
    """``(architecture, sparsity)`` an SAE saved by sae_lens was trained with: a BatchTopK SAE is saved as
    JumpReLU and continues as BatchTopK; ``sparsity`` is its L1 coefficient or k."""
    saved = json.loads((Path(sae_dir) / "cfg.json").read_text()).get("metadata", {})
    arch = saved.get("training_architecture") or (original.cfg.architecture() if original is not None else None)
    details = saved.get("training_architecture_details") or {}
    sparsity = details.get("l1_coefficient", details.get("k"))
    if arch is None or sparsity is None:
        raise ValueError(f"SAE {sae_dir}: its cfg.json does not say how it was trained (architecture, L1 or k)")
    return arch, sparsity


def train_checkpointed(model, windows: torch.Tensor, hook: str, d_sae: int, architecture: str, sparsity: float,
                       training_tokens: int, lr: float, seed: int, out_dir: Path, device: str = "cpu",
                       batch_tokens: int = 4096, n_checkpoints: int = 3, init: dict | None = None,
                       l1_warm_up: bool = True, exclude_special: bool | list[int] = False,
                       precision: str = "fp32") -> list[dict]:
    """Train an SAE on ``model``'s activations at ``hook`` over ``windows`` [n, ctx] (BOS-led token ids, read in
    order), from sae_lens's initialisation or from ``init`` (a state dict: the parameters both forms have are
    copied). Saves ``n_checkpoints`` evenly spaced intermediate SAEs and the final one under
    ``out_dir/<tokens>/``; returns ``[{"tokens": int, "path": str}]`` in token order. ``exclude_special``,
    ``precision``: as ``train_sae``."""
    import shutil

    from datasets import Dataset
    from sae_lens import LanguageModelSAETrainingRunner, TrainingSAE

    cfg = _runner_config(model, hook, d_sae, windows.shape[1], training_tokens, sparsity, lr, seed, device,
                         batch_tokens, out_dir, architecture, exclude_special, precision=precision)
    if hasattr(cfg.sae, "l1_warm_up_steps") and not l1_warm_up:
        cfg.sae.l1_warm_up_steps = 0
    cfg.n_checkpoints = n_checkpoints
    cfg.checkpoint_path = str(out_dir / "_checkpoints")
    cfg.save_final_checkpoint = True
    torch.manual_seed(seed)
    fresh = TrainingSAE.from_dict(cfg.get_training_sae_cfg_dict())
    if init is not None:
        shared = {k: v for k, v in init.items() if k in fresh.state_dict()}
        missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(shared)
        if missing:
            raise ValueError(f"cannot start a {architecture} SAE from a state without {sorted(missing)}")
        fresh.load_state_dict(shared, strict=False)
        if "threshold" in init and hasattr(fresh, "topk_threshold"):
            # A BatchTopK SAE is saved as JumpReLU with its running top-k threshold as every feature's threshold.
            # Started from 0 instead, the running average (rate 0.01 a step) is a third of its value after 40
            # steps, and the saved SAE fires ~25x too often (L0 1,551 instead of 64).
            fresh.topk_threshold = init["threshold"].double().mean().to(fresh.topk_threshold.device)
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_sae=fresh,
                                            override_dataset=Dataset.from_dict({"tokens": windows.tolist()}))
    logging.getLogger("sae_lens").setLevel(logging.WARNING)
    runner.run()
    out = []
    saved = [p.parent for p in Path(cfg.checkpoint_path).rglob("cfg.json")]  # <n> and final_<n> directories
    for ckpt in sorted(saved, key=lambda p: int(p.name.split("_")[-1])):
        tokens = int(ckpt.name.split("_")[-1])
        dest = out_dir / str(tokens)
        shutil.move(str(ckpt), dest)
        for state in ("trainer_state.pt", "activations_store_state.safetensors"):  # only needed to resume training
            (dest / state).unlink(missing_ok=True)
        out.append({"tokens": tokens, "path": str(dest)})
    shutil.rmtree(cfg.checkpoint_path, ignore_errors=True)
    return out


def finetune_sae(sae_dir: Path, model, windows: torch.Tensor, training_tokens: int, lr: float, seed: int,
                 out_dir: Path, device: str = "cpu", batch_tokens: int = 4096, n_checkpoints: int = 3,
                 bos_id: int | None = None, precision: str = "fp32") -> list[dict]:
    """Continue training the SAE saved at ``sae_dir`` on ``model``'s activations (Kissane et al.'s recovery) over
    ``windows`` [n, ctx] of BOS-led token ids, read in order.

    Same architecture and sparsity penalty as the original, no L1 warm-up (the penalty is already at full
    strength), a short learning-rate warm-up. The dictionary (encoder, decoder, biases) carries over, and a BatchTopK
    SAE (saved as JumpReLU) starts its running top-k threshold from the saved threshold. Checkpoints as
    ``train_checkpointed``. ``bos_id``: the model's BOS token, whose positions the fine-tuning never trains on (a
    real model's BOS residual is hundreds of times a token's norm, and every metric leaves it out as an outlier:
    trained on, it pulls the dictionary toward one position)."""
    from sae_lens import TrainingSAE

    with quiet_sae_lens():
        original = TrainingSAE.load_from_disk(str(sae_dir), device)
    arch, sparsity = training_recipe(sae_dir, original)
    return train_checkpointed(model, windows, original.cfg.metadata.hook_name, original.cfg.d_sae, arch, sparsity,
                              training_tokens, lr, seed, out_dir, device, batch_tokens, n_checkpoints,
                              init=original.state_dict(), l1_warm_up=False,
                              exclude_special=[bos_id] if bos_id is not None else False, precision=precision)
