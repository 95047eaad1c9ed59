"""Code usage of the VQ-VAE after ONE epoch, with the old and the new codebook rules.

    python benchmarks/bench_vq_usage.py [--datasets mnist-5k fashion-mnist]
        [--global-ks 16 32 64 128 256 512] [--conv-ks 512] [--settings before after]
    python benchmarks/bench_vq_usage.py --append --settings after-rotation ...  # ablations
    python benchmarks/bench_vq_usage.py --epochs 10 --out benchmarks/results/vq_usage_10epochs.csv ...

Each row is one run of ``train/train_vqvae.py --epochs 1`` (same seed) on the
dataset, architecture, K and setting: ``before`` reproduces the old defaults
(a code is dead after 100 consecutive unused batches, restarted on a random
encoder output, no k-means initialisation, beta 0.25); ``after`` is today's
defaults; the other settings change one thing of ``after`` (see SETTINGS). Writes
benchmarks/results/vq_usage.csv (rewritten after every run, atomically) with
the usage (fraction of the K codes used), perplexity and MSE per pixel of the
epoch-1 checkpoint on the test split (train_vqvae.evaluate_vqvae; the script's
own log evaluates the validation part), the epoch's seconds (training +
validation, from the log) and ``usage_ceiling``: the expected usage if the N
test vectors (N images x code positions) fell on the K codes uniformly at
random, 1 - (1 - 1/K)^N, the most one can expect from equal-mass codes; and,
for "global", ``kmeans_usage``: the test usage of scikit-learn's k-means with
the same K fitted to the epoch-1 encoder outputs of the training images, what a
codebook that fits those outputs well reaches at that point (on mnist-5k's
1,000 test images at K = 512 it is below 0.90). ``val_usage`` and
``val_recon_bce`` are the training log's last validation numbers: settings are
compared on them, the test columns are the reported ones. ``--epochs 10`` (the
sweeps' length) asks whether a setting that helps epoch 1 still reconstructs as
well at the end; its seconds are the last epoch's.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models.vqvae import VQVAE
from train.train_vqvae import VQVAETrainConfig, evaluate_vqvae, run_paths, train
from utils.checkpoint import load_checkpoint, rebuild
from utils import metric_registry as R
from utils.csvlog import write_rows
from utils.datasets import load_dataset

# Fields of train_vqvae's config changed, per setting (its flags: :func:`flags_of`).
SETTINGS = {
    "before": {"dead_rule": "window", "dead_window": 100, "restart_from": "random",
               "kmeans_init": False, "beta": 0.25},
    "after": {},
    "after-no-kmeans": {"kmeans_init": False},
    "after-kmeans": {"kmeans_init": True},
    "after-random-restart": {"restart_from": "random"},
    "after-rotation": {"rotation_trick": True},
    "after-beta-0.25": {"beta": 0.25},
    "after-dead-decay-0.5": {"dead_decay": 0.5},
    "after-dead-decay-0.8": {"dead_decay": 0.8},
    "after-dead-threshold-1.0": {"dead_threshold": 1.0},
    # k-means on the untrained encoder's outputs of the whole training split (at most
    # 256 K vectors) instead of the first batch, which at K > 128 holds fewer
    # vectors than codes
    "after-init-split": {"kmeans_init": True, "kmeans_init_images": 1000000},
    # ... and a codebook that follows the encoder within the 29 steps of an mnist-5k
    # epoch: EMA decay 0.9 (0.99 moves a code 25% of the way in 29 steps), dead below
    # the fair share, restarted on random outputs (the worst-quantized are outliers
    # that test images rarely hit)
    "fast-codebook": {"kmeans_init": True, "kmeans_init_images": 1000000, "decay": 0.9,
                      "dead_threshold": 1.0, "restart_from": "random"},
    "after-batch-64": {"batch_size": 64},
    "after-batch-32": {"batch_size": 32},
    "after-batch-16": {"batch_size": 16},
}


def flags_of(fields: dict) -> list[str]:
    """The train_vqvae.py flags that set ``fields``: {"kmeans_init": False, "beta": 0.25}
    -> ["--no-kmeans-init", "--beta", "0.25"]."""
    flags = []
    for name, value in fields.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags += [f"--{flag}", str(value)]
    return flags


COLUMNS = ["dataset", "arch", "K", "setting", "seed", "epochs", "test_usage", "test_perplexity",
           R.MSE.column, "val_usage", "val_recon_bce", "seconds", "usage_ceiling", "kmeans_usage",
           "flags"]
POSITIONS = {"global": 1, "conv": 49}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["mnist-5k", "fashion-mnist"],
                   help="datasets to train on")
    p.add_argument("--global-ks", nargs="*", type=int, default=[16, 32, 64, 128, 256, 512],
                   help="codebook sizes K for --arch global")
    p.add_argument("--conv-ks", nargs="*", type=int, default=[512],
                   help="codebook sizes K for --arch conv")
    p.add_argument("--settings", nargs="+", default=["before", "after"], choices=SETTINGS,
                   help="flag sets to compare (see SETTINGS in this file)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed (the same for every run; rows of other seeds are kept "
                        "with --append)")
    p.add_argument("--epochs", type=int, default=1,
                   help="training epochs (1: the usage target; 10: does a setting that helps "
                        "epoch 1 still reconstruct as well on validation at the end?)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (on the shared 2-core machine a second intra-op "
                        "thread only spins: 2 made the mnist-5k runs 5-15x slower)")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/vq_usage.csv"),
                   help="CSV output")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in --out (a rerun replaces its own rows)")
    return p.parse_args(argv)


def usage_ceiling(n_codes: int, n_vectors: int) -> float:
    """Expected fraction of K codes hit by N uniform draws: 1 - (1 - 1/K)^N."""
    return 1.0 - (1.0 - 1.0 / n_codes) ** n_vectors


def kmeans_usage(model: VQVAE, train_images: torch.Tensor, test_images: torch.Tensor,
                 seed: int) -> float:
    """Test usage of k-means (K = the model's) fitted to the model's encoder outputs
    of ``train_images``, assigning the encoder outputs of ``test_images``."""
    from sklearn.cluster import KMeans

    with torch.no_grad():
        z_train, z_test = (model._continuous_codes(x).reshape(-1, model.code_dim).numpy()
                           for x in (train_images, test_images))
    km = KMeans(model.n_codes, n_init=1, random_state=seed).fit(z_train)
    return len(np.unique(km.predict(z_test))) / model.n_codes


def train_and_test(dataset: str, arch: str, n_codes: int, setting: dict, seed: int,
                   data_root: Path, test_images: torch.Tensor,
                   train_images: torch.Tensor | None = None, epochs: int = 1,
                   inspect: Callable[[VQVAE], dict] | None = None) -> tuple[dict, dict]:
    """Train ``epochs`` epochs with train_vqvae's own train() in a temporary folder,
    its config changed by ``setting`` (a value of SETTINGS, or any config fields, e.g.
    ``device`` or ``limit``).

    Returns its last log row and the metrics of its checkpoint on ``test_images``
    (N, 1, 28, 28): ``evaluate_vqvae``'s recon_bce, recon_mse, perplexity, usage,
    ``seconds_per_epoch`` (the log's mean), with ``train_images``
    :func:`kmeans_usage`, and whatever ``inspect(model)`` returns about the
    trained model (before it is put in eval mode).
    """
    with tempfile.TemporaryDirectory() as out:
        cfg = VQVAETrainConfig(**{"dataset": dataset, "arch": arch, "codebook_size": n_codes,
                                  "epochs": epochs, "seed": seed, "device": "cpu",
                                  "data_root": Path(data_root), "no_plots": True, **setting})
        with contextlib.redirect_stderr(io.StringIO()):
            train(cfg, out)
        paths = run_paths(Path(out), arch, dataset)
        with open(paths["log"], newline="") as f:
            log = list(csv.DictReader(f))
        row = log[-1]
        model = rebuild(load_checkpoint(paths["checkpoint"]), VQVAE, "cpu", paths["checkpoint"])
        extra = inspect(model) if inspect is not None else {}
        test = evaluate_vqvae(model.eval(), test_images) | extra
        test["seconds_per_epoch"] = sum(float(r["seconds"]) for r in log) / len(log)
        if train_images is not None:
            test["kmeans_usage"] = kmeans_usage(model, train_images, test_images, seed)
        return row, test


def _key(row: dict) -> tuple:
    """What one row measures: a rerun of the same key replaces it."""
    return tuple(str(row[c]) for c in ("dataset", "arch", "K", "setting", "seed", "epochs"))


def _order(row: dict) -> tuple:
    """Rows grouped by dataset, epochs, architecture and K, settings in SETTINGS order, then seeds."""
    return (row["dataset"], int(row["epochs"]), row["arch"] != "global", int(row["K"]),
            list(SETTINGS).index(row["setting"]), int(row["seed"]))


def main(args):
    torch.set_num_threads(args.threads)
    runs = [(dataset, arch, k) for dataset in args.datasets
            for arch, ks in (("global", args.global_ks), ("conv", args.conv_ks)) for k in ks]
    rows = []
    if args.append and args.out.is_file():
        with open(args.out, newline="") as f:  # rows from before a column joined get it empty
            rows = [dict.fromkeys(COLUMNS, "") | r for r in csv.DictReader(f)]
        for r in rows:  # rows from before these columns: one-epoch runs of seed 0
            r["epochs"] = r["epochs"] or 1
            r["seed"] = r["seed"] or 0
    test_images, train_images = {}, {}
    for dataset, arch, k in runs:
        if dataset not in test_images:
            test_images[dataset] = load_dataset(dataset, "test", args.data_root).images
            train_images[dataset] = load_dataset(dataset, "train", args.data_root).images
        n_test = len(test_images[dataset])
        for setting in args.settings:
            row, test = train_and_test(dataset, arch, k, SETTINGS[setting], args.seed,
                                       args.data_root, test_images[dataset],
                                       train_images[dataset] if arch == "global" else None,
                                       args.epochs)
            new = {"dataset": row["dataset"], "arch": arch, "K": k, "setting": setting,
                   "seed": args.seed, "epochs": args.epochs,
                   "test_usage": test["usage"], "test_perplexity": test["perplexity"],
                   R.MSE.column: test["recon_mse"], "val_usage": row["val_usage"],
                   "val_recon_bce": row["val_recon_bce"],
                   "seconds": round(float(row["seconds"]), 1),
                   "usage_ceiling": round(usage_ceiling(k, n_test * POSITIONS[arch]), 4),
                   "kmeans_usage": test.get("kmeans_usage", ""),
                   "flags": " ".join(flags_of(SETTINGS[setting]))}
            rows = [r for r in rows if _key(r) != _key(new)] + [new]
            rows.sort(key=_order)
            write_rows(args.out, COLUMNS, rows)
            print(f"{dataset} {arch} K={k} {setting}: test usage {test['usage']:.3f}, "
                  f"perplexity {test['perplexity']:.1f}, MSE {test['recon_mse']:.4f}, "
                  f"{float(row['seconds']):.1f}s", flush=True)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main(parse_args())
