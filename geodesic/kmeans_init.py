"""k-means starting medoids for geodesic k-medoids: centroids snapped to graph nodes.

Geodesic k-medoids++ (:func:`geodesic.kmedoids.geodesic_kmedoids`'s default
seeding) starts far from a local optimum, and at a few 10^5 nodes the swap
passes that close the gap are most of the fit's time (252,265 grid nodes,
K = 512, 2 shared cores: seeding 8 s, four swap passes 63 s of 80 s).
Euclidean k-means on the node vectors (faiss; Johnson, Douze & Jégou, 2019,
"Billion-scale similarity search with GPUs"; Lloyd iterations) is cheap by
comparison and puts the centres where the mass is; on a k-NN graph the
geodesic distance is close to the Euclidean one at the scale of a cluster,
so the nodes nearest the centroids may leave the swaps less to fix.
``benchmarks/bench_grid_scale.py --init k-medoids++ k-means`` measures both.

* :func:`kmeans_centroids` — faiss k-means, weighted by node multiplicity;
* :func:`snap_to_nodes` — each centroid's nearest node, all distinct;
* :func:`kmeans_init_nodes` — the two together: ``init`` for
  ``geodesic_kmedoids``.
"""
from __future__ import annotations

import numpy as np

from geodesic.ann import faiss_threads
from geodesic.graph import as_points

__all__ = ["kmeans_centroids", "kmeans_init_nodes", "snap_to_nodes"]

#: Nearest nodes searched per centroid in the first round of :func:`snap_to_nodes`;
#: centroids whose candidates are all taken are searched again with K candidates.
SNAP_CANDIDATES = 8


def _check_points_and_k(points, n_clusters) -> np.ndarray:
    points = as_points(points)
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or \
            not 1 <= n_clusters <= len(points):
        raise ValueError(f"n_clusters must be an integer in [1, N] = [1, {len(points)}], got {n_clusters!r}.")
    return points


def kmeans_centroids(points, n_clusters: int, *, weights=None, seed: int = 0, niter: int = 20,
                     max_points_per_centroid: int = 256, n_threads: int | None = 1) -> np.ndarray:
    """Euclidean k-means centroids with faiss (``faiss.Kmeans``, Lloyd's iterations).

    Parameters
    ----------
    points : array-like of shape (N, d)
        Trained on as float32 (faiss's only type).
    n_clusters : int
        K, 1 <= K <= N.
    weights : array-like of shape (N,), optional
        Weight of each point (``Kmeans.train(x, weights=...)``; a node of
        multiplicity w counts as w points). Default all ones.
    seed : int, default=0
        faiss's seed (initial centroids, subsample).
    niter : int, default=20
        Lloyd iterations.
    max_points_per_centroid : int, default=256
        faiss trains on a uniform subsample of ``K x max_points_per_centroid``
        points when N is larger (its default); ``10**9`` uses all.
    n_threads : int, optional, default=1
        OpenMP threads of faiss; None keeps faiss's default.

    Returns
    -------
    centroids : ndarray of shape (K, d), float32
    """
    points = _check_points_and_k(points, n_clusters)
    x = np.ascontiguousarray(points, dtype=np.float32)
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
    if w is not None and w.shape != (len(x),):
        raise ValueError(f"weights must have shape (N,) = ({len(x)},), got {w.shape}.")
    with faiss_threads(n_threads) as faiss:
        # min_points_per_centroid only sets when faiss prints a "please provide more points"
        # warning to stderr; a small node set is no mistake here
        km = faiss.Kmeans(x.shape[1], int(n_clusters), niter=niter, seed=int(seed),
                          max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
        km.train(x, weights=w)
    return km.centroids


def _nearest_nodes(index, centroids: np.ndarray, points: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m nodes nearest each centroid, (C, m) ids and float64 distances, nearest first.

    faiss searches in float32; the found candidates are re-ranked by exact
    float64 distances so that float64 points snap as a brute-force search would.
    """
    _, ids = index.search(np.ascontiguousarray(centroids, dtype=np.float32), m)
    ids = ids.astype(np.int64)
    diff = points[np.maximum(ids, 0)].astype(np.float64) - centroids[:, None, :].astype(np.float64)
    dist = np.sqrt(np.einsum("cmd,cmd->cm", diff, diff))
    dist[ids < 0] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(dist, order, axis=1)


def snap_to_nodes(centroids, points, *, n_threads: int | None = 1) -> np.ndarray:
    """Distinct nodes nearest the centroids: each centroid's nearest point, unless taken.

    Centroids are served greedily in order of the distance to their nearest
    node, so of two centroids that want the same node the nearer keeps it;
    a centroid whose nearest node is taken gets its nearest node not yet
    taken (first among its :data:`SNAP_CANDIDATES` nearest, else among its
    K nearest, where one is always free). Exact search (faiss
    ``IndexFlatL2``, O(K N d)), re-ranked in float64.

    Parameters
    ----------
    centroids : array-like of shape (K, d)
    points : array-like of shape (N, d)
        The graph's node vectors, N >= K.
    n_threads : int, optional, default=1

    Returns
    -------
    nodes : ndarray of shape (K,), int64
        Distinct indices into ``points``.
    """
    points = as_points(points)
    centroids = np.asarray(centroids)
    n_clusters = len(centroids)
    _check_points_and_k(points, n_clusters)
    if centroids.ndim != 2 or centroids.shape[1] != points.shape[1]:
        raise ValueError(f"centroids must be (K, d) with d = {points.shape[1]}, got {centroids.shape}.")
    nodes = np.full(n_clusters, -1, dtype=np.int64)
    taken = np.zeros(len(points), dtype=bool)
    with faiss_threads(n_threads) as faiss:
        index = faiss.IndexFlatL2(points.shape[1])
        index.add(np.ascontiguousarray(points, dtype=np.float32))
        todo = np.arange(n_clusters)
        for m in (min(SNAP_CANDIDATES, len(points)), min(n_clusters, len(points))):
            ids, dist = _nearest_nodes(index, centroids[todo], points, m)
            for row in np.argsort(dist[:, 0], kind="stable"):
                free = ids[row][(ids[row] >= 0) & ~taken[np.maximum(ids[row], 0)]]
                if free.size:
                    nodes[todo[row]] = free[0]
                    taken[free[0]] = True
            todo = np.flatnonzero(nodes < 0)
            if not todo.size:
                break
    return nodes


def kmeans_init_nodes(points, weights, n_clusters: int, seed: int = 0, n_threads: int | None = 1, *,
                      niter: int = 20, max_points_per_centroid: int = 256) -> np.ndarray:
    """K distinct starting medoids: weighted k-means centroids, each snapped to its nearest node.

    ``geodesic_kmedoids(graph, K, weights=w, init=kmeans_init_nodes(points, w, K, seed))``
    starts the alternating steps and swaps from the k-means solution on the
    graph's node vectors instead of from geodesic k-medoids++.

    Parameters
    ----------
    points : array-like of shape (N, d)
        Node vectors (``NeighborIndex.points_``), in the graph's node order.
    weights : array-like of shape (N,) or None
        Node multiplicities (``NeighborIndex.counts_``); None for all ones.
    n_clusters : int
        K, 1 <= K <= N.
    seed : int, default=0
        Seed of faiss's k-means.
    n_threads : int, optional, default=1
        faiss threads (one: the same nodes every run).
    niter, max_points_per_centroid : int, default=20, 256
        See :func:`kmeans_centroids`.

    Returns
    -------
    nodes : ndarray of shape (K,), int64
        Distinct node indices in [0, N).
    """
    centroids = kmeans_centroids(points, n_clusters, weights=weights, seed=seed, niter=niter,
                                 max_points_per_centroid=max_points_per_centroid, n_threads=n_threads)
    return snap_to_nodes(centroids, points, n_threads=n_threads)
