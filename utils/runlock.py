"""One writer per run: an exclusive lock file beside the file a run owns.

Two runs started into the same ``--out-dir`` used to both exit 0 with their
CSV rows interleaved and the second run's checkpoint left behind. Every
training stage now takes ``<checkpoint>.lock`` (``fcntl.flock``, exclusive,
non-blocking) before it reads or writes anything, and a second run is refused
with a message naming the holder.

The kernel drops a ``flock`` when its holder dies, so a crashed or killed run
never blocks the next one: the stale file is simply locked again. The file is
removed on release; the inode check in :func:`_lock_fd` keeps that safe when
another process opened the file just before it was unlinked. ``flock`` is
reliable on local file systems; on NFS it depends on the server.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import os
from pathlib import Path

from utils.errors import UserError


class RunLockedError(UserError):
    """Another live process holds the lock of this run."""


_HELD: dict[str, "RunLock"] = {}  # resolved lock path -> lock held by this process


def lock_path(path: str | Path) -> Path:
    """``x/vae_mnist.pt`` -> ``x/vae_mnist.pt.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" by process {pid}" if pid.isdigit() else ""


def _lock_fd(path: Path) -> int | None:
    """An fd of ``path`` holding the exclusive flock, or None when another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The holder may have unlinked the file between our open and our flock:
        # then we locked an orphan inode and must retry on the current file.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


class RunLock:
    """An exclusive lock on ``<path>.lock``, held until :meth:`release` or exit.

    Use :func:`acquire_run_lock` / :func:`release_run_lock` (or ``with
    run_lock(path):``); the lock is re-entrant within one process, so a script
    that calls a training driver twice in-process does not lock itself out.
    """

    def __init__(self, path: str | Path, what: str = "this run"):
        self.target = Path(path)
        self.path = lock_path(path)
        self.fd = _lock_fd(self.path)
        if self.fd is None:
            raise RunLockedError(
                f"{self.target} is being written by another run (lock {self.path} held"
                f"{_holder(self.path)}); wait for it to finish or use another --out-dir")
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: see _lock_fd
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def _key(path: str | Path) -> str:
    return str(lock_path(Path(path).resolve()))


def acquire_run_lock(path: str | Path) -> RunLock:
    """Lock the run that writes ``path`` (a checkpoint), or raise RunLockedError."""
    key = _key(path)
    if key not in _HELD:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _HELD[key] = RunLock(path)
    return _HELD[key]


def release_run_lock(path: str | Path) -> None:
    """Release the lock of ``path`` if this process holds it."""
    lock = _HELD.pop(_key(path), None)
    if lock is not None:
        lock.release()


class run_lock:  # noqa: N801 - used as a context manager, like open()
    """``with run_lock(checkpoint): ...`` holds the run's lock for the block."""

    def __init__(self, path: str | Path):
        self.target = path

    def __enter__(self) -> RunLock:
        self.held_before = _key(self.target) in _HELD
        return acquire_run_lock(self.target)

    def __exit__(self, *exc) -> None:
        if not self.held_before:
            release_run_lock(self.target)


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        _HELD.pop(key).release()


class waiting_lock:  # noqa: N801 - used as a context manager, like open()
    """``with waiting_lock(path): ...`` holds ``<path>.lock`` exclusively for a short
    read-modify-write of ``path`` shared by concurrent processes (the cache index,
    the rows of cluster jobs), waiting for another holder instead of refusing as
    :class:`RunLock` does. The lock file is left in place: unlinking it would race
    with a waiter that opened it (:func:`_lock_fd`'s inode check is for RunLock)."""

    def __init__(self, path: str | Path):
        self.path = lock_path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.path

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # closing drops the flock
