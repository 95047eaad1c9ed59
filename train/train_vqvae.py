"""Train the VQ-VAE baseline end to end (stage 2 of the pipeline).

    python train/train_vqvae.py --arch conv      # 7x7 grid of codes, 49*log2(K) bits
    python train/train_vqvae.py --arch global    # one code per image, log2(K) bits

van den Oord et al. (2017), with EMA codebook updates, dead-code restarts and
optional k-means initialisation (flags below). Writes
experiments/logs/vqvae_<arch>_train_log.csv, the checkpoint
experiments/checkpoints/vqvae_<arch>_<dataset>.pt and the plots.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from models.vqvae import ARCHS, VQVAE
from utils import metrics
from utils.cli import add_data_args, add_training_args, make_parser, positive_int, run_main
from utils.datasets import iterate_batches
from utils.runtime import stage_paths
from utils.training import fit, prepare_training

COLUMNS = ["epoch", "total_loss", "recon_loss", "codebook_loss", "commit_loss", "perplexity",
           "usage", "test_recon_bce", "test_recon_mse", "test_perplexity", "test_usage",
           "seconds", "dataset"]
DEFAULT_K = {"conv": 512, "global": 256}
RESUME_KEYS = ("dataset", "arch", "codebook_size", "code_dim", "beta", "ema", "restart_dead",
               "kmeans_init", "batch_size", "lr", "seed", "limit")


def parse_args(argv=None):
    p = make_parser(__doc__.splitlines()[0])
    add_data_args(p)
    add_training_args(p, epochs=10, batch_size=128, lr=1e-3)
    p.add_argument("--arch", default="conv", choices=ARCHS,
                   help="conv: 7x7 grid of codes; global: one code per image")
    p.add_argument("--codebook-size", type=positive_int, default=None,
                   help="K (default: 512 for conv, 256 for global)")
    p.add_argument("--code-dim", type=positive_int, default=64, help="dimension of each code")
    p.add_argument("--beta", type=float, default=0.25, help="commitment weight")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="codebook by exponential moving averages (else by the codebook loss)")
    p.add_argument("--restart-dead", action=argparse.BooleanOptionalAction, default=True,
                   help="restart codes unused for a window of batches on encoder outputs")
    p.add_argument("--kmeans-init", action=argparse.BooleanOptionalAction, default=False,
                   help="initialise the codebook by k-means on the first batch")
    args = p.parse_args(argv)
    if args.codebook_size is None:
        args.codebook_size = DEFAULT_K[args.arch]
    return args


def run_paths(out_dir: Path, arch: str, dataset: str) -> dict[str, Path]:
    """experiments/logs/vqvae_<arch>_train_log.csv, checkpoints/vqvae_<arch>_<dataset>.pt, ..."""
    return stage_paths(out_dir, f"vqvae_{arch}", dataset)


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
    """Test reconstruction (BCE per image, MSE per pixel) and code usage over
    the whole split (not per batch): images (N, 1, 28, 28)."""
    bce = mse = 0.0
    counts = 0
    for (x,) in iterate_batches(images, batch_size=batch_size):
        out = model(x)
        err = metrics.reconstruction_errors(out.recon_logits, x)
        bce += err["bce"] * len(x)
        mse += err["mse"] * len(x)
        counts = counts + metrics.code_counts(out.indices, model.n_codes)
    n = len(images)
    return {"test_recon_bce": bce / n, "test_recon_mse": mse / n,
            "test_perplexity": metrics.perplexity(counts), "test_usage": metrics.usage(counts)}


def main(args):
    paths = run_paths(args.out_dir, args.arch, args.dataset)
    build = lambda: VQVAE(args.arch, args.codebook_size, args.code_dim, beta=args.beta,  # noqa: E731
                          ema=args.ema, restart_dead=args.restart_dead, kmeans_init=args.kmeans_init)
    run = prepare_training(args, paths, build, VQVAE, RESUME_KEYS)
    model = run.model
    print(f"VQ-VAE {args.arch}: K={args.codebook_size}, {model.bits_per_image:g} bits per image",
          file=sys.stderr)
    test_images = run.test.images.to(run.device)
    fit(args=args, model=model, optimizer=run.optimizer, done=run.done,
        train_step=vqvae_step(model), evaluate=lambda: evaluate_vqvae(model, test_images),
        train_images=run.train.images.to(run.device), data=run.train, paths=paths,
        columns=COLUMNS, model_args=model.model_args,
        summary=lambda r: (f"train recon {r['recon_loss']:.2f}, perplexity {r['perplexity']:.1f} | "
                           f"test BCE {r['test_recon_bce']:.2f}, MSE {r['test_recon_mse']:.4f}, "
                           f"usage {r['test_usage']:.2f}"))
    if not args.no_plots:
        from utils.plot import plot_vqvae_run
        for path in plot_vqvae_run(paths["log"], paths["checkpoint"], paths["plots"], args.data_root):
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
