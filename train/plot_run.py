"""Draw the figures of a finished training run from its files (log CSV and checkpoint).

    python train/plot_run.py vae --log experiments/logs/vae_train_log.csv \
        --checkpoint experiments/checkpoints/vae_mnist.pt

The training scripts call :func:`plot_vae_run` / :func:`plot_vqvae_run` at the
end of a run; the drawing primitives are in utils/plot.py, which knows no model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from models.vae import VAE
from models.vqvae import VQVAE
from utils.checkpoint import load_checkpoint, rebuild
from utils.cli import run_main
from utils.datasets import load_dataset
from utils.metrics import code_counts
from utils.plot import (load_log, plot_code_usage, plot_codebook, plot_curves, plot_latent_map,
                        plot_reconstructions)


@torch.no_grad()
def plot_vae_run(log_csv, checkpoint, plot_dir, data_root="data", n_map: int = 5000, *,
                 cls=None) -> list[Path]:
    """Loss curves, reconstructions and latent map of one VAE run (``cls``: the
    model class, default models.vae.VAE; a conv VAE's grids are flattened for the map)."""
    cls = cls or VAE
    ckpt = load_checkpoint(checkpoint, hint="train it with python train/train_vae.py")
    model = rebuild(ckpt, cls, "cpu", checkpoint).eval()
    cfg, name = ckpt["config"], ckpt["dataset"]
    test = load_dataset(cfg["dataset"], "test", data_root, limit=cfg.get("limit"))
    stem = "vae" if cls is VAE else "vae_conv"
    prefix = Path(plot_dir) / f"{stem}_{cfg['dataset']}"
    kind = "VAE" if cls is VAE else "conv VAE"
    paths = plot_curves(log_csv, {"-ELBO per image": ["total_loss", "val_total_loss"],
                                  "BCE per image": ["bce", "val_bce"],
                                  "KL per image": ["kld", "val_kld"]},
                        f"{prefix}_curves", title=f"{kind} on {name}")
    mu = model.latent_means(test.images[:n_map])
    recon = torch.sigmoid(model.decode(mu[:16]))
    paths += plot_reconstructions(test.images, recon, f"{prefix}_reconstructions",
                                  title=f"{kind} on {name}: test images (top), decoded means (bottom)")
    paths += plot_latent_map(mu.flatten(1).numpy(), test.labels[:n_map].numpy(), f"{prefix}_latents",
                             title=f"{kind} latent means of {name} test images")
    return paths


@torch.no_grad()
def plot_vqvae_run(log_csv, checkpoint, plot_dir, data_root="data") -> list[Path]:
    """Loss and perplexity curves, reconstructions, test code usage and (global)
    the decoded codebook of one VQ-VAE run."""
    ckpt = load_checkpoint(checkpoint, hint="train it with python train/train_vqvae.py")
    model = rebuild(ckpt, VQVAE, "cpu", checkpoint).eval()
    cfg, name, arch = ckpt["config"], ckpt["dataset"], ckpt["model_args"]["arch"]
    test = load_dataset(cfg["dataset"], "test", data_root, limit=cfg.get("limit"))
    prefix = Path(plot_dir) / f"vqvae_{arch}_{cfg['dataset']}"
    title = f"VQ-VAE ({arch}, K={model.n_codes}) on {name}"
    paths = plot_curves(log_csv, {"loss per image": ["total_loss", "recon_loss"],
                                  "reconstruction BCE per image": ["recon_loss", "val_recon_bce"],
                                  "perplexity": ["perplexity", "val_perplexity"]},
                        f"{prefix}_curves", title=title)
    out = model(test.images[:16])
    paths += plot_reconstructions(test.images, torch.sigmoid(out.recon_logits),
                                  f"{prefix}_reconstructions", title=f"{title}: test images (top), "
                                  f"reconstructions (bottom)")
    indices = torch.cat([model.encode(test.images[i:i + 1000]).flatten()
                         for i in range(0, len(test.images), 1000)])
    paths += plot_code_usage(code_counts(indices, model.n_codes), f"{prefix}_usage",
                             title=f"{title}: code usage on the test split")
    if arch == "global":
        decoded = model.decode_indices(torch.arange(model.n_codes))
        paths += plot_codebook(decoded, f"{prefix}_codebook", title=f"{title}: every code decoded")
    return paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Draw the figures of a run from its files.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    vae = sub.add_parser("vae", help="VAE loss curves, reconstructions and latent map",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    vae.add_argument("--log", type=Path, default=Path("experiments/logs/vae_train_log.csv"),
                     help="the run's CSV log")
    vae.add_argument("--checkpoint", type=Path,
                     default=Path("experiments/checkpoints/vae_mnist.pt"), help="the run's checkpoint")
    vae.add_argument("--out-dir", type=Path, default=Path("experiments/plots"), help="output folder")
    vae.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    return p.parse_args(argv)


def main(args):
    if args.what == "vae":
        if not args.log.is_file():
            from utils.errors import UserError
            raise UserError(f"no log at {args.log}; train with python train/train_vae.py")
        load_log(args.log)  # a bad log fails here, before the checkpoint and data are loaded
        for path in plot_vae_run(args.log, args.checkpoint, args.out_dir, args.data_root):
            print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
