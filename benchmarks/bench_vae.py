"""One training epoch of the VAE: our loop (train_vae's) against a bare PyTorch loop.

    python benchmarks/bench_vae.py [--dataset fashion-mnist] [--repeats 3]

Both loops train the same model (same initial weights, batch size and data in
memory) for one epoch; runs alternate so that machine load affects both alike.
Writes benchmarks/results/vae.csv with the median seconds and the ratio.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

from models.vae import VAE
from train.train_vae import vae_step
from utils.datasets import load_dataset
from utils.metrics import elbo_loss
from utils.runtime import pick_device
from utils.training import run_epoch


def bare_epoch(model, optimizer, images, batch_size, generator):
    """The loop one would write by hand: permute, slice, forward, backward, step."""
    perm = torch.randperm(len(images), generator=generator).to(images.device)
    for start in range(0, len(images), batch_size):
        x = images[perm[start:start + batch_size]]
        recon, mu, logvar = model(x)
        loss, _, _ = elbo_loss(recon, x, mu, logvar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def ours_epoch(model, optimizer, images, batch_size, generator):
    """train_vae.py's loop: run_epoch with its step (term means, NaN guard, tqdm)."""
    run_epoch(vae_step(model), (images,), batch_size=batch_size, optimizer=optimizer,
              generator=generator, progress=False)


def time_epoch(loop, images, batch_size, device, seed=0) -> float:
    torch.manual_seed(seed)
    model = VAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loop(model, optimizer, images, batch_size, gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


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
    times = {"bare": [], "ours": []}
    time_epoch(bare_epoch, images[:2048], args.batch_size, device)  # warm-up
    for _ in range(args.repeats):
        times["bare"].append(time_epoch(bare_epoch, images, args.batch_size, device))
        times["ours"].append(time_epoch(ours_epoch, images, args.batch_size, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["ours"] / med["bare"]
    row = {"dataset": data.name, "n_images": len(images), "batch_size": args.batch_size,
           "device": str(device), "threads": torch.get_num_threads(), "repeats": args.repeats,
           "bare_seconds": round(med["bare"], 3), "ours_seconds": round(med["ours"], 3),
           "ratio_ours_over_bare": round(ratio, 3),
           "ours_images_per_second": round(len(images) / med["ours"], 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    print(f"one epoch of {data.name} ({len(images)} images, batch {args.batch_size}, {device}): "
          f"bare {med['bare']:.2f}s, ours {med['ours']:.2f}s, ratio {ratio:.3f} -> {args.out}")
    return row


if __name__ == "__main__":
    main(parse_args())
    sys.exit(0)
