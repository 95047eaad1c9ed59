"""Shared fixtures: tiny synthetic IDX datasets, no network, clean module state."""
from __future__ import annotations

import gzip
import hashlib
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import utils.datasets as datasets

# The models here are tiny: on a shared 2-core machine, intra-op threads only spin
# against each other (measured: a 2-epoch run takes ~10x longer with the default).
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # LeCun's IDX: 0x00000803 (uint8, 3 dims), 0x00000801


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array (N, 28, 28) or (N,) as IDX bytes, written from the format's spec."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {3: IMAGES_MAGIC, 1: LABELS_MAGIC}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(autouse=True)
def fresh_dataset_state(monkeypatch):
    """Each test starts with no dataset announced and no download remembered as failed."""
    monkeypatch.setattr(datasets, "_ANNOUNCED", set())
    monkeypatch.setattr(datasets, "_DOWNLOAD_FAILED", set())


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """torchvision's download fails at once, as offline, without touching the network.

    Returns the list of (root, family) of the attempts, for tests that check one was made.
    """
    calls = []

    def offline(root, family):
        calls.append((Path(root), family))
        return None

    monkeypatch.setattr(datasets, "_torchvision_download", offline)
    return calls


@pytest.fixture(autouse=True)
def clean_process_state(monkeypatch):
    """run_main replaces warnings.formatwarning for good; VQG_DEBUG would re-raise."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    monkeypatch.delenv("VQG_DEBUG", raising=False)


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture():
    """The ``idx_bytes`` helper, for test modules."""
    return idx_bytes


@pytest.fixture
def write_idx():
    """write_idx(path, array): write an IDX file, gzipped when path ends in .gz; returns its bytes."""
    def write(path: Path, array: np.ndarray) -> bytes:
        raw = idx_bytes(array)
        blob = gzip.compress(raw, mtime=0) if str(path).endswith(".gz") else raw
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        return blob
    return write


def _synthetic_split(rng, n):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0] = 0  # the extremes of the range, to check the scaling to [0, 1]
    images[1] = 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


@pytest.fixture
def synthetic_root(tmp_path, write_idx, monkeypatch):
    """A data root whose ``MNIST/raw`` and ``FashionMNIST/raw`` hold tiny random IDX .gz
    files (30 train, 10 test images); the checksum tables are patched to accept them:
    MNIST through the .gz MD5s (the upstream path), Fashion-MNIST through the
    decompressed MD5s (the Debian path)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    arrays = {}
    for family, table in (("MNIST", datasets.GZ_MD5), ("FashionMNIST", datasets.RAW_MD5)):
        for split, n in (("train", 30), ("test", 10)):
            images, labels = _synthetic_split(rng, n)
            arrays[family, split] = (images, labels)
            for stem, array in zip(datasets._FILES[split], (images, labels)):
                blob = write_idx(root / family / "raw" / f"{stem}.gz", array)
                real = blob if table is datasets.GZ_MD5 else idx_bytes(array)
                monkeypatch.setitem(table[family], stem, md5(real))
    return SimpleNamespace(root=root, arrays=arrays,
                           mnist_raw=root / "MNIST" / "raw", fashion_raw=root / "FashionMNIST" / "raw")


@pytest.fixture
def fashion_dir():
    """Debian's full Fashion-MNIST folder; skips the test when the package is not installed."""
    folder = datasets.DEBIAN_FASHION_DIR
    if not all((folder / f"{stem}.gz").is_file() for split in datasets.SPLITS
               for stem in datasets._FILES[split]):
        pytest.skip(f"{folder} absent (apt-get install dataset-fashion-mnist)")
    return folder


@pytest.fixture
def python():
    """The interpreter that runs the tests (the venv's), for subprocess tests."""
    return sys.executable


# --- graphs shared by tests/test_graph_tools.py and tests/test_kmedoids.py ---

@pytest.fixture(scope="module")
def roll():
    """500 points of a noisy swiss roll (a 2-D manifold in 3-D), its graph and all geodesics."""
    from sklearn.datasets import make_swiss_roll

    from geodesic.graph import connect_components, geodesic_distances, knn_graph

    X = make_swiss_roll(500, noise=0.3, random_state=0)[0]
    graph = connect_components(knn_graph(X, 10), X)
    return X, graph, geodesic_distances(graph)


@pytest.fixture(scope="module")
def two_blobs():
    """Two well separated blobs: the 8-NN graph has exactly two components."""
    rng = np.random.default_rng(1)
    return np.concatenate([rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + 40.0])


# --- figures: what utils/plot.py draws, read back without looking at pixels ---

@pytest.fixture
def drawn_lines(monkeypatch):
    """Records, for every figure utils.plot saves, {panel title: [(label, linestyle)]}
    of its plotted lines (the figure is still saved)."""
    from utils import plot

    figures = []
    save = plot.save_figure

    def recording(fig, path):
        figures.append({ax.get_title(): [(ln.get_label(), ln.get_linestyle())
                                         for ln in ax.get_lines()] for ax in fig.axes})
        return save(fig, path)

    monkeypatch.setattr(plot, "save_figure", recording)
    return figures
