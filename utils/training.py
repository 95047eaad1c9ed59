"""The epoch loop shared by the training scripts.

A script supplies a ``step(batch) -> (loss, terms)`` function: ``loss`` is
what ``.backward()`` gets, ``terms`` maps names to per-sample means of the
batch (tensors). The loop weights them by batch size into epoch means.

The driver (:func:`prepare_training`, then :func:`fit`) evaluates every
epoch on the validation part of the training split (``Prepared.val``, logged
as ``val_*`` columns), so that anything chosen while training is chosen on
it and the test split is left for the reported numbers. It also keeps a
run's files consistent, whatever happens to the process:

* one writer per run: ``<checkpoint>.lock`` is held from start to end, and a
  second run into the same ``--out-dir`` is refused;
* a finished or partial run is never replaced silently: without ``--resume``
  an existing one needs ``--overwrite``;
* each epoch's checkpoint is written (atomically) *before* its log row, and
  holds a copy of every row logged so far (``ckpt["log"]``), so that
  ``--resume`` rewrites a log that disagrees with its checkpoint (a torn or
  edited row, a row of an epoch that never got its checkpoint) with a warning,
  and refuses a run logged with other columns (an older version's ``test_*``);
* a loss that becomes NaN/inf or explodes (``--max-loss-ratio``), a failed
  checkpoint write and Ctrl-C stop the run with one line naming the last good
  checkpoint, which is left as it was;
* under ``torchrun`` the ranks share each batch and only rank 0 writes
  (utils/distributed.py).
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from tqdm import tqdm

from utils import distributed
from utils.checkpoint import (CheckpointError, CheckpointWriteError, load_checkpoint, rebuild,
                              save_checkpoint)
from utils.cli import field_default
from utils.csvlog import CSVError, CSVLogger, format_row, format_value, read_rows
from utils.datasets import Data, iterate_batches, load_dataset, n_batches
from utils.errors import RunInterrupted, UserError
from utils.runlock import acquire_run_lock, release_run_lock
from utils.runtime import (ensure_output_dirs, epoch_seed, pick_device, plain_config, print_args,
                           seed_everything, write_run_record)

Step = Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, dict[str, torch.Tensor]]]
CHECK_EVERY = 50  # batches between loss checks (each forces a device sync)


class DivergenceError(UserError):
    """Training diverged: the loss became NaN/inf or exploded."""


class NonFiniteLossError(DivergenceError):
    """The loss became NaN or inf."""


class LossExplodedError(DivergenceError):
    """A batch loss exceeded ``--max-loss-ratio`` times the run's first batch loss."""


class LossGuard:
    """Divergence test on the batch losses of a run.

    The reference is ``|loss|`` of the run's first training batch, computed
    before any optimizer step, i.e. the untrained model's loss; a run whose
    batch loss exceeds ``max_ratio`` times it has diverged (a learning rate of
    1e6 takes the global VQ-VAE's loss from ~550 to 1e33 while staying
    finite). A healthy run only lowers its loss below the untrained model's,
    so the default ratio of 1e3 leaves three orders of magnitude of room. The
    reference is stored in the checkpoint so that a resumed run keeps it.
    """

    def __init__(self, max_ratio: float = 1e3, reference: float | None = None):
        self.max_ratio = float(max_ratio)
        self.reference = reference

    def observe_first(self, loss: torch.Tensor) -> None:
        """Take the reference from the first batch when there is none yet."""
        if self.reference is None:
            value = abs(float(loss.detach()))
            if math.isfinite(value) and value > 0:
                self.reference = value

    @property
    def limit(self) -> float:
        if self.reference is None or not math.isfinite(self.max_ratio):
            return math.inf
        return self.max_ratio * self.reference


def progress_default() -> bool:
    """Progress bars only on a terminal: a log file gets one line per epoch."""
    return sys.stderr.isatty()


def run_epoch(step: Step, tensors: tuple[torch.Tensor, ...], *, batch_size: int,
              optimizer: torch.optim.Optimizer | None = None,
              generator: torch.Generator | None = None, desc: str = "",
              progress: bool | None = None, guard: LossGuard | None = None,
              parallel: bool = False) -> dict[str, float]:
    """One pass over ``tensors`` (aligned, first dim N); trains when ``optimizer``
    is given (shuffled with ``generator``), else evaluates under no_grad in order.

    Returns the per-sample mean of every term. Raises NonFiniteLossError as soon
    as a check sees a NaN/inf loss, and LossExplodedError when training with a
    ``guard`` and a batch loss exceeded its limit, before anything is saved.
    ``progress`` (default: stderr is a terminal) shows a tqdm bar. With
    ``parallel`` (training under torchrun, ``step`` calling the model through
    ``distributed.wrap``) each global batch is shared among the ranks and the
    gradients, losses and sums are those of the global batch (see
    utils/distributed.py; ``step.loss_reduction`` says how the loss reduces).
    """
    train = optimizer is not None
    parallel = parallel and train
    reduction = getattr(step, "loss_reduction", "mean")
    world = distributed.context().world_size if parallel else 1
    progress = progress_default() if progress is None else progress
    n = len(tensors[0])
    sums: dict[str, torch.Tensor] = {}
    # this rank's weighted share of each global batch loss since the last check: summed
    # over ranks only at the check, so that no collective waits on every batch
    pending: list[torch.Tensor] = []
    batches = iterate_batches(*tensors, batch_size=batch_size, shuffle=train, generator=generator)
    bar = tqdm(batches, total=n_batches(n, batch_size), desc=desc, leave=False,
               disable=not progress, mininterval=1.0)
    with torch.set_grad_enabled(train):
        for i, batch in enumerate(bar):
            weight, b = 1.0, len(batch[0])
            if parallel:
                batch, weight, b = distributed.shard(batch, reduction)
            loss, terms = step(batch)
            if train:
                optimizer.zero_grad(set_to_none=True)
                # DDP averages the ranks' gradients: world * weight makes it their weighted sum
                (loss * (world * weight) if parallel else loss).backward()
                optimizer.step()
            for name, value in (terms.items() if b else ()):
                sums[name] = sums.get(name, 0.0) + value.detach() * b
            pending.append(loss.detach().reshape(()) * weight)
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == bar.total:
                losses = torch.stack(pending)
                pending.clear()
                if parallel:
                    losses = distributed.all_sum(losses)
                if train and guard is not None and guard.reference is None:
                    for value in losses:
                        guard.observe_first(value)
                value = losses.abs().max().item()  # NaN propagates through max
                if not math.isfinite(value):
                    raise NonFiniteLossError(f"{desc or 'epoch'}: the loss became NaN/inf by batch "
                                             f"{i + 1}; stopping (lower --lr?)")
                if train and guard is not None and value > guard.limit:
                    raise LossExplodedError(
                        f"{desc or 'epoch'}: the loss reached {value:.3g} by batch {i + 1}, over "
                        f"{guard.max_ratio:g} times the first batch loss {guard.reference:.4g} "
                        f"(--max-loss-ratio); stopping as diverged (lower --lr?)")
                bar.set_postfix({k: f"{float(v.detach()):.4g}" for k, v in list(terms.items())[:2]},
                                refresh=False)
    names = sorted(sums)
    totals = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64) for k in names]) \
        if names else torch.zeros(0, dtype=torch.float64)
    if parallel:
        totals = distributed.all_sum(totals)
    return {name: float(total) / n for name, total in zip(names, totals.tolist())}


def train_epochs(*, train_step: Step, evaluate: Callable[[], dict], train_tensors,
                 optimizer, batch_size: int, seed: int, start_epoch: int, epochs: int,
                 on_epoch_end: Callable[[int, dict], None], model: torch.nn.Module,
                 progress: bool | None = None, guard: LossGuard | None = None,
                 on_epoch_start: Callable[[int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
    """Epochs ``start_epoch..epochs`` (1-based): train, then ``evaluate()`` in
    eval mode (its dict joins the row), then ``on_epoch_end(epoch, row)`` logs
    and checkpoints; the loop ends early once ``should_stop()`` is true
    (checked before each epoch: early stopping).

    Each epoch reseeds torch and its shuffling generator from (seed, epoch), so
    resuming at epoch e reproduces an uninterrupted run exactly on CPU. Under
    torchrun every rank trains on its share of each batch (``train_step``
    calls the model through ``distributed.wrap(model)``, checked here), and
    only rank 0 evaluates, on ``model`` itself.
    """
    ctx = distributed.context()
    parallel = ctx.world_size > 1
    if not distributed.is_wrapped(model):  # else each rank would follow its own gradients
        raise RuntimeError("under torchrun the training step must call the model through "
                           "utils.distributed.wrap(model)")
    for epoch in range(start_epoch, epochs + 1):
        if should_stop is not None and should_stop():
            break
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        start = time.perf_counter()
        s = epoch_seed(seed, epoch)
        torch.manual_seed(distributed.rank_seed(s))
        gen = torch.Generator().manual_seed(s)  # the same batches on every rank
        model.train()
        row = run_epoch(train_step, train_tensors, batch_size=batch_size, optimizer=optimizer,
                        generator=gen, desc=f"epoch {epoch}/{epochs}", progress=progress,
                        guard=guard, parallel=parallel)
        model.eval()
        if ctx.main:  # the other ranks' rows are not logged
            with torch.no_grad():
                row.update(evaluate())
        row.update(epoch=epoch, seconds=time.perf_counter() - start)
        on_epoch_end(epoch, row)


def start_or_resume(args, checkpoint: Path, build: Callable[[], torch.nn.Module], cls,
                    dataset_used: str, resume_keys: tuple[str, ...], device):
    """A new model from ``build()``, or with ``args.resume`` the model, optimizer
    state and last epoch of ``checkpoint`` after checking it was made with the
    same ``resume_keys`` settings and dataset (a setting the checkpoint's config lacks,
    one added since, counts as the default ``args`` declares for it). Returns
    (model, optimizer_state, epoch)."""
    if not args.resume:
        return build().to(device), None, 0
    ckpt = load_checkpoint(checkpoint, device, hint="train without --resume first")
    stored = ckpt.get("config", {})
    for key in resume_keys:
        was = stored.get(key, plain_config({key: field_default(args, key)})[key])
        if was != plain_config({key: getattr(args, key)})[key]:
            raise CheckpointError(f"{checkpoint} was trained with {key}={was!r} but this "
                                  f"run has {key}={getattr(args, key)!r}; match it or drop --resume")
    if ckpt.get("dataset") != dataset_used:
        raise CheckpointError(f"{checkpoint} was trained on {ckpt.get('dataset')} but this run "
                              f"loads {dataset_used}; drop --resume to start anew")
    return rebuild(ckpt, cls, device, checkpoint), ckpt["optimizer"], ckpt["epoch"]


def _logged_epochs(log: Path) -> int:
    """Number of data lines of a log (0 when absent or header only)."""
    try:
        lines = log.read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for ln in lines[1:] if ln.strip())


def refuse_to_replace(args, paths: dict) -> None:
    """Without ``--resume``, an existing run (a checkpoint, or a log with rows)
    is replaced only with ``--overwrite``; a rerun used to wipe the old log
    and leave the old checkpoint."""
    overwrite = getattr(args, "overwrite", False)
    ckpt, log = Path(paths["checkpoint"]), Path(paths["log"])
    if args.resume and overwrite:
        raise UserError(f"--resume continues the run in {ckpt} and --overwrite replaces it; "
                        f"give only one of them")
    if args.resume or overwrite:
        return
    if ckpt.is_file():
        found = f"{ckpt} already holds a run"
    elif _logged_epochs(log):
        found = f"{log} already logs {_logged_epochs(log)} epochs"
    else:
        return
    raise UserError(f"{found}; use --resume to continue it or --overwrite to replace it "
                    f"(or choose another --out-dir)")


def _epoch(row: dict) -> int | None:
    try:
        return int(float(row["epoch"]))
    except (KeyError, ValueError):
        return None


def refuse_other_columns(columns: list[str], ckpt: dict, ckpt_path: Path) -> None:
    """A UserError when the run in ``ckpt`` logged other ``columns`` than this
    version writes: e.g. a run of a version that evaluated every epoch on
    the test split (``test_*``), which cannot be continued into ``val_*``
    columns without mixing the two splits in one log."""
    stored = ckpt.get("log")
    if stored:
        logged = set(stored[-1])
    else:  # an older checkpoint: its last row, less the dataset
        logged = set(ckpt.get("metrics", {})) | {"dataset", "epoch"}
    missing = [c for c in columns if c not in logged]
    if missing:
        extra = sorted(logged - set(columns))
        raise UserError(f"{ckpt_path} holds a run logged with other columns (it lacks {missing}"
                        f"{f' and has {extra}' if extra else ''}), written by an older version; "
                        f"rerun with --overwrite to start it anew")


def resumed_log_rows(log: Path, columns: list[str], ckpt: dict, ckpt_path: Path) -> list[dict]:
    """The rows a resumed run's log starts with, agreeing with its checkpoint.

    A checkpoint written by :func:`fit` holds a copy of every row logged up to
    its epoch (``ckpt["log"]``): those rows are the truth, and the file is
    only compared with them. An older checkpoint holds only its last epoch's
    ``metrics``: the file's rows before that epoch are kept (validated: a
    torn last line is dropped with a warning, a malformed row elsewhere is a
    CSVError) and the last one is taken from the checkpoint. Either way a
    warning names the epochs whose rows were rewritten. A checkpoint whose
    rows lack some of ``columns`` is refused (:func:`refuse_other_columns`).
    """
    done = int(ckpt["epoch"])
    stored = ckpt.get("log")
    refuse_other_columns(columns, ckpt, ckpt_path)
    problem = ""
    try:
        found = read_rows(log, text=("dataset",)) if log.is_file() else []
    except CSVError as err:
        if stored is None:
            raise
        found, problem = [], f" ({err})"
    have: dict[int, dict] = {}
    for row in found:
        e = _epoch(row)
        if e is not None:
            have.setdefault(e, {c: row.get(c, "") for c in columns})
    if stored is not None:
        want = [{c: r.get(c, "") for c in columns} for r in stored]
    else:
        last = {**ckpt.get("metrics", {}), "dataset": ckpt.get("dataset"), "epoch": done}
        want = [have[e] for e in sorted(have) if e < done]
        want.append({c: format_value(last.get(c)) for c in columns})
    by_epoch = {_epoch(r): r for r in want}
    wrong = sorted(e for e in set(have) | set(by_epoch) if have.get(e) != by_epoch.get(e))
    duplicated = len(found) > len(have)
    if wrong or problem or duplicated:
        epochs = ", ".join(map(str, wrong))
        warnings.warn(f"{log} disagreed with {ckpt_path}{problem}"
                      f"{f' at epochs {epochs}' if wrong else ''}"
                      f"{' (duplicated rows)' if duplicated else ''}; rewrote the log from the "
                      f"checkpoint", stacklevel=2)
    return want


class TrainResult(NamedTuple):
    """What a training script's ``train(cfg, out_dir)`` returns: the checkpoint
    whose weights count (the best-validation one under early stopping, else the
    last epoch's) and its epoch's row (without "dataset"), with
    ``epochs_trained`` (epochs run) and ``best_epoch`` (the epoch of those weights)."""

    checkpoint: Path
    metrics: dict


def best_checkpoint(path: Path) -> Path:
    """Where early stopping keeps the best-validation weights of the run whose
    last-epoch checkpoint is ``path``: vae_mnist.pt -> vae_mnist_best.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}_best{path.suffix}")


def finished(ckpt: dict, epochs: int) -> bool:
    """Whether the run of checkpoint ``ckpt`` is done at a budget of ``epochs``:
    it has them, or early stopping ended it (``ckpt["stopped"]``)."""
    return int(ckpt["epoch"]) >= epochs or bool(ckpt.get("stopped"))


def counting_checkpoint(path: Path, ckpt: dict, patience: int | None) -> Path:
    """The checkpoint whose weights a finished run ``ckpt`` (at ``path``) stands for:
    the best-validation one when it trained with early stopping, else ``path``."""
    return best_checkpoint(path) if patience and ckpt.get("best_epoch") else Path(path)


class EarlyStopping:
    """Early stopping on a validation column (lower is better): a run stops once
    ``patience`` epochs passed without a new best (strictly lower; NaN never is),
    and the best epoch's weights are kept (:func:`best_checkpoint`). Its state
    lives in each checkpoint (``best_epoch``, ``best_value``, ``stopped``), so a
    resumed run goes on exactly where it stood."""

    def __init__(self, monitor: str, patience: int, ckpt: dict | None = None):
        ckpt = ckpt or {}
        self.monitor, self.patience = monitor, int(patience)
        self.best_epoch = ckpt.get("best_epoch")
        self.best_value = float(ckpt.get("best_value", math.inf))
        self.stopped = bool(ckpt.get("stopped"))

    def observe(self, epoch: int, row: dict) -> bool:
        """Take epoch ``epoch``'s row; True when it is the new best."""
        value = float(row[self.monitor])
        improved = value < self.best_value  # False for NaN
        if improved:
            self.best_epoch, self.best_value = epoch, value
        self.stopped = epoch - (self.best_epoch or 0) >= self.patience
        return improved

    def state(self) -> dict:
        return {"best_epoch": self.best_epoch, "best_value": self.best_value,
                "stopped": self.stopped}


class Prepared(NamedTuple):
    device: torch.device
    train: Data
    val: Data  # the per-epoch evaluation's data (never the test split)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    done: int  # epochs already trained (0 for a new run)


def prepare_training(args, paths: dict, build: Callable[[], torch.nn.Module], cls,
                     resume_keys: tuple[str, ...]) -> Prepared:
    """What every training script does first: pick the device, check that the
    output folders can be written, take the run's lock (released by
    :func:`fit`), refuse to replace an existing run without ``--overwrite``,
    load the training and validation parts, seed, build or resume the model
    and its Adam optimizer, write the run record."""
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun's rank, before joining the job
        print_args(args)
    device = distributed.init_from_env(pick_device(args.device))
    ctx = distributed.context()
    if args.batch_size < ctx.world_size:
        raise UserError(f"--batch-size {args.batch_size} is smaller than the {ctx.world_size} "
                        f"ranks that share each batch; use at least {ctx.world_size}")
    failure = None
    if ctx.main:  # only rank 0 writes; the others wait for its verdict
        try:
            folders = {Path(paths[k]).parent for k in ("log", "record", "checkpoint")}
            if not getattr(args, "no_plots", True) and "plots" in paths:
                folders.add(Path(paths["plots"]))
            ensure_output_dirs(*sorted(folders))
            acquire_run_lock(paths["checkpoint"])
            refuse_to_replace(args, paths)
        except BaseException as err:  # noqa: BLE001 - re-raised below, after telling the others
            failure = err
    if not distributed.all_ok(failure is None):
        release_run_lock(paths["checkpoint"])
        if failure is not None:
            raise failure
        raise SystemExit(2)  # rank 0 prints why
    try:
        train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
        val = load_dataset(args.dataset, "val", args.data_root, limit=args.limit)
        if len(train.images) < ctx.world_size:
            raise UserError(f"{len(train.images)} training images cannot be shared among "
                            f"{ctx.world_size} ranks")
        seed_everything(args.seed)
        model, opt_state, done = start_or_resume(args, paths["checkpoint"], build, cls, train.name,
                                                 resume_keys, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        if ctx.main:
            write_run_record(paths["record"], args, dataset=train.name, data_source=train.source,
                             device=str(device), checkpoint=str(paths["checkpoint"]),
                             world_size=ctx.world_size)
    except BaseException:
        release_run_lock(paths["checkpoint"])
        raise
    return Prepared(device, train, val, model, optimizer, done)


def fit(*, args, model, optimizer, done: int, train_step: Step, evaluate: Callable[[], dict],
        train_images: torch.Tensor, data, paths: dict, columns: list[str], model_args: dict,
        summary: Callable[[dict], str], monitor: str) -> TrainResult:
    """The shared driver: epochs ``done+1..args.epochs``, each ending with one
    atomic checkpoint (model, model_class, model_args, optimizer, epoch,
    config, dataset, the epoch's metrics and every log row so far), then one
    CSV row. Divergence (NaN/inf or ``--max-loss-ratio``), a failed checkpoint
    write and Ctrl-C stop it with a message naming the last good checkpoint,
    which is left as it was. Releases the run's lock (see prepare_training).

    With ``args.patience`` (early stopping, :class:`EarlyStopping` on the
    validation column ``monitor``), a new best epoch's checkpoint is also
    written to :func:`best_checkpoint` (before the last-epoch one, so a crash
    between the two redoes that epoch), training ends ``patience`` epochs after
    the best, and ``model`` is left holding the best weights.

    Returns the checkpoint whose weights count and its metrics (see
    :class:`TrainResult`; {} on a rank other than 0)."""
    ckpt_path = Path(paths["checkpoint"])
    patience = getattr(args, "patience", None)
    # the epoch in progress, that of the last checkpoint and its metrics
    state = {"epoch": None, "saved": done, "metrics": {}}

    def last_good() -> str:
        return f"{ckpt_path} (epoch {state['saved']})" if state["saved"] else "none yet"

    main = distributed.context().main  # under torchrun only rank 0 writes
    try:
        if main:
            acquire_run_lock(ckpt_path)  # held since prepare_training; re-entrant
        resumed = load_checkpoint(ckpt_path) if args.resume and done else {}
        state["metrics"] = dict(resumed.get("metrics", {})) if main else {}
        rows = []
        if resumed and main:
            rows = resumed_log_rows(Path(paths["log"]), columns, resumed, ckpt_path)
        elif main and getattr(args, "overwrite", False) and ckpt_path.is_file():
            # the log starts anew, so the old checkpoint would disagree with it
            ckpt_path.unlink()
            best_checkpoint(ckpt_path).unlink(missing_ok=True)
            print(f"--overwrite: removed the previous run's {ckpt_path}", file=sys.stderr)
        logger = CSVLogger(paths["log"], columns, rows=rows) if main else None
        history = [dict(r) for r in rows]
        guard = LossGuard(getattr(args, "max_loss_ratio", math.inf),
                          reference=resumed.get("reference_loss"))
        stopping = EarlyStopping(monitor, patience, resumed) if patience else None
        config = plain_config(args)

        def on_epoch_start(epoch):
            state["epoch"] = epoch

        def on_epoch_end(epoch, row):
            if not main:
                return
            row["dataset"] = data.name
            line = format_row(row, columns)
            payload = {
                "model": model.state_dict(), "model_class": type(model).__name__,
                "model_args": model_args, "optimizer": optimizer.state_dict(), "epoch": epoch,
                "config": config, "dataset": data.name, "data_source": data.source,
                "metrics": {k: v for k, v in row.items() if k != "dataset"},
                "log": history + [line], "reference_loss": guard.reference}
            if stopping is not None:
                improved = stopping.observe(epoch, row)
                payload.update(stopping.state())
                if improved:
                    save_checkpoint(best_checkpoint(ckpt_path), payload)
            save_checkpoint(ckpt_path, payload)
            state["saved"] = epoch
            state["metrics"] = {k: v for k, v in row.items() if k != "dataset"}
            history.append(line)
            logger.log(row)  # after the checkpoint: a logged epoch always has one
            print(f"epoch {epoch}: {summary(row)} [{row['seconds']:.1f}s]", file=sys.stderr)

        if stopping is not None and stopping.stopped and main:
            print(f"{ckpt_path} stopped early at epoch {done} (best epoch {stopping.best_epoch})",
                  file=sys.stderr)
        elif done >= args.epochs and main:
            print(f"{ckpt_path} already has {done} epochs (--epochs {args.epochs})",
                  file=sys.stderr)
        train_epochs(train_step=train_step, evaluate=evaluate, model=model, optimizer=optimizer,
                     train_tensors=(train_images,), batch_size=args.batch_size, seed=args.seed,
                     start_epoch=done + 1, epochs=args.epochs, on_epoch_end=on_epoch_end,
                     on_epoch_start=on_epoch_start, guard=guard,
                     should_stop=(lambda: stopping.stopped) if stopping is not None else None)
    except DivergenceError as err:
        raise type(err)(f"{err}; last good checkpoint: {last_good()}") from None
    except CheckpointWriteError as err:
        raise CheckpointWriteError(f"epoch {state['epoch']}: {err}; last good checkpoint: "
                                   f"{last_good()}") from None
    except KeyboardInterrupt:
        where = f"in epoch {state['epoch']}" if state["epoch"] else "before the first epoch"
        raise RunInterrupted(f"stopped {where}; last good checkpoint: {last_good()}") from None
    finally:
        release_run_lock(ckpt_path)
    if not main:
        return TrainResult(ckpt_path, {})
    print(f"wrote {paths['log']} and {ckpt_path}", file=sys.stderr)
    counted, metrics = ckpt_path, dict(state["metrics"])
    if stopping is not None and stopping.best_epoch:
        counted = best_checkpoint(ckpt_path)
        best = load_checkpoint(counted, next(model.parameters()).device)
        model.load_state_dict(best["model"])  # the script goes on with the best weights
        metrics = dict(best["metrics"])
        print(f"best validation {monitor} {stopping.best_value:.6g} at epoch "
              f"{stopping.best_epoch}{' (stopped early)' if stopping.stopped else ''}: {counted}",
              file=sys.stderr)
    metrics.update(epochs_trained=state["saved"],
                   best_epoch=stopping.best_epoch if stopping is not None else state["saved"])
    return TrainResult(counted, metrics)


def prefixed(prefix: str, terms: dict) -> dict:
    """prefixed("val_", {'bce': 1.0}) -> {'val_bce': 1.0}."""
    return {f"{prefix}{k}": v for k, v in terms.items()}
