"""Data-parallel training under ``torchrun`` (DDP's semantics, model unwrapped).

    torchrun --standalone --nproc_per_node 2 train/train_vae.py --device cpu ...

Without torchrun (no ``WORLD_SIZE`` above 1 in the environment) nothing here
does anything. Under it, every rank holds the whole model and the whole
in-memory dataset, and:

* **Data.** All ranks draw the same shuffled permutation (same seed) and cut
  it into the same global batches of ``--batch-size``; each rank takes its
  contiguous share of every batch (``torch.tensor_split``: shares differ by
  at most one image). ``--batch-size`` is therefore the *global* batch, and
  an epoch has the same number of steps as in one process.
* **Gradients.** After ``backward`` one all-reduce of the flattened
  gradients, together with the batch loss, gives every rank the gradient of
  the global batch's loss: each share weighted by ``b_r / B`` for a loss
  averaged over the batch (``step.loss_reduction = "mean"``, the default and
  PyTorch's convention, e.g. the VQ-VAE's eq. 3), unweighted for a loss
  summed over it (``"sum"``, the VAE's -ELBO). Every rank then takes the same
  Adam step, so N ranks follow one process with the same global batch up to
  float summation order, except for what the model itself draws at random
  on each rank (the VAE's reparameterization noise, the VQ-VAE's dead-code
  restarts), which cannot match one process's draws.
* **Buffers** (the VQ-VAE's EMA codebook) are broadcast from rank 0 after
  each step, as ``DistributedDataParallel`` does by default: the EMA follows
  rank 0's share of each batch.
* **Outputs.** Only rank 0 evaluates, prints, logs, checkpoints and takes
  the run's lock; the run record states ``world_size``.

Backends: gloo on the CPU, NCCL on CUDA, where rank r uses ``cuda:LOCAL_RANK``.
"""
from __future__ import annotations

import atexit
import os
from typing import NamedTuple

import torch
import torch.distributed as dist

from utils.errors import UserError


class Context(NamedTuple):
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # where collectives' tensors live

    @property
    def main(self) -> bool:
        return self.rank == 0


_ctx = [Context()]


def context() -> Context:
    """This process's place in the job (rank 0 of 1 outside torchrun)."""
    return _ctx[0]


def init_from_env(device: torch.device) -> torch.device:
    """Join the torchrun job described by the environment, if any; returns the
    device this rank trains on (``cuda:LOCAL_RANK`` for CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None and device.index != local:
            raise UserError(f"--device {device} under torchrun: each rank uses cuda:LOCAL_RANK; "
                            f"pass --device cuda (or auto)")
        if local >= torch.cuda.device_count():
            raise UserError(f"torchrun started {world} ranks here but only "
                            f"{torch.cuda.device_count()} GPU(s) are visible")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world)
        atexit.register(shutdown)
    _ctx[0] = Context(rank, world, local, device)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
    _ctx[0] = Context()


def all_ok(ok: bool) -> bool:
    """True when ``ok`` holds on every rank (a collective: all ranks must call it)."""
    ctx = context()
    if ctx.world_size == 1:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def rank_seed(seed: int) -> int:
    """The seed of this rank's own random draws: ``seed`` on rank 0 (so that
    rank 0 draws as a single process does), distinct streams elsewhere."""
    rank = context().rank
    return seed if rank == 0 else (seed * 1_000_003 + rank) % 2**63


def shard(batch: tuple[torch.Tensor, ...], reduction: str) -> tuple[tuple[torch.Tensor, ...], float]:
    """This rank's contiguous share of a global batch, and the weight of its
    gradient in the global one (``b_r / B`` for a mean loss, 1 for a sum)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"step.loss_reduction must be 'mean' or 'sum', got {reduction!r}")
    ctx = context()
    full = len(batch[0])
    index = torch.tensor_split(torch.arange(full, device=batch[0].device), ctx.world_size)[ctx.rank]
    part = tuple(t[index] for t in batch)
    return part, (len(index) / full if reduction == "mean" else 1.0)


class Sync:
    """The collectives of one training run on ``model`` (see the module notes)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        with torch.no_grad():  # identical start on every rank, whatever each built
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def gradients(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor | None,
                  weight: float) -> torch.Tensor:
        """Replace each rank's gradients by the global batch's (one all-reduce)
        and return the global batch loss. ``loss`` is None on a rank whose
        share of a last, small batch is empty: it adds zeros."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        local = (loss.detach().reshape(1).to(params[0].dtype) if loss is not None
                 else torch.zeros(1, dtype=params[0].dtype, device=params[0].device))
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [local]) * weight
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return flat[-1]

    def buffers(self) -> None:
        for buf in self.model.buffers():
            dist.broadcast(buf.data, src=0)

    @staticmethod
    def sum(values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks."""
        dist.all_reduce(values)
        return values
