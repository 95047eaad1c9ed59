"""Fully connected VAE for images, 28x28 by default (Kingma & Welling, 2014).

The architecture of pytorch/examples' ``vae/main.py``:
784 -> 400 -> (mu, logvar) of ``latent_dim`` -> 400 -> 784 logits, with 784 the
pixels of ``image_shape`` (1, 28, 28).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@dataclass
class VAEConfig:
    """Everything needed to rebuild a :class:`VAE` (stored in checkpoints as
    ``asdict(config)``; ``VAE(**model_args)`` rebuilds it).

    Parameters
    ----------
    input_dim : int or None, default None
        Pixels per image; None derives it from ``image_shape`` (784 for
        (1, 28, 28)). Given, it must equal the product of ``image_shape``, so
        that old model_args ``{input_dim, hidden_dim, latent_dim}`` still load.
    hidden_dim : int, default 400
    latent_dim : int, default 20
    image_shape : tuple of int, default (1, 28, 28)
        (C, H, W) of the images the decoder produces; stored as a tuple of
        plain ints (a list, e.g. from JSON, is converted).
    """

    input_dim: int | None = None
    hidden_dim: int = 400
    latent_dim: int = 20
    image_shape: tuple[int, ...] = (1, 28, 28)

    def __post_init__(self):
        shape = self.image_shape
        if (not isinstance(shape, (tuple, list)) or not shape
                or not all(_is_positive_int(s) for s in shape)):
            raise ValueError(f"VAEConfig.image_shape must be a non-empty tuple of positive "
                             f"integers such as (1, 28, 28), got {shape!r}")
        self.image_shape = tuple(int(s) for s in shape)
        n_pixels = math.prod(self.image_shape)
        if self.input_dim is None:
            self.input_dim = n_pixels
        for field in ("input_dim", "hidden_dim", "latent_dim"):
            value = getattr(self, field)
            if not _is_positive_int(value):
                raise ValueError(f"VAEConfig.{field} must be a positive integer, got {value!r}")
            setattr(self, field, int(value))
        if self.input_dim != n_pixels:
            raise ValueError(f"VAEConfig.input_dim={self.input_dim} does not match image_shape="
                             f"{self.image_shape} ({n_pixels} pixels); pass image_shape alone")


def batched(fn, x: torch.Tensor, module: nn.Module, batch_size: int) -> torch.Tensor:
    """``fn`` over ``x`` in batches on ``module``'s device, concatenated on the CPU."""
    device = next(module.parameters()).device
    return torch.cat([fn(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


class VAEOutput(NamedTuple):
    recon_logits: torch.Tensor  # (B, *image_shape) Bernoulli logits
    mu: torch.Tensor  # (B, latent_dim)
    logvar: torch.Tensor  # (B, latent_dim)


class VAE(nn.Module):
    """Gaussian encoder q(z|x), standard normal prior, Bernoulli decoder p(x|z).

    Build with keyword arguments of :class:`VAEConfig` (``VAE(latent_dim=2)``);
    ``model.config`` holds them for checkpoints.
    """

    def __init__(self, **kwargs):
        super().__init__()
        self.config = VAEConfig(**kwargs)
        c = self.config
        self.fc1 = nn.Linear(c.input_dim, c.hidden_dim)
        self.fc_mu = nn.Linear(c.hidden_dim, c.latent_dim)
        self.fc_logvar = nn.Linear(c.hidden_dim, c.latent_dim)
        self.fc3 = nn.Linear(c.latent_dim, c.hidden_dim)
        self.fc4 = nn.Linear(c.hidden_dim, c.input_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one image's latent: (d,)."""
        return (self.config.latent_dim,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, *image_shape) or (B, input_dim) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): a sample whose gradient reaches mu and logvar."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> Bernoulli logits (B, *image_shape); ``sigmoid`` gives the image."""
        h = torch.relu(self.fc3(z))
        return self.fc4(h).view(-1, *self.config.image_shape)

    @torch.no_grad()
    def latent_means(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Encoder means of many images, batched: x (N, *image_shape) -> mu (N, latent_dim)."""
        return batched(lambda b: self.encode(b)[0], x, self, batch_size)

    @torch.no_grad()
    def decode_logits(self, z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Decoder logits of many latents, batched: z (N, latent_dim) -> (N, *image_shape)."""
        return batched(self.decode, z, self, batch_size)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """x (B, *image_shape) -> VAEOutput(recon_logits (B, *image_shape), mu, logvar (B, latent_dim)).

        z is sampled in eval mode too, so that the test loss is a (one-sample)
        ELBO estimate; ``decode(encode(x)[0])`` gives the deterministic reconstruction.
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(self.decode(z), mu, logvar)
