"""train/train_prior.py end to end on a tiny VQ-VAE built and saved in process
(mnist-5k, CPU): code_maps' contract, the outputs, resume, errors."""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.classifier import Classifier
from models.prior import GatedPixelCNN
from models.vqvae import VQVAE
from train.train_prior import COLUMNS, code_maps, covered_classes, main, parse_args, run_paths, train
from utils.checkpoint import save_checkpoint
from utils.cli import run_main
from utils.datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]
LIMIT = 120


def save_model(path, model, dataset="mnist-5k", limit=LIMIT):
    """A checkpoint in train_*.py's layout for an untrained ``model``."""
    return save_checkpoint(path, {"model": model.state_dict(), "model_class": type(model).__name__,
                                  "model_args": model.model_args, "epoch": 1, "dataset": dataset,
                                  "config": {"dataset": dataset, "limit": limit}})


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Untrained conv and global VQ-VAEs (K=16) and a classifier, saved as checkpoints."""
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    conv = save_model(root / "vqvae_conv.pt", VQVAE("conv", 16, 8, hidden=8, n_res_blocks=1))
    glob = save_model(root / "vqvae_global.pt", VQVAE("global", 16, 8, hidden=32))
    clf = save_model(root / "classifier.pt", Classifier(channels1=4, channels2=8, feature_dim=16))
    return {"conv": conv, "global": glob, "classifier": clf, "root": root}


def prior_args(out, codes_from, *extra, epochs=2):
    return parse_args(["--codes-from", str(codes_from), "--epochs", str(epochs),
                       "--batch-size", "32", "--channels", "8", "--n-layers", "2",
                       "--n-samples", "6", "--sample-batch-size", "16", "--out-dir", str(out),
                       "--device", "cpu", *extra])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run2(sources, tmp_path_factory):
    """Two epochs with plots and FID (n_fid 20), shared read-only."""
    out = tmp_path_factory.mktemp("prior2")
    main(prior_args(out, sources["conv"], "--classifier", str(sources["classifier"]),
                    "--n-fid", "20"))
    return out


def test_code_maps_contract(sources):
    maps = code_maps(sources["conv"])
    model = VQVAE(**torch.load(sources["conv"], weights_only=True)["model_args"])
    model.load_state_dict(torch.load(sources["conv"], weights_only=True)["model"])
    train = load_dataset("mnist-5k", "train", limit=LIMIT)
    val = load_dataset("mnist-5k", "val", limit=LIMIT)
    test = load_dataset("mnist-5k", "test", limit=LIMIT)
    assert maps.train_codes.shape == (len(train.images), 7, 7) and maps.train_codes.dtype == torch.long
    assert torch.equal(maps.train_codes, model.eval().encode(train.images))
    assert torch.equal(maps.val_codes, model.encode(val.images))
    assert torch.equal(maps.test_codes, model.encode(test.images))
    assert maps.n_codes == 16 and maps.method == "vqvae_conv"
    assert maps.dataset.name == "mnist-5k" and maps.dataset.requested == "mnist-5k"
    assert maps.dataset.limit == LIMIT and torch.equal(maps.dataset.test.labels, test.labels)
    assert torch.equal(maps.dataset.val.labels, val.labels)
    images = maps.decode(maps.test_codes[:5])
    assert images.shape == (5, 1, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1
    with torch.no_grad():
        assert torch.allclose(images, model.decode_indices(maps.test_codes[:5]))
    assert code_maps(sources["global"]).train_codes.shape == (len(train.images),)


def test_log_checkpoint_and_metrics(run2):
    paths = run_paths(run2, "vqvae_conv", "mnist-5k")
    rows = read_rows(paths["log"])
    assert list(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert float(r["val_perplexity"]) == pytest.approx(
            2 ** (float(r["val_bits_per_image"]) / 49), rel=1e-4)
        assert float(r["bits_per_image"]) == pytest.approx(float(r["loss"]) * 49 / math.log(2),
                                                           rel=1e-4)
    ckpt = torch.load(paths["checkpoint"], weights_only=True)
    assert ckpt["model_class"] == "GatedPixelCNN" and ckpt["epoch"] == 2
    prior = GatedPixelCNN(**ckpt["model_args"])
    prior.load_state_dict(ckpt["model"], strict=True)

    metrics = json.loads(paths["metrics"].read_text())
    maps = code_maps(metrics["codes_from"])
    # the reported test NLL is the checkpointed prior's, recomputed here
    bits = float(prior.nll_bits(maps.test_codes).mean())
    assert metrics["prior_nll_bits"] == pytest.approx(bits, rel=1e-6)
    assert metrics["prior_perplexity"] == pytest.approx(2 ** (bits / 49), rel=1e-6)
    # the last epoch's logged NLL is the same prior's on the validation maps
    val_bits = float(prior.nll_bits(maps.val_codes).mean())
    assert float(rows[-1]["val_bits_per_image"]) == pytest.approx(val_bits, rel=1e-5)
    # the histogram baseline: Laplace-smoothed counts of the training codes
    counts = np.bincount(maps.train_codes.numpy().ravel(), minlength=16)
    p = (counts + 1) / (counts.sum() + 16)
    expected = -np.log2(p)[maps.test_codes.numpy()].sum(axis=(1, 2)).mean()
    assert metrics["histogram_nll_bits"] == pytest.approx(expected, rel=1e-9)
    assert metrics["uniform_bits_per_image"] == pytest.approx(49 * 4)
    assert metrics["n_codes"] == 16 and metrics["grid"] == [7, 7] and metrics["dataset"] == "mnist-5k"


def test_samples_fid_and_grid(run2):
    paths = run_paths(run2, "vqvae_conv", "mnist-5k")
    metrics = json.loads(paths["metrics"].read_text())
    samples = torch.load(paths["samples"], weights_only=True)
    assert samples["codes"].shape == (20, 7, 7) and metrics["n_sampled"] == 20
    assert int(samples["codes"].min()) >= 0 and int(samples["codes"].max()) < 16
    for key in ("fid_samples", "fid_train", "fid_recon"):
        assert math.isfinite(metrics[key]) and metrics[key] > -1e-6
    assert metrics["n_fid"] == 20 and sum(metrics["sample_class_histogram"]) == 20
    assert 0 <= metrics["sample_class_entropy"] <= math.log2(10) + 1e-9
    assert {Path(p).suffix for p in metrics["sample_grid"]} == {".png", ".pdf"}
    assert all(Path(p).is_file() for p in metrics["sample_grid"])


def test_resume_reaches_the_same_prior_and_samples(sources, run2, tmp_path):
    one = tmp_path / "one"
    main(prior_args(one, sources["conv"], "--no-plots", epochs=1))
    main(prior_args(one, sources["conv"], "--no-plots", "--resume", epochs=2))
    straight = tmp_path / "straight"
    main(prior_args(straight, sources["conv"], "--no-plots", epochs=2))
    a, b = (run_paths(d, "vqvae_conv", "mnist-5k") for d in (one, straight))
    wa = torch.load(a["checkpoint"], weights_only=True)["model"]
    wb = torch.load(b["checkpoint"], weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_rows(a["log"])) == strip(read_rows(b["log"]))
    sa, sb = (torch.load(p["samples"], weights_only=True)["codes"] for p in (a, b))
    assert torch.equal(sa, sb)  # the same seed draws the same samples
    # and the run with FID drew the same first maps from the same prior
    wc = torch.load(run_paths(run2, "vqvae_conv", "mnist-5k")["checkpoint"], weights_only=True)
    assert all(torch.equal(wa[k], wc["model"][k]) for k in wa)


def test_class_conditional_prior(sources, tmp_path):
    main(prior_args(tmp_path, sources["conv"], "--class-conditional", "--no-plots", epochs=1))
    paths = run_paths(tmp_path, "vqvae_conv", "mnist-5k")
    ckpt = torch.load(paths["checkpoint"], weights_only=True)
    assert ckpt["model_args"]["n_classes"] == 10
    samples = torch.load(paths["samples"], weights_only=True)
    assert samples["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    assert json.loads(paths["metrics"].read_text())["class_conditional"] is True


def test_help_lists_the_flags():
    proc = subprocess.run([sys.executable, "train/train_prior.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    for flag in ("--codes-from", "--temperature", "--classifier", "--resume", "--seed"):
        assert flag in proc.stdout


def error_of(args, capsys):
    assert run_main(main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:")
    return err[-1]


def test_one_line_errors(sources, tmp_path, capsys):
    assert "no checkpoint" in error_of(prior_args(tmp_path, tmp_path / "missing.pt"), capsys)
    assert "unconditional" in error_of(prior_args(tmp_path, sources["global"], "--class-conditional"),
                                       capsys)
    assert "cannot read" in error_of(prior_args(tmp_path, sources["classifier"]), capsys)
    other = save_model(tmp_path / "clf_fashion.pt", Classifier(feature_dim=8), dataset="fashion-mnist")
    assert "same data" in error_of(prior_args(tmp_path / "o", sources["conv"], "--classifier",
                                              str(other), "--no-plots", epochs=1), capsys)
    assert "odd" in error_of(prior_args(tmp_path / "k", sources["conv"], "--kernel-size", "4"),
                             capsys)


def test_resume_with_another_width_is_refused(sources, run2, tmp_path, capsys):
    shutil.copytree(run2, tmp_path / "r")
    args = prior_args(tmp_path / "r", sources["conv"], "--resume", "--channels", "16", epochs=3)
    assert "channels" in error_of(args, capsys)


def test_one_code_per_image_gets_the_smoothed_histogram(sources, tmp_path, capsys):
    """A global VQ-VAE's codes: no PixelCNN; the test NLL is the Laplace-smoothed
    training histogram's code length, computed here; a rerun does not replace it."""
    metrics = train(prior_args(tmp_path, sources["global"], "--no-plots")).metrics._asdict()
    maps = code_maps(sources["global"])
    counts = np.bincount(maps.train_codes.numpy(), minlength=16)
    p = (counts + 1) / (counts.sum() + 16)
    expected = float(-np.log2(p[maps.test_codes.numpy()]).mean())
    assert metrics["prior"] == "histogram" and metrics["prior_epochs"] == 0
    assert math.isclose(metrics["prior_nll_bits"], expected, rel_tol=1e-9)
    assert math.isclose(metrics["prior_perplexity"], 2 ** expected, rel_tol=1e-9)
    saved = json.loads(run_paths(tmp_path, "vqvae_global", "mnist-5k")["metrics"].read_text())
    assert saved["prior_nll_bits"] == metrics["prior_nll_bits"]
    assert not (tmp_path / "checkpoints" / "prior_vqvae_global_mnist-5k.pt").exists()
    assert "--overwrite" in error_of(prior_args(tmp_path, sources["global"], "--no-plots"), capsys)


def test_covered_classes_counts_classes_with_one_percent():
    assert covered_classes([100, 0, 0]) == 1
    assert covered_classes([98, 1, 1, 0]) == 3
    assert covered_classes([990, 9, 1]) == 1
    assert covered_classes([0, 0]) == 0
