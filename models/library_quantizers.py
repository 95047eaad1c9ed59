"""The quantizers of ``vector-quantize-pytorch`` behind our quantizer's interface.

:class:`models.vqvae.VQVAE` talks to its quantization layer through the
interface of :class:`models.quantizer.VectorQuantizer`: ``forward(z_e) ->
VQOutput``, ``assign``, ``lookup``, ``codebook``, ``initialise``,
``initialized``, ``dead_codes``, ``n_codes``, ``code_dim``. The two classes here
wrap lucidrains' library (version pinned in requirements.txt) so that a VQ-VAE
differs only in its quantizer, and every statistic (usage, perplexity, dead
codes) is computed by the same code as for ours:

- :class:`LibraryVectorQuantizer`: the library's ``VectorQuantize`` (EMA
  codebook, k-means initialisation on the first batch, dead codes replaced by
  random encoder outputs when their EMA cluster size falls below
  ``threshold_ema_dead_code``, optional rotation trick of Fifty et al. 2024),
  our cross-check of :class:`models.quantizer.VectorQuantizer`, which writes
  these by hand;
- :class:`FSQQuantizer`: the library's ``FSQ``, finite scalar quantization
  (Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
  arXiv:2309.15505): a linear map takes z_e to ``len(levels)`` dimensions, each is
  bounded by tanh and rounded to one of ``levels[i]`` values (straight-through
  gradient), and a linear map takes the code back to D dimensions. The K =
  prod(levels) codes form a fixed grid; nothing is learned but the two maps, and
  there is no auxiliary loss.

:func:`make_vq_layer` builds the layer a VQ-VAE config names (``"ours"``,
``"library-vq"``, ``"fsq"``).
"""
from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from models.quantizer import (QuantizerLayer, VectorQuantizer, VQConfig, VQLosses, VQOutput,
                              batch_stats, nearest_code)

__all__ = ["QUANTIZERS", "FSQ_NORMS", "FSQ_LEVELS", "LIBRARY_DEAD_CODE_THRESHOLD", "fsq_levels",
           "check_fsq_norm", "LibraryVectorQuantizer", "FSQQuantizer", "make_vq_layer"]

# The quantization layers a VQ-VAE can have: ours (models/quantizer.py) first, the default.
QUANTIZERS = ("ours", "library-vq", "fsq")
# What FSQ does to its projected values before bounding them (FSQQuantizer's ``norm``):
# nothing (the library's FSQ) or a batch normalization without affine parameters.
FSQ_NORMS = ("none", "batch")

# FSQ levels per codebook size K = prod(levels). The FSQ paper's table 3 recommends
# levels >= 5 (e.g. [8, 6, 5] for 2^8 = 240 codes), which give no power of two; to
# compare at the same bits per code as the other methods we take the fewest
# dimensions with levels of 8 and 4 (2 would need the library's preserve_symmetry):
# 16 = [4, 4] and 64 = [8, 8] as in the library's README, 512 = [8, 8, 8] as in
# its examples/autoencoder_fsq.py. K = 4 and 8 (one dimension) serve tiny tests.
FSQ_LEVELS: dict[int, tuple[int, ...]] = {
    4: (4,),
    8: (8,),
    16: (4, 4),
    32: (8, 4),
    64: (8, 8),
    128: (8, 4, 4),
    256: (8, 8, 4),
    512: (8, 8, 8),
    1024: (8, 8, 4, 4),
}

# The library's EMA cluster size (a count of vectors per batch) below which a code is
# replaced; 2 is the value the library's README and examples use.
LIBRARY_DEAD_CODE_THRESHOLD = 2.0


def check_fsq_norm(quantizer: str, fsq_norm: str) -> None:
    """ValueError unless ``fsq_norm`` is one of :data:`FSQ_NORMS` and, when not "none",
    ``quantizer`` is "fsq" (the one layer it is an option of)."""
    if fsq_norm not in FSQ_NORMS:
        raise ValueError(f"fsq_norm must be one of {FSQ_NORMS}, got {fsq_norm!r}.")
    if fsq_norm != "none" and quantizer != "fsq":
        raise ValueError(f"fsq_norm={fsq_norm!r} is an option of quantizer 'fsq': it needs "
                         f"quantizer 'fsq', not {quantizer!r}.")


def fsq_levels(n_codes: int) -> tuple[int, ...]:
    """The FSQ levels of :data:`FSQ_LEVELS` for K = ``n_codes`` (ValueError when K has none)."""
    try:
        return FSQ_LEVELS[n_codes]
    except KeyError:
        raise ValueError(f"FSQ has no levels for K = {n_codes}; choose K among "
                         f"{sorted(FSQ_LEVELS)} or add an entry to FSQ_LEVELS.") from None


class LibraryVectorQuantizer(QuantizerLayer):
    """vector-quantize-pytorch's ``VectorQuantize`` with the interface of
    :class:`models.quantizer.VectorQuantizer`.

    Built from the same :class:`models.quantizer.VQConfig` fields, mapped onto the
    library's arguments: ``decay`` (EMA of the codebook, appendix A.1 of van den
    Oord et al. 2017), ``eps`` (Laplace smoothing), ``beta`` (the library's
    ``commitment_weight``), ``kmeans_init`` / ``kmeans_iters`` (k-means on the first
    training batch), ``rotation_trick``, and ``restart_dead`` (the library's
    ``threshold_ema_dead_code`` = :data:`LIBRARY_DEAD_CODE_THRESHOLD`, 0 when off).
    Our dead-code options (``dead_rule``, ``dead_threshold``, ``dead_decay``,
    ``dead_window``, ``restart_from``) have no counterpart and are ignored: the
    library calls a code dead when its EMA cluster size (decay ``decay``) is below
    the threshold and moves it onto a random encoder output of the batch. Only the
    EMA codebook is supported (``ema=True``): the library's learnable codebook trains
    it through the commitment term instead of a separate codebook loss.

    Notes
    -----
    ``losses.commit`` is mean((z_e - sg[z_q])^2) over all N * D elements, the
    library's own commitment term in training (its ``LossBreakdown.commitment``);
    in eval mode, where the library returns 0, it is computed here by the same
    formula so that validation logs stay comparable with ours.
    """

    def __init__(self, n_codes: int, code_dim: int, **options) -> None:
        super().__init__(n_codes, code_dim, **options)
        from vector_quantize_pytorch import VectorQuantize

        cfg = self.config
        if not cfg.ema:
            raise ValueError("the library's VectorQuantize is wrapped with its EMA codebook "
                             "only; use ema=True (the default) or quantizer 'ours'.")
        self.vq = VectorQuantize(
            dim=cfg.code_dim, codebook_size=cfg.n_codes, decay=cfg.decay, eps=cfg.eps,
            commitment_weight=cfg.beta, kmeans_init=cfg.kmeans_init,
            kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=LIBRARY_DEAD_CODE_THRESHOLD if cfg.restart_dead else 0,
            rotation_trick=cfg.rotation_trick, straight_through=False,
            sync_codebook=False, channel_last=True)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) the library's codebook (a buffer, learned by EMA)."""
        return self.vq.codebook

    @property
    def initialized(self) -> torch.Tensor:
        """Bool scalar tensor: whether the k-means initialisation has run (or is off)."""
        return self.vq._codebook.initted

    @torch.no_grad()
    def assign(self, z_e: torch.Tensor) -> torch.Tensor:
        """Indices (...,) of the nearest codes of ``z_e`` (..., D), without any update
        (the library's forward would run its k-means initialisation, even in eval mode)."""
        return nearest_code(self._flatten(z_e), self.codebook).reshape(z_e.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., D) of ``indices`` (...,) in [0, K)."""
        self._check_indices(indices)
        return F.embedding(indices, self.codebook)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        """Quantize ``z_e`` (..., D) with the library; in training mode it also
        updates its codebook (EMA, dead codes, k-means on the first batch).

        Returns a :class:`models.quantizer.VQOutput` as ``VectorQuantizer.forward``:
        ``loss`` = beta * commit, ``losses.codebook`` = 0 (EMA codebook).
        """
        flat = self._flatten(z_e)
        if not self.training and not bool(self.initialized):
            # the library would run its k-means here: an eval pass must not change the model
            indices = nearest_code(flat.detach(), self.codebook)
            flat_z_q = F.embedding(indices, self.codebook)
            commit = F.mse_loss(flat, flat_z_q)
        else:
            flat_z_q, indices, _, breakdown = self.vq(flat.unsqueeze(0),
                                                      return_loss_breakdown=True)
            flat_z_q, indices = flat_z_q.squeeze(0), indices.squeeze(0).long()
            if self.training:
                commit = breakdown.commitment
            else:
                commit = F.mse_loss(flat, flat_z_q.detach())
        loss = self.config.beta * commit
        return VQOutput(flat_z_q.reshape(z_e.shape), indices.reshape(z_e.shape[:-1]), loss,
                        VQLosses(commit, flat.new_zeros(())),
                        batch_stats(indices, self.n_codes, flat.dtype))

    @torch.no_grad()
    def initialise(self, samples: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """The library's k-means initialisation (``kmeans_iters`` rounds) on ``samples``
        (N, D) instead of the first training batch. The library draws its starting
        centers from torch's global RNG: ``generator`` is not used."""
        if samples.dim() != 2 or samples.shape[1] != self.code_dim:
            raise ValueError(f"expected samples of shape (N, {self.code_dim}), "
                             f"got {tuple(samples.shape)}.")
        codebook = self.vq._codebook
        codebook.initted.fill_(False)
        codebook.init_embed_(samples.unsqueeze(0).float())

    def dead_codes(self) -> torch.Tensor:
        """Indices (long, (n_dead,)) of the codes the library calls dead now: EMA
        cluster size below its threshold (none when dead-code replacement is off)."""
        threshold = self.vq._codebook.threshold_ema_dead_code
        if threshold <= 0:
            return torch.zeros(0, dtype=torch.long, device=self.codebook.device)
        return (self.vq._codebook.cluster_size[0] < threshold).nonzero().squeeze(1)


class FSQQuantizer(QuantizerLayer):
    """vector-quantize-pytorch's ``FSQ`` with the interface of
    :class:`models.quantizer.VectorQuantizer`.

    ``FSQ(levels=fsq_levels(K), dim=D)``: when D != len(levels) the library adds the
    linear maps D -> len(levels) -> D (with bias) around the rounding, so ``lookup``
    and :attr:`codebook` go through the learned output map. Of the
    :class:`models.quantizer.VQConfig` fields only ``n_codes`` and ``code_dim`` are
    used: FSQ has no codebook to learn, initialise or restart and no commitment
    loss (``loss`` and both ``losses`` are 0).

    ``norm="batch"`` standardises each of the len(levels) projected values over the
    batch (running statistics in eval mode; no affine parameters) before the bound
    f(z) = floor(L/2) tanh(z) of the FSQ paper (eq. 1, with the library's half-level
    shift). With one code per image on the shallow global backbone, the library's FSQ
    (``norm="none"``) drifts into the flat part of the tanh within about 50 steps, at
    learning rates from 1e-4 to 2e-3: every image then gets the same code and no gradient
    leaves the bound (measured on mnist-5k; tests/test_library_quantizers.py shows the
    mechanism). Centring the projected values keeps them where the levels are.
    """

    def __init__(self, n_codes: int, code_dim: int, norm: str = "none", **options) -> None:
        super().__init__(n_codes, code_dim, **options)
        from vector_quantize_pytorch import FSQ

        check_fsq_norm("fsq", norm)
        self.levels, self.norm = fsq_levels(self.config.n_codes), norm
        self.fsq = FSQ(levels=list(self.levels), dim=self.config.code_dim)
        if norm == "batch":  # between the library's input map and its bound
            self.fsq.project_in = nn.Sequential(self.fsq.project_in,
                                                LastDimBatchNorm(len(self.levels)))
        self.register_buffer("initialized", torch.tensor(True), persistent=False)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) every code as the decoder sees it (the grid through the output map)."""
        return self.lookup(torch.arange(self.n_codes, device=self.initialized.device))

    def _quantize(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_q, indices = self.fsq(flat.unsqueeze(0))
        return z_q.squeeze(0), indices.squeeze(0).long()

    @torch.no_grad()
    def assign(self, z_e: torch.Tensor) -> torch.Tensor:
        """Indices (...,) of the FSQ codes of ``z_e`` (..., D)."""
        return self._quantize(self._flatten(z_e))[1].reshape(z_e.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., D) of ``indices`` (...,) in [0, K): the library's
        ``indices_to_codes`` (mixed-radix digits -> grid point -> output map)."""
        self._check_indices(indices)
        codes = self.fsq.indices_to_codes(indices.reshape(-1))
        return codes.reshape(*indices.shape, self.code_dim)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        """Quantize ``z_e`` (..., D); the gradient passes the rounding straight through."""
        flat = self._flatten(z_e)
        flat_z_q, indices = self._quantize(flat)
        zero = flat.new_zeros(())
        return VQOutput(flat_z_q.reshape(z_e.shape), indices.reshape(z_e.shape[:-1]), zero,
                        VQLosses(zero, zero), batch_stats(indices, self.n_codes, flat.dtype))

    def initialise(self, samples: torch.Tensor, generator: torch.Generator | None = None) -> None:
        raise ValueError("FSQ has a fixed grid of codes: there is no codebook to initialise "
                         "(drop --kmeans-init-images).")

    def dead_codes(self) -> torch.Tensor:
        """No code of a fixed grid is ever replaced: an empty long tensor."""
        return torch.zeros(0, dtype=torch.long, device=self.initialized.device)


class LastDimBatchNorm(nn.Module):
    """Batch normalization of the last dimension of (..., d) values, over all the others,
    without affine parameters: (z - mean) / sqrt(var + eps), the batch's statistics in
    training mode and their running averages (momentum 0.1) in eval mode."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bn(z.reshape(-1, z.shape[-1])).reshape(z.shape)


def make_vq_layer(kind: str, config: VQConfig, fsq_norm: str = "none") -> nn.Module:
    """The quantization layer ``kind`` (one of :data:`QUANTIZERS`) built from ``config``
    (and, for "fsq", ``fsq_norm``: :class:`FSQQuantizer`'s ``norm``)."""
    layers = {"ours": VectorQuantizer, "library-vq": LibraryVectorQuantizer, "fsq": FSQQuantizer}
    if kind not in layers:
        raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {kind!r}.")
    check_fsq_norm(kind, fsq_norm)
    options = {k: v for k, v in asdict(config).items() if k not in ("n_codes", "code_dim")}
    extra = {"norm": fsq_norm} if kind == "fsq" else {}
    return layers[kind](config.n_codes, config.code_dim, **extra, **options)
