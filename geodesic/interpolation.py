"""Geodesic interpolation between two latents, through the k-NN graph of the training latents.

Two new points a and b are joined to their k nearest training latents (as in
the quantizers' out-of-sample rule) and the shortest path from a to b in that
extended graph is the discrete geodesic; it is resampled at evenly spaced arc
length, so that n frames step along it like the n frames of the straight line
a + t (b - a) it is drawn against.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import NearestNeighbors


class GeodesicPath(NamedTuple):
    nodes: np.ndarray  # (P,) training-node indices on the path, a and b excluded
    points: np.ndarray  # (P + 2, d) the polyline a, nodes..., b
    length: float  # graph length of the path (the edges' own lengths)


def extended_graph(graph, Z: np.ndarray, new: np.ndarray, n_neighbors: int, edge_length=None):
    """``graph`` (N x N) with the rows of ``new`` (M, d) appended as nodes N..N+M-1,
    each joined to its k nearest rows of Z. ``edge_length(starts, ends) -> (E,)``
    measures those edges (Euclidean when None, as the graph's own edges are)."""
    n, m = graph.shape[0], len(new)
    dist, nbr = NearestNeighbors(n_neighbors=n_neighbors).fit(Z).kneighbors(new)
    if edge_length is not None:
        dist = np.asarray(edge_length(np.repeat(new, n_neighbors, axis=0), Z[nbr.ravel()])
                          ).reshape(m, n_neighbors)
    rows = np.repeat(np.arange(n, n + m), n_neighbors)
    extra = sp.csr_matrix((np.maximum(dist.ravel(), 1e-12), (rows, nbr.ravel())), shape=(n + m, n + m))
    big = sp.bmat([[sp.csr_matrix(graph), None], [None, sp.csr_matrix((m, m))]]).tocsr()
    return (big + extra + extra.T).tocsr()


def geodesic_path(graph, Z: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_neighbors: int = 10,
                  edge_length=None) -> GeodesicPath:
    """The shortest path from latent a (d,) to latent b (d,) through the training
    latents Z (N, d) and their k-NN ``graph``."""
    Z = np.asarray(Z, dtype=np.float64)
    ends = np.stack([a, b]).astype(np.float64)
    big = extended_graph(graph, Z, ends, n_neighbors, edge_length)
    n = len(Z)
    dist, pred = dijkstra(big, directed=False, indices=n, return_predecessors=True)
    if not np.isfinite(dist[n + 1]):
        raise ValueError("a and b are not connected through the graph")
    path, node = [], pred[n + 1]
    while node != n:
        path.append(node)
        node = pred[node]
    nodes = np.array(path[::-1], dtype=np.int64)
    return GeodesicPath(nodes, np.concatenate([ends[:1], Z[nodes], ends[1:]]), float(dist[n + 1]))


def resample(points: np.ndarray, n_frames: int) -> np.ndarray:
    """``n_frames`` points at evenly spaced arc length along a polyline (P, d),
    both ends included."""
    points = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.r_[0.0, np.cumsum(seg)]
    if s[-1] == 0:
        return np.repeat(points[:1], n_frames, axis=0)
    t = np.linspace(0.0, s[-1], n_frames)
    return np.stack([np.interp(t, s, points[:, j]) for j in range(points.shape[1])], axis=1)


def straight_line(a: np.ndarray, b: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, d) points a + t (b - a), t evenly spaced in [0, 1]."""
    t = np.linspace(0.0, 1.0, n_frames)[:, None]
    return (1 - t) * np.asarray(a, np.float64) + t * np.asarray(b, np.float64)
