"""Per-position pull-back metrics of a convolutional decoder over a latent grid (issue #31).

A conv VAE decodes a latent grid z in R^{D x H x W} (7x7 x D here) to an image f(z) in R^n.
Quantizing the grid vector by vector treats each position's D values as one point, and its
decoder-aware length is measured in its own image's context: with the other positions of
the same grid held fixed, the pull-back metric of position p (Arvanitidis, Hansen & Hauberg
2018, "Latent Space Oddity", eq. 3, restricted to the D coordinates of p) is

    G_p(z) = J_p(z)^T J_p(z),        J_p(z) = d f(z) / d z[:, p]   (n x D).

Column a of J_p is one Jacobian-vector product, the tangent the unit vector of coordinate a
at p, so one image costs H W D products. Positions whose output supports are disjoint can
share a product: the tangent is the sum of their unit vectors, and each position keeps its
own support of the output (:func:`position_metrics` with ``groups``). A group is only exact
when its positions' supports are disjoint; :func:`support_groups` estimates supports at
random probe points (a rectified unit that is off at every probe hides a dependence), and
for the repository's conv decoder no two positions of a 7x7 grid have disjoint supports, so
it groups nothing there (docs/protocol.md).

An edge between grid vectors x_i and x_j, each with its own metric, is given the length

    L_ij = sqrt( Delta^T  (G_i + G_j) / 2  Delta ),    Delta = x_j - x_i,

the trapezoid rule on the metric (exact for a linear decoder, where G is constant);
:func:`metric_edge_lengths`, :func:`reweight_graph_by_metric`. A new point is measured the
same way, with its metric computed in its own image's context.

Storage: N grid vectors x D(D+1)/2 floats (:func:`pack`, :func:`unpack`); 2.6M vectors at
D = 4 take 106 MB in float32.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from geodesic.decoder_metric import reweight_edges

GridDecoder = Callable[[torch.Tensor], torch.Tensor]  # (B, D, H, W) -> (B, ...) decoded means


def _jvp(decoder: GridDecoder, z: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
    """J(z) tangent, flattened per image: (B, n)."""
    return torch.func.jvp(lambda x: decoder(x).flatten(1), (z,), (tangent,))[1]


def group_tangents(groups: Sequence[Sequence[int]], D: int, H: int, W: int,
                   dtype=torch.float32) -> torch.Tensor:
    """The unit tangents of :func:`position_metrics`: (len(groups) D, D, H, W), tangent
    g D + a the sum over the positions of group g of coordinate a's unit vector."""
    out = torch.zeros(len(groups), D, D, H * W, dtype=dtype)
    for g, group in enumerate(groups):
        for a in range(D):
            out[g, a, a, list(group)] = 1.0
    return out.view(len(groups) * D, D, H, W)


@torch.no_grad()
def position_metrics(decoder: GridDecoder, grids: torch.Tensor, *,
                     groups: Sequence[Sequence[int]] | None = None,
                     supports: np.ndarray | None = None, batch_size: int = 16,
                     tangent_chunk: int | None = 49) -> torch.Tensor:
    """The metric G_p = J_p^T J_p of every position of every grid (module docstring).

    The H W D tangents of a batch of grids are pushed through the decoder together
    (``torch.func.vmap`` over ``torch.func.jvp``, ``tangent_chunk`` at a time), so the
    decoder's primal pass runs once per chunk rather than once per tangent: the same
    numbers as one JVP per tangent, about 2x faster on CPU
    (benchmarks/bench_position_metric.py measures both).

    Parameters
    ----------
    decoder : (B, D, H, W) -> (B, ...) decoded means (e.g. sigmoid of a conv VAE's logits).
    grids : (N, D, H, W) latent grids.
    groups : position indices (row-major, 0 <= p < H W) that share a JVP; their supports
        must be disjoint (:func:`support_groups`). Default: one position at a time (exact
        for any decoder).
    supports : (H W, n) bool output support of every position, needed with ``groups`` of
        more than one position (:func:`output_supports`).
    batch_size : grids per batch.
    tangent_chunk : tangents per vectorized pass (None: all of them); memory grows with
        batch_size x tangent_chunk decoder activations.

    Returns
    -------
    (N, H, W, D, D) tensor of the grids' dtype on the CPU: G of position (h, w) of grid i at
    [i, h, w].
    """
    grids = torch.as_tensor(grids)
    grids = grids if grids.is_floating_point() else grids.float()
    N, D, H, W = grids.shape
    P = H * W
    if groups is None:
        groups = [[p] for p in range(P)]
    flat = sorted(int(p) for g in groups for p in g)
    if flat != list(range(P)):
        raise ValueError(f"groups must cover the {P} positions exactly once")
    if supports is None and any(len(g) > 1 for g in groups):
        raise ValueError("groups of more than one position need their supports")
    masks = None if supports is None else torch.as_tensor(np.asarray(supports), dtype=grids.dtype)
    tangents = group_tangents(groups, D, H, W, grids.dtype).to(grids.device)
    out = torch.empty(N, H, W, D, D, dtype=grids.dtype)
    for start in range(0, N, batch_size):
        z = grids[start:start + batch_size]
        B = len(z)
        batched = tangents.unsqueeze(1).expand(len(tangents), B, D, H, W)
        J = torch.func.vmap(lambda t: _jvp(decoder, z, t), chunk_size=tangent_chunk)(batched)
        J = J.view(len(groups), D, B, -1).permute(0, 2, 3, 1).cpu()  # (groups, B, n, D)
        for g, group in enumerate(groups):
            for p in group:  # a group's J is the sum of its J_p, each on its own support
                Jp = J[g] if len(group) == 1 else J[g] * masks[p].view(1, -1, 1)
                out[start:start + B, p // W, p % W] = Jp.transpose(1, 2) @ Jp
    return out


def row_metrics(decoder: GridDecoder, grids: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """:func:`position_metrics` of every grid vector, in the row order of
    ``models.conv_net.grid_vectors`` (image-major, then raster order): grids (N, D, H, W)
    -> (N H W, D, D) float32, the ``metrics`` a ``GeodesicQuantizer(edge_length="metric")``
    takes for those rows."""
    G = position_metrics(decoder, grids, batch_size=batch_size)
    N, H, W, D, _ = G.shape
    return G.reshape(N * H * W, D, D).numpy().astype(np.float32, copy=False)


@torch.no_grad()
def output_supports(decoder: GridDecoder, grid_shape: tuple[int, int, int], *, probes: int = 4,
                    seed: int = 0, scale: float = 1.0, dtype=torch.float32) -> np.ndarray:
    """(H W, n) bool: the outputs each position's JVPs reached at any of ``probes`` random
    grids (standard normal times ``scale``), with every one of its D unit tangents. An
    estimate from below of the structural support (module docstring)."""
    D, H, W = grid_shape
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(probes, D, H, W, generator=gen).to(dtype)
    P = H * W
    reached = None
    for p in range(P):
        hit = None
        for a in range(D):
            tangent = torch.zeros_like(z).view(probes, D, P)
            tangent[:, a, p] = 1.0
            col = (_jvp(decoder, z, tangent.view_as(z)) != 0).any(0).cpu()
            hit = col if hit is None else hit | col
        if reached is None:
            reached = torch.zeros(P, hit.numel(), dtype=torch.bool)
        reached[p] = hit
    return reached.numpy()


def support_groups(supports: np.ndarray) -> list[list[int]]:
    """Greedy colouring of the positions: each joins the first group whose positions'
    supports it does not overlap (row-major order). One group per position when every
    pair overlaps."""
    supports = np.asarray(supports, dtype=bool)
    groups: list[list[int]] = []
    union: list[np.ndarray] = []
    for p, s in enumerate(supports):
        for g, u in zip(groups, union):
            if not (u & s).any():
                g.append(p)
                u |= s
                break
        else:
            groups.append([p])
            union.append(s.copy())
    return groups


def pack(G: torch.Tensor | np.ndarray) -> np.ndarray:
    """(..., D, D) symmetric -> (..., D(D+1)/2): the upper triangle, row by row."""
    G = np.asarray(G)
    i, j = np.triu_indices(G.shape[-1])
    return G[..., i, j]


def unpack(packed: np.ndarray, D: int) -> np.ndarray:
    """Inverse of :func:`pack`: (..., D(D+1)/2) -> (..., D, D) symmetric."""
    packed = np.asarray(packed)
    if packed.shape[-1] != D * (D + 1) // 2:
        raise ValueError(f"expected {D * (D + 1) // 2} values per metric for D = {D}, "
                         f"got {packed.shape[-1]}")
    i, j = np.triu_indices(D)
    G = np.zeros(packed.shape[:-1] + (D, D), dtype=packed.dtype)
    G[..., i, j] = packed
    G[..., j, i] = packed
    return G


def trapezoid_lengths(delta: np.ndarray, G_a: np.ndarray, G_b: np.ndarray) -> np.ndarray:
    """sqrt(delta^T (G_a + G_b)/2 delta) over the leading axes: delta (..., D), G_a and
    G_b (..., D, D) -> (...) float64."""
    delta = np.asarray(delta, dtype=np.float64)
    gbar = 0.5 * (np.asarray(G_a, dtype=np.float64) + np.asarray(G_b, dtype=np.float64))
    return np.sqrt(np.maximum(np.einsum("...a,...ab,...b->...", delta, gbar, delta), 0.0))


def metric_edge_lengths(X: np.ndarray, G: np.ndarray, rows, cols,
                        batch_size: int = 1 << 20) -> np.ndarray:
    """:func:`trapezoid_lengths` of the edges (rows[e], cols[e]) between the vectors X
    (N, D), each with its metric G (N, D, D): (E,) float64."""
    X = np.asarray(X, dtype=np.float64)
    rows, cols = np.asarray(rows), np.asarray(cols)
    out = np.empty(len(rows))
    for s in range(0, len(rows), batch_size):
        r, c = rows[s:s + batch_size], cols[s:s + batch_size]
        out[s:s + batch_size] = trapezoid_lengths(X[c] - X[r], G[r], G[c])
    return out


def reweight_graph_by_metric(graph, X: np.ndarray, G: np.ndarray) -> sp.csr_matrix:
    """The same graph with every edge given its :func:`metric_edge_lengths` length
    (:func:`geodesic.decoder_metric.reweight_edges`: each undirected edge measured once,
    symmetric, a zero length kept as a tiny one so the edge stays)."""
    return reweight_edges(graph, lambda i, j: metric_edge_lengths(X, G, i, j))
