"""Train the CNN classifier whose features measure sample fidelity (FID).

    python train/train_classifier.py --dataset fashion-mnist --epochs 5

Logs per-epoch cross-entropy and accuracy on the training part and, as
val_*, on the validation part (the test split is not looked at) to
experiments/logs/classifier_<dataset>_train_log.csv (classifier_train_log.csv
for mnist) and writes the checkpoint experiments/checkpoints/classifier_<dataset>.pt,
which utils/fid.py and train/train_prior.py --classifier load.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.classifier import Classifier
from utils import distributed
from utils.cli import (TrainingConfig, add_data_args, add_training_args, make_parser,
                       positive_int, run_main, with_out_dir)
from utils.paths import stage_paths
from utils.training import TrainResult, fit, prefixed, prepare_training, run_epoch

COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "dataset"]
RESUME_KEYS = ("dataset", "channels", "feature_dim", "dropout", "batch_size", "lr", "seed", "limit")


@dataclass
class ClassifierConfig(TrainingConfig):
    """Every setting of a run: the flags below, one field each (same names and defaults)."""

    epochs: int = 5
    channels: list[int] = field(default_factory=lambda: [32, 64])
    feature_dim: int = 128
    dropout: float = 0.25


def parse_args(argv=None) -> ClassifierConfig:
    p = make_parser(__doc__.splitlines()[0])
    add_data_args(p)
    add_training_args(p, epochs=ClassifierConfig.epochs, batch_size=ClassifierConfig.batch_size,
                      lr=ClassifierConfig.lr)
    p.add_argument("--channels", type=positive_int, nargs=2, default=ClassifierConfig().channels,
                   metavar=("C1", "C2"), help="widths of the two conv layers")
    p.add_argument("--feature-dim", type=positive_int, default=128,
                   help="width of the penultimate layer (the FID features)")
    p.add_argument("--dropout", type=float, default=0.25, help="dropout before the last layer")
    return ClassifierConfig(**vars(p.parse_args(argv)))


def run_paths(out_dir: Path, dataset: str) -> dict[str, Path]:
    """experiments/logs/classifier_<dataset>_train_log.csv, checkpoints/classifier_<dataset>.pt, ..."""
    return stage_paths(out_dir, "classifier", dataset)


def classifier_step(model: Classifier, images: torch.Tensor, labels: torch.Tensor):
    """The loss of one batch of row indices into (images, labels): the training
    loop shuffles the rows of one tensor, so it gets indices and the two
    tensors stay aligned."""
    def step(batch):
        (idx,) = batch
        out = model(images[idx], labels[idx])
        return out.loss, {"loss": out.loss, "accuracy": out.accuracy}
    return step


def train(args: ClassifierConfig, out_dir: Path | None = None) -> TrainResult:
    """Train (or with ``args.resume`` continue) the classifier of ``args`` into ``out_dir``
    (default ``args.out_dir``); returns its checkpoint and last epoch's metrics."""
    args = with_out_dir(args, out_dir)
    paths = run_paths(args.out_dir, args.dataset)
    build = lambda: Classifier(channels1=args.channels[0], channels2=args.channels[1],  # noqa: E731
                               feature_dim=args.feature_dim, dropout=args.dropout)
    run = prepare_training(args, paths, build, Classifier, RESUME_KEYS)
    model, device = run.model, run.device
    train_step = classifier_step(distributed.wrap(model), run.train.images.to(device),
                                 run.train.labels.to(device))
    val_step = classifier_step(model, run.val.images.to(device), run.val.labels.to(device))
    val_rows = torch.arange(len(run.val.labels), device=device)
    result = fit(
        args=args, model=model, optimizer=run.optimizer, done=run.done, train_step=train_step,
        evaluate=lambda: prefixed("val_", run_epoch(val_step, (val_rows,), batch_size=1000,
                                                    desc="val")),
        train_images=torch.arange(len(run.train.labels), device=device), data=run.train,
        paths=paths, columns=COLUMNS, model_args=model.model_args, monitor="val_loss",
        summary=lambda r: (f"train loss {r['loss']:.4f}, accuracy {r['accuracy']:.4f} | "
                           f"val loss {r['val_loss']:.4f}, accuracy {r['val_accuracy']:.4f}"))
    if not args.no_plots:
        from utils.plot import plot_curves
        for path in plot_curves(paths["log"], {"cross-entropy": ["loss", "val_loss"],
                                               "accuracy": ["accuracy", "val_accuracy"]},
                                paths["plots"] / f"classifier_{args.dataset}_curves",
                                title=f"classifier on {run.train.name}"):
            print(f"wrote {path}", file=sys.stderr)
    return result


def main(args: ClassifierConfig) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
