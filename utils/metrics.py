"""Losses and evaluation metrics shared by every stage.

Convention: losses are *summed* over the batch (as in Kingma & Welling and
pytorch/examples); logs divide by the number of samples to report per-image means.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_sum(recon_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood summed over pixels and batch.

    recon_logits, x: (B, 1, 28, 28); x in [0, 1]. Uses BCE-with-logits, which
    is stable where sigmoid-then-log would underflow.
    """
    return F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum")


def gaussian_kld_sum(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latents and batch.

    Closed form of Kingma & Welling (2014), appendix B:
    -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2). mu, logvar: (B, d).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def elbo_loss(recon_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
              logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO of a Bernoulli-decoder VAE, summed over the batch.

    Returns (total, bce, kld) with total = bce + kld, each a scalar tensor.
    """
    bce = bce_sum(recon_logits, x)
    kld = gaussian_kld_sum(mu, logvar)
    return bce + kld, bce, kld


def mse_sum(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error between images in [0, 1], summed over pixels and batch."""
    return F.mse_loss(recon, x, reduction="sum")
