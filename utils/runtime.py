"""Device choice, seeding and run provenance shared by every script."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb"):
    """``with atomic_file(p) as f: f.write(...)`` writes a temp file beside ``p``,
    fsyncs it and renames it over ``p`` (``os.replace``), so that readers and
    crashes see the old file or the new one, never half of one. On an error
    the temp file is removed and ``p`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_DEVICE = re.compile(r"(auto|cpu|cuda)(:(\d+))?")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cpu'; 'cuda' or 'cuda:N' when
    that GPU is visible. Anything else (tpu, mps, cuda:x) or a GPU that is not
    there is a one-line UserError that lists the choices."""
    m = _DEVICE.fullmatch(str(name).strip().lower())
    if m is None or (m.group(2) and m.group(1) != "cuda"):
        raise UserError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    kind, index = m.group(1), m.group(3)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for but no CUDA GPU is available; "
                        "use --device auto or cpu")
    if index is not None and int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: there is no GPU {index}, only "
                        f"{torch.cuda.device_count()} visible (cuda:0 .. "
                        f"cuda:{torch.cuda.device_count() - 1})")
    return torch.device(f"cuda:{index}" if index is not None else "cuda")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch, so that a resumed run draws the same numbers as an
    uninterrupted one without storing RNG states."""
    return (seed * 1_000_003 + epoch) % 2**63


# Tracked files that runs write (the published results): a sweep that appends to
# them must not call the code it runs modified.
RUN_OUTPUTS = "experiments/results"


def git_info(root: Path = REPO_ROOT) -> dict:
    """The commit of the code that runs and whether tracked files other than the
    runs' own outputs (:data:`RUN_OUTPUTS`) had local changes."""
    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or "unknown",
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                  f":(exclude){RUN_OUTPUTS}"))}
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
    """Print the sorted arguments at start (as DINO does) on one line,
    ``config: batch_size=128, dataset=mnist, ...``; the run record keeps them too."""
    cfg = plain_config(args)
    print("config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()), file=sys.stderr)


def ensure_output_dirs(*folders: str | Path) -> None:
    """Create ``folders`` and check that a file can be written in each, so that
    a read-only place or a file given as --out-dir is one line naming the path
    before any work is done, not a traceback at the first write."""
    for folder in map(Path, folders):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()),
                       None)
        if blocker is not None:
            raise UserError(f"{blocker} is a file, not a folder; choose another --out-dir")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise UserError(f"cannot write in {folder}: {err.strerror or err}; "
                            f"choose another --out-dir") from None


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else ``platform.processor()``:
    a model retrained on another CPU differs in the last digits (docs/protocol.md), so a
    run record says which CPU wrote its rows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def write_run_record(path: Path, args, *, keep_earlier: bool = False, **extra) -> dict:
    """Write config, command line, git commit, versions and ``extra`` (e.g. the
    dataset actually used) as JSON beside a run's outputs; returns the record.

    ``keep_earlier``: for a results folder that several runs append to (the
    sweep runners), the record already there and its own ``earlier`` list move
    into this record's ``earlier`` list, oldest first, so no run's provenance
    is lost; a training run owns its folder and replaces its record."""
    record = {"config": plain_config(args), "argv": sys.argv, "git": git_info(),
              "torch": torch.__version__, "python": sys.version.split()[0],
              "cpu": cpu_name(), "cpu_count": os.cpu_count(), **extra}
    path = Path(path)
    if keep_earlier and path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            previous = {"unreadable_record": path.read_text(errors="replace")[:2000]}
        earlier = previous.pop("earlier", []) if isinstance(previous, dict) else []
        record["earlier"] = [*earlier, previous]
    with atomic_file(path, "w") as f:
        f.write(json.dumps(record, indent=2, default=str) + "\n")
    return record
