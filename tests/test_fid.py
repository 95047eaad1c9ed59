"""utils/fid.py against scipy and analytic values; the classifier that gives
its features (models/classifier.py) and its script (train/train_classifier.py)."""
from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from models.classifier import Classifier, ClassifierConfig, ClassifierOutput
from utils.fid import (FeatureExtractor, class_histogram, frechet_distance,
                       kernel_inception_distance, predicted_probabilities, sample_class_entropy)

REPO = Path(__file__).resolve().parents[1]


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Heusel et al. (2017), eq. 6, straight from the definition with scipy's sqrtm."""
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def identity(d):
    """Features = the inputs themselves, (N, d) -> (N, d)."""
    return FeatureExtractor(nn.Identity(), num_features=d)


def gaussians(n1, n2, d, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a = rng.normal(size=(n1, d)) @ mix
    b = rng.normal(size=(n2, d)) @ (mix + 0.3 * np.eye(d)) + 0.5
    return a, b


# ------------------------------------------------------------------------------------- KID

def brute_force_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel (x.y/d + 1)^3 (Bińkowski et al. 2018, eq. 3), by
    every pair: the U-statistics leave out the diagonals of the within-set sums."""
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    m, n = len(a), len(b)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def test_kid_on_whole_sets_is_the_brute_force_unbiased_mmd():
    a, b = gaussians(150, 150, 5)
    kid = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), identity(5),
                                    subsets=3, subset_size=150, batch_size=64)
    # a subset of the whole set is the set itself, so every subset gives the same value
    assert kid.mean == pytest.approx(brute_force_kid(a, b), rel=1e-6) and kid.std < 1e-9


def test_kid_is_near_zero_for_one_distribution_and_seeded():
    rng = np.random.default_rng(0)
    a, c = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))  # one distribution, two draws
    b = rng.normal(size=(400, 4)) + 0.5
    same = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(c), identity(4),
                                     subsets=20, subset_size=100)
    other = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), identity(4),
                                      subsets=20, subset_size=100)
    # subsets of one pair of sets overlap, so the spread over them bounds the mean loosely
    assert abs(same.mean) < 2 * same.std and other.mean > 10 * same.std
    again = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(c), identity(4),
                                      subsets=20, subset_size=100)
    assert again == same


# ------------------------------------------------------------------------------------- FID

def test_fid_agrees_with_scipy_sqrtm_on_random_gaussians():
    a, b = gaussians(300, 200, 6)
    ours = frechet_distance(torch.from_numpy(a), torch.from_numpy(b), identity(6), batch_size=64)
    assert ours == pytest.approx(scipy_fid(a, b), rel=1e-6)
    assert ours > 0.5  # the sets differ (means 0.5 apart in each of 6 dimensions)


def test_fid_is_zero_for_identical_sets_and_symmetric():
    a, b = gaussians(150, 120, 5, seed=1)
    a, b = torch.from_numpy(a), torch.from_numpy(b)
    assert frechet_distance(a, a, identity(5)) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b, identity(5)) == pytest.approx(frechet_distance(b, a, identity(5)),
                                                                rel=1e-9)


def test_fid_of_two_known_gaussians_approaches_the_analytic_distance():
    """N(0, I) against N(m, 4 I) in d dims: ||m||^2 + d (1 + 4 - 2 * 2) = ||m||^2 + d."""
    d, n = 3, 20000
    gen = torch.Generator().manual_seed(0)
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    b = m + 2 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    assert frechet_distance(a, b, identity(d)) == pytest.approx(float(m @ m) + d, rel=0.03)


def test_fid_uses_no_network_and_no_inception(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("FID tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    x = torch.rand(40, 1, 28, 28)
    value = frechet_distance(x, torch.rand(30, 1, 28, 28), FeatureExtractor(Classifier()))
    assert np.isfinite(value) and value >= -1e-6
    assert "torch_fidelity" not in sys.modules


def test_feature_extractor_stays_in_eval_mode():
    torch.manual_seed(0)
    clf = Classifier(dropout=0.5)
    feature = FeatureExtractor(clf)
    feature.train()
    x = torch.rand(8, 1, 28, 28)
    assert not clf.training and torch.equal(feature(x), feature(x))
    assert feature(x).shape == (8, 128) and feature.num_features == 128
    with pytest.raises(ValueError, match="num_features"):
        FeatureExtractor(nn.Identity())


def test_fid_needs_two_images_per_set():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3), identity(3))


# -------------------------------------------------------------------- class statistics

class FixedLogits(nn.Module):
    """A stand-in classifier whose logits are the first 3 inputs of each image."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return ClassifierOutput(self.scale * x.flatten(1)[:, :3], None, None)


def test_class_histogram_counts_the_argmax():
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5], [0, 5, 0]])
    images = F.pad(logits, (0, 784 - 3)).reshape(-1, 1, 28, 28)
    assert class_histogram(FixedLogits(), images, batch_size=2).tolist() == [1, 3, 1]


def test_sample_class_entropy_matches_its_definitions():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(50, 3, generator=gen)
    images = F.pad(logits, (0, 784 - 3)).reshape(-1, 1, 28, 28)
    p = torch.softmax(logits.double(), dim=1).numpy()
    hist = np.bincount(p.argmax(axis=1), minlength=3)
    stats = sample_class_entropy(FixedLogits(), images, batch_size=16)
    assert stats.histogram_bits == pytest.approx(scipy.stats.entropy(hist / 50, base=2))
    assert stats.conditional_bits == pytest.approx(scipy.stats.entropy(p, base=2, axis=1).mean())
    kl = scipy.stats.entropy(p, p.mean(axis=0)[None], axis=1)  # KL(p(y|x) || p(y)) in nats
    assert stats.inception_score == pytest.approx(np.exp(kl.mean()))
    assert torch.allclose(predicted_probabilities(FixedLogits(), images), torch.from_numpy(p))


def test_confident_uniform_predictions_score_the_number_of_classes():
    logits = 50 * torch.eye(3).repeat(4, 1)  # 12 images, 4 per class, certain
    stats = sample_class_entropy(FixedLogits(), F.pad(logits, (0, 781)).reshape(-1, 1, 28, 28))
    assert stats.histogram_bits == pytest.approx(np.log2(3))
    assert stats.conditional_bits == pytest.approx(0.0, abs=1e-12)
    assert stats.inception_score == pytest.approx(3.0)


# ------------------------------------------------------------------------------ classifier

def test_classifier_shapes_loss_and_rebuild():
    torch.manual_seed(0)
    model = Classifier(feature_dim=32).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 9])
    with torch.no_grad():
        out = model(x, y)
    assert out.logits.shape == (6, 10) and model.features(x).shape == (6, 32)
    assert float(out.loss) == pytest.approx(float(F.cross_entropy(out.logits, y)))
    assert float(out.accuracy) == pytest.approx(float((out.logits.argmax(1) == y).float().mean()))
    assert model(x).loss is None
    again = Classifier(**model.model_args).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(again(x).logits, out.logits)


@pytest.mark.parametrize("kwargs", [dict(feature_dim=0), dict(dropout=1.0), dict(n_classes=1.5)])
def test_classifier_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        ClassifierConfig(**kwargs)


def test_classifier_refuses_other_shapes():
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        Classifier().features(torch.rand(2, 784))


# ----------------------------------------------------------------- train_classifier.py

def classifier_args(out, *extra, epochs=2):
    from train.train_classifier import parse_args
    return parse_args(["--dataset", "mnist-5k", "--limit", "300", "--epochs", str(epochs),
                       "--batch-size", "32", "--channels", "8", "16", "--feature-dim", "32",
                       "--out-dir", str(out), "--device", "cpu", "--no-plots", *extra])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    from train.train_classifier import main
    out = tmp_path_factory.mktemp("clf")
    main(classifier_args(out))
    return out


def test_train_classifier_logs_and_learns(classifier_run):
    from train.train_classifier import COLUMNS, run_paths
    paths = run_paths(classifier_run, "mnist-5k")
    rows = read_rows(paths["log"])
    assert list(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[-1]["val_accuracy"]) > 0.3  # chance is 0.1
    ckpt = torch.load(paths["checkpoint"], weights_only=True)
    model = Classifier(**ckpt["model_args"])
    model.load_state_dict(ckpt["model"], strict=True)
    assert ckpt["dataset"] == "mnist-5k" and model.config.feature_dim == 32


def test_train_classifier_resumes_to_the_same_numbers(classifier_run, tmp_path):
    from train.train_classifier import main, run_paths
    resumed = tmp_path / "resumed"
    shutil.copytree(classifier_run, resumed)
    main(classifier_args(resumed, "--resume", epochs=3))
    main(classifier_args(tmp_path / "straight", epochs=3))
    a = torch.load(run_paths(resumed, "mnist-5k")["checkpoint"], weights_only=True)["model"]
    b = torch.load(run_paths(tmp_path / "straight", "mnist-5k")["checkpoint"], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_classifier_help():
    ok = subprocess.run([sys.executable, "train/train_classifier.py", "--help"], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "--feature-dim" in ok.stdout


def test_train_classifier_bad_dropout_is_one_line(tmp_path, capsys):
    from train.train_classifier import main
    from utils.cli import run_main
    assert run_main(main, classifier_args(tmp_path, "--dropout", "1.5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "dropout" in err[-1]
