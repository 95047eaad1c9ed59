"""Fully connected VAE for 28x28 images (Kingma & Welling, 2014).

The architecture of pytorch/examples' ``vae/main.py``:
784 -> 400 -> (mu, logvar) of ``latent_dim`` -> 400 -> 784 logits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn


@dataclass
class VAEConfig:
    """Everything needed to rebuild a :class:`VAE` (stored in checkpoints)."""

    input_dim: int = 784
    hidden_dim: int = 400
    latent_dim: int = 20

    def __post_init__(self):
        for field, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VAEConfig.{field} must be a positive integer, got {value!r}")


class VAEOutput(NamedTuple):
    recon_logits: torch.Tensor  # (B, 1, 28, 28) Bernoulli logits
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

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28) or (B, 784) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): a sample whose gradient reaches mu and logvar."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> Bernoulli logits (B, 1, 28, 28); ``sigmoid`` gives the image."""
        h = torch.relu(self.fc3(z))
        return self.fc4(h).view(-1, 1, 28, 28)

    @torch.no_grad()
    def latent_means(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Encoder means of many images, batched: x (N, 1, 28, 28) -> mu (N, latent_dim)."""
        device = next(self.parameters()).device
        return torch.cat([self.encode(x[i:i + batch_size].to(device))[0].cpu()
                          for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def decode_logits(self, z: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Decoder logits of many latents, batched: z (N, latent_dim) -> (N, 1, 28, 28)."""
        device = next(self.parameters()).device
        return torch.cat([self.decode(z[i:i + batch_size].to(device)).cpu()
                          for i in range(0, len(z), batch_size)])

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """x (B, 1, 28, 28) -> VAEOutput(recon_logits (B, 1, 28, 28), mu, logvar (B, latent_dim)).

        z is sampled in eval mode too, so that the test loss is a (one-sample)
        ELBO estimate; ``decode(encode(x)[0])`` gives the deterministic reconstruction.
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(self.decode(z), mu, logvar)
