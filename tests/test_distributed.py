"""utils/distributed.py: the batch shares, and DistributedDataParallel on 2 gloo
ranks against one process on the same global batches (the whole training
scripts under torchrun: tests/test_train_vae.py)."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from utils import distributed
from utils.training import run_epoch, train_epochs

N, BATCH = 11, 5  # a last batch of one row: rank 1's share of it is empty


@pytest.fixture
def rank1_of_2(monkeypatch):
    monkeypatch.setattr(distributed, "_ctx", [distributed.Context(rank=1, world_size=2)])


def test_shard_takes_this_ranks_rows_and_weights_its_loss(rank1_of_2):
    batch = (torch.arange(5), torch.arange(5) * 10)
    (rows, tens), weight, size = distributed.shard(batch, "mean")
    assert rows.tolist() == [3, 4] and tens.tolist() == [30, 40]
    assert (weight, size) == (2 / 5, 2)
    assert distributed.shard(batch, "sum")[1:] == (1.0, 2)


def test_an_empty_share_runs_the_first_row_at_weight_zero(rank1_of_2):
    # DDP needs every rank in every backward, so rank 1 cannot skip a batch of one row
    (rows,), weight, size = distributed.shard((torch.tensor([7]),), "mean")
    assert rows.tolist() == [7] and (weight, size) == (0.0, 0)


def test_shard_refuses_an_unknown_reduction(rank1_of_2):
    with pytest.raises(ValueError, match="loss_reduction"):
        distributed.shard((torch.arange(4),), "max")


def test_wrap_is_the_identity_in_one_process():
    model = torch.nn.Linear(2, 1)
    assert distributed.wrap(model) is model and distributed.is_wrapped(model)


class CountingLinear(torch.nn.Linear):
    """A linear layer with a buffer updated in training forwards, as the VQ-VAE's
    EMA codebook is: the number of rows it has seen."""

    def __init__(self, *shape):
        super().__init__(*shape)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        self.seen += len(x)
        return super().forward(x)


def make_problem():
    torch.manual_seed(0)
    x = torch.randn(N, 3)
    return CountingLinear(3, 2), x, x @ torch.randn(3, 2)


def train_one_epoch(model, step_model, x, y, reduction, parallel):
    """One epoch of Adam on the squared error of (x, y), averaged or summed over the
    batch; returns the epoch's terms and the trained parameters."""
    def step(batch):
        (idx,) = batch
        err = ((step_model(x[idx]) - y[idx]) ** 2).sum(1)
        loss = err.mean() if reduction == "mean" else err.sum()
        return loss, {"err": err.mean()}
    step.loss_reduction = reduction
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    terms = run_epoch(step, (torch.arange(N),), batch_size=BATCH, optimizer=optimizer,
                      generator=torch.Generator().manual_seed(1), parallel=parallel)
    return terms, [p.detach().clone() for p in model.parameters()], float(model.seen)


def rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env(torch.device("cpu"))
    results = {}
    for reduction in ("mean", "sum"):
        model, x, y = make_problem()
        if rank == 1:  # DDP's construction gives every rank rank 0's parameters
            torch.nn.init.zeros_(model.weight)
        results[reduction] = train_one_epoch(model, distributed.wrap(model), x, y, reduction,
                                             parallel=True)
    try:  # a model trained without wrap() would follow each rank's own gradients
        train_epochs(train_step=None, evaluate=dict, train_tensors=(), optimizer=None,
                     batch_size=1, seed=0, start_epoch=1, epochs=1, on_epoch_end=None,
                     model=torch.nn.Linear(1, 1))
    except RuntimeError as err:
        results["unwrapped"] = str(err)
    torch.save(results, f"{out}.{rank}")
    # both ranks at a barrier before either tears its gloo connections down: without it a
    # rank can abort ("terminate called without an active exception", seen once under load)
    distributed.shutdown(wait=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_under_ddp_equal_one_process(tmp_path):
    out = str(tmp_path / "results.pt")
    mp.start_processes(rank_main, args=(free_port(), out), nprocs=2, start_method="spawn")
    two, rank1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    for reduction in ("mean", "sum"):
        model, x, y = make_problem()
        terms, params, seen = train_one_epoch(model, model, x, y, reduction, parallel=False)
        assert seen == N
        ddp_terms, ddp_params, _ = two[reduction]
        # batches of 5, 5, 1 rows, shared 3+2, 3+2, 1+(the first row at weight 0): rank 1
        # starts each forward from rank 0's buffers (3, 6), not its own (2, 4)
        assert rank1[reduction][2] == 6 + 1
        assert ddp_terms == pytest.approx(terms, rel=1e-6), reduction
        for a, b in zip(ddp_params, params):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=reduction)
    assert "distributed.wrap" in two["unwrapped"]
