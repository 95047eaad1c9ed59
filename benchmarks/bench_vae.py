"""One training epoch of the VAE: our loop (train_vae's) against a bare PyTorch loop.

    python benchmarks/bench_vae.py [--dataset fashion-mnist] [--repeats 3]

Both loops train the same model (same initial weights, batch size and data in
memory) for one epoch; runs alternate so that machine load affects both alike.
Writes benchmarks/results/vae.csv with the median seconds and the ratio.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models.vae import VAE
from train.train_vae import vae_step
from utils.bench import alternate, epoch_runner, write_csv
from utils.datasets import load_dataset
from utils.metrics import elbo_loss
from utils.runtime import pick_device


def vae_loss(model, x):
    recon, mu, logvar = model(x)
    return elbo_loss(recon, x, mu, logvar)[0]


def runner(loop: str, images, batch_size, device):
    return epoch_runner(loop, VAE, vae_step, vae_loss, images, batch_size, device)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="dataset of the epoch")
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size")
    p.add_argument("--repeats", type=int, default=3, help="epochs timed per loop (median kept)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/vae.csv"), help="CSV output")
    return p.parse_args(argv)


def main(args):
    device = pick_device(args.device)
    data = load_dataset(args.dataset, "train", limit=args.limit)
    images = data.images.to(device)
    runner("bare", images[:2048], args.batch_size, device)()  # warm-up
    med = alternate({loop: runner(loop, images, args.batch_size, device)
                     for loop in ("bare", "ours")}, args.repeats, device)
    ratio = med["ours"] / med["bare"]
    row = {"dataset": data.name, "n_images": len(images), "batch_size": args.batch_size,
           "device": str(device), "threads": torch.get_num_threads(), "repeats": args.repeats,
           "bare_seconds": round(med["bare"], 3), "ours_seconds": round(med["ours"], 3),
           "ratio_ours_over_bare": round(ratio, 3),
           "ours_images_per_second": round(len(images) / med["ours"], 1)}
    write_csv(args.out, [row])
    print(f"one epoch of {data.name} ({len(images)} images, batch {args.batch_size}, {device}): "
          f"bare {med['bare']:.2f}s, ours {med['ours']:.2f}s, ratio {ratio:.3f} -> {args.out}")
    return row


if __name__ == "__main__":
    main(parse_args())
