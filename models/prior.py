"""Priors over discrete codes: a gated PixelCNN for code maps and a smoothed
histogram for one code per image.

The PixelCNN is the gated, two-stack design of van den Oord, Kalchbrenner,
Vinyals, Espeholt, Graves & Kavukcuoglu (2016), "Conditional Image Generation
with PixelCNN Decoders" (arXiv:1606.05328), which the VQ-VAE paper (van den
Oord et al. 2017, section 4.2) trains over its latent code maps. It factorises
a map ``x`` of H x W code indices in raster order (eq. 1)::

    p(x) = prod_{i=1}^{H W} p(x_i | x_1, ..., x_{i-1})

and every layer applies the gated activation unit of eq. (2), optionally
conditioned on a class label ``h`` (eq. 4)::

    y = tanh(W_f * x + V_f^T h)  (.)  sigmoid(W_g * x + V_g^T h)

Both priors give ``nll_bits(codes)``, the negative log-likelihood of each map
(or code) in bits, so that a PixelCNN over 7x7 maps and a histogram over single
codes are compared in the same unit: bits per image.

Contents
--------
- :class:`PixelCNNConfig`, :class:`PriorOutput`, :class:`GatedPixelCNN`
  (with :class:`GatedLayer`, :func:`vertical_mask`, :func:`horizontal_mask`);
- :func:`smoothed_probabilities`, :class:`HistogramPrior`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PixelCNNConfig",
    "PriorOutput",
    "vertical_mask",
    "horizontal_mask",
    "GatedLayer",
    "GatedPixelCNN",
    "smoothed_probabilities",
    "HistogramPrior",
]

LN2 = math.log(2.0)


def _check_int(name: str, value, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{hint}, got {value!r}.")
    return int(value)


def _check_codes(codes: torch.Tensor, n_codes: int, what: str = "codes") -> None:
    if codes.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{what} must be an integer tensor of code indices, got dtype {codes.dtype}.")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= n_codes):
        raise ValueError(f"{what} must lie in [0, {n_codes}), got range "
                         f"[{int(codes.min())}, {int(codes.max())}].")


#: Smallest sampling temperature. At T = 1e-6 a logit gap of 1e-4 is already a
#: probability ratio of e^-100, i.e. greedy decoding; a smaller T changes nothing but
#: overflows logits / T in float32 (T = 1e-300 is 0 in float32: inf / inf = NaN).
MIN_TEMPERATURE = 1e-6


def _check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
            and MIN_TEMPERATURE <= temperature and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= {MIN_TEMPERATURE:g} (1.0 samples "
                         f"the model itself, {MIN_TEMPERATURE:g} is greedy decoding), "
                         f"got {temperature!r}.")
    return float(temperature)


# ----------------------------------------------------------------------------
# Gated PixelCNN
# ----------------------------------------------------------------------------
@dataclass
class PixelCNNConfig:
    """Everything needed to rebuild a :class:`GatedPixelCNN` (stored in checkpoints).

    n_codes : K, the number of code values (>= 2).
    height, width : the grid of a code map (7 x 7 for the conv VQ-VAE).
    channels : C, the width of both stacks.
    n_layers : gated layers (the first is the masked "A" layer).
    kernel_size : k, odd >= 3. Each layer widens the view by k // 2 positions
        to the left, right and top, so every position sees its whole past once
        n_layers >= ceil((max(H, W) - 1) / (k // 2)): 6 layers of k = 3 for a
        7 x 7 map (5 leave a blind spot), 3 of k = 5.
    n_classes : number of class labels for the class-conditional model
        (eq. 4), or None for the unconditional one.
    """

    n_codes: int
    height: int = 7
    width: int = 7
    channels: int = 64
    n_layers: int = 6
    kernel_size: int = 3
    n_classes: int | None = None

    def __post_init__(self):
        self.n_codes = _check_int("n_codes", self.n_codes, 2, " (K; one code needs no prior)")
        self.height = _check_int("height", self.height, 1)
        self.width = _check_int("width", self.width, 1)
        self.channels = _check_int("channels", self.channels, 1)
        self.n_layers = _check_int("n_layers", self.n_layers, 1)
        self.kernel_size = _check_int("kernel_size", self.kernel_size, 3, " and odd")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (3, 5, ...), got {self.kernel_size}.")
        if self.n_classes is not None:
            self.n_classes = _check_int("n_classes", self.n_classes, 1, " or None")


class PriorOutput(NamedTuple):
    """Output of :meth:`GatedPixelCNN.forward`.

    ``logits`` (B, K, H, W): logits of p(x_i | x_<i) at every position;
    ``loss``: mean negative log-likelihood in nats per position, for ``backward()``;
    ``nll_bits_per_map`` (B,): -log2 p(x) of each map, the sum over its positions.
    """

    logits: torch.Tensor
    loss: torch.Tensor
    nll_bits_per_map: torch.Tensor


def vertical_mask(kernel_size: int, first: bool) -> torch.Tensor:
    """Mask (k // 2 + 1, k) of the vertical stack's kernel.

    The kernel is placed over rows i - k // 2 .. i (the input is padded on top
    only), so the vertical stack never sees rows below. The first layer also
    drops row i itself: from then on the vertical features of row i depend on
    rows < i only, which lets them feed the horizontal stack of row i without
    the down-shift of the paper (fig. 1) and without a blind spot.
    """
    mask = torch.ones(kernel_size // 2 + 1, kernel_size)
    if first:
        mask[-1] = 0.0
    return mask


def horizontal_mask(kernel_size: int, first: bool) -> torch.Tensor:
    """Mask (1, k // 2 + 1) of the horizontal stack's kernel over columns
    j - k // 2 .. j of row i; the first layer drops column j (mask "A" of the
    paper), later layers keep it (mask "B"), since their input at (i, j)
    already depends only on positions before (i, j)."""
    mask = torch.ones(1, kernel_size // 2 + 1)
    if first:
        mask[0, -1] = 0.0
    return mask


def gate(pre: torch.Tensor) -> torch.Tensor:
    """The gated activation unit of eq. (2): tanh(first half) * sigmoid(second half)
    of the channels, (B, 2C, H, W) -> (B, C, H, W)."""
    f, g = pre.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack (paper fig. 2).

    ``first`` selects the masks of the first layer and drops the residual
    connection of the horizontal stack (its input at (i, j) is the embedding of
    x_ij itself, which must not reach the output at (i, j)).
    """

    def __init__(self, channels: int, kernel_size: int, *, first: bool,
                 n_classes: int | None = None) -> None:
        super().__init__()
        c, k = channels, kernel_size
        self.first = first
        self.pad = k // 2
        self.vertical = nn.Conv2d(c, 2 * c, (k // 2 + 1, k))
        self.horizontal = nn.Conv2d(c, 2 * c, (1, k // 2 + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * c, 2 * c, 1)
        self.horizontal_out = nn.Conv2d(c, c, 1)
        self.register_buffer("vertical_mask", vertical_mask(k, first), persistent=False)
        self.register_buffer("horizontal_mask", horizontal_mask(k, first), persistent=False)
        # V^T h of eq. (4): one learned vector per class, added to every position.
        self.label_embedding = nn.Embedding(n_classes, 2 * c) if n_classes is not None else None

    def forward(self, v: torch.Tensor, h: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """v, h (B, C, H, W) -> new v, h (B, C, H, W); labels (B,) long or None."""
        p = self.pad
        # Padding on top / on the left only, so that output (i, j) sees no later row / column.
        v_pre = F.conv2d(F.pad(v, (p, p, p, 0)), self.vertical.weight * self.vertical_mask,
                         self.vertical.bias)
        h_pre = F.conv2d(F.pad(h, (p, 0, 0, 0)), self.horizontal.weight * self.horizontal_mask,
                         self.horizontal.bias)
        h_pre = h_pre + self.vertical_to_horizontal(v_pre)
        if self.label_embedding is not None:
            cond = self.label_embedding(labels)[:, :, None, None]
            v_pre, h_pre = v_pre + cond, h_pre + cond
        h_out = self.horizontal_out(gate(h_pre))
        return gate(v_pre), (h_out if self.first else h + h_out)


class GatedPixelCNN(nn.Module):
    """Autoregressive prior p(x) over (B, H, W) maps of code indices in [0, K).

    Build with the keyword arguments of :class:`PixelCNNConfig`
    (``GatedPixelCNN(n_codes=512)``); ``model.config`` holds them and
    ``model.model_args`` is the dict of plain values that
    ``GatedPixelCNN(**model_args)`` rebuilds from a checkpoint.

    Layers: code embedding (K -> C), ``n_layers`` :class:`GatedLayer` (the
    first masked "A"), then ReLU, 1x1 conv C -> C, ReLU, 1x1 conv C -> K on the
    horizontal stack. The output at (i, j) depends on exactly the positions
    before (i, j) in raster order (row by row, left to right): the vertical
    stack covers the rows above at full width, the horizontal stack the row to
    the left, so there is no blind spot once the layers are deep enough
    (see ``kernel_size`` in :class:`PixelCNNConfig`).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.config = PixelCNNConfig(**kwargs)
        c = self.config
        self.embedding = nn.Embedding(c.n_codes, c.channels)
        self.layers = nn.ModuleList(
            GatedLayer(c.channels, c.kernel_size, first=(i == 0), n_classes=c.n_classes)
            for i in range(c.n_layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c.channels, c.channels, 1), nn.ReLU(),
                                  nn.Conv2d(c.channels, c.n_codes, 1))

    @property
    def model_args(self) -> dict:
        return asdict(self.config)

    @property
    def n_codes(self) -> int:
        return self.config.n_codes

    @property
    def conditional(self) -> bool:
        return self.config.n_classes is not None

    def _check_labels(self, labels: torch.Tensor | None, n: int) -> None:
        if not self.conditional:
            if labels is not None:
                raise ValueError("this PixelCNN is unconditional (n_classes=None); do not pass labels.")
            return
        if labels is None:
            raise ValueError(f"this PixelCNN is class-conditional (n_classes={self.config.n_classes}); "
                             f"pass labels of shape ({n},).")
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}.")
        _check_codes(labels, self.config.n_classes, "labels")

    def _logits(self, codes: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, K, h, W) of maps with any number h <= H of leading rows: the
        rows kept do not depend on the rows dropped (the sampler relies on it)."""
        x = self.embedding(codes).permute(0, 3, 1, 2)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, labels)
        return self.head(h)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> PriorOutput:
        """Teacher-forced conditionals of every position.

        Parameters
        ----------
        codes : long tensor of shape (B, H, W), values in [0, K).
        labels : long tensor of shape (B,) in [0, n_classes), only for the
            class-conditional model.

        Returns
        -------
        PriorOutput(logits (B, K, H, W), loss (nats per position, mean over the
        batch), nll_bits_per_map (B,)).
        """
        c = self.config
        if codes.dim() != 3 or tuple(codes.shape[1:]) != (c.height, c.width):
            raise ValueError(f"expected code maps of shape (B, {c.height}, {c.width}), "
                             f"got {tuple(codes.shape)}.")
        _check_codes(codes, c.n_codes)
        self._check_labels(labels, len(codes))
        logits = self._logits(codes, labels)
        nats = F.cross_entropy(logits, codes, reduction="none")  # (B, H, W)
        return PriorOutput(logits, nats.mean(), nats.sum(dim=(1, 2)) / LN2)

    @torch.no_grad()
    def nll_bits(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *,
                 batch_size: int = 1000) -> torch.Tensor:
        """-log2 p(x) of many maps, batched, in eval mode: codes (N, H, W) -> (N,) on the CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            out = [self(codes[i:i + batch_size].to(device),
                        None if labels is None else labels[i:i + batch_size].to(device)
                        ).nll_bits_per_map.cpu()
                   for i in range(0, len(codes), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` code maps in raster order, x_i ~ softmax(logits_i / temperature).

        One forward pass per position, each over only the rows up to the current
        one (exact, since no row depends on a later one). Runs in eval mode on
        the model's device.

        Parameters
        ----------
        n : number of maps (>= 1).
        temperature : > 0; 1 samples the model, < 1 sharpens towards the modes.
        labels : long tensor (n,) for the class-conditional model, else None.
        generator : torch.Generator on the model's device, or None for torch's
            global RNG (``torch.manual_seed`` makes it reproducible).

        Returns
        -------
        long tensor of shape (n, H, W) on the model's device.
        """
        n = _check_int("n", n, 1, " (number of samples)")
        temperature = _check_temperature(temperature)
        self._check_labels(labels, n)
        c = self.config
        device = next(self.parameters()).device
        labels = None if labels is None else labels.to(device)
        was_training = self.training
        self.eval()
        codes = torch.zeros(n, c.height, c.width, dtype=torch.long, device=device)
        try:
            for i in range(c.height):
                for j in range(c.width):
                    logits = self._logits(codes[:, :i + 1], labels)[:, :, i, j]
                    probs = torch.softmax(logits / temperature, dim=1)
                    codes[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        finally:
            self.train(was_training)
        return codes


# ----------------------------------------------------------------------------
# Histogram prior
# ----------------------------------------------------------------------------
def smoothed_probabilities(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """Additive (Laplace for alpha = 1, Lidstone otherwise) smoothing:
    ``(counts + alpha) / (sum(counts) + K alpha)``, counts (K,) -> (K,)."""
    counts = counts.double()
    return (counts + alpha) / (counts.sum() + alpha * len(counts))


class HistogramPrior(nn.Module):
    """The smoothed code histogram, a prior for one code per image.

    Every code position is an independent draw from
    ``p_k = (n_k + alpha) / (N + K alpha)`` with ``n_k`` the training counts.
    For one code per image (``code_shape=()``, codes (N,)) it is the prior
    itself; for maps (``code_shape=(7, 7)``, codes (N, 7, 7)) it is the i.i.d.
    ("unigram") baseline that a PixelCNN has to beat.

    Parameters
    ----------
    n_codes : K (>= 1).
    alpha : pseudo-count added to every code (>= 0). 1 is Laplace smoothing;
        0 is the maximum-likelihood histogram, under which a code never seen
        in training has probability 0 and infinite NLL.
    code_shape : the shape of one item's codes, () for one code per image.

    Attributes
    ----------
    counts : buffer (K,) float64, the training counts (in the state_dict).
    probs : (K,) float64, the smoothed probabilities (after :meth:`fit`).
    """

    def __init__(self, n_codes: int, *, alpha: float = 1.0, code_shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.n_codes = _check_int("n_codes", n_codes, 1, " (K)")
        if not (isinstance(alpha, numbers.Real) and alpha >= 0 and math.isfinite(alpha)):
            raise ValueError(f"alpha (pseudo-count) must be a finite number >= 0, e.g. 1 for "
                             f"Laplace smoothing; got {alpha!r}.")
        self.alpha = float(alpha)
        self.code_shape = tuple(_check_int("code_shape", s, 1) for s in code_shape)
        self.register_buffer("counts", torch.zeros(self.n_codes, dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def model_args(self) -> dict:
        return {"n_codes": self.n_codes, "alpha": self.alpha, "code_shape": list(self.code_shape)}

    def _check_is_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("this HistogramPrior is not fitted yet; call fit(codes) first.")

    def _check(self, codes) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        if tuple(codes.shape[1:]) != self.code_shape or codes.dim() != 1 + len(self.code_shape):
            raise ValueError(f"expected codes of shape (N, {', '.join(map(str, self.code_shape))}) "
                             f"(code_shape={self.code_shape}), got shape {tuple(codes.shape)}.")
        _check_codes(codes, self.n_codes)
        return codes.cpu()

    @torch.no_grad()
    def fit(self, codes: torch.Tensor) -> "HistogramPrior":
        """Count the codes of the training set: codes (N, *code_shape) long in [0, K)."""
        codes = self._check(codes)
        if codes.numel() == 0:
            raise ValueError("cannot fit a HistogramPrior on an empty set of codes.")
        self.counts.copy_(torch.bincount(codes.reshape(-1), minlength=self.n_codes).double())
        self.fitted.fill_(True)
        return self

    @property
    def probs(self) -> torch.Tensor:
        self._check_is_fitted()
        return smoothed_probabilities(self.counts, self.alpha)

    @property
    def entropy_bits(self) -> float:
        """H(p) in bits per position, -sum p log2 p of the smoothed probabilities."""
        p = self.probs
        return float(-torch.xlogy(p, p).sum() / LN2)

    @torch.no_grad()
    def nll_bits(self, codes: torch.Tensor, labels: None = None, **_) -> torch.Tensor:
        """-log2 p(x) of each item, the sum over its positions: codes (N, *code_shape)
        -> (N,) float64. ``labels`` (and a ``batch_size``) are accepted for the
        interface of :meth:`GatedPixelCNN.nll_bits`; labels must be None."""
        if labels is not None:
            raise ValueError("HistogramPrior is unconditional; do not pass labels.")
        codes = self._check(codes)
        bits = -torch.log2(self.probs)[codes]
        return bits.reshape(len(codes), -1).sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, labels: None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` items, each code i.i.d. from p^(1/temperature) renormalised:
        long tensor (n, *code_shape) on the CPU (``generator`` a CPU generator)."""
        n = _check_int("n", n, 1, " (number of samples)")
        temperature = _check_temperature(temperature)
        if labels is not None:
            raise ValueError("HistogramPrior is unconditional; do not pass labels.")
        probs = torch.softmax(torch.log(self.probs) / temperature, dim=0)
        draws = torch.multinomial(probs.float(), n * math.prod(self.code_shape), replacement=True,
                                  generator=generator)
        return draws.reshape(n, *self.code_shape)
