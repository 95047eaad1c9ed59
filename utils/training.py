"""The epoch loop shared by the VAE and VQ-VAE scripts.

A script supplies a ``step(batch) -> (loss, terms)`` function: ``loss`` is
what ``.backward()`` gets, ``terms`` maps names to per-sample means of the
batch (tensors). The loop weights them by batch size into epoch means.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from tqdm import tqdm

from utils.checkpoint import CheckpointError, load_checkpoint, rebuild, save_checkpoint
from utils.csvlog import CSVLogger
from utils.datasets import Data, iterate_batches, load_dataset, n_batches
from utils.errors import UserError
from utils.runtime import (epoch_seed, pick_device, plain_config, print_args, seed_everything,
                           write_run_record)

Step = Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, dict[str, torch.Tensor]]]
CHECK_EVERY = 50  # batches between finiteness checks (each forces a device sync)


class NonFiniteLossError(UserError):
    """The loss became NaN or inf."""


def run_epoch(step: Step, tensors: tuple[torch.Tensor, ...], *, batch_size: int,
              optimizer: torch.optim.Optimizer | None = None,
              generator: torch.Generator | None = None, desc: str = "",
              progress: bool = True) -> dict[str, float]:
    """One pass over ``tensors`` (aligned, first dim N); trains when ``optimizer``
    is given (shuffled with ``generator``), else evaluates under no_grad in order.

    Returns the per-sample mean of every term. Raises NonFiniteLossError as soon
    as a check sees a NaN/inf loss, before anything is saved.
    """
    train = optimizer is not None
    n = len(tensors[0])
    sums: dict[str, torch.Tensor] = {}
    finite = torch.ones((), dtype=torch.bool, device=tensors[0].device)
    batches = iterate_batches(*tensors, batch_size=batch_size, shuffle=train, generator=generator)
    bar = tqdm(batches, total=n_batches(n, batch_size), desc=desc, leave=False,
               disable=not progress, mininterval=1.0)
    with torch.set_grad_enabled(train):
        for i, batch in enumerate(bar):
            loss, terms = step(batch)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            b = len(batch[0])
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach() * b
            finite &= torch.isfinite(loss.detach())
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == bar.total:
                if not finite.item():
                    raise NonFiniteLossError(f"{desc or 'epoch'}: the loss became NaN/inf by batch "
                                             f"{i + 1}; stopping (lower --lr?)")
                bar.set_postfix({k: f"{float(v.detach()):.4g}" for k, v in list(terms.items())[:2]},
                                refresh=False)
    return {name: float(total) / n for name, total in sums.items()}


def train_epochs(*, train_step: Step, evaluate: Callable[[], dict], train_tensors,
                 optimizer, batch_size: int, seed: int, start_epoch: int, epochs: int,
                 on_epoch_end: Callable[[int, dict], None], model: torch.nn.Module,
                 progress: bool = True) -> None:
    """Epochs ``start_epoch..epochs`` (1-based): train, then ``evaluate()`` in
    eval mode (its dict joins the row), then ``on_epoch_end(epoch, row)`` logs
    and checkpoints.

    Each epoch reseeds torch and its shuffling generator from (seed, epoch), so
    resuming at epoch e reproduces an uninterrupted run exactly on CPU.
    """
    for epoch in range(start_epoch, epochs + 1):
        start = time.perf_counter()
        s = epoch_seed(seed, epoch)
        torch.manual_seed(s)
        gen = torch.Generator().manual_seed(s)
        model.train()
        row = run_epoch(train_step, train_tensors, batch_size=batch_size, optimizer=optimizer,
                        generator=gen, desc=f"epoch {epoch}/{epochs}", progress=progress)
        model.eval()
        with torch.no_grad():
            row.update(evaluate())
        row.update(epoch=epoch, seconds=time.perf_counter() - start)
        on_epoch_end(epoch, row)


def start_or_resume(args, checkpoint: Path, build: Callable[[], torch.nn.Module], cls,
                    dataset_used: str, resume_keys: tuple[str, ...], device):
    """A new model from ``build()``, or with ``args.resume`` the model, optimizer
    state and last epoch of ``checkpoint`` after checking it was made with the
    same ``resume_keys`` settings and dataset. Returns (model, optimizer_state, epoch)."""
    if not args.resume:
        return build().to(device), None, 0
    ckpt = load_checkpoint(checkpoint, device, hint="train without --resume first")
    stored = ckpt.get("config", {})
    for key in resume_keys:
        if stored.get(key) != plain_config({key: getattr(args, key)})[key]:
            raise CheckpointError(f"{checkpoint} was trained with {key}={stored.get(key)!r} but this "
                                  f"run has {key}={getattr(args, key)!r}; match it or drop --resume")
    if ckpt.get("dataset") != dataset_used:
        raise CheckpointError(f"{checkpoint} was trained on {ckpt.get('dataset')} but this run "
                              f"loads {dataset_used}; drop --resume to start anew")
    return rebuild(ckpt, cls, device, checkpoint), ckpt["optimizer"], ckpt["epoch"]


class Prepared(NamedTuple):
    device: torch.device
    train: Data
    test: Data
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    done: int  # epochs already trained (0 for a new run)


def prepare_training(args, paths: dict, build: Callable[[], torch.nn.Module], cls,
                     resume_keys: tuple[str, ...]) -> Prepared:
    """What every training script does first: pick the device, load both splits,
    seed, build or resume the model and its Adam optimizer, write the run record."""
    print_args(args)
    device = pick_device(args.device)
    train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
    test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    seed_everything(args.seed)
    model, opt_state, done = start_or_resume(args, paths["checkpoint"], build, cls, train.name,
                                             resume_keys, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    write_run_record(paths["record"], args, dataset=train.name, data_source=train.source,
                     device=str(device), checkpoint=str(paths["checkpoint"]))
    return Prepared(device, train, test, model, optimizer, done)


def fit(*, args, model, optimizer, done: int, train_step: Step, evaluate: Callable[[], dict],
        train_images: torch.Tensor, data, paths: dict, columns: list[str], model_args: dict,
        summary: Callable[[dict], str]) -> None:
    """The shared driver: epochs ``done+1..args.epochs`` with one CSV row and
    one atomic checkpoint (model, model_args, optimizer, epoch, config, dataset)
    per epoch. A NaN/inf loss stops it with a message naming the last good
    checkpoint, which is left as it was."""
    logger = CSVLogger(paths["log"], columns, resume_after=done if args.resume else None)
    config = plain_config(args)

    def on_epoch_end(epoch, row):
        row["dataset"] = data.name
        logger.log(row)
        save_checkpoint(paths["checkpoint"], {
            "model": model.state_dict(), "model_args": model_args,
            "optimizer": optimizer.state_dict(), "epoch": epoch, "config": config,
            "dataset": data.name, "data_source": data.source,
            "metrics": {k: v for k, v in row.items() if k != "dataset"}})
        print(f"epoch {epoch}: {summary(row)} [{row['seconds']:.1f}s]", file=sys.stderr)

    if done >= args.epochs:
        print(f"{paths['checkpoint']} already has {done} epochs (--epochs {args.epochs})",
              file=sys.stderr)
    try:
        train_epochs(train_step=train_step, evaluate=evaluate, model=model, optimizer=optimizer,
                     train_tensors=(train_images,), batch_size=args.batch_size, seed=args.seed,
                     start_epoch=done + 1, epochs=args.epochs, on_epoch_end=on_epoch_end)
    except NonFiniteLossError as err:
        kept = paths["checkpoint"] if paths["checkpoint"].is_file() else "none yet"
        raise NonFiniteLossError(f"{err}; last good checkpoint: {kept}") from None
    print(f"wrote {paths['log']} and {paths['checkpoint']}", file=sys.stderr)


def prefixed(prefix: str, terms: dict) -> dict:
    """{'bce': 1.0} -> {'test_bce': 1.0}."""
    return {f"{prefix}{k}": v for k, v in terms.items()}
