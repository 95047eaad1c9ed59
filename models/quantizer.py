"""The vector-quantization layer of the VQ-VAE and its named helpers.

van den Oord, Vinyals & Kavukcuoglu (2017), "Neural Discrete Representation
Learning" (arXiv:1711.00937), section 3 and appendix A.1: each encoder output
z_e is replaced by its nearest code (eq. 2); the encoder is pulled towards its
code by the commitment term beta * ||z_e - sg[e]||^2 of eq. (3); the codebook
is learned by the codebook term ||sg[z_e] - e||^2 or by exponential moving
averages (EMA) of the cluster sizes and sums.

Contents
--------
- named helpers: :func:`straight_through`, :func:`rotation_trick`,
  :func:`ema_inplace`, :func:`laplace_smoothing`, :func:`perplexity`,
  :func:`nearest_code`, :func:`kmeans`;
- :class:`VQConfig`, every option of the quantizer (what a checkpoint stores);
- :class:`VectorQuantizer`, the layer with its codebook, dead-code restarts and
  k-means initialisation.

``perplexity`` here is the torch version used inside the graph for the batch
statistic; ``utils.metrics.perplexity`` is the numpy one for evaluation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import KW_ONLY, asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "straight_through",
    "rotation_trick",
    "ema_inplace",
    "laplace_smoothing",
    "perplexity",
    "nearest_code",
    "kmeans",
    "KMeansResult",
    "DEAD_RULES",
    "RESTART_FROM",
    "VQConfig",
    "VQLosses",
    "VQStats",
    "VQOutput",
    "batch_stats",
    "QuantizerLayer",
    "VectorQuantizer",
]

DEAD_RULES = ("ema", "window")
RESTART_FROM = ("error", "random")


# ----------------------------------------------------------------------------
# Named helpers
# ----------------------------------------------------------------------------
def check_int(name: str, value, minimum: int, hint: str = "") -> int:
    """Return ``value`` as a plain int, or raise ValueError if it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{hint}, got {value!r}.")
    return int(value)


def _check_real(name: str, value, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{hint}, got {value!r}.")
    return float(value)


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


def rotation_trick(z_e: torch.Tensor, z_q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The rotation trick of Fifty et al. (2024), "Restructuring Vector
    Quantization with the Rotation Trick" (arXiv:2410.06424), Algorithm 1.

    Returns ``sg[lambda R] z_e``, where R is the rotation that takes the
    direction of z_e onto the direction of z_q and lambda = ||z_q|| / ||z_e||,
    so the value is z_q while the gradient reaching z_e is ``lambda R^T`` times
    the gradient at the output (instead of the identity of
    :func:`straight_through`): it keeps the angle between the gradient and the
    code vector. R is never formed as a (D, D) matrix; with
    ``r = (e^ + q^) / ||e^ + q^||`` (unit vectors e^, q^ of z_e, z_q) it is the
    product of two Householder reflections,
    ``R z = z - 2 r (r . z) + 2 q^ (e^ . z)`` (section 4.2, eq. 6).

    Parameters
    ----------
    z_e : tensor of shape (..., D), encoder output.
    z_q : tensor of shape (..., D), its quantized value (treated as a constant).
    eps : float, lower bound of the norms divided by, so that z_e = 0 or z_e = -z_q
        give finite values (the result is exact for norms above it).

    Returns
    -------
    tensor of shape (..., D), equal to ``z_q`` in value (exactly: the float
    error of the rotation is corrected by a constant).
    """
    z_q = z_q.detach()
    e_norm = z_e.detach().norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = z_q.norm(dim=-1, keepdim=True)
    e_hat = z_e.detach() / e_norm
    q_hat = z_q / q_norm.clamp_min(eps)
    r = e_hat + q_hat
    r = r / r.norm(dim=-1, keepdim=True).clamp_min(eps)
    rotated = (z_e
               - 2.0 * r * (z_e * r).sum(dim=-1, keepdim=True)
               + 2.0 * q_hat * (z_e * e_hat).sum(dim=-1, keepdim=True))
    out = rotated * (q_norm / e_norm)
    # The value is z_q up to rounding (or wrong where z_e = 0); a constant makes it exact.
    return out + (z_q - out).detach()


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
    draw_on = generator.device if generator is not None else samples.device
    if n_samples >= n_clusters:
        start = torch.randperm(n_samples, generator=generator, device=draw_on)[:n_clusters]
    else:
        start = torch.randint(n_samples, (n_clusters,), generator=generator, device=draw_on)
    centers = samples[start.to(samples.device)].clone()
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
# Configuration
# ----------------------------------------------------------------------------
@dataclass
class VQConfig:
    """Every option of a :class:`VectorQuantizer`; ``asdict`` of it rebuilds one.

    Values are validated and turned into plain Python types on construction.

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
        gamma of the codebook EMA, in (0, 1) (the paper's value).
    eps : float, default 1e-5
        Laplace pseudo-count of the EMA cluster sizes (> 0).
    restart_dead : bool, default True
        Move dead codes (see ``dead_rule``) onto encoder outputs of the current
        training batch (see ``restart_from``); a restarted code's EMA
        statistics become a cluster of size 1 at its new position.
    dead_rule : {"ema", "window"}, default "ema"
        When a code is dead, checked after every training batch.
        ``"ema"``: its usage EMA, ``u_k <- dead_decay u_k + (1 - dead_decay)
        n_k / n`` (n_k of the batch's n vectors were assigned to code k), is
        below ``dead_threshold / K``, i.e. the code recently got less than
        ``dead_threshold`` times its fair share 1/K of the inputs. As a
        fraction of the batch, u is the EMA count of vector-quantize-pytorch's
        ``threshold_ema_dead_code`` divided by n, so one threshold serves every
        batch size, K and number of code positions. u starts at 1/K; a
        restarted code starts on probation at the threshold, so it is
        restarted again after its first batch unless it wins at least
        ``dead_threshold`` times its fair share of it. The rule counts batches,
        not epochs: a code at its fair share that nobody uses is dead after
        ``floor(log(dead_threshold) / log(dead_decay)) + 1`` batches (2 with
        the defaults), on any dataset. ``"window"``: no input of
        ``dead_window`` consecutive batches was assigned to it (the rule
        before the EMA one; 100 batches are 3 epochs of mnist-5k).
    dead_window : int, default 100
        Consecutive unused batches of the ``"window"`` rule (>= 1).
    dead_threshold : float, default 0.5
        Fraction of the fair share 1/K below which the ``"ema"`` rule calls a
        code dead, in (0, 1].
    dead_decay : float, default 0.65
        Decay of the usage EMA of the ``"ema"`` rule, in (0, 1): an average
        over about ``1 / (1 - dead_decay)`` (3) batches. Chosen by
        benchmarks/bench_vq_usage.py: 0.8-0.9 leave many codes unused after
        the 29 batches of an mnist-5k epoch; 0.5 restarts healthy codes so
        often that the Fashion-MNIST reconstructions get worse (MSE +3% at
        K = 16).
    restart_from : {"error", "random"}, default "error"
        Which encoder outputs of the batch the dead codes move onto:
        ``"error"`` the ones farthest from their nearest code (largest
        quantization error, the points the codebook serves worst), ``"random"``
        uniformly drawn ones (with torch's global RNG, so ``torch.manual_seed``
        makes it reproducible). "error" measured better for "conv" (usage 0.98
        vs 0.95 after an mnist-5k epoch), about even for "global". Each
        restarted code gets its own output; when more codes are dead than the
        batch has outputs, the most neglected (lowest usage EMA; longest unused
        for ``"window"``) go first and the others wait for the next batch.
    kmeans_init : bool, default False
        Initialise the codebook by ``kmeans_iters`` rounds of k-means on the
        encoder outputs of the first training batch (the EMA cluster sizes start
        at the cluster sizes found, at least 1). Otherwise codes start as
        N(0, 1/D) draws, i.e. of unit expected norm.
    kmeans_iters : int, default 10
        Lloyd iterations of the k-means initialisation (>= 1).
    rotation_trick : bool, default False
        Pass the gradient from z_q to z_e by :func:`rotation_trick` instead of
        :func:`straight_through`. Off: in benchmarks/results/vq_usage.csv it
        lowers the epoch-1 usage of "global" at K >= 64 and, on Fashion-MNIST
        at K = 16, raises the MSE by 45%.
    """

    n_codes: int
    code_dim: int
    _: KW_ONLY
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    eps: float = 1e-5
    restart_dead: bool = True
    dead_rule: str = "ema"
    dead_window: int = 100
    dead_threshold: float = 0.5
    dead_decay: float = 0.65
    restart_from: str = "error"
    kmeans_init: bool = False
    kmeans_iters: int = 10
    rotation_trick: bool = False

    def __post_init__(self) -> None:
        self.n_codes = check_int("n_codes", self.n_codes, 1, " (the codebook size K)")
        self.code_dim = check_int("code_dim", self.code_dim, 1, " (the code dimension D)")
        self.dead_window = check_int("dead_window", self.dead_window, 1, " (training batches)")
        self.kmeans_iters = check_int("kmeans_iters", self.kmeans_iters, 1)
        self.beta = _check_real("beta", self.beta, " (commitment weight)")
        self.decay = _check_real("decay", self.decay, "")
        self.eps = _check_real("eps", self.eps, " (Laplace pseudo-count)")
        self.dead_threshold = _check_real("dead_threshold", self.dead_threshold, "")
        self.dead_decay = _check_real("dead_decay", self.dead_decay, "")
        if not self.beta >= 0:
            raise ValueError(f"beta (commitment weight) must be >= 0; the paper uses 0.25. "
                             f"Got {self.beta!r}.")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must lie strictly between 0 and 1; the paper uses 0.99. "
                             f"Got {self.decay!r}.")
        if not self.eps > 0:
            raise ValueError(f"eps (Laplace pseudo-count) must be > 0, e.g. 1e-5. "
                             f"Got {self.eps!r}.")
        if not 0.0 < self.dead_threshold <= 1.0:
            raise ValueError(f"dead_threshold is a fraction of the fair share 1/K and must lie in "
                             f"(0, 1], e.g. 0.5. Got {self.dead_threshold!r}.")
        if not 0.0 < self.dead_decay < 1.0:
            raise ValueError(f"dead_decay must lie strictly between 0 and 1, e.g. 0.9. "
                             f"Got {self.dead_decay!r}.")
        if self.dead_rule not in DEAD_RULES:
            raise ValueError(f"dead_rule must be one of {DEAD_RULES}, got {self.dead_rule!r}.")
        if self.restart_from not in RESTART_FROM:
            raise ValueError(f"restart_from must be one of {RESTART_FROM}, "
                             f"got {self.restart_from!r}.")
        for name in ("ema", "restart_dead", "kmeans_init", "rotation_trick"):
            setattr(self, name, bool(getattr(self, name)))


# ----------------------------------------------------------------------------
# Vector quantizer
# ----------------------------------------------------------------------------
class VQLosses(NamedTuple):
    """Raw (unweighted) scalar losses of a :class:`VectorQuantizer`, each a
    mean over all N * D elements.

    ``commit`` = mean((z_e - sg[z_q])^2) (moves only the encoder; the
    objective weights it by beta);
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

    ``z_q`` (..., D): quantized vectors with the straight-through (or rotation
    trick) gradient; ``indices`` (...,) long: the chosen codes; ``loss``: the
    quantizer's part of eq. (3), ``beta * losses.commit + losses.codebook``;
    ``losses``: the raw :class:`VQLosses`; ``stats``: :class:`VQStats`.
    """

    z_q: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    losses: VQLosses
    stats: VQStats


def batch_stats(indices: torch.Tensor, n_codes: int, dtype: torch.dtype = torch.float32) -> VQStats:
    """:class:`VQStats` (perplexity, usage) of the codes ``indices`` (any shape, long)
    of one batch, as detached scalars of ``dtype``."""
    counts = torch.bincount(indices.reshape(-1), minlength=n_codes)
    return VQStats(perplexity=perplexity(counts.to(dtype)).detach(),
                   usage=(counts > 0).to(dtype).mean())


class QuantizerLayer(nn.Module):
    """What every quantization layer of a VQ-VAE shares (this module's
    :class:`VectorQuantizer` and models/library_quantizers.py's): the
    :class:`VQConfig` in ``self.config``, K and D, and the checks of its inputs."""

    def __init__(self, n_codes: int, code_dim: int, **options) -> None:
        super().__init__()
        self.config = VQConfig(n_codes, code_dim, **options)

    @property
    def n_codes(self) -> int:
        return self.config.n_codes

    @property
    def code_dim(self) -> int:
        return self.config.code_dim

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())

    def _flatten(self, z_e: torch.Tensor) -> torch.Tensor:
        if z_e.dim() < 1 or z_e.shape[-1] != self.code_dim:
            raise ValueError(
                f"expected encoder outputs of shape (..., {self.code_dim}) with the code "
                f"dimension last, got {tuple(z_e.shape)}."
            )
        return z_e.reshape(-1, self.code_dim)

    def _check_indices(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}.")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_codes):
            raise ValueError(f"indices must lie in [0, {self.n_codes}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}].")


class VectorQuantizer(QuantizerLayer):
    """Nearest-neighbour vector quantization with a learned codebook (paper section 3.1).

    Each input vector z_e is replaced by its nearest code e_k in squared L2
    distance (eq. 2). The gradient reaches the encoder by the straight-through
    estimator (or the rotation trick); the encoder is pulled towards its codes
    by the commitment loss and the codebook is learned either by the codebook
    loss or by EMA.

    Build with the fields of :class:`VQConfig`: ``VectorQuantizer(512, 64,
    beta=0.25, ...)``; ``self.config`` holds them.

    Notes
    -----
    All codebook updates (EMA, dead-code restarts, k-means initialisation) run
    under ``torch.no_grad()`` and only in training mode; ``eval()`` freezes the
    codebook. Buffers ``steps_unused``, ``usage_ema`` (both rules keep both up
    to date) and ``initialized`` are in the ``state_dict`` so that a resumed run
    continues the same dead-code statistics and does not re-run the k-means
    initialisation.
    """

    def __init__(self, n_codes: int, code_dim: int, **options) -> None:
        super().__init__(n_codes, code_dim, **options)
        cfg = self.config

        codebook = torch.randn(cfg.n_codes, cfg.code_dim) / math.sqrt(cfg.code_dim)
        if cfg.ema:
            self.register_buffer("codebook", codebook)
            # Start the EMA in a state consistent with the codebook
            # (code_sum / cluster_size == codebook): each code is a cluster of
            # size 1 at its initial position, so an unused code stays put
            # instead of being divided by a near-zero smoothed count.
            self.register_buffer("cluster_size", torch.ones(cfg.n_codes))
            self.register_buffer("code_sum", codebook.clone())
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("steps_unused", torch.zeros(cfg.n_codes, dtype=torch.long))
        self.register_buffer("usage_ema", torch.full((cfg.n_codes,), 1.0 / cfg.n_codes))
        self.register_buffer("initialized", torch.tensor(not cfg.kmeans_init))

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
        self._check_indices(indices)
        return F.embedding(indices, self.codebook)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        """Quantize ``z_e``; in training mode also update the codebook.

        Parameters
        ----------
        z_e : tensor of shape (..., D), encoder outputs with the code dimension last.

        Returns
        -------
        VQOutput
            ``z_q`` (..., D) (value of the nearest codes, gradient to z_e),
            ``indices`` (...,) long, ``loss`` (beta * commit + codebook),
            ``losses`` (raw commit, codebook: scalar means over all N * D
            elements), ``stats`` (perplexity, usage: detached scalars).
            Outputs use the codebook as it was before this batch's update.
        """
        cfg = self.config
        flat_z_e = self._flatten(z_e)
        if self.training and not bool(self.initialized):
            self.initialise(flat_z_e.detach())

        indices = nearest_code(flat_z_e.detach(), self.codebook.detach())
        # F.embedding carries the gradient to the codebook when it is a Parameter.
        flat_z_q = F.embedding(indices, self.codebook)

        commit = F.mse_loss(flat_z_e, flat_z_q.detach())
        if cfg.ema:
            codebook_loss = flat_z_e.new_zeros(())
        else:
            codebook_loss = F.mse_loss(flat_z_q, flat_z_e.detach())
        loss = cfg.beta * commit + codebook_loss

        counts = torch.bincount(indices, minlength=cfg.n_codes)
        stats = batch_stats(indices, cfg.n_codes, flat_z_e.dtype)
        if self.training:
            self._update_codebook(flat_z_e.detach(), flat_z_q.detach(), indices, counts)

        gradient_path = rotation_trick if cfg.rotation_trick else straight_through
        z_q = gradient_path(flat_z_e, flat_z_q.detach()).reshape(z_e.shape)
        return VQOutput(z_q, indices.reshape(z_e.shape[:-1]), loss,
                        VQLosses(commit, codebook_loss), stats)

    @torch.no_grad()
    def initialise(self, samples: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to ``kmeans_iters`` rounds of :func:`kmeans` on ``samples``.

        What ``kmeans_init`` does with the first training batch; call it before
        training to initialise from more vectors than a batch holds (a batch of
        128 cannot give K = 512 distinct codes). The EMA cluster sizes start at
        the cluster sizes found (at least 1) and the codebook counts as
        initialised, so the first batch does not overwrite it.

        Parameters
        ----------
        samples : tensor of shape (N, D), encoder outputs.
        generator : torch.Generator or None, for k-means' starting centers.
        """
        if samples.dim() != 2 or samples.shape[1] != self.code_dim:
            raise ValueError(f"expected samples of shape (N, {self.code_dim}), "
                             f"got {tuple(samples.shape)}.")
        centers, sizes = kmeans(samples, self.n_codes, self.config.kmeans_iters, generator)
        self.codebook.copy_(centers)
        if self.config.ema:
            sizes = sizes.clamp(min=1.0)
            self.cluster_size.copy_(sizes)
            self.code_sum.copy_(centers * sizes.unsqueeze(1))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update_codebook(self, flat_z_e: torch.Tensor, flat_z_q: torch.Tensor,
                         indices: torch.Tensor, counts: torch.Tensor) -> None:
        if self.config.ema:
            self._ema_update(flat_z_e, indices, counts)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        ema_inplace(self.usage_ema, counts.to(self.usage_ema.dtype) / flat_z_e.shape[0],
                    self.config.dead_decay)
        if self.config.restart_dead:
            self._restart_dead_codes(flat_z_e, flat_z_q)

    @torch.no_grad()
    def _ema_update(self, flat_z_e: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """Appendix A.1, eqs. (6)-(8), with Laplace smoothing of the cluster sizes."""
        batch_sums = torch.zeros_like(self.code_sum).index_add_(0, indices, flat_z_e)
        ema_inplace(self.cluster_size, counts.to(self.cluster_size.dtype), self.config.decay)
        ema_inplace(self.code_sum, batch_sums, self.config.decay)
        total = self.cluster_size.sum()
        smoothed_sizes = laplace_smoothing(self.cluster_size, self.n_codes, self.config.eps) * total
        self.codebook.copy_(self.code_sum / smoothed_sizes.unsqueeze(1))

    def dead_codes(self) -> torch.Tensor:
        """Indices (long, shape (n_dead,)) of the codes that ``dead_rule`` calls dead now."""
        cfg = self.config
        if cfg.dead_rule == "window":
            dead = self.steps_unused >= cfg.dead_window
        else:
            dead = self.usage_ema < cfg.dead_threshold / cfg.n_codes
        return dead.nonzero().squeeze(1)

    @torch.no_grad()
    def _restart_dead_codes(self, flat_z_e: torch.Tensor, flat_z_q: torch.Tensor) -> None:
        dead = self.dead_codes()
        n_dead = dead.numel()
        if n_dead == 0:
            return
        n_samples = flat_z_e.shape[0]
        if n_dead > n_samples:
            # One dead code per encoder output: a second code on the same point
            # would never be chosen (ties go to the lower index). The most
            # neglected codes go first; the others wait for the next batch.
            if self.config.dead_rule == "ema":
                neglect = -self.usage_ema[dead]
            else:
                neglect = self.steps_unused[dead]
            dead = dead[neglect.argsort(descending=True, stable=True)[:n_samples]]
            n_dead = n_samples
        if self.config.restart_from == "error":
            chosen = (flat_z_e - flat_z_q).pow(2).sum(dim=1).topk(n_dead).indices
        else:
            chosen = torch.randperm(n_samples, device=flat_z_e.device)[:n_dead]
        new_codes = flat_z_e[chosen]
        self.codebook[dead] = new_codes
        if self.config.ema:
            self.cluster_size[dead] = 1.0
            self.code_sum[dead] = new_codes
        self.steps_unused[dead] = 0
        # On probation: at the threshold, so a restarted code that wins less than
        # dead_threshold times its fair share of the next batch is restarted again
        # at once instead of idling for several batches (measured: higher usage).
        self.usage_ema[dead] = self.config.dead_threshold / self.n_codes
