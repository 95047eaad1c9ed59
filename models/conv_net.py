"""The convolutional encoder and decoder shared by the conv VQ-VAE and the conv VAE.

The paper's design (van den Oord et al. 2017, section 4.1) scaled to 28x28
images: two stride-2 convolutions take (B, 1, 28, 28) to a 7x7 grid, residual
blocks follow, and a 1x1 convolution gives C channels per position. The
decoder mirrors it. :class:`models.vqvae.VQVAE` (``arch="conv"``) quantizes the
grid; :class:`models.conv_vae.ConvVAE` puts a diagonal Gaussian at each
position. Both are built here, once, so that the two differ only by what sits
between encoder and decoder.
"""
from __future__ import annotations

import torch
from torch import nn

IMAGE_SHAPE = (1, 28, 28)
# The encoder halves the resolution twice: 28 -> 14 -> 7.
CONV_GRID = 7


class ResidualBlock(nn.Module):
    """``x + Conv1x1(ReLU(Conv3x3(ReLU(x))))``, the residual block of the paper (section 4.1).

    Input and output of shape (B, C, H, W).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def residual_stack(channels: int, hidden: int, n_blocks: int) -> nn.Sequential:
    """``n_blocks`` residual blocks followed by a ReLU (as in the reference Sonnet
    implementation, so that the layer after the stack sees rectified features)."""
    return nn.Sequential(*[ResidualBlock(channels, hidden) for _ in range(n_blocks)], nn.ReLU())


def conv_encoder(out_channels: int, hidden: int = 64, res_hidden: int | None = None,
                 n_res_blocks: int = 2) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, out_channels, 7, 7).

    Conv(1->h, 4, stride 2) 28->14, ReLU, Conv(h->h, 4, stride 2) 14->7, ReLU,
    Conv(h->h, 3), ``n_res_blocks`` residual blocks, ReLU, Conv1x1(h->out).
    """
    res_hidden = hidden if res_hidden is None else res_hidden
    return nn.Sequential(
        nn.Conv2d(1, hidden, kernel_size=4, stride=2, padding=1),  # 28 -> 14
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, kernel_size=4, stride=2, padding=1),  # 14 -> 7
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
        residual_stack(hidden, res_hidden, n_res_blocks),
        nn.Conv2d(hidden, out_channels, kernel_size=1),
    )


def conv_decoder(in_channels: int, hidden: int = 64, res_hidden: int | None = None,
                 n_res_blocks: int = 2) -> nn.Sequential:
    """(B, in_channels, 7, 7) -> Bernoulli logits (B, 1, 28, 28).

    Conv(in->h, 3), residual blocks, ReLU, ConvTranspose(h->h, 4, stride 2)
    7->14, ReLU, ConvTranspose(h->1, 4, stride 2) 14->28.
    """
    res_hidden = hidden if res_hidden is None else res_hidden
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
        residual_stack(hidden, res_hidden, n_res_blocks),
        nn.ConvTranspose2d(hidden, hidden, kernel_size=4, stride=2, padding=1),  # 7 -> 14
        nn.ReLU(),
        nn.ConvTranspose2d(hidden, 1, kernel_size=4, stride=2, padding=1),  # 14 -> 28
    )


def grid_vectors(z: torch.Tensor) -> torch.Tensor:
    """A grid of latents (N, D, H, W) -> its vectors (N * H * W, D), image-major,
    then raster order (row by row) within an image."""
    n, d, h, w = z.shape
    return z.permute(0, 2, 3, 1).reshape(n * h * w, d)


def vectors_to_grid(v: torch.Tensor, n_images: int, grid: int = CONV_GRID) -> torch.Tensor:
    """The inverse of :func:`grid_vectors`: (N * grid * grid, D) -> (N, D, grid, grid)."""
    d = v.shape[-1]
    return v.reshape(n_images, grid, grid, d).permute(0, 3, 1, 2).contiguous()
