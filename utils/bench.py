"""Timing helpers shared by the benchmarks in benchmarks/."""
from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path
from typing import Callable

import torch


def bare_epoch(model, optimizer, images, batch_size, generator, loss_of: Callable) -> None:
    """The loop one writes by hand: permute, slice, forward, loss, backward, step.
    ``loss_of(model, x)`` returns the scalar to minimise."""
    perm = torch.randperm(len(images), generator=generator).to(images.device)
    for start in range(0, len(images), batch_size):
        x = images[perm[start:start + batch_size]]
        loss = loss_of(model, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def epoch_runner(loop: str, build: Callable[[], torch.nn.Module], step_of: Callable,
                 loss_of: Callable, images, batch_size: int, device, seed: int = 0):
    """A function that trains a fresh ``build()`` model (same seed each call) for
    one epoch, with the bare loop (``loss_of(model, x)``) or with ours
    (``utils.training.run_epoch`` with the script's ``step_of(model)``)."""
    from utils.training import run_epoch

    def run():
        torch.manual_seed(seed)
        model = build().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed)
        if loop == "bare":
            bare_epoch(model, optimizer, images, batch_size, gen, loss_of)
        else:
            run_epoch(step_of(model), (images,), batch_size=batch_size, optimizer=optimizer,
                      generator=gen, progress=False)
    return run


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def alternate(runs: dict[str, Callable[[], object]], repeats: int, device) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved so that changing machine
    load affects all of them alike."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """Write rows (same keys) to a CSV, replacing the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
