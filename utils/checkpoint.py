"""Atomic checkpoints that rebuild their model and load with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values, e.g.
``{"model": state_dict, "model_args": {...}, "optimizer": ..., "epoch": 3,
"config": {...}, "dataset": "mnist-5k"}`` (nanoGPT's layout).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from utils.errors import UserError


class CheckpointError(UserError):
    """Missing, unreadable or mismatched checkpoint."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically: a temp file in the same folder,
    fsync, then ``os.replace``, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location="cpu", *, hint: str = "") -> dict:
    """Load a checkpoint with ``weights_only=True``; one-line errors when it is
    missing or unreadable (``hint`` says how to make one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (f"; {hint}" if hint else ""))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        first = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first}); "
                              f"delete it and train again") from None


def rebuild(ckpt: dict, cls, device="cpu", path: str | Path = "checkpoint"):
    """Build ``cls(**ckpt['model_args'])`` and load ``ckpt['model']`` strictly."""
    if "model_args" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} does not hold a model (no 'model'/'model_args' entries)")
    model = cls(**ckpt["model_args"])
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match {cls.__name__}: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(device)
