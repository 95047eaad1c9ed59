"""Which latent width D per grid position for the conv VAE: measured, not guessed.

    python benchmarks/bench_conv_vae.py [--dataset fashion-mnist] [--limit 10000]
        [--dims 2 4 8 16] [--epochs 5] [--K 64] [--fit-images 1000]

The bits of a grid-rate a-posteriori method are in its code indices (49 log2 K
per image), not in D, so D is chosen for what the quantizer can do with it.
For each D, ``train/train_vae.py --arch conv`` is run (same seed, --epochs on
the first --limit training images, minus the validation part), then on the
*validation* part (never the test split):

* ``val_mse``: MSE per pixel of the decoded latent means (the unquantized bound);
* ``val_mse_quantized``: the same after k-means (K = --K) on the grid vectors of
  the first --fit-images training images, every validation grid vector replaced
  by its nearest centroid (what kmeans-conv does);
* ``active_dims``: latent dimensions whose mean KL over positions and images
  exceeds 0.01 nats (the rest collapsed to the prior and carry nothing);
* ``duplicate_fraction``: exact duplicates among the training grid vectors.

Writes benchmarks/results/conv_vae_dim.csv.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.conv_net import grid_vectors, vectors_to_grid
from models.conv_vae import ConvVAE
from models.geodesic_vq import EuclideanQuantizer
from train import train_vae
from geodesic.ann import collapse_duplicates
from utils.bench import write_csv
from utils.checkpoint import load_checkpoint, rebuild
from utils.datasets import load_dataset


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--limit", type=int, default=10000, help="first N training images")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8, 16], help="values of D")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--K", type=int, default=64, help="k-means codebook size")
    p.add_argument("--fit-images", type=int, default=1000, help="images whose grid vectors fit k-means")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/conv_vae_dim.csv"))
    return p.parse_args(argv)


@torch.no_grad()
def measure(model: ConvVAE, train_images, val_images, K: int, fit_images: int, seed: int) -> dict:
    mu_train = model.latent_means(train_images[:fit_images])
    mu, logvar = model.encode(val_images)
    mse = torch.mean((torch.sigmoid(model.decode(mu)) - val_images) ** 2).item()
    q = EuclideanQuantizer(K, seed=seed).fit(grid_vectors(mu_train).numpy())
    codes = q.quantize(grid_vectors(mu).numpy()).codes
    mse_q = torch.mean((torch.sigmoid(model.decode(vectors_to_grid(codes, len(mu)))) - val_images) ** 2).item()
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)  # (N, D, 7, 7)
    all_train = grid_vectors(model.latent_means(train_images)).numpy()
    return {"val_mse": mse, "val_mse_quantized": mse_q,
            "active_dims": int((kl.mean(dim=(0, 2, 3)) > 0.01).sum()),
            "kl_per_image": kl.sum(dim=(1, 2, 3)).mean().item(),
            "duplicate_fraction": 1 - len(collapse_duplicates(all_train).points) / len(all_train)}


def main(args):
    train = load_dataset(args.dataset, "train", limit=args.limit)
    val = load_dataset(args.dataset, "val", limit=args.limit)
    rows = []
    for dim in args.dims:
        with tempfile.TemporaryDirectory() as out:
            cfg = train_vae.VAEConfig(arch="conv", dataset=args.dataset, limit=args.limit,
                                      epochs=args.epochs, latent_dim=dim, seed=args.seed,
                                      no_plots=True, device="cpu")
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                path = train_vae.train(cfg, out).checkpoint
            seconds = time.perf_counter() - start
            model = rebuild(load_checkpoint(path), ConvVAE).eval()
        row = {"dataset": train.name, "n_train": len(train.images), "n_val": len(val.images),
               "epochs": args.epochs, "D": dim, "K": args.K, "fit_images": args.fit_images,
               **measure(model, train.images, val.images, args.K, args.fit_images, args.seed),
               "train_seconds": seconds}
        rows.append(row)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)
        write_csv(args.out, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(parse_args())
