"""Data-parallel training under ``torchrun``, by ``DistributedDataParallel``.

    torchrun --standalone --nproc_per_node 2 train/train_vae.py --device cpu ...

Without torchrun (no ``WORLD_SIZE`` above 1 in the environment) nothing here
does anything: :func:`wrap` returns the model itself. Under it, every rank
holds the whole model and the whole in-memory dataset, and:

* **Data.** All ranks draw the same shuffled permutation (same seed) and cut
  it into the same global batches of ``--batch-size``; each rank takes its
  contiguous share of every batch (:func:`shard`, ``torch.tensor_split``:
  shares differ by at most one image). ``--batch-size`` is therefore the
  *global* batch, and an epoch has the same number of steps as in one process.
* **Gradients.** A training step calls the model through :func:`wrap`, torch's
  ``DistributedDataParallel``, whose all-reduce of gradient buckets overlaps
  the backward pass and *averages* the ranks' gradients. Each rank's loss is
  therefore scaled by ``world_size * weight`` before ``backward``, where
  ``weight`` is ``b_r / B`` for a loss averaged over the batch
  (``step.loss_reduction = "mean"``, the default and PyTorch's convention,
  e.g. the VQ-VAE's eq. 3) and 1 for a loss summed over it (``"sum"``, the
  VAE's -ELBO): the average is then the gradient of the global batch's loss.
  Every rank takes the same Adam step, so N ranks follow one process with the
  same global batch up to float summation order, except for what the model
  itself draws at random on each rank (the VAE's reparameterization noise,
  the VQ-VAE's dead-code restarts), which cannot match one process's draws.
  A rank whose share of a last, small batch is empty runs the batch's first
  row at weight 0, since DDP needs every rank in every backward.
* **Buffers** (the VQ-VAE's EMA codebook) are broadcast from rank 0 at each
  training forward (DDP's ``broadcast_buffers``): the EMA follows rank 0's
  share of each batch.
* **Outputs.** Only rank 0 evaluates (on the unwrapped model: a DDP forward
  is a collective), prints, logs, checkpoints (``model.state_dict()`` of the
  unwrapped model, so keys have no ``module.`` prefix) and takes the run's
  lock; the run record states ``world_size``.

Backends: gloo on the CPU, NCCL on CUDA, where rank r uses ``cuda:LOCAL_RANK``.
Several machines: ``torchrun --nnodes N --nproc_per_node P --rdzv-backend c10d
--rdzv-endpoint HOST:PORT`` on each, every machine holding the data.
"""
from __future__ import annotations

import atexit
import os
import warnings
import weakref
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

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
_wrapped: weakref.WeakSet = weakref.WeakSet()  # modules that wrap() gave a DDP wrapper


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


def shutdown(wait: bool = False) -> None:
    """Leave the job. ``wait=True`` (a run that ended well) first waits for every
    rank at a barrier: a rank that tears its gloo connections down while rank 0
    still writes its checkpoint can abort ("terminate called without an active
    exception", seen in CI under load). The exit hook does not wait, because
    after an error the peers may never reach the barrier."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
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


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """What a training step calls: ``model`` in one process, under torchrun its
    ``DistributedDataParallel`` wrapper (whose construction broadcasts rank 0's
    parameters and buffers, so that every rank starts alike). Evaluation and
    checkpoints use ``model`` itself."""
    ctx = context()
    if ctx.world_size == 1:
        return model
    _wrapped.add(model)
    # a conv with one input channel: autograd gives its grad another stride on that size-1
    # dim than the bucket's, which DDP's backward reports although the memory layout is the same
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
    # DDP's default syncs buffers from rank 0 at each forward (``broadcast_buffers``, a name
    # newer torch deprecates)
    return DistributedDataParallel(
        model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)


def is_wrapped(model: torch.nn.Module) -> bool:
    """Whether :func:`wrap` made a DDP wrapper of ``model`` (always True outside torchrun)."""
    return context().world_size == 1 or model in _wrapped


def shard(batch: tuple[torch.Tensor, ...], reduction: str) -> tuple[tuple[torch.Tensor, ...], float, int]:
    """This rank's contiguous share of a global batch, the weight of its loss
    in the global one (``b_r / B`` for a mean loss, 1 for a sum) and its size
    ``b_r``. An empty share is replaced by the batch's first row at weight 0, since
    DDP needs every rank in every backward."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"step.loss_reduction must be 'mean' or 'sum', got {reduction!r}")
    ctx = context()
    full = len(batch[0])
    index = torch.tensor_split(torch.arange(full, device=batch[0].device), ctx.world_size)[ctx.rank]
    size = len(index)
    weight = (size / full if reduction == "mean" else 1.0) if size else 0.0
    if not size:
        index = index.new_zeros(1)
    return tuple(t[index] for t in batch), weight, size


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Elementwise sum over ranks (a collective: all ranks must call it)."""
    if context().world_size > 1:
        values = values.to(context().device)
        dist.all_reduce(values)
    return values
