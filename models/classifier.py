"""A small CNN classifier for 28x28 images, and the feature extractor of our FID.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", eq. 6) compares Gaussians fitted to the
features of a network trained on real images. Inception-v3 features mean
nothing for 28x28 grey digits or clothes, so, as is usual for MNIST-like data,
the features are the penultimate layer of a classifier trained on the same
dataset (:meth:`Classifier.features`).

Architecture: Conv(1->c1, 3, pad 1), ReLU, MaxPool 2 (28 -> 14), Conv(c1->c2,
3, pad 1), ReLU, MaxPool 2 (14 -> 7), Flatten, Linear(c2*49 -> d), ReLU
(= the d-dimensional features), Dropout, Linear(d -> n_classes).
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClassifierConfig", "ClassifierOutput", "Classifier"]


@dataclass
class ClassifierConfig:
    """Everything needed to rebuild a :class:`Classifier` (stored in checkpoints).

    n_classes : number of classes (10 for MNIST and Fashion-MNIST).
    channels1, channels2 : widths of the two conv layers.
    feature_dim : d, the width of the penultimate layer (the FID features).
    dropout : dropout rate before the last layer, in [0, 1).
    """

    n_classes: int = 10
    channels1: int = 32
    channels2: int = 64
    feature_dim: int = 128
    dropout: float = 0.25

    def __post_init__(self):
        for field in ("n_classes", "channels1", "channels2", "feature_dim"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"ClassifierConfig.{field} must be a positive integer, got {value!r}")
            setattr(self, field, int(value))
        if not (isinstance(self.dropout, numbers.Real) and 0 <= self.dropout < 1):
            raise ValueError(f"ClassifierConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)


class ClassifierOutput(NamedTuple):
    """Output of :meth:`Classifier.forward`.

    ``logits`` (B, n_classes); ``loss``: mean cross-entropy (nats) over the
    batch; ``accuracy``: fraction of the batch classified correctly (detached).
    ``loss`` and ``accuracy`` are None when no labels are given.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None
    accuracy: torch.Tensor | None


class Classifier(nn.Module):
    """Two conv layers and two linear layers; see the module docstring.

    Build with the keyword arguments of :class:`ClassifierConfig`
    (``Classifier(feature_dim=64)``); ``model.model_args`` rebuilds it.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.config = ClassifierConfig(**kwargs)
        c = self.config
        self.body = nn.Sequential(
            nn.Conv2d(1, c.channels1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(c.channels1, c.channels2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(),
            nn.Linear(c.channels2 * 7 * 7, c.feature_dim), nn.ReLU(),
        )
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.feature_dim, c.n_classes)

    @property
    def model_args(self) -> dict:
        return asdict(self.config)

    @property
    def num_features(self) -> int:
        """d, the dimension of :meth:`features` (the name torchmetrics' FID looks for)."""
        return self.config.feature_dim

    @staticmethod
    def _check_images(x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28) or not x.is_floating_point():
            raise ValueError(f"expected float images of shape (B, 1, 28, 28) in [0, 1], got "
                             f"{tuple(x.shape)} {x.dtype}.")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations: x (B, 1, 28, 28) in [0, 1] -> (B, feature_dim)."""
        self._check_images(x)
        return self.body(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ClassifierOutput:
        """x (B, 1, 28, 28) in [0, 1], labels (B,) long or None -> ClassifierOutput."""
        logits = self.out(self.dropout(self.features(x)))
        if labels is None:
            return ClassifierOutput(logits, None, None)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return ClassifierOutput(logits, loss, accuracy)
