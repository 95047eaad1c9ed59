"""VQ-VAE baseline: van den Oord, Vinyals & Kavukcuoglu (2017), "Neural Discrete
Representation Learning" (arXiv:1711.00937).

The model is trained end to end with the objective of the paper's eq. (3)::

    L = -log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta * ||z_e(x) - sg[e]||^2

where ``sg`` is the stop-gradient operator, the gradient of the reconstruction
term is copied from the decoder input ``z_q`` to the encoder output ``z_e``
(straight-through estimator, section 3.2, or optionally the rotation trick),
and the codebook is learned either by the second term ("codebook loss") or, as
in appendix A.1, by exponential moving averages (EMA) of the cluster sizes and
sums, in which case the second term is dropped. The quantization layer is
:class:`models.quantizer.VectorQuantizer`, or with ``quantizer="library-vq"`` /
``"fsq"`` one of vector-quantize-pytorch's (models/library_quantizers.py) on the
same encoder and decoder.

Contents
--------
- :class:`VQVAEConfig`, everything that rebuilds a :class:`VQVAE` (the
  architecture and, inherited from :class:`models.quantizer.VQConfig`, every
  quantizer option);
- :class:`VQVAE`, the autoencoder for (B, 1, 28, 28) images, in two
  architectures: ``"conv"`` (the paper's convolutional design scaled to 28x28,
  a 7x7 grid of codes) and ``"global"`` (the fully connected body of
  ``models/vae.py``, one code per image).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.conv_net import (  # noqa: F401 - ResidualBlock, residual_stack re-exported
    CONV_GRID, IMAGE_SHAPE, ResidualBlock, conv_decoder, conv_encoder, residual_stack)
from models.library_quantizers import QUANTIZERS, check_fsq_norm, make_vq_layer
from models.quantizer import VQConfig, check_int
from models.vae import batched

__all__ = ["ARCHS", "VQVAEConfig", "VQVAEOutput", "VQVAE"]

N_PIXELS = 28 * 28
# Default widths: "conv" is sized to train a Fashion-MNIST epoch in well under a
# minute on 2 CPU cores (see the VQVAEConfig docstring); "global" matches models/vae.py.
DEFAULT_HIDDEN = {"conv": 64, "global": 400}
ARCHS = tuple(DEFAULT_HIDDEN)


@dataclass
class VQVAEConfig(VQConfig):
    """Everything needed to rebuild a :class:`VQVAE`; ``asdict`` of it is the
    checkpoint's ``model_args`` and ``VQVAE(**model_args)`` rebuilds the model.

    The quantizer options are the inherited fields of
    :class:`models.quantizer.VQConfig` (see its docstring: ``beta``, ``ema``,
    ``decay``, ``eps``, ``restart_dead``, ``dead_rule``, ``dead_window``,
    ``dead_threshold``, ``dead_decay``, ``restart_from``, ``kmeans_init``,
    ``kmeans_iters``, ``rotation_trick``); :attr:`vq_config` hands them over.

    Parameters
    ----------
    n_codes : int, default 512
        K, the codebook size (the paper uses 512).
    code_dim : int, default 64
        D, the dimension of each code (the paper uses 64 on CIFAR-10).
    arch : {"conv", "global"}, default "conv"
        ``"conv"``: the paper's convolutional design (section 4.1) scaled to
        28x28. Encoder: Conv(1->h, 4, stride 2) 28->14, ReLU, Conv(h->h, 4,
        stride 2) 14->7, ReLU, Conv(h->h, 3), ``n_res_blocks`` residual blocks,
        ReLU, Conv1x1(h->D): a 7x7 grid of D-dimensional vectors, each quantized,
        so 49 * log2(K) bits per image. The decoder mirrors it: Conv(D->h, 3),
        residual blocks, ReLU, ConvTranspose(h->h, 4, stride 2) 7->14, ReLU,
        ConvTranspose(h->1, 4, stride 2) 14->28 logits.
        ``"global"``: the fully connected body of ``models/vae.py``,
        784 -> 400 -> ReLU -> D, quantized to one code per image
        (log2(K) bits), then D -> 400 -> ReLU -> 784 logits.
    hidden : int or None, default None
        h, the width of the hidden layers. None gives 64 channels for "conv"
        and 400 units for "global" (as in models/vae.py), resolved on
        construction. The paper uses 256 channels on 128x128 images; 64 is
        enough at 28x28 and trains a full Fashion-MNIST epoch (60k images,
        batch 128) in about 30 s on 2 CPU cores (~2000 images/s); 128
        channels is 3-5 times slower.
    n_res_blocks : int, default 2
        Residual blocks in the encoder and in the decoder of "conv" (the paper
        uses 2); unused by "global".
    res_hidden : int or None, default None
        Width of the 3x3 convolution inside each residual block; None means h
        (the paper: "all having 256 hidden units").
    quantizer : {"ours", "library-vq", "fsq"}, default "ours"
        The quantization layer (models/library_quantizers.py): ``"ours"``
        :class:`models.quantizer.VectorQuantizer`; ``"library-vq"``
        vector-quantize-pytorch's ``VectorQuantize`` at the same decay, beta,
        k-means and rotation options (its own dead-code rule); ``"fsq"`` its
        finite scalar quantization with the levels ``FSQ_LEVELS[n_codes]``
        (the codebook options are then unused). Checkpoints from before this
        field rebuild with the default.
    fsq_norm : {"none", "batch"}, default "none"
        With ``quantizer="fsq"``: ``"batch"`` standardises FSQ's projected values
        over the batch before its tanh bound
        (:class:`models.library_quantizers.FSQQuantizer`); "none" is the library's FSQ.
    """

    n_codes: int = 512
    code_dim: int = 64
    _: KW_ONLY
    arch: str = "conv"
    hidden: int | None = None
    n_res_blocks: int = 2
    res_hidden: int | None = None
    quantizer: str = "ours"
    fsq_norm: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}.")
        check_fsq_norm(self.quantizer, self.fsq_norm)
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}.")
        if self.hidden is None:
            self.hidden = DEFAULT_HIDDEN[self.arch]
        self.hidden = check_int("hidden", self.hidden, 1, " (or None for the default)")
        if self.res_hidden is None:
            self.res_hidden = self.hidden
        self.res_hidden = check_int("res_hidden", self.res_hidden, 1, " (or None for hidden)")
        self.n_res_blocks = check_int("n_res_blocks", self.n_res_blocks, 0)

    @property
    def vq_config(self) -> VQConfig:
        """The quantizer's part of this config."""
        return VQConfig(**{f.name: getattr(self, f.name) for f in fields(VQConfig)})


# ----------------------------------------------------------------------------
# VQ-VAE
# ----------------------------------------------------------------------------
class VQVAEOutput(NamedTuple):
    """Output of :meth:`VQVAE.forward`.

    ``recon_logits`` (B, 1, 28, 28): Bernoulli logits of the reconstruction;
    ``loss``: the weighted total of eq. (3), ``recon_loss + beta * commit_loss
    + codebook_loss``, ready for ``backward()``;
    ``recon_loss``: BCE-with-logits summed over pixels, mean over the batch;
    ``commit_loss``: the RAW commitment term ||z_e - sg[z_q]||^2 (not
    multiplied by beta), ``codebook_loss``: ||sg[z_e] - z_q||^2 (0 with EMA),
    both summed over code positions and code dimensions, mean over the batch;
    ``indices``: (B, 7, 7) for "conv", (B,) for "global", long;
    ``perplexity``, ``usage``: detached scalars of the batch's code usage.
    """

    recon_logits: torch.Tensor
    loss: torch.Tensor
    recon_loss: torch.Tensor
    commit_loss: torch.Tensor
    codebook_loss: torch.Tensor
    indices: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class VQVAE(nn.Module):
    """VQ-VAE for (B, 1, 28, 28) images in [0, 1] with a Bernoulli decoder.

    ``VQVAE(arch, n_codes, code_dim, **options)`` with the fields of
    :class:`VQVAEConfig` (architecture and quantizer options, all documented
    there); ``self.config`` holds them, defaults resolved, and
    ``VQVAE(**asdict(model.config))`` (= ``VQVAE(**model.model_args)``)
    rebuilds the model from a checkpoint.

    Notes
    -----
    Loss scaling. The reconstruction term -log p(x | z_q) of eq. (3) is a sum
    over the 784 pixels (BCE with logits), averaged over the batch. The
    commitment and codebook terms ||z_e - z_q||^2 of eq. (3) are likewise sums:
    over the D code dimensions and over the code positions of an image (49 for
    "conv", 1 for "global"), averaged over the batch. Both sides are per-image
    sums, as in the paper, so beta = 0.25 weights the commitment against the
    reconstruction as in the paper; a per-element mean would make it about
    784 / (49 D) times weaker for "conv". (train/train_vqvae.py uses beta = 1
    for "global", whose one code per image otherwise loses its encoder in the
    first epoch; see DEFAULT_BETA there.)
    """

    def __init__(self, arch: str = VQVAEConfig.arch, n_codes: int = VQVAEConfig.n_codes,
                 code_dim: int = VQVAEConfig.code_dim, **options) -> None:
        super().__init__()
        self.config = VQVAEConfig(n_codes, code_dim, arch=arch, **options)
        cfg = self.config
        self.quantizer = make_vq_layer(cfg.quantizer, cfg.vq_config, cfg.fsq_norm)
        hidden, res_hidden, n_res_blocks = cfg.hidden, cfg.res_hidden, cfg.n_res_blocks
        code_dim = cfg.code_dim

        if cfg.arch == "conv":
            self.encoder = conv_encoder(code_dim, hidden, res_hidden, n_res_blocks)
            self.decoder = conv_decoder(code_dim, hidden, res_hidden, n_res_blocks)
            self.n_positions = CONV_GRID * CONV_GRID
        else:
            self.encoder = nn.Sequential(
                nn.Flatten(),
                nn.Linear(N_PIXELS, hidden),
                nn.ReLU(),
                nn.Linear(hidden, code_dim),
            )
            self.decoder = nn.Sequential(
                nn.Linear(code_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, N_PIXELS),
                nn.Unflatten(1, IMAGE_SHAPE),
            )
            self.n_positions = 1

    @property
    def model_args(self) -> dict:
        """``asdict(self.config)``: plain Python values that rebuild the model."""
        return asdict(self.config)

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def n_codes(self) -> int:
        return self.config.n_codes

    @property
    def code_dim(self) -> int:
        return self.config.code_dim

    @property
    def bits_per_image(self) -> float:
        """Size of an image's code: ``n_positions * log2(K)`` bits (49 log2 K for
        "conv", log2 K for "global")."""
        return self.n_positions * math.log2(self.n_codes)

    @staticmethod
    def _check_images(x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"expected images of shape (B, 1, 28, 28), got {tuple(x.shape)}.")

    def _continuous_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output z_e with the code dimension last: (B, 7, 7, D) or (B, D)."""
        self._check_images(x)
        z_e = self.encoder(x)
        if self.arch == "conv":
            z_e = z_e.permute(0, 2, 3, 1)
        return z_e

    def decode_codes(self, z_q: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, 28, 28) from codes with the code dimension last."""
        if self.arch == "conv":
            z_q = z_q.permute(0, 3, 1, 2)
        return self.decoder(z_q)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices of images, without updating the codebook.

        Parameters
        ----------
        x : tensor of shape (B, 1, 28, 28).

        Returns
        -------
        long tensor of shape (B, 7, 7) for "conv", (B,) for "global".
        """
        return self.quantizer.assign(self._continuous_codes(x))

    @torch.no_grad()
    def initialise_codebook(self, x: torch.Tensor, max_vectors: int | None = None,
                            generator: torch.Generator | None = None,
                            batch_size: int = 1000) -> int:
        """k-means initialisation of the codebook on the encoder outputs of ``x``
        (``VectorQuantizer.initialise``), instead of on the first training batch.

        Parameters
        ----------
        x : tensor of shape (N, 1, 28, 28), training images.
        max_vectors : int or None. At most this many encoder outputs (a random
            subset drawn with ``generator``) go into k-means, whose memory is
            the (vectors, K) distance matrix; None keeps all N * positions.
        generator : torch.Generator or None, for the subset and k-means' start.
        batch_size : images encoded at a time.

        Returns
        -------
        int, the number of vectors k-means was run on.
        """
        was_training = self.training
        self.eval()  # no codebook update while encoding
        try:
            flat = batched(self._continuous_codes, x, self, batch_size).reshape(-1, self.code_dim)
        finally:
            self.train(was_training)
        if max_vectors is not None and len(flat) > max_vectors:
            flat = flat[torch.randperm(len(flat), generator=generator)[:max_vectors]]
        self.quantizer.initialise(flat.to(self.quantizer.codebook.device), generator)
        return len(flat)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images decoded from code indices (wrap in ``torch.no_grad()`` for sampling).

        Parameters
        ----------
        indices : long tensor of shape (B, 7, 7) for "conv", (B,) for "global".

        Returns
        -------
        tensor of shape (B, 1, 28, 28): Bernoulli means, sigmoid of the logits, in [0, 1].
        """
        expected = 3 if self.arch == "conv" else 1
        if indices.dim() != expected:
            raise ValueError(f"arch {self.arch!r} expects indices with {expected} dimension(s), "
                             f"got shape {tuple(indices.shape)}.")
        return torch.sigmoid(self.decode_codes(self.quantizer.lookup(indices)))

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        """Encode, quantize, decode and compute the loss of eq. (3).

        Parameters
        ----------
        x : tensor of shape (B, 1, 28, 28), values in [0, 1].

        Returns
        -------
        VQVAEOutput (see its docstring); ``loss`` is a per-image sum averaged
        over the batch (see the class Notes on scaling).
        """
        z_e = self._continuous_codes(x)
        quantized = self.quantizer(z_e)
        recon_logits = self.decode_codes(quantized.z_q)

        batch_size = x.shape[0]
        recon_loss = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum") / batch_size
        # The quantizer's losses are means over B * positions * D elements;
        # times positions * D they become per-image sums averaged over the batch.
        elements_per_image = self.n_positions * self.code_dim
        commit_loss = quantized.losses.commit * elements_per_image
        codebook_loss = quantized.losses.codebook * elements_per_image
        loss = recon_loss + quantized.loss * elements_per_image
        return VQVAEOutput(
            recon_logits=recon_logits,
            loss=loss,
            recon_loss=recon_loss,
            commit_loss=commit_loss,
            codebook_loss=codebook_loss,
            indices=quantized.indices,
            perplexity=quantized.stats.perplexity,
            usage=quantized.stats.usage,
        )
