"""Convolutional VAE with a 7x7 grid of Gaussian latents: the continuous twin of
the conv VQ-VAE, for a-posteriori quantization at the VQ-VAE's own rate.

Encoder and decoder are those of ``VQVAE(arch="conv")``
(:mod:`models.conv_net`); in between, instead of a codebook, each of the 7x7
positions holds a diagonal Gaussian posterior q(z_p | x) = N(mu_p, diag
sigma_p^2) of width D, with a standard normal prior. The loss is the negative
ELBO (Kingma & Welling 2014, eq. 10) with the KL summed over positions::

    -ELBO = -log p(x | z) + sum_p KL(q(z_p | x) || N(0, I)),   z ~ q(z | x).

Quantizing each of the 49 latent vectors of an image a posteriori with K codes
spends 49 * log2(K) bits on it, exactly the conv VQ-VAE's rate; the bits are in
the code indices, not in D.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.conv_net import CONV_GRID, IMAGE_SHAPE, conv_decoder, conv_encoder
from models.vae import VAE, VAEOutput, _is_positive_int, batched

__all__ = ["ConvVAEConfig", "ConvVAE"]


@dataclass
class ConvVAEConfig:
    """Everything needed to rebuild a :class:`ConvVAE` (``ConvVAE(**asdict(config))``).

    Parameters
    ----------
    latent_dim : int, default 4
        D, the width of the Gaussian latent at each of the 7x7 positions.
        Chosen by measurement on validation images (``benchmarks/bench_conv_vae.py``,
        ``benchmarks/results/conv_vae_dim.csv``; Fashion-MNIST, 3,600 training
        images, 3 epochs, k-means K = 64 on the grid vectors): quantized MSE
        0.0266 at D = 4, 0.0294 at 8, 0.0284 at 16 (unquantized 0.0263, 0.0288,
        0.0281). The bits are in the code indices, so the smallest D that
        reconstructs as well is also the cheapest to search at 2.6M vectors.
    hidden : int, default 64
        Channels of the encoder and decoder (as ``VQVAE(arch="conv")``).
    n_res_blocks : int, default 2
    res_hidden : int or None, default None (= hidden)
    """

    latent_dim: int = 4
    hidden: int = 64
    n_res_blocks: int = 2
    res_hidden: int | None = None

    def __post_init__(self):
        if self.res_hidden is None:
            self.res_hidden = self.hidden
        for field in ("latent_dim", "hidden", "res_hidden"):
            if not _is_positive_int(getattr(self, field)):
                raise ValueError(f"ConvVAEConfig.{field} must be a positive integer, "
                                 f"got {getattr(self, field)!r}")
        if not (_is_positive_int(self.n_res_blocks) or self.n_res_blocks == 0):
            raise ValueError(f"ConvVAEConfig.n_res_blocks must be a non-negative integer, "
                             f"got {self.n_res_blocks!r}")


class ConvVAE(nn.Module):
    """Gaussian encoder q(z|x) over a (D, 7, 7) grid, standard normal prior,
    Bernoulli decoder p(x|z) on (1, 28, 28) images.

    The interface is that of :class:`models.vae.VAE` with latents of shape
    (B, D, 7, 7) instead of (B, d): ``encode``, ``decode``, ``latent_means``,
    ``decode_logits`` and ``forward`` -> :class:`models.vae.VAEOutput`.
    """

    grid = CONV_GRID
    n_positions = CONV_GRID * CONV_GRID
    image_shape = IMAGE_SHAPE

    def __init__(self, **kwargs):
        super().__init__()
        self.config = ConvVAEConfig(**kwargs)
        c = self.config
        self.encoder = conv_encoder(2 * c.latent_dim, c.hidden, c.res_hidden, c.n_res_blocks)
        self.decoder = conv_decoder(c.latent_dim, c.hidden, c.res_hidden, c.n_res_blocks)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one image's latent: (D, 7, 7)."""
        return (self.config.latent_dim, self.grid, self.grid)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28) in [0, 1] -> (mu, logvar), each (B, D, 7, 7)."""
        mu, logvar = self.encoder(x.view(-1, *IMAGE_SHAPE)).chunk(2, dim=1)
        return mu, logvar

    reparameterize = staticmethod(VAE.reparameterize)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, 7, 7) -> Bernoulli logits (B, 1, 28, 28)."""
        return self.decoder(z)

    @torch.no_grad()
    def latent_means(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Encoder means of many images, batched: x (N, 1, 28, 28) -> mu (N, D, 7, 7)."""
        return batched(lambda b: self.encode(b)[0], x, self, batch_size)

    @torch.no_grad()
    def decode_logits(self, z: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Decoder logits of many latent grids, batched: z (N, D, 7, 7) -> (N, 1, 28, 28)."""
        return batched(self.decode, z, self, batch_size)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """x (B, 1, 28, 28) -> VAEOutput(recon_logits (B, 1, 28, 28), mu, logvar (B, D, 7, 7)).
        z is sampled in eval mode too (a one-sample ELBO estimate)."""
        mu, logvar = self.encode(x)
        return VAEOutput(self.decode(self.reparameterize(mu, logvar)), mu, logvar)
