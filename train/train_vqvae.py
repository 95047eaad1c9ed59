"""Train the VQ-VAE baseline end to end (stage 2 of the pipeline).

    python train/train_vqvae.py --arch conv      # 7x7 grid of codes, 49*log2(K) bits
    python train/train_vqvae.py --arch global    # one code per image, log2(K) bits

van den Oord et al. (2017), with EMA codebook updates, dead-code restarts
decided every batch from each code's usage EMA, k-means initialisation and
beta = 1 for --arch global, and the optional rotation trick (flags below; the
defaults are measured in benchmarks/bench_vq_usage.py). Writes
experiments/logs/vqvae_<arch>_train_log.csv, the checkpoint
experiments/checkpoints/vqvae_<arch>_<dataset>.pt and the plots.

Log columns: ``total_loss`` is the weighted objective of eq. (3),
recon_loss + beta * commit_loss + codebook_loss; ``commit_loss`` is the RAW
commitment term ||z_e - sg[z_q]||^2 per image, not multiplied by beta;
``codebook_loss`` is 0 with --ema. The ``val_*`` columns evaluate each
epoch's model on the validation part of the training split
(:func:`evaluate_vqvae`); the test split is not looked at while training.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models.library_quantizers import FSQ_NORMS, QUANTIZERS, check_fsq_norm
from models.quantizer import DEAD_RULES, RESTART_FROM, VQConfig
from models.vqvae import ARCHS, VQVAE, VQVAEConfig
from utils import distributed, metrics
from utils.cli import (TrainingConfig, add_data_args, add_training_args, make_parser,
                       non_negative_int, positive_int, run_main, with_out_dir)
from utils.datasets import iterate_batches
from utils.paths import stage_paths, vqvae_stage
from utils.training import TrainResult, fit, prefixed, prepare_training

COLUMNS = ["epoch", "total_loss", "recon_loss", "codebook_loss", "commit_loss", "perplexity",
           "usage", "val_recon_bce", "val_recon_mse", "val_perplexity", "val_usage",
           "seconds", "dataset"]
DEFAULT_K = {"conv": 512, "global": 256}
# Measured per architecture in benchmarks/bench_vq_usage.py (benchmarks/results/vq_usage.csv).
# beta: the paper's 0.25 for the grid of codes; "global" quantizes one 64-d vector
# per image against a 784-pixel reconstruction sum, and 0.25 lets its encoder
# outputs run away from the codes in the first epoch (most codes end unused),
# while 1.0 keeps them close and reconstructs as well.
DEFAULT_BETA = {"conv": 0.25, "global": 1.0}
# k-means on the first batch: on for "global"; for "conv" it lowers the usage.
DEFAULT_KMEANS_INIT = {"conv": False, "global": True}
RESUME_KEYS = ("dataset", "arch", "codebook_size", "code_dim", "beta", "ema", "decay",
               "restart_dead", "dead_rule", "dead_window", "dead_threshold", "dead_decay",
               "restart_from", "kmeans_init", "kmeans_init_images", "rotation_trick",
               "batch_size", "lr", "seed", "limit", "quantizer", "fsq_norm")
# Most encoder outputs k-means sees in --kmeans-init-images, per code: its memory is
# the (vectors, K) distance matrix (K = 512: 131,072 vectors, 268 MB).
KMEANS_INIT_VECTORS_PER_CODE = 256


@dataclass
class VQVAETrainConfig(TrainingConfig):
    """Every setting of a run: the flags below, one field each (same names and
    defaults). ``codebook_size``, ``beta`` and ``kmeans_init`` None mean the
    architecture's default (DEFAULT_K, DEFAULT_BETA, DEFAULT_KMEANS_INIT),
    filled in when the config is made (so build a global config as
    ``VQVAETrainConfig(arch="global")``, not by ``replace`` of a conv one)."""

    arch: str = "conv"
    codebook_size: int | None = None
    code_dim: int = 64
    beta: float | None = None
    ema: bool = True
    decay: float = VQConfig.decay
    restart_dead: bool = VQConfig.restart_dead
    dead_rule: str = VQConfig.dead_rule
    dead_threshold: float = VQConfig.dead_threshold
    dead_decay: float = VQConfig.dead_decay
    dead_window: int = VQConfig.dead_window
    restart_from: str = VQConfig.restart_from
    kmeans_init: bool | None = None
    kmeans_init_images: int = 0
    rotation_trick: bool = VQConfig.rotation_trick
    quantizer: str = VQVAEConfig.quantizer
    fsq_norm: str = VQVAEConfig.fsq_norm

    def __post_init__(self):
        if self.codebook_size is None:
            self.codebook_size = DEFAULT_K[self.arch]
        if self.beta is None:
            self.beta = DEFAULT_BETA[self.arch]
        if self.kmeans_init is None:
            self.kmeans_init = DEFAULT_KMEANS_INIT[self.arch]
        if self.kmeans_init_images and not self.kmeans_init:
            raise ValueError("--kmeans-init-images needs --kmeans-init")
        check_fsq_norm(self.quantizer, self.fsq_norm)


def parse_args(argv=None) -> VQVAETrainConfig:
    p = make_parser(__doc__.splitlines()[0])
    add_data_args(p)
    add_training_args(p, epochs=VQVAETrainConfig.epochs, batch_size=VQVAETrainConfig.batch_size,
                      lr=VQVAETrainConfig.lr)
    p.add_argument("--arch", default="conv", choices=ARCHS,
                   help="conv: 7x7 grid of codes; global: one code per image")
    p.add_argument("--codebook-size", type=positive_int, default=None,
                   help="K (default: 512 for conv, 256 for global)")
    p.add_argument("--code-dim", type=positive_int, default=64, help="dimension of each code")
    p.add_argument("--beta", type=float, default=None,
                   help="commitment weight (default: 0.25 for conv, 1.0 for global)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="codebook by exponential moving averages (else by the codebook loss)")
    p.add_argument("--decay", type=float, default=VQConfig.decay,
                   help="decay gamma of the EMA codebook updates (appendix A.1)")
    p.add_argument("--restart-dead", action=argparse.BooleanOptionalAction,
                   default=VQConfig.restart_dead,
                   help="move dead codes (--dead-rule) onto encoder outputs of the batch")
    p.add_argument("--dead-rule", choices=DEAD_RULES, default=VQConfig.dead_rule,
                   help="ema: a code is dead when its usage EMA is below --dead-threshold "
                        "times the fair share 1/K (checked every batch); window: when no input "
                        "of --dead-window consecutive batches used it (the old rule)")
    p.add_argument("--dead-threshold", type=float, default=VQConfig.dead_threshold,
                   help="fraction of the fair share 1/K under which the ema rule calls a code dead")
    p.add_argument("--dead-decay", type=float, default=VQConfig.dead_decay,
                   help="decay of the per-batch usage EMA of the ema rule")
    p.add_argument("--dead-window", type=positive_int, default=VQConfig.dead_window,
                   help="consecutive unused batches of the window rule")
    p.add_argument("--restart-from", choices=RESTART_FROM, default=VQConfig.restart_from,
                   help="error: restart dead codes on the batch's worst-quantized encoder "
                        "outputs; random: on random ones")
    p.add_argument("--kmeans-init", action=argparse.BooleanOptionalAction, default=None,
                   help="initialise the codebook by k-means on the first batch "
                        "(default: on for global, off for conv)")
    p.add_argument("--kmeans-init-images", type=non_negative_int, default=0,
                   help="with --kmeans-init: run the k-means on the untrained encoder's outputs "
                        "of this many training images (a seeded random subset; more than the "
                        "split means all of it; at most 256 K vectors) before the first step, "
                        "instead of on the first batch; 0: the first batch")
    p.add_argument("--rotation-trick", action=argparse.BooleanOptionalAction,
                   default=VQConfig.rotation_trick,
                   help="rotation trick (Fifty et al. 2024) instead of the straight-through "
                        "gradient")
    p.add_argument("--quantizer", choices=QUANTIZERS, default=VQVAEConfig.quantizer,
                   help="ours: models/quantizer.py; library-vq: vector-quantize-pytorch's "
                        "VectorQuantize at the same decay, beta, k-means and rotation flags; "
                        "fsq: its FSQ with the levels of models/library_quantizers.FSQ_LEVELS "
                        "(the codebook flags then do nothing)")
    p.add_argument("--fsq-norm", choices=FSQ_NORMS, default=VQVAEConfig.fsq_norm,
                   help="with --quantizer fsq: batch standardises FSQ's projected values "
                        "before its tanh bound (one code per image drifts into the flat tanh "
                        "without it); none: the library's FSQ")
    try:
        return VQVAETrainConfig(**vars(p.parse_args(argv)))
    except ValueError as err:
        p.error(str(err))


def initialise_codebook(model: VQVAE, images: torch.Tensor, n_images: int, seed: int) -> int:
    """--kmeans-init-images: k-means on the encoder outputs of a random subset of
    ``n_images`` training images (all when there are fewer), drawn from
    ``seed`` so every rank of a torchrun job gets the same codebook. Returns the
    number of vectors used."""
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(images), generator=generator)[:n_images]
    return model.initialise_codebook(images[pick.to(images.device)],
                                     KMEANS_INIT_VECTORS_PER_CODE * model.n_codes, generator)


def model_config(args) -> VQVAEConfig:
    """The VQVAEConfig the flags ask for (ValueError, shown as one line, if invalid)."""
    return VQVAEConfig(args.codebook_size, args.code_dim, arch=args.arch, beta=args.beta,
                       ema=args.ema, decay=args.decay, restart_dead=args.restart_dead,
                       dead_rule=args.dead_rule, dead_window=args.dead_window,
                       dead_threshold=args.dead_threshold,
                       dead_decay=args.dead_decay, restart_from=args.restart_from,
                       kmeans_init=args.kmeans_init, rotation_trick=args.rotation_trick,
                       quantizer=args.quantizer, fsq_norm=args.fsq_norm)


def run_paths(out_dir: Path, arch: str, dataset: str) -> dict[str, Path]:
    """experiments/logs/vqvae_<arch>_train_log.csv, checkpoints/vqvae_<arch>_<dataset>.pt, ..."""
    return stage_paths(out_dir, vqvae_stage(arch), dataset)


def vqvae_step(model: VQVAE):
    """One batch: the VQ-VAE objective (eq. 3) and its terms per image."""
    def step(batch):
        (x,) = batch
        out = model(x)
        return out.loss, {"total_loss": out.loss, "recon_loss": out.recon_loss,
                          "codebook_loss": out.codebook_loss, "commit_loss": out.commit_loss,
                          "perplexity": out.perplexity, "usage": out.usage}
    return step


@torch.no_grad()
def evaluate_vqvae(model: VQVAE, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """Reconstruction (``recon_bce`` per image, ``recon_mse`` per pixel),
    ``perplexity`` and ``usage`` of the codes over all of ``images`` (N, 1, 28, 28)
    of one split (not per batch): the validation part while training, the
    test split for reported numbers (benchmarks/bench_vq_usage.py)."""
    bce = mse = 0.0
    counts = 0
    for (x,) in iterate_batches(images, batch_size=batch_size):
        out = model(x)
        err = metrics.reconstruction_errors(out.recon_logits, x)
        bce += err["bce"] * len(x)
        mse += err["mse"] * len(x)
        counts = counts + metrics.code_counts(out.indices, model.n_codes)
    n = len(images)
    return {"recon_bce": bce / n, "recon_mse": mse / n,
            "perplexity": metrics.perplexity(counts), "usage": metrics.usage(counts)}


def train(args: VQVAETrainConfig, out_dir: Path | None = None) -> TrainResult:
    """Train (or with ``args.resume`` continue) the VQ-VAE of ``args`` into ``out_dir``
    (default ``args.out_dir``); returns its checkpoint and last epoch's metrics."""
    args = with_out_dir(args, out_dir)
    paths = run_paths(args.out_dir, args.arch, args.dataset)
    config = model_config(args)  # before loading any data, so bad options fail at once
    run = prepare_training(args, paths, lambda: VQVAE(**asdict(config)), VQVAE, RESUME_KEYS)
    model = run.model
    print(f"VQ-VAE {args.arch}: K={args.codebook_size}, {model.bits_per_image:g} bits per image",
          file=sys.stderr)
    val_images = run.val.images.to(run.device)
    train_images = run.train.images.to(run.device)
    if args.kmeans_init_images and not bool(model.quantizer.initialized):
        n = initialise_codebook(model, train_images, args.kmeans_init_images, args.seed)
        print(f"codebook: k-means on {n} encoder outputs of "
              f"{min(args.kmeans_init_images, len(train_images))} training images", file=sys.stderr)
    result = fit(
        args=args, model=model, optimizer=run.optimizer, done=run.done,
        train_step=vqvae_step(distributed.wrap(model)),  # after the k-means initialisation
        evaluate=lambda: prefixed("val_", evaluate_vqvae(model, val_images)),
        train_images=train_images, data=run.train, paths=paths,
        columns=COLUMNS, model_args=model.model_args, monitor="val_recon_bce",
        summary=lambda r: (f"train recon {r['recon_loss']:.2f}, perplexity {r['perplexity']:.1f} | "
                           f"val BCE {r['val_recon_bce']:.2f}, MSE {r['val_recon_mse']:.4f}, "
                           f"usage {r['val_usage']:.2f}"))
    if not args.no_plots:
        from train.plot_run import plot_vqvae_run
        for path in plot_vqvae_run(paths["log"], paths["checkpoint"], paths["plots"], args.data_root):
            print(f"wrote {path}", file=sys.stderr)
    return result


def main(args: VQVAETrainConfig) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
