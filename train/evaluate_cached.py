"""Evaluate a model the comparison cached on new images, training nothing.

    python train/evaluate_cached.py --quick --dataset fashion-mnist --method geodesic-vae \
        --K 64 --seed 0 --images my_images.npy --labels my_labels.npy --out metrics.csv

The sweep flags (``--quick``, ``--epochs``, ``--work-dir``, ...) are the runner's
(train/run_comparison.py) and must be those of the sweep that trained the model:
they give its config hash. ``<work-dir>/index.csv`` lists what is cached. A model
that is not cached is a one-line error (exit 2); nothing is trained or written
into the work folder. The metrics are the comparison's (utils.metrics.evaluate_codes),
computed by the runner's own code (:func:`train.run_comparison.evaluate_cell`);
on the sweep's test split they equal its row of comparison.csv.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from train import comparison_methods as cm
from train import run_comparison as rc
from utils import methods as vocab
from utils.cli import non_negative_int, run_main, seed_int
from utils.datasets import Data, load_dataset
from utils.errors import UserError
from utils.csvlog import write_rows
from utils.runtime import pick_device


def read_array(path: Path) -> np.ndarray:
    """A .npy or .pt file (a tensor, or an array) as a numpy array."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".pt":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, torch.Tensor):
            raise UserError(f"{path} holds a {type(obj).__name__}, not a tensor")
        return obj.numpy()
    raise UserError(f"{path}: images and labels are read from .npy or .pt files")


def as_images(array, source: str = "images") -> torch.Tensor:
    """(N, 28, 28) or (N, 1, 28, 28) values in [0, 1] -> (N, 1, 28, 28) float32;
    anything else is a UserError that says what was expected."""
    x = torch.as_tensor(np.asarray(array), dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28) or not len(x):
        raise UserError(f"{source} has the shape {tuple(np.shape(array))}; expected (N, 28, 28) "
                        f"or (N, 1, 28, 28) images")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise UserError(f"{source} has values outside [0, 1]; divide 8-bit images by 255")
    return x


def as_labels(array, n: int, source: str = "labels") -> np.ndarray:
    """(N,) integer labels, one per image."""
    y = np.asarray(array)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{source} has the shape {y.shape} and dtype {y.dtype}; expected ({n},) "
                        f"integers, one label per image")
    return y.astype(np.int64)


def evaluate_cached(args, method: str, K: int, seed: int, images, labels=None, *,
                    variant: dict | None = None, device=None) -> dict:
    """The comparison's metrics of the cached model of (``args.dataset``, ``method``,
    K, ``seed``) on ``images``.

    Parameters
    ----------
    args : the runner's arguments (``run_comparison.parse_args([...])``) of the sweep
        that trained the model; they give its config hash.
    images : (N, 28, 28) or (N, 1, 28, 28) array or tensor, values in [0, 1].
    labels : optional (N,) integers; without them the label metrics are NaN.
    variant : the ablation cell (default: the first the flags ask for, as the runner).

    Returns
    -------
    dict: method, K, seed, the cell, config_hash (the row's in comparison.csv),
    n_test and every column of :data:`utils.metrics.CODE_METRICS`.

    Raises :class:`train.comparison_methods.CacheMiss` when a model it needs is not
    cached; nothing is trained. The training split is loaded (``args.data_root``):
    label votes and the latent geometry are measured against it, as in the runner.
    """
    if method not in vocab.METHOD_NAMES:
        raise UserError(f"unknown method {method!r}; choose one of {' '.join(vocab.METHOD_NAMES)}")
    if vocab.get(method).quantized != (K > 0):
        raise UserError(f"{method} has no codebook: pass K=0" if K else f"{method} needs K > 0")
    x = as_images(images)
    y = None if labels is None else as_labels(labels, len(x))
    variant = variant or cm.variants(args, method)[0]
    device = pick_device(args.device) if device is None else device
    train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
    test = Data(x, torch.from_numpy(y) if y is not None else torch.zeros(len(x), dtype=torch.int64),
                train.name, "caller")
    ident = rc.row_identity(args, method, K, seed, variant)
    with cm.cached_only():
        row, _ = rc.evaluate_cell(cm.SeedRun(args, seed, train, test, device), method, K, variant, y)
    keep = ("method", "K", "seed", *vocab.VARIANT_COLUMNS, "config_hash")
    return {**{k: ident[k] for k in keep}, "n_test": len(x),
            **{m: row[m] for m in rc.metrics.CODE_METRICS}}


def parse_args(argv=None):
    p = rc.sweep_parser(__doc__.splitlines()[0])
    p.add_argument("--method", required=True, choices=vocab.METHOD_NAMES, help="the method (required)")
    p.add_argument("--K", type=non_negative_int, required=True,
                   help="codebook size (0 for the unquantized VAE) (required)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the sweep's model (default 0)")
    p.add_argument("--images", type=Path, required=True,
                   help=".npy or .pt of (N, 28, 28) or (N, 1, 28, 28) images in [0, 1] (required)")
    p.add_argument("--labels", type=Path, default=None,
                   help=".npy or .pt of (N,) integer labels (default: none; label metrics are NaN)")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the metrics as a one-row CSV here (default: print only)")
    return rc.finish_sweep_args(p.parse_args(argv))


def main(args) -> dict:
    images = read_array(args.images)
    labels = read_array(args.labels) if args.labels is not None else None
    row = evaluate_cached(args, args.method, args.K, args.seed, images, labels)
    print(json.dumps(row, indent=1))
    if args.out is not None:
        write_rows(args.out, list(row), [row])
        print(f"wrote {args.out}", file=sys.stderr)
    return row


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
