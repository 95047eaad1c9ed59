"""Device choice, seeding and run provenance shared by every script."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available; "
                        "use --device auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch, so that a resumed run draws the same numbers as an
    uninterrupted one without storing RNG states."""
    return (seed * 1_000_003 + epoch) % 2**63


def git_info() -> dict:
    """The commit of the code that runs and whether the tree had local changes."""
    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or "unknown",
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def plain_config(args) -> dict:
    """argparse Namespace or dict -> dict of plain Python values (paths as str)."""
    items = vars(args).items() if not isinstance(args, dict) else args.items()
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    return {k: plain(v) for k, v in sorted(items)}


def print_args(args) -> None:
    """Print the sorted arguments at start (as DINO does), for the run's log."""
    cfg = plain_config(args)
    print("\n".join(f"  {k}: {v}" for k, v in cfg.items()), file=sys.stderr)


def stage_paths(out_dir: Path, stage: str, dataset: str) -> dict[str, Path]:
    """Where a training stage writes: ``<stage>_train_log.csv`` for the default
    dataset (mnist), ``<stage>_<dataset>_train_log.csv`` otherwise; the run
    record, checkpoint ``<stage>_<dataset>.pt`` and the plot folder. Named after
    the requested dataset; the dataset actually used is recorded inside."""
    out_dir = Path(out_dir)
    log = f"{stage}_train_log.csv" if dataset == "mnist" else f"{stage}_{dataset}_train_log.csv"
    return {"log": out_dir / "logs" / log,
            "record": out_dir / "logs" / f"{stage}_{dataset}_run.json",
            "checkpoint": out_dir / "checkpoints" / f"{stage}_{dataset}.pt",
            "plots": out_dir / "plots"}


def write_run_record(path: Path, args, **extra) -> dict:
    """Write config, command line, git commit, versions and ``extra`` (e.g. the
    dataset actually used) as JSON beside a run's outputs; returns the record."""
    record = {"config": plain_config(args), "argv": sys.argv, "git": git_info(),
              "torch": torch.__version__, "python": sys.version.split()[0], **extra}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record
