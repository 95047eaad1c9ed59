"""Atomic checkpoints that rebuild their model and load with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values, e.g.
``{"model": state_dict, "model_class": "VAE", "model_args": {...},
"optimizer": ..., "epoch": 3, "config": {...}, "dataset": "mnist-5k"}``
(nanoGPT's layout, plus the class name so that a VQ-VAE checkpoint passed
where a VAE is expected is named as such instead of failing in a constructor).
"""
from __future__ import annotations

import contextlib
import re
import signal
import threading
from pathlib import Path

import torch

from utils.errors import UserError
from utils.runtime import atomic_file


class CheckpointError(UserError):
    """Missing, unreadable or mismatched checkpoint."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, folder gone); the previous
    file at that path, if any, is unchanged."""


_last_saved: list[Path] = []  # the last checkpoint this process wrote, for Ctrl-C messages


def last_saved() -> Path | None:
    """The path of the last checkpoint this process wrote, or None."""
    return _last_saved[-1] if _last_saved else None


def forget_saved() -> None:
    """Start a new run's count of saved checkpoints (run_main calls it)."""
    _last_saved.clear()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C that arrives during a checkpoint write until the write is
    done: raised inside torch.save's C++ writer it would surface as a
    RuntimeError (a "write failed" error) instead of an interruption."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically: a temp file in the same folder,
    fsync, then ``os.replace``, so a crash never leaves a half-written file.

    Raises CheckpointWriteError (one line, naming the path) when the write
    fails, e.g. on a full disk, where torch raises a RuntimeError from its zip
    writer; the previous file at ``path`` is then left as it was.
    """
    path = Path(path)
    existed = path.is_file()
    with _sigint_deferred():  # a held Ctrl-C is raised on leaving, once _last_saved names this file
        try:
            with atomic_file(path) as f:
                torch.save(payload, f)
        except (OSError, RuntimeError) as err:
            if isinstance(err, UserError):
                raise
            kept = "the previous checkpoint there is unchanged" if existed else "nothing was written"
            raise CheckpointWriteError(f"could not write {path} ({_first_line(err)}); {kept}") from err
        _last_saved[:] = [path]
    return path


def _load_failure(err: BaseException) -> str:
    """torch.load's error in a few words, without its advice to retry with
    ``weights_only=False`` (which would run whatever code the file holds)."""
    text = str(err)
    if "Weights only load failed" in text:
        m = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\s+was not an allowed global|\.\s+Please"
                      r"|\n\n|$)", text, re.S)
        detail = " ".join(m.group(1).split()) if m and m.group(1).strip() else "unsupported content"
        return f"it holds more than tensors and plain values: {detail}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def load_checkpoint(path: str | Path, map_location="cpu", *, hint: str = "") -> dict:
    """Load a checkpoint with ``weights_only=True``; one-line errors when it is
    missing or unreadable (``hint`` says how to make one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (f"; {hint}" if hint else ""))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint ({_load_failure(err)}); "
                              f"delete it and train again") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this project (it holds a "
                              f"{type(ckpt).__name__}, not a dict)")
    return ckpt


def rebuild(ckpt: dict, cls, device="cpu", path: str | Path = "checkpoint"):
    """Build ``cls(**ckpt['model_args'])`` and load ``ckpt['model']`` strictly.

    A checkpoint that names its class (``ckpt['model_class']``) must name
    ``cls``; one without (older files) must at least build ``cls`` from its
    ``model_args``. Either failure is a one-line CheckpointError naming ``path``.
    """
    if "model_args" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} does not hold a model (no 'model'/'model_args' entries)")
    stored = ckpt.get("model_class")
    if stored is not None and stored != cls.__name__:
        raise CheckpointError(f"{path} holds a {stored}, not a {cls.__name__}")
    try:
        model = cls(**ckpt["model_args"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} does not hold a {cls.__name__}: its model_args do not "
                              f"build one ({_first_line(err)})") from None
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match {cls.__name__}: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(device)
