"""Evaluating cached comparison models on new images (train/evaluate_cached.py),
the runner's --cached-only and the work folder's index (utils/cache_index.py)."""
import numpy as np
import pandas as pd
import pytest
import torch

from train import comparison_methods as cm
from train import evaluate_cached as ec
from train import run_comparison as rc
from utils import cache_index
from utils.cli import run_main
from utils.datasets import load_dataset
from utils.results import METRICS

ARGV = ["--dataset", "mnist-5k", "--limit", "120", "--codebook-sizes", "4", "--seeds", "0",
        "--epochs", "1", "--no-figures"]
METHODS = ["vae-continuous", "vqvae-global", "kmeans-vae", "geodesic-vae"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcache")
    argv = ARGV + ["--methods", *METHODS, "--work-dir", str(root / "work"),
                   "--results-dir", str(root / "res")]
    rc.main(rc.parse_args(argv))
    return root, argv


def test_test_split_gives_the_runners_row(sweep):
    root, argv = sweep
    args = rc.parse_args(argv)
    rows = pd.read_csv(root / "res" / "comparison.csv", keep_default_na=False)
    test = load_dataset("mnist-5k", "test", args.data_root, limit=args.limit)
    for method in METHODS:
        want = rows[rows.method == method].iloc[0]
        got = ec.evaluate_cached(args, method, int(want.K), 0, test.images.numpy()[:, 0],
                                 test.labels.numpy())
        assert got["config_hash"] == want.config_hash
        for m in METRICS:  # the columns of the fixed file it is compared with
            expected = float(want[m]) if want[m] != "" else float("nan")
            assert got[m] == pytest.approx(expected, rel=1e-5, abs=1e-6, nan_ok=True), (method, m)


def test_without_labels_the_label_metrics_are_nan(sweep):
    root, argv = sweep
    args = rc.parse_args(argv)
    images = torch.rand(7, 1, 28, 28)
    got = ec.evaluate_cached(args, "kmeans-vae", 4, 0, images)
    assert np.isnan(got["nmi"]) and got["test_mse"] > 0 and got["n_test"] == 7


def test_index_names_every_cached_model(sweep):
    root, _ = sweep
    work = root / "work"
    index = pd.read_csv(work / "index.csv", keep_default_na=False)
    named = {(work / p).resolve() for p in index.path}
    cached = {p.resolve() for p in work.rglob("*.pt")}
    assert named == cached and all(p.is_file() for p in named)
    assert set(index.method) == set(METHODS)
    geo = index[index.method == "geodesic-vae"]
    assert set(geo.part) == {"vae", "quantizer"} and (geo.K == 4).all() and (geo.seed == 0).all()
    # the row hash is comparison.csv's; the VAE is shared by the rows built on it
    rows = pd.read_csv(root / "res" / "comparison.csv")
    assert set(index.row_hash) == set(rows.config_hash)
    assert index[index.part == "vae"].config_hash.nunique() == 1
    assert len(cache_index.lookup(work, method="vqvae-global", K=4, seed=0)) == 1


def test_index_record_replaces_an_entry(tmp_path):
    entry = {"dataset": "d", "method": "m", "K": 4, "seed": 0, "edge_length": "", "code_vectors": "",
             "decoder": "", "row_hash": "abc", "part": "vae", "config_hash": "h1",
             "path": tmp_path / "a.pt"}
    cache_index.record(tmp_path, [entry])
    cache_index.record(tmp_path, [{**entry, "config_hash": "h2", "path": "b.pt"},
                                  {**entry, "part": "quantizer", "path": "q.pt"}])
    rows = cache_index.read_index(tmp_path)
    assert [(r["part"], r["config_hash"], r["path"]) for r in rows] == [
        ("vae", "h2", "b.pt"), ("quantizer", "h1", "q.pt")]


def test_a_miss_under_cached_only_trains_and_writes_nothing(tmp_path, capsys):
    args = rc.parse_args(ARGV + ["--methods", "kmeans-vae", "--cached-only",
                                 "--work-dir", str(tmp_path / "work"),
                                 "--results-dir", str(tmp_path / "res")])
    assert run_main(rc.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if e.startswith("error")] == err[-1:]
    assert err[-1].startswith("error: vae of seed 0 is not cached (") and "--cached-only" in err[-1]
    assert not (tmp_path / "work").exists()
    assert not (tmp_path / "res" / "comparison.csv").exists()


def test_the_script_on_a_miss_and_on_bad_images(sweep, tmp_path, capsys):
    root, argv = sweep
    images = tmp_path / "x.npy"
    np.save(images, np.random.default_rng(0).random((5, 28, 28)).astype(np.float32))
    common = ARGV[:-1] + ["--work-dir", str(root / "work"), "--images", str(images)]
    # seed 1 was never trained: one line, exit 2, nothing new in the work folder
    before = sorted(p.name for p in (root / "work").iterdir())
    assert run_main(ec.main, ec.parse_args(common + ["--method", "vqvae-global", "--K", "4",
                                                     "--seed", "1"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if e.startswith("error")] == err[-1:]
    assert err[-1].startswith("error: vqvae_global_K4 of seed 1 is not cached")
    assert sorted(p.name for p in (root / "work").iterdir()) == before
    np.save(images, np.full((5, 28, 28), 255, dtype=np.uint8))
    assert run_main(ec.main, ec.parse_args(common + ["--method", "vqvae-global", "--K", "4"])) == 2
    assert "outside [0, 1]" in capsys.readouterr().err
    # a hit: metrics printed and written
    np.save(images, np.random.default_rng(0).random((5, 1, 28, 28)).astype(np.float32))
    out = tmp_path / "m.csv"
    assert run_main(ec.main, ec.parse_args(common + ["--method", "vqvae-global", "--K", "4",
                                                     "--out", str(out)])) == 0
    written = pd.read_csv(out)
    assert len(written) == 1 and written.n_test[0] == 5 and written.method[0] == "vqvae-global"


def test_cached_only_is_restored_after_the_block():
    with pytest.raises(cm.CacheMiss), cm.cached_only():
        cm.refuse_miss("x", "nowhere")
    cm.refuse_miss("x", "nowhere")  # outside the block a miss trains, as before
