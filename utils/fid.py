"""Sample fidelity: FID on classifier features, and the class statistics of samples.

FID (Heusel et al. 2017, eq. 6) is the Fréchet distance between Gaussians
fitted to the features of two image sets::

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

computed here by torchmetrics' ``FrechetInceptionDistance`` with a custom
feature module (our classifier's penultimate layer, see
``models/classifier.py``): torchmetrics passes the images to that module as
they are (no uint8 conversion, no resizing, no Inception weights, no
torch-fidelity) and accumulates feature sums in float64. FID values depend on
the feature network and on the number of images (the estimate is biased
upwards for small sets), so compare FIDs only when both are computed with the
same classifier and the same set sizes, e.g. samples against the test set next
to as many training images against the test set.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = ["FeatureExtractor", "frechet_distance", "KID", "kernel_inception_distance",
           "predicted_probabilities",
           "class_histogram", "ClassEntropy", "sample_class_entropy"]

LN2 = math.log(2.0)


class FeatureExtractor(nn.Module):
    """Wrap a module with a ``features(x) -> (N, d)`` method (or any module
    whose ``forward`` returns (N, d)) for torchmetrics' FID.

    It always stays in eval mode (dropout off, however the metric is moved or
    switched), computes without gradients, moves each batch to the wrapped
    module's device, and exposes ``num_features`` = d so that torchmetrics does
    not probe it with a (1, 3, 299, 299) dummy image.

    Parameters
    ----------
    model : nn.Module, e.g. a trained :class:`models.classifier.Classifier`.
    num_features : d; None reads ``model.num_features``.
    """

    def __init__(self, model: nn.Module, num_features: int | None = None) -> None:
        super().__init__()
        self.model = model
        if num_features is None:
            num_features = getattr(model, "num_features", None)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError("num_features must be given (a positive int) for a model without "
                             "a num_features attribute")
        self.num_features = num_features
        self.train(False)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = next(self.model.parameters(), None)
        if params is not None:
            x = x.to(params.device)
        fn = getattr(self.model, "features", self.model)
        return fn(x).flatten(1)


def _check_set(name: str, images: torch.Tensor) -> None:
    if len(images) < 2:
        raise ValueError(f"FID needs at least 2 {name} images (a covariance), got {len(images)}")


def frechet_distance(real: torch.Tensor, generated: torch.Tensor, feature: nn.Module, *,
                     batch_size: int = 1000) -> float:
    """FID between two image sets on the features of ``feature``.

    Parameters
    ----------
    real, generated : tensors (N1, ...) and (N2, ...) of what ``feature``
        takes, e.g. images (N, 1, 28, 28) in [0, 1]; N1, N2 >= 2. The
        formula is symmetric in the two sets.
    feature : a :class:`FeatureExtractor` (or any module with an int
        ``num_features`` that maps a batch to (B, d) features).
    batch_size : images per forward pass of ``feature``.

    Returns
    -------
    float, the squared Fréchet distance (>= 0 up to rounding; 0 for equal sets).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_set("real", real)
    _check_set("generated", generated)
    metric = FrechetInceptionDistance(feature=feature, normalize=True)
    for images, is_real in ((real, True), (generated, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    return float(metric.compute())


class KID(NamedTuple):
    """Kernel inception distance: the mean and standard deviation over subsets."""

    mean: float
    std: float


def kernel_inception_distance(real: torch.Tensor, generated: torch.Tensor, feature: nn.Module, *,
                              subsets: int = 100, subset_size: int = 1000, seed: int = 0,
                              batch_size: int = 1000) -> KID:
    """KID (Bińkowski et al. 2018) between two image sets on the features of ``feature``.

    The squared maximum mean discrepancy with the cubic polynomial kernel
    k(x, y) = (x . y / d + 1)^3, estimated without bias (U-statistic, eq. 3 of the
    paper) on ``subsets`` pairs of random subsets of ``subset_size`` images of each
    set and averaged (torchmetrics' ``KernelInceptionDistance``). Unlike FID its
    estimate has no bias at small sets, so a 1,000-image test split compares fairly;
    it can come out slightly negative for equal distributions.

    Parameters
    ----------
    real, generated : tensors (N1, ...) and (N2, ...) of what ``feature`` takes.
    feature : a :class:`FeatureExtractor` (or any module with an int ``num_features``).
    subsets, subset_size : subsets drawn, and their size (capped at min(N1, N2)).
    seed : the subsets are drawn from it (torch's global generator is left as it was).

    Returns
    -------
    KID(mean, std) over the subsets.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    _check_set("real", real)
    _check_set("generated", generated)
    size = min(subset_size, len(real), len(generated))
    metric = KernelInceptionDistance(feature=feature, subsets=subsets, subset_size=size,
                                     normalize=True)
    for images, is_real in ((real, True), (generated, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return KID(float(mean), float(std))


@torch.no_grad()
def predicted_probabilities(classifier: nn.Module, images: torch.Tensor, *,
                            batch_size: int = 1000) -> torch.Tensor:
    """Softmax outputs p(y | x) of a classifier in eval mode: images (N, 1, 28, 28)
    -> (N, n_classes) float64 on the CPU."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    try:
        out = [torch.softmax(classifier(images[i:i + batch_size].to(device)).logits.double(), dim=1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        classifier.train(was_training)
    return torch.cat(out)


def class_histogram(classifier: nn.Module, images: torch.Tensor, *,
                    batch_size: int = 1000) -> np.ndarray:
    """How many images the classifier puts in each class (its argmax):
    images (N, 1, 28, 28) -> (n_classes,) int64."""
    probs = predicted_probabilities(classifier, images, batch_size=batch_size)
    return np.bincount(probs.argmax(dim=1).numpy(), minlength=probs.shape[1])


class ClassEntropy(NamedTuple):
    """Class statistics of an image set, in bits (log2 n_classes at most).

    ``histogram_bits``: entropy of the histogram of predicted classes: diversity
    across classes (log2 10 = 3.32 when the 10 classes are equally frequent,
    0 when every image gets the same class).
    ``conditional_bits``: mean over images of the entropy of p(y | x): how
    recognisable single images are (0 when the classifier is certain).
    ``inception_score``: exp(E_x KL(p(y | x) || p(y))) with p(y) the mean of
    p(y | x) (Salimans et al. 2016), between 1 and n_classes.
    """

    histogram_bits: float
    conditional_bits: float
    inception_score: float


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    return -torch.xlogy(p, p).sum(dim=-1) / LN2 + 0.0  # + 0.0: no "-0" for one class


def sample_class_entropy(classifier: nn.Module, images: torch.Tensor, *,
                         batch_size: int = 1000) -> ClassEntropy:
    """:class:`ClassEntropy` of images (N, 1, 28, 28) under ``classifier``."""
    probs = predicted_probabilities(classifier, images, batch_size=batch_size)
    counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1]).double()
    marginal = probs.mean(dim=0)
    kl = (torch.xlogy(probs, probs) - probs * torch.log(marginal.clamp_min(1e-300))).sum(dim=1)
    return ClassEntropy(histogram_bits=float(_entropy_bits(counts / counts.sum())),
                        conditional_bits=float(_entropy_bits(probs).mean()),
                        inception_score=float(kl.mean().exp()))
