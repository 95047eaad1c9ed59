"""The epoch loop shared by the VAE and VQ-VAE scripts.

A script supplies a ``step(batch) -> (loss, terms)`` function: ``loss`` is
what ``.backward()`` gets, ``terms`` maps names to per-sample means of the
batch (tensors). The loop weights them by batch size into epoch means.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from tqdm import tqdm

from utils.datasets import iterate_batches, n_batches
from utils.errors import UserError
from utils.runtime import epoch_seed

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


def train_epochs(*, train_step: Step, eval_step: Step, train_tensors, test_tensors,
                 optimizer, batch_size: int, seed: int, start_epoch: int, epochs: int,
                 on_epoch_end: Callable[[int, dict], None], model: torch.nn.Module,
                 progress: bool = True) -> None:
    """Epochs ``start_epoch..epochs`` (1-based): train, evaluate (terms prefixed
    ``test_``), then ``on_epoch_end(epoch, row)`` logs and checkpoints.

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
        test = run_epoch(eval_step, test_tensors, batch_size=max(batch_size, 1000),
                         desc="test", progress=progress)
        row.update({f"test_{k}": v for k, v in test.items()})
        row.update(epoch=epoch, seconds=time.perf_counter() - start)
        on_epoch_end(epoch, row)
