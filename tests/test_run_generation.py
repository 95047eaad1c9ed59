"""train/run_generation.py on a tiny setting (mnist-5k, 240 images, K=4): a row
per method with the prior it should have, the numbers against references
computed here from the cached models, reruns that skip finished rows."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.conv_net import grid_vectors
from train import comparison_methods as cm
from train import run_generation as rg
from train import train_prior
from utils import methods as vocab
from utils.checkpoint import load_checkpoint
from utils.cli import run_main
from utils.datasets import load_dataset
from utils.results import GENERATION_COLUMNS, read_generation

LIMIT = 240
ARGV = ["--dataset", "mnist-5k", "--limit", str(LIMIT), "--codebook-sizes", "4", "--seeds", "0",
        "--epochs", "1", "--prior-epochs", "1", "--prior-channels", "8", "--prior-layers", "2",
        "--n-fid", "40", "--classifier-epochs", "1", "--device", "cpu",
        "--methods", "kmeans-conv", "kmeans-vae"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    args = rg.parse_args(ARGV + ["--work-dir", str(root / "work"), "--results-dir", str(root / "res")])
    rg.main(args)
    return root, args


def test_one_row_per_method_with_its_prior(tiny):
    root, _ = tiny
    df = pd.read_csv(root / "res" / "generation.csv")
    assert list(df.columns) == GENERATION_COLUMNS
    assert dict(zip(df.method, df.prior)) == {"kmeans-conv": "pixelcnn", "kmeans-vae": "histogram"}
    assert dict(zip(df.method, df.bits_per_image)) == {"kmeans-conv": 98.0, "kmeans-vae": 2.0}
    assert (df.n_train == 216).all() and (df.n_test == 240).all() and (df.temperature == 1).all()
    for col in ("prior_nll_bits", "fid_samples", "fid_recon", "fid_train", "classifier_accuracy"):
        assert df[col].notna().all() and (df[col] >= 0).all(), col
    # perplexity is 2^(bits per code): 49 codes per map, one per image
    codes = df.method.map({"kmeans-conv": 49, "kmeans-vae": 1})
    assert np.allclose(df.prior_perplexity, 2 ** (df.prior_nll_bits / codes), rtol=1e-5)
    summary = pd.read_csv(root / "res" / "generation_summary.csv")
    assert set(summary.method) == {"kmeans-conv", "kmeans-vae"} and (summary.n_seeds == 1).all()
    for method in ("kmeans-conv", "kmeans-vae"):
        assert (root / "res" / "figures" / f"samples_mnist-5k_{method}_K4_full.png").is_file()


def quantizer_file(args, method):
    return cm.quantizer_path(args, method, 4, 0, cm.variants(args, method)[0])


def test_grid_codes_are_the_nearest_centroid_of_every_grid_vector(tiny):
    """The prior's code maps of kmeans-conv, against brute force over the codebook."""
    _, args = tiny
    path = quantizer_file(args, "kmeans-conv")
    maps = train_prior.code_maps(path)
    ckpt = load_checkpoint(path)
    vae = cm.vae_for_seed(args, 0, "cpu", "conv")
    test = load_dataset("mnist-5k", "test", limit=LIMIT)
    z = vae.latent_means(test.images)  # (N, D, 7, 7)
    codebook = torch.as_tensor(ckpt["quantizer"]["codebook_"], dtype=torch.float32)
    vectors = grid_vectors(z)  # (N * 49, D), image-major, raster order
    nearest = torch.cdist(vectors.double(), codebook.double()).argmin(1).reshape(len(z), 7, 7)
    assert maps.test_codes.shape == (LIMIT, 7, 7)
    assert (maps.test_codes == nearest).float().mean() > 0.999  # ties at float precision aside
    images = maps.decode(maps.test_codes[:3])
    grid = codebook[maps.test_codes[:3]].permute(0, 3, 1, 2)
    with torch.no_grad():
        assert torch.allclose(images, torch.sigmoid(vae.decode(grid)), atol=1e-6)


def test_histogram_row_is_the_laplace_smoothed_code_length(tiny):
    """kmeans-vae's row: -log2 of the smoothed training histogram, averaged over the
    test codes, computed here from the code maps."""
    root, args = tiny
    maps = train_prior.code_maps(quantizer_file(args, "kmeans-vae"))
    counts = np.bincount(maps.train_codes.numpy(), minlength=4)
    p = (counts + 1) / (counts.sum() + 4)
    expected = float(-np.log2(p[maps.test_codes.numpy()]).mean())
    row = read_generation(root / "res" / "generation.csv").set_index("method").loc["kmeans-vae"]
    assert math.isclose(row.prior_nll_bits, expected, rel_tol=1e-5)
    assert math.isclose(row.histogram_nll_bits, expected, rel_tol=1e-5)


def test_classifier_accuracy_is_measured_on_the_test_split(tiny):
    root, args = tiny
    from models.classifier import Classifier
    from utils.checkpoint import rebuild

    path = rg.classifier_checkpoint(args)
    model = rebuild(load_checkpoint(path), Classifier, "cpu", path).eval()
    test = load_dataset("mnist-5k", "test", limit=LIMIT)
    with torch.no_grad():
        acc = float((model(test.images).logits.argmax(1) == test.labels).float().mean())
    df = read_generation(root / "res" / "generation.csv")
    assert np.allclose(df.classifier_accuracy, acc)


def test_rerun_skips_finished_rows(tiny, monkeypatch):
    root, args = tiny
    before = (root / "res" / "generation.csv").read_text()

    def boom(*a, **k):
        raise AssertionError("a finished row was redone")

    monkeypatch.setattr(train_prior, "train", boom)
    rg.main(args)
    assert (root / "res" / "generation.csv").read_text() == before


def test_a_lost_row_is_rebuilt_from_its_finished_prior(tiny, monkeypatch):
    """A row missing from the CSV (e.g. torn and dropped) comes back from the
    prior's metrics on disk, without training again, and with the same numbers."""
    root, args = tiny
    csv = root / "res" / "generation.csv"
    before = read_generation(csv)
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:-1]) + lines[-1].rstrip("\n"))  # a torn last row
    monkeypatch.setattr(train_prior, "train", lambda *a, **k: pytest.fail("retrained"))
    with pytest.warns(UserWarning, match="torn"):
        rg.main(args)
    after = read_generation(csv)
    cols = ["method", "prior_nll_bits", "fid_samples", "fid_recon"]
    assert after[cols].equals(before[cols])


def test_each_prior_number_keeps_its_one_name_from_train_prior_to_the_csv():
    """generation.csv's columns are the runner's own (identity, bits, classifier
    accuracy, seconds) or train_prior.PriorMetrics fields of the same name."""
    own = {"dataset", "setting", "method", "K", "seed", "config_hash", "config_id", "dataset_used",
           "bits_per_image", "classifier_accuracy", "prior_seconds"}
    assert set(GENERATION_COLUMNS) - own <= set(train_prior.PriorMetrics._fields)


def test_finetuned_decoders_are_refused_in_one_line(tmp_path, capsys):
    args = rg.parse_args(ARGV + ["--decoders", "finetuned", "--work-dir", str(tmp_path / "w"),
                                 "--results-dir", str(tmp_path / "r")])
    assert run_main(rg.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --decoders") and not (tmp_path / "r").exists()


def test_only_quantized_methods_are_accepted(capsys):
    with pytest.raises(SystemExit):
        rg.parse_args(["--methods", "vae-conv"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_default_methods_are_the_registrys_and_those_of_the_published_runs():
    """DEFAULT_METHODS is a filter over utils/methods.py (every method with codes); the
    published runs, which gave no --methods, ran a subset of it, in its order (methods
    added to the registry later join the default)."""
    assert sorted(rg.DEFAULT_METHODS) == sorted(vocab.names(quantized=True)) == sorted(rg.QUANTIZED)
    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    for record in sorted(results.glob("generation_*_full_run.json")):
        run = json.loads(record.read_text())
        if "--methods" not in run["argv"]:
            today = rg.parse_args(run["argv"][1:]).methods
            assert [m for m in today if m in run["config"]["methods"]] == run["config"]["methods"]
