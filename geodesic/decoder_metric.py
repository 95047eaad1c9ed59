"""Edge lengths measured through a decoder: the pull-back metric on latent segments.

A decoder f: R^d -> R^D (here the VAE's Bernoulli mean, sigmoid of the logits)
induces the Riemannian metric M(z) = J(z)^T J(z) on its latent space
(Arvanitidis, Hansen & Hauberg 2018, "Latent Space Oddity", eq. 3). The length
of the straight segment z(t) = z_i + t (z_j - z_i), t in [0, 1], is

    L = int_0^1 || J(z(t)) (z_j - z_i) || dt                       (curve length)

which is the length of the decoded curve f(z(t)) in data space. Two
estimators, both batched over edges and O(edges x n_segments) decoder passes:

* ``"jvp"``: the trapezoid rule on the speed ||J(z(t)) Delta||, computed by
  forward-mode Jacobian-vector products (``torch.func.jvp``) at the
  n_segments + 1 nodes t = s / n_segments. With one segment this is
  0.5 (||J(z_i) Delta|| + ||J(z_j) Delta||), the rule of Yang et al. 2018
  ("Geodesic clustering in deep generative models", arXiv 1809.04747).
* ``"chords"``: the decoded polygon sum_s || f(z(t_{s+1})) - f(z(t_s)) ||, a lower
  bound of L that increases to L as segments are added.

For a linear decoder f(z) = A z + b both equal ||A Delta|| exactly, for any
number of segments; both converge to L as n_segments grows (tested).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

Decoder = Callable[[torch.Tensor], torch.Tensor]  # (B, d) -> (B, ...) decoded means
ESTIMATORS = ("jvp", "chords")


def _flat(decoder: Decoder) -> Decoder:
    return lambda z: decoder(z).flatten(1)


@torch.no_grad()
def segment_lengths(decoder: Decoder, starts, ends, *, n_segments: int = 2,
                    estimator: str = "jvp", batch_size: int = 8192) -> np.ndarray:
    """Lengths through ``decoder`` of the straight segments starts[e] -> ends[e].

    Parameters
    ----------
    decoder : callable (B, d) -> (B, ...) in data space (e.g. sigmoid of VAE logits).
    starts, ends : arrays (E, d) of latent end points.
    n_segments : >= 1, sub-segments of each edge (see the module docstring).
    estimator : "jvp" (trapezoid on JVP speeds) or "chords" (decoded polygon).
    batch_size : edges per batch.

    Returns
    -------
    (E,) float64 lengths.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments must be an integer >= 1, got {n_segments!r}")
    f = _flat(decoder)
    a = torch.as_tensor(np.asarray(starts), dtype=torch.float32)
    b = torch.as_tensor(np.asarray(ends), dtype=torch.float32)
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"starts and ends must both be (E, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    t = torch.linspace(0.0, 1.0, n_segments + 1)
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), batch_size):
        za, zb = a[lo:lo + batch_size], b[lo:lo + batch_size]
        delta = zb - za
        if estimator == "jvp":
            speeds = torch.stack([torch.func.jvp(f, (za + s * delta,), (delta,))[1].norm(dim=1)
                                  for s in t])  # (S + 1, B)
            weights = torch.full((n_segments + 1, 1), 1.0 / n_segments)
            weights[0] = weights[-1] = 0.5 / n_segments
            length = (weights * speeds).sum(0)
        else:
            points = torch.stack([f(za + s * delta) for s in t])  # (S + 1, B, D)
            length = (points[1:] - points[:-1]).norm(dim=2).sum(0)
        out[lo:lo + len(za)] = length.double().numpy()
    return out


def reweight_graph(graph, Z, decoder: Decoder, **options) -> sp.csr_matrix:
    """The same graph with every edge (i, j) given its decoder length between
    Z[i] and Z[j] (each undirected edge measured once; symmetric result)."""
    Z = np.asarray(Z, dtype=np.float32)
    return reweight_edges(graph, lambda i, j: segment_lengths(decoder, Z[i], Z[j], **options))


def reweight_edges(graph, length_of) -> sp.csr_matrix:
    """The same graph with every undirected edge (i, j), i < j, measured once by
    ``length_of(rows, cols) -> (E,) lengths``; symmetric result."""
    coo = sp.triu(sp.csr_matrix(graph), k=1).tocoo()
    lengths = length_of(coo.row, coo.col)
    # a zero length would delete the edge from the sparse graph; keep it as a tiny positive one
    lengths = np.maximum(lengths, np.finfo(np.float32).tiny).astype(np.float32)
    upper = sp.csr_matrix((lengths, (coo.row, coo.col)), shape=graph.shape)
    return (upper + upper.T).tocsr()


def bernoulli_mean_decoder(vae) -> Decoder:
    """The VAE's decoder mean, sigmoid(decode(z)), on the VAE's device, output on CPU."""
    device = next(vae.parameters()).device
    return lambda z: torch.sigmoid(vae.decode(z.to(device))).cpu()
