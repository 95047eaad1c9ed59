"""Training throughput of both VQ-VAEs, and our loop against a bare PyTorch loop.

    python benchmarks/bench_vqvae.py [--archs conv global] [--repeats 3]

For each architecture: one epoch of full Fashion-MNIST through train_vqvae's
loop (run_epoch with its step: term means, NaN guard, progress bar) and
through a bare loop of the same model, batch size and data, alternating runs.
Writes benchmarks/results/vqvae.csv: images per second and the ratio.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dataclasses import asdict

from models.vqvae import VQVAE
from train.train_vqvae import DEFAULT_K, VQVAETrainConfig, model_config, vqvae_step
from utils.bench import alternate, epoch_runner, write_csv
from utils.datasets import load_dataset
from utils.runtime import pick_device


def runner(loop: str, arch: str, images, batch_size, device):
    """The model train_vqvae.py builds by default for ``arch`` (its K, beta,
    k-means initialisation and dead-code rule)."""
    config = asdict(model_config(VQVAETrainConfig(arch=arch)))
    return epoch_runner(loop, lambda: VQVAE(**config), vqvae_step,
                        lambda m, x: m(x).loss, images, batch_size, device)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["global", "conv"], choices=["global", "conv"],
                   help="architectures to time")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset of the epoch")
    p.add_argument("--limit", type=int, default=None, help="first N training images only")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size")
    p.add_argument("--repeats", type=int, default=3, help="epochs timed per loop (median kept)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/vqvae.csv"),
                   help="CSV output")
    return p.parse_args(argv)


def main(args):
    device = pick_device(args.device)
    data = load_dataset(args.dataset, "train", limit=args.limit)
    images = data.images.to(device)
    rows = []
    for arch in args.archs:
        runner("bare", arch, images[:1024], args.batch_size, device)()  # warm-up
        med = alternate({loop: runner(loop, arch, images, args.batch_size, device)
                         for loop in ("bare", "ours")}, args.repeats, device)
        rows.append({"arch": arch, "K": DEFAULT_K[arch], "dataset": data.name,
                     "n_images": len(images), "batch_size": args.batch_size, "device": str(device),
                     "threads": torch.get_num_threads(), "repeats": args.repeats,
                     "bare_seconds": round(med["bare"], 3), "ours_seconds": round(med["ours"], 3),
                     "ratio_ours_over_bare": round(med["ours"] / med["bare"], 3),
                     "ours_images_per_second": round(len(images) / med["ours"], 1),
                     "bare_images_per_second": round(len(images) / med["bare"], 1)})
        print(f"{arch}: bare {med['bare']:.2f}s, ours {med['ours']:.2f}s per epoch of "
              f"{len(images)} images, ratio {rows[-1]['ratio_ours_over_bare']:.3f}")
    write_csv(args.out, rows)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main(parse_args())
