"""Time train/train_prior.py: one PixelCNN prior on the full Fashion-MNIST 7x7 code maps.

    python benchmarks/bench_prior.py --codes-from experiments/checkpoints/vqvae_conv_fashion-mnist.pt

Runs the script itself (default flags unless given here) into a scratch
folder and writes benchmarks/results/prior.csv: one row per epoch with its
seconds, the cumulative training time and the validation NLL / perplexity
reached, plus the test NLL / perplexity of the final prior (the script's
reported numbers), the whole run's wall time (data, encoding, training,
sampling) and the machine's load average, since on a shared machine the
timings scale with it.
Without a conv VQ-VAE checkpoint, train one first (about 30 s an epoch on a quiet machine):

    python train/train_vqvae.py --arch conv --dataset fashion-mnist --epochs 1 --out-dir /tmp/vq
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from train import train_prior
from utils.bench import write_csv
from utils.csvlog import read_rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--codes-from", type=Path,
                   default=Path("experiments/checkpoints/vqvae_conv_fashion-mnist.pt"),
                   help="conv VQ-VAE checkpoint whose codes the prior learns")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/prior.csv"), help="CSV output")
    p.add_argument("script_args", nargs=argparse.REMAINDER,
                   help="after --: flags for train_prior.py (e.g. -- --epochs 3 --channels 48)")
    return p.parse_args(argv)


def main(args):
    torch.set_num_threads(args.threads)
    extra = [a for a in args.script_args if a != "--"]
    with tempfile.TemporaryDirectory(prefix="bench_prior_") as out:
        # the flags after -- are the user's, for train_prior.py: its parser makes them a config
        script_args = train_prior.parse_args(["--codes-from", str(args.codes_from), "--device", "cpu",
                                              "--no-plots", *extra])
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        result = train_prior.train(script_args, out)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        metrics = result.metrics
        paths = train_prior.run_paths(Path(out), metrics.method, metrics.dataset_requested)
        log = read_rows(paths["log"], text=("dataset",))
    rows, cumulative = [], 0.0
    for r in log:
        cumulative += float(r["seconds"])
        rows.append({"dataset": metrics.dataset, "n_train": metrics.n_train,
                     "n_codes": metrics.n_codes, "channels": script_args.channels,
                     "n_layers": script_args.n_layers, "kernel_size": script_args.kernel_size,
                     "batch_size": script_args.batch_size, "lr": script_args.lr,
                     "threads": args.threads, "epoch": int(float(r["epoch"])),
                     "epoch_seconds": round(float(r["seconds"]), 1),
                     "train_seconds": round(cumulative, 1),
                     "train_bits_per_image": round(float(r["bits_per_image"]), 2),
                     "val_bits_per_image": round(float(r["val_bits_per_image"]), 2),
                     "val_perplexity": round(float(r["val_perplexity"]), 2),
                     "final_test_bits_per_image": round(metrics.prior_nll_bits, 2),
                     "final_test_perplexity": round(metrics.prior_perplexity, 2),
                     "histogram_bits_per_image": round(metrics.histogram_nll_bits, 2),
                     "uniform_bits_per_image": round(metrics.uniform_bits_per_image, 2),
                     "sample_seconds": round(metrics.sample_seconds, 1),
                     "n_sampled": metrics.n_sampled, "wall_seconds": round(wall, 1),
                     "load_before": round(load_before, 2), "load_after": round(load_after, 2)})
        print(f"epoch {rows[-1]['epoch']}: {rows[-1]['epoch_seconds']}s, val "
              f"{rows[-1]['val_bits_per_image']} bits/image, perplexity "
              f"{rows[-1]['val_perplexity']}")
    write_csv(args.out, rows)
    print(f"whole run {wall:.0f}s (load average {load_before:.1f} -> {load_after:.1f}); wrote {args.out}")
    return rows


if __name__ == "__main__":
    import sys

    from utils.cli import run_main

    sys.exit(run_main(main, parse_args()))
