"""VQ-VAE baseline: van den Oord, Vinyals & Kavukcuoglu (2017), "Neural Discrete
Representation Learning" (arXiv:1711.00937).

The model is trained end to end with the objective of the paper's eq. (3)::

    L = -log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta * ||z_e(x) - sg[e]||^2

where ``sg`` is the stop-gradient operator, the gradient of the reconstruction
term is copied from the decoder input ``z_q`` to the encoder output ``z_e``
(straight-through estimator, section 3.2), and the codebook is learned either by
the second term ("codebook loss") or, as in appendix A.1, by exponential moving
averages (EMA) of the cluster sizes and sums, in which case the second term is
dropped.

Contents
--------
- named helpers: :func:`straight_through`, :func:`ema_inplace`,
  :func:`laplace_smoothing`, :func:`perplexity`, :func:`nearest_code`,
  :func:`kmeans`;
- :class:`VectorQuantizer`, the quantization layer with its codebook;
- :class:`VQVAE`, the autoencoder for (B, 1, 28, 28) images, in two
  architectures: ``"conv"`` (the paper's convolutional design scaled to 28x28,
  a 7x7 grid of codes) and ``"global"`` (the fully connected body of
  ``models/vae.py``, one code per image).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "straight_through",
    "ema_inplace",
    "laplace_smoothing",
    "perplexity",
    "nearest_code",
    "kmeans",
    "KMeansResult",
    "VQLosses",
    "VQStats",
    "VQOutput",
    "VectorQuantizer",
    "VQVAEOutput",
    "VQVAE",
]

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 28 * 28
# The conv encoder halves the resolution twice: 28 -> 14 -> 7.
CONV_GRID = 7
# Default widths: "conv" is sized to train a Fashion-MNIST epoch in well under a
# minute on 2 CPU cores (see the VQVAE docstring); "global" matches models/vae.py.
DEFAULT_HIDDEN = {"conv": 64, "global": 400}
ARCHS = tuple(DEFAULT_HIDDEN)


# ----------------------------------------------------------------------------
# Named helpers
# ----------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int, hint: str = "") -> int:
    """Return ``value`` as a plain int, or raise ValueError if it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{hint}, got {value!r}.")
    return int(value)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator (paper section 3.2).

    Returns a tensor whose value is ``z_q`` but whose gradient flows to ``z_e``
    unchanged, i.e. d loss / d z_e = d loss / d output. Nothing flows to ``z_q``.

    Parameters
    ----------
    z_e : tensor of shape (..., D), encoder output.
    z_q : tensor of shape (..., D), its quantized value.

    Returns
    -------
    tensor of shape (..., D), equal to ``z_q`` in value.
    """
    return z_e + (z_q - z_e).detach()


def ema_inplace(moving_avg: torch.Tensor, new: torch.Tensor, decay: float) -> None:
    """In place ``moving_avg <- decay * moving_avg + (1 - decay) * new``.

    The update of the paper's appendix A.1, eqs. (6)-(7), with ``decay`` = gamma.
    """
    moving_avg.mul_(decay).add_(new, alpha=1.0 - decay)


def laplace_smoothing(counts: torch.Tensor, n_categories: int, eps: float = 1e-5) -> torch.Tensor:
    """Laplace-smoothed probabilities ``(counts + eps) / (sum(counts) + n_categories * eps)``.

    Multiplied by ``sum(counts)`` this gives smoothed counts that keep the total
    but are never zero, so that the EMA codebook ``code_sum / cluster_size``
    (appendix A.1, eq. 8) never divides by zero for a code that has not been
    used for a while (the smoothing of Sonnet's ``VectorQuantizerEMA``).

    Parameters
    ----------
    counts : tensor of shape (K,), non-negative.
    n_categories : int, K.
    eps : float, pseudo-count added to every category.

    Returns
    -------
    tensor of shape (K,), sums to 1.
    """
    return (counts + eps) / (counts.sum() + n_categories * eps)


def perplexity(counts_or_probs: torch.Tensor) -> torch.Tensor:
    """Perplexity ``exp(H(p))`` of code usage, with ``p`` the normalised counts.

    It is the effective number of codes in use: K when the K codes are used
    equally often, 1 when every input is mapped to the same code.

    Parameters
    ----------
    counts_or_probs : tensor of shape (K,), non-negative, not all zero
        (counts or probabilities; it is normalised here).

    Returns
    -------
    scalar tensor.
    """
    probs = counts_or_probs / counts_or_probs.sum()
    # xlogy gives 0 * log 0 = 0 for unused codes.
    entropy = -torch.xlogy(probs, probs).sum()
    return entropy.exp()


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code in squared Euclidean distance.

    Uses ``||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2`` so that memory is the (N, K)
    distance matrix and never an (N, K, D) difference tensor.

    Parameters
    ----------
    z : tensor of shape (N, D).
    codebook : tensor of shape (K, D).

    Returns
    -------
    long tensor of shape (N,) with values in [0, K).
    """
    squared_distances = (
        z.pow(2).sum(dim=1, keepdim=True)
        - 2.0 * z @ codebook.t()
        + codebook.pow(2).sum(dim=1).unsqueeze(0)
    )
    return squared_distances.argmin(dim=1)


class KMeansResult(NamedTuple):
    """Result of :func:`kmeans`: ``centers`` (K, D) and ``cluster_sizes`` (K,) float."""

    centers: torch.Tensor
    cluster_sizes: torch.Tensor


def kmeans(
    samples: torch.Tensor,
    n_clusters: int,
    n_iters: int = 10,
    generator: torch.Generator | None = None,
) -> KMeansResult:
    """Lloyd's k-means, used to initialise a codebook from data.

    Centers start at distinct random samples (with replacement only when there
    are fewer samples than clusters); a cluster that becomes empty keeps its
    previous center rather than producing a NaN.

    Parameters
    ----------
    samples : tensor of shape (N, D).
    n_clusters : int, K.
    n_iters : int, number of assignment / update rounds.
    generator : torch.Generator or None. None draws from torch's global RNG,
        so ``torch.manual_seed`` makes the result reproducible.

    Returns
    -------
    KMeansResult with ``centers`` of shape (K, D) and ``cluster_sizes`` of shape
    (K,), the number of samples nearest to each final center.
    """
    n_samples = samples.shape[0]
    if n_samples >= n_clusters:
        start = torch.randperm(n_samples, generator=generator, device=samples.device)[:n_clusters]
    else:
        start = torch.randint(n_samples, (n_clusters,), generator=generator, device=samples.device)
    centers = samples[start].clone()
    for _ in range(n_iters):
        assignment = nearest_code(samples, centers)
        sizes = torch.bincount(assignment, minlength=n_clusters).to(samples.dtype)
        sums = torch.zeros_like(centers).index_add_(0, assignment, samples)
        non_empty = sizes > 0
        centers[non_empty] = sums[non_empty] / sizes[non_empty].unsqueeze(1)
    assignment = nearest_code(samples, centers)
    sizes = torch.bincount(assignment, minlength=n_clusters).to(samples.dtype)
    return KMeansResult(centers, sizes)


# ----------------------------------------------------------------------------
# Vector quantizer
# ----------------------------------------------------------------------------
class VQLosses(NamedTuple):
    """Scalar losses of a :class:`VectorQuantizer`, each a mean over all elements.

    ``commit`` = beta * mean((z_e - sg[z_q])^2) (moves only the encoder);
    ``codebook`` = mean((sg[z_e] - z_q)^2) (moves only the codebook), or a zero
    constant when the codebook is learned by EMA.
    """

    commit: torch.Tensor
    codebook: torch.Tensor


class VQStats(NamedTuple):
    """Detached scalar statistics of the codes used in one batch.

    ``perplexity`` = exp(entropy of code usage), in [1, K];
    ``usage`` = fraction of the K codes used at least once, in (0, 1].
    """

    perplexity: torch.Tensor
    usage: torch.Tensor


class VQOutput(NamedTuple):
    """Output of :meth:`VectorQuantizer.forward`.

    ``z_q`` (..., D): quantized vectors with the straight-through gradient;
    ``indices`` (...,) long: the chosen codes; ``losses``: :class:`VQLosses`;
    ``stats``: :class:`VQStats`.
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    losses: VQLosses
    stats: VQStats


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantization with a learned codebook (paper section 3.1).

    Each input vector z_e is replaced by its nearest code e_k in squared L2
    distance (eq. 2). The gradient reaches the encoder by the straight-through
    estimator; the encoder is pulled towards its codes by the commitment loss
    and the codebook is learned either by the codebook loss or by EMA.

    Parameters
    ----------
    n_codes : int
        K, the number of codes (>= 1).
    code_dim : int
        D, the dimension of each code (>= 1).
    beta : float, default 0.25
        Weight of the commitment loss (the paper's value; >= 0).
    ema : bool, default True
        Learn the codebook by exponential moving averages (appendix A.1):
        ``N_i <- decay N_i + (1 - decay) n_i``,
        ``m_i <- decay m_i + (1 - decay) sum_{j: k(j)=i} z_e_j``,
        ``e_i = m_i / N~_i`` with ``N~`` the Laplace-smoothed ``N``. The codebook
        is then a buffer (no gradient) and the codebook loss is reported as 0.
        If False the codebook is an ``nn.Parameter`` learned by the codebook loss.
    decay : float, default 0.99
        gamma of the EMA, in (0, 1) (the paper's value).
    eps : float, default 1e-5
        Laplace pseudo-count of the EMA cluster sizes (> 0).
    restart_dead : bool, default True
        Restart a code that no input of ``dead_window`` consecutive training
        batches was assigned to: it is moved onto a random encoder output of the
        current batch (drawn with torch's global RNG, so ``torch.manual_seed``
        makes it reproducible) and its EMA statistics are reset to a cluster of
        size 1 at that point.
    dead_window : int, default 100
        Number of consecutive unused training batches after which a code is dead
        (>= 1). At batch 128 and K = 512 a code used by 1 image in 512 is missed
        by 100 batches in a row with probability < 1e-10.
    kmeans_init : bool, default False
        Initialise the codebook by ``kmeans_iters`` rounds of k-means on the
        encoder outputs of the first training batch (the EMA cluster sizes start
        at the cluster sizes found, at least 1). Otherwise codes start as
        N(0, 1/D) draws, i.e. of unit expected norm.
    kmeans_iters : int, default 10
        Lloyd iterations of the k-means initialisation (>= 1).

    Notes
    -----
    All codebook updates (EMA, dead-code restarts, k-means initialisation) run
    under ``torch.no_grad()`` and only in training mode; ``eval()`` freezes the
    codebook. Buffers ``steps_unused`` and ``initialized`` are in the
    ``state_dict`` so that a resumed run continues the same dead-code counts and
    does not re-run the k-means initialisation.
    """

    def __init__(
        self,
        n_codes: int,
        code_dim: int,
        *,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_dead: bool = True,
        dead_window: int = 100,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        n_codes = _check_int("n_codes", n_codes, 1, " (the codebook size K)")
        code_dim = _check_int("code_dim", code_dim, 1, " (the code dimension D)")
        dead_window = _check_int("dead_window", dead_window, 1, " (training batches)")
        kmeans_iters = _check_int("kmeans_iters", kmeans_iters, 1)
        if not beta >= 0:
            raise ValueError(f"beta (commitment weight) must be >= 0; the paper uses 0.25. Got {beta!r}.")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie strictly between 0 and 1; the paper uses 0.99. Got {decay!r}.")
        if not eps > 0:
            raise ValueError(f"eps (Laplace pseudo-count) must be > 0, e.g. 1e-5. Got {eps!r}.")

        self.n_codes = n_codes
        self.code_dim = code_dim
        self.beta = float(beta)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.eps = float(eps)
        self.restart_dead = bool(restart_dead)
        self.dead_window = dead_window
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = kmeans_iters

        codebook = torch.randn(n_codes, code_dim) / math.sqrt(code_dim)
        if self.ema:
            self.register_buffer("codebook", codebook)
            # Start the EMA in a state consistent with the codebook
            # (code_sum / cluster_size == codebook): each code is a cluster of
            # size 1 at its initial position, so an unused code stays put
            # instead of being divided by a near-zero smoothed count.
            self.register_buffer("cluster_size", torch.ones(n_codes))
            self.register_buffer("code_sum", codebook.clone())
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("steps_unused", torch.zeros(n_codes, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(not self.kmeans_init))

    def extra_repr(self) -> str:
        return (
            f"n_codes={self.n_codes}, code_dim={self.code_dim}, beta={self.beta}, ema={self.ema}, "
            f"decay={self.decay}, restart_dead={self.restart_dead}, dead_window={self.dead_window}, "
            f"kmeans_init={self.kmeans_init}"
        )

    def _flatten(self, z_e: torch.Tensor) -> torch.Tensor:
        if z_e.dim() < 1 or z_e.shape[-1] != self.code_dim:
            raise ValueError(
                f"expected encoder outputs of shape (..., {self.code_dim}) with the code "
                f"dimension last, got {tuple(z_e.shape)}."
            )
        return z_e.reshape(-1, self.code_dim)

    @torch.no_grad()
    def assign(self, z_e: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes, without any update.

        Parameters
        ----------
        z_e : tensor of shape (..., D).

        Returns
        -------
        long tensor of shape (...,).
        """
        flat = self._flatten(z_e)
        return nearest_code(flat, self.codebook).reshape(z_e.shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors of the given indices.

        Parameters
        ----------
        indices : long tensor of shape (...,), values in [0, K).

        Returns
        -------
        tensor of shape (..., D).
        """
        if indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}.")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_codes):
            raise ValueError(f"indices must lie in [0, {self.n_codes}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}].")
        return F.embedding(indices, self.codebook)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        """Quantize ``z_e``; in training mode also update the codebook.

        Parameters
        ----------
        z_e : tensor of shape (..., D), encoder outputs with the code dimension last.

        Returns
        -------
        VQOutput
            ``z_q`` (..., D) (value of the nearest codes, gradient of z_e),
            ``indices`` (...,) long, ``losses`` (commit, codebook: scalar means
            over all N * D elements), ``stats`` (perplexity, usage: detached scalars).
            Outputs use the codebook as it was before this batch's update.
        """
        flat_z_e = self._flatten(z_e)
        if self.training and not bool(self.initialized):
            self._kmeans_initialise(flat_z_e.detach())

        indices = nearest_code(flat_z_e.detach(), self.codebook.detach())
        # F.embedding carries the gradient to the codebook when it is a Parameter.
        flat_z_q = F.embedding(indices, self.codebook)

        commit = self.beta * F.mse_loss(flat_z_e, flat_z_q.detach())
        if self.ema:
            codebook_loss = flat_z_e.new_zeros(())
        else:
            codebook_loss = F.mse_loss(flat_z_q, flat_z_e.detach())

        counts = torch.bincount(indices, minlength=self.n_codes)
        stats = VQStats(
            perplexity=perplexity(counts.to(flat_z_e.dtype)).detach(),
            usage=(counts > 0).to(flat_z_e.dtype).mean(),
        )
        if self.training:
            self._update_codebook(flat_z_e.detach(), indices, counts)

        z_q = straight_through(flat_z_e, flat_z_q.detach()).reshape(z_e.shape)
        return VQOutput(z_q, indices.reshape(z_e.shape[:-1]), VQLosses(commit, codebook_loss), stats)

    @torch.no_grad()
    def _kmeans_initialise(self, flat_z_e: torch.Tensor) -> None:
        centers, sizes = kmeans(flat_z_e, self.n_codes, self.kmeans_iters)
        self.codebook.copy_(centers)
        if self.ema:
            sizes = sizes.clamp(min=1.0)
            self.cluster_size.copy_(sizes)
            self.code_sum.copy_(centers * sizes.unsqueeze(1))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update_codebook(self, flat_z_e: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        if self.ema:
            self._ema_update(flat_z_e, indices, counts)
        if self.restart_dead:
            self._restart_dead_codes(flat_z_e, counts)

    @torch.no_grad()
    def _ema_update(self, flat_z_e: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """Appendix A.1, eqs. (6)-(8), with Laplace smoothing of the cluster sizes."""
        batch_sums = torch.zeros_like(self.code_sum).index_add_(0, indices, flat_z_e)
        ema_inplace(self.cluster_size, counts.to(self.cluster_size.dtype), self.decay)
        ema_inplace(self.code_sum, batch_sums, self.decay)
        total = self.cluster_size.sum()
        smoothed_sizes = laplace_smoothing(self.cluster_size, self.n_codes, self.eps) * total
        self.codebook.copy_(self.code_sum / smoothed_sizes.unsqueeze(1))

    @torch.no_grad()
    def _restart_dead_codes(self, flat_z_e: torch.Tensor, counts: torch.Tensor) -> None:
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.steps_unused >= self.dead_window).nonzero().squeeze(1)
        n_dead = dead.numel()
        if n_dead == 0:
            return
        n_samples = flat_z_e.shape[0]
        # Distinct encoder outputs when the batch has enough, so that several dead
        # codes restarted together do not land on the same point.
        if n_dead <= n_samples:
            chosen = torch.randperm(n_samples, device=flat_z_e.device)[:n_dead]
        else:
            chosen = torch.randint(n_samples, (n_dead,), device=flat_z_e.device)
        new_codes = flat_z_e[chosen]
        self.codebook[dead] = new_codes
        if self.ema:
            self.cluster_size[dead] = 1.0
            self.code_sum[dead] = new_codes
        self.steps_unused[dead] = 0


# ----------------------------------------------------------------------------
# VQ-VAE
# ----------------------------------------------------------------------------
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


class VQVAEOutput(NamedTuple):
    """Output of :meth:`VQVAE.forward`.

    ``recon_logits`` (B, 1, 28, 28): Bernoulli logits of the reconstruction;
    ``loss``: recon_loss + commit_loss + codebook_loss, ready for ``backward()``;
    ``recon_loss``: BCE-with-logits summed over pixels, mean over the batch;
    ``commit_loss``, ``codebook_loss``: summed over code positions and code
    dimensions, mean over the batch (codebook_loss is 0 with EMA);
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

    Parameters
    ----------
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
    n_codes : int, default 512
        K, the codebook size (the paper uses 512).
    code_dim : int, default 64
        D, the dimension of each code (the paper uses 64 on CIFAR-10).
    hidden : int or None, default None
        h, the width of the hidden layers. None gives 64 channels for "conv"
        and 400 units for "global" (as in models/vae.py). The paper uses 256
        channels on 128x128 images; 64 is enough at 28x28 and trains a full
        Fashion-MNIST epoch (60k images, batch 128) in about 30 s on 2 CPU
        cores (~2000 images/s); 128 channels is 3-5 times slower.
    n_res_blocks : int, default 2
        Residual blocks in the encoder and in the decoder of "conv" (the paper
        uses 2); unused by "global".
    res_hidden : int or None, default None
        Width of the 3x3 convolution inside each residual block; None means h
        (the paper: "all having 256 hidden units").
    beta, ema, decay, eps, restart_dead, dead_window, kmeans_init, kmeans_iters
        Passed to :class:`VectorQuantizer` (defaults 0.25, True, 0.99, 1e-5,
        True, 100, False, 10).

    Notes
    -----
    Loss scaling. The reconstruction term -log p(x | z_q) of eq. (3) is a sum
    over the 784 pixels (BCE with logits), averaged over the batch. The
    commitment and codebook terms ||z_e - z_q||^2 of eq. (3) are likewise sums:
    over the D code dimensions and over the code positions of an image (49 for
    "conv", 1 for "global"), averaged over the batch. Both sides are per-image
    sums, as in the paper, so beta = 0.25 weights the commitment against the
    reconstruction as in the paper; a per-element mean would make it about
    784 / (49 D) times weaker for "conv".

    The constructor arguments, with defaults resolved, are kept as plain Python
    values in ``self.model_args`` so that ``VQVAE(**model_args)`` rebuilds the
    model from a checkpoint.
    """

    def __init__(
        self,
        arch: str = "conv",
        n_codes: int = 512,
        code_dim: int = 64,
        *,
        hidden: int | None = None,
        n_res_blocks: int = 2,
        res_hidden: int | None = None,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_dead: bool = True,
        dead_window: int = 100,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}.")
        if hidden is None:
            hidden = DEFAULT_HIDDEN[arch]
        if res_hidden is None:
            res_hidden = hidden
        hidden = _check_int("hidden", hidden, 1, " (or None for the default)")
        res_hidden = _check_int("res_hidden", res_hidden, 1, " (or None for hidden)")
        n_res_blocks = _check_int("n_res_blocks", n_res_blocks, 0)

        self.quantizer = VectorQuantizer(
            n_codes, code_dim, beta=beta, ema=ema, decay=decay, eps=eps,
            restart_dead=restart_dead, dead_window=dead_window,
            kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
        )
        # Validated values from the quantizer, so that model_args holds plain Python types.
        n_codes, code_dim = self.quantizer.n_codes, self.quantizer.code_dim
        dead_window, kmeans_iters = self.quantizer.dead_window, self.quantizer.kmeans_iters
        self.model_args = dict(
            arch=arch, n_codes=n_codes, code_dim=code_dim, hidden=hidden,
            n_res_blocks=n_res_blocks, res_hidden=res_hidden, beta=float(beta),
            ema=bool(ema), decay=float(decay), eps=float(eps),
            restart_dead=bool(restart_dead), dead_window=dead_window,
            kmeans_init=bool(kmeans_init), kmeans_iters=kmeans_iters,
        )
        self.arch = arch
        self.n_codes = n_codes
        self.code_dim = code_dim

        if arch == "conv":
            self.encoder = nn.Sequential(
                nn.Conv2d(1, hidden, kernel_size=4, stride=2, padding=1),  # 28 -> 14
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, kernel_size=4, stride=2, padding=1),  # 14 -> 7
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
                residual_stack(hidden, res_hidden, n_res_blocks),
                nn.Conv2d(hidden, code_dim, kernel_size=1),
            )
            self.decoder = nn.Sequential(
                nn.Conv2d(code_dim, hidden, kernel_size=3, padding=1),
                residual_stack(hidden, res_hidden, n_res_blocks),
                nn.ConvTranspose2d(hidden, hidden, kernel_size=4, stride=2, padding=1),  # 7 -> 14
                nn.ReLU(),
                nn.ConvTranspose2d(hidden, 1, kernel_size=4, stride=2, padding=1),  # 14 -> 28
            )
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

    def _decode_codes(self, z_q: torch.Tensor) -> torch.Tensor:
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
        return torch.sigmoid(self._decode_codes(self.quantizer.lookup(indices)))

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
        recon_logits = self._decode_codes(quantized.z_q)

        batch_size = x.shape[0]
        recon_loss = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum") / batch_size
        # The quantizer's losses are means over B * positions * D elements;
        # times positions * D they become per-image sums averaged over the batch.
        elements_per_image = self.n_positions * self.code_dim
        commit_loss = quantized.losses.commit * elements_per_image
        codebook_loss = quantized.losses.codebook * elements_per_image
        loss = recon_loss + commit_loss + codebook_loss
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
