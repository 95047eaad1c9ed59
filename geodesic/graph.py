"""Geodesic (k-NN graph) distances: the graph, its repair, and the searches on it.

The geodesic distance between two latent codes is the length of the shortest
path between them in the symmetric k-nearest-neighbour graph with Euclidean
edge lengths (Tenenbaum et al., 2000, "A Global Geometric Framework for
Nonlinear Dimensionality Reduction", the Isomap distance). scikit-learn's
``Isomap`` computes it for all pairs, an N x N matrix (14.4 GB in float32 at
N = 60,000); this module never does at scale:

* :func:`knn_graph` and :func:`connect_components` build the same graph as
  ``Isomap.fit`` (same neighbours, same repair of a disconnected graph);
  :class:`geodesic.ann.NeighborIndex` builds it with approximate neighbours
  above 200,000 nodes and on unique vectors.
* :func:`geodesic_distances` gives rows of the geodesic matrix (all pairs only
  below :data:`MAX_ALL_PAIRS` points).
* :func:`medoid_distance_rows` gives the (K, N) distances from the medoids
  that an out-of-sample quantizer needs.
* :class:`Top2Search` and :class:`PrunedSearch` are the sparse searches that
  :func:`geodesic.kmedoids.geodesic_kmedoids` is built from (nearest and second
  nearest of many sources; searches confined by a 1-Lipschitz bound).

Geodesic k-medoids itself lives in :mod:`geodesic.kmedoids`, built on these searches.

All graphs are ``scipy.sparse`` matrices read as undirected, as
``scipy.sparse.csgraph.dijkstra(..., directed=False)`` reads them: an edge
i-j exists when ``graph[i, j]`` or ``graph[j, i]`` is stored (explicit zeros
included, which are zero-length edges between duplicate points).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra, reverse_cuthill_mckee
from sklearn.metrics import pairwise_distances, pairwise_distances_argmin_min
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

from geodesic.kernels import pruned_search, top2_search

__all__ = [
    "MAX_ALL_PAIRS",
    "knn_graph",
    "connect_components",
    "geodesic_distances",
    "medoid_distance_rows",
]

#: Largest N for which :func:`geodesic_distances` returns all pairs when no
#: ``sources`` are given: 10,000^2 float64 distances are already 800 MB.
MAX_ALL_PAIRS = 10_000


# ----------------------------------------------------------------------------
# Graph construction
# ----------------------------------------------------------------------------
def as_points(X) -> np.ndarray:
    """(N, d) numpy array from numpy or torch input; float32 stays float32."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (N, d), got shape {X.shape}; reshape it, e.g. X.reshape(len(X), -1).")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; remove or impute them before building the graph.")
    return X


def knn_graph(X, n_neighbors: int = 10) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph with Euclidean edge lengths.

    Edge i-j exists when j is among the ``n_neighbors`` nearest neighbours of
    i or i among those of j, which is how ``sklearn.manifold.Isomap`` reads
    its (directed) neighbour graph; the neighbours are found exactly as
    ``Isomap.fit`` finds them (``NearestNeighbors(algorithm="auto")`` then
    ``kneighbors_graph(mode="distance")``), so geodesic distances agree.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (N, d)
        Points (e.g. VAE latent means). float32 input gives float32 edge
        lengths (geodesics then agree with Isomap's to float32 precision,
        ~1e-6 relative); anything else float64.
    n_neighbors : int, default=10
        Number of neighbours of each point (the point itself excluded).

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (N, N)
        Symmetric; ``graph[i, j]`` is ``||X[i] - X[j]||``. Zero-length edges
        between duplicate points are kept as explicit zeros.
    """
    X = as_points(X)
    n = X.shape[0]
    if not 1 <= n_neighbors < n:
        raise ValueError(f"n_neighbors={n_neighbors} must be in [1, N-1] = [1, {n - 1}]; pass a smaller n_neighbors.")
    nbrs = NearestNeighbors(n_neighbors=n_neighbors).fit(X)
    directed = kneighbors_graph(nbrs, n_neighbors, mode="distance").tocoo()
    # scikit-learn returns float64 lengths even for float32 points (and Isomap
    # casts its geodesics back to float32): keep the points' precision
    weights = directed.data.astype(X.dtype, copy=False)
    return symmetrize(directed.row, directed.col, weights, n, reduce=np.maximum)


def symmetrize(rows, cols, weights, n, *, reduce) -> sp.csr_matrix:
    """CSR graph holding each edge in both directions, duplicates merged by ``reduce``.

    Done by hand because ``A.maximum(A.T)`` drops explicit zeros, i.e. the
    zero-length edges between duplicate points that csgraph does treat as edges.
    """
    r = np.concatenate([rows, cols]).astype(np.int64)
    c = np.concatenate([cols, rows]).astype(np.int64)
    w = np.concatenate([weights, weights])
    keep = r != c  # self-loops never shorten a path
    r, c, w = r[keep], c[keep], w[keep]
    key = r * n + c
    order = np.argsort(key, kind="stable")
    key, w = key[order], w[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    w = reduce.reduceat(w, starts) if w.size else w
    key = key[starts]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=indptr[1:])
    indices = (key % n).astype(np.int32 if n < 2**31 else np.int64)
    return sp.csr_matrix((w, indices, indptr), shape=(n, n))


def connect_components(graph, X) -> sp.csr_matrix:
    """Join the connected components of a neighbour graph, as Isomap does.

    For every pair of components the closest pair of points (one in each, by
    Euclidean distance) is joined by an edge of that length; this is what
    ``sklearn.utils.graph._fix_connected_components`` does inside
    ``Isomap.fit``, here without its (|C_i|, |C_j|) distance matrix per pair
    of components (``pairwise_distances_argmin_min`` works in chunks).

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
        Neighbour graph, e.g. from :func:`knn_graph`.
    X : array-like or torch.Tensor of shape (N, d)
        The points the graph was built from.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (N, N)
        ``graph`` itself (unchanged, no warning) when it is connected,
        otherwise a repaired copy with C (C - 1) / 2 new symmetric edges for
        C components, and a ``UserWarning`` naming C.
    """
    graph = check_square(graph)
    X = as_points(X)
    if X.shape[0] != graph.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but the graph has {graph.shape[0]} nodes; "
                         "pass the points the graph was built from.")
    n_components, labels = connected_components(graph, directed=False)
    if n_components == 1:
        return graph
    members = [np.flatnonzero(labels == i) for i in range(n_components)]
    new_rows, new_cols, new_w = [], [], []
    for i in range(n_components):
        for j in range(i):
            # same pair and tie-break as D.argmin() over the full (C_i, C_j) block
            cols, dists = pairwise_distances_argmin_min(X[members[i]], X[members[j]])
            a = int(np.argmin(dists))
            u, v = members[i][a], members[j][cols[a]]
            new_rows.append(u)
            new_cols.append(v)
            new_w.append(pairwise_distances(X[[u]], X[[v]])[0, 0])
    warnings.warn(
        f"The neighbour graph has {n_components} connected components; joined them with "
        f"{len(new_w)} shortest edges between components (as scikit-learn's Isomap does). "
        "Geodesic distances across these edges are crude: increase n_neighbors to avoid this.",
        stacklevel=2,
    )
    coo = graph.tocoo()
    rows = np.concatenate([coo.row, new_rows, new_cols])
    cols = np.concatenate([coo.col, new_cols, new_rows])
    w = np.concatenate([coo.data, new_w, new_w]).astype(graph.dtype, copy=False)
    return sp.csr_matrix((w, (rows, cols)), shape=graph.shape)


# ----------------------------------------------------------------------------
# Geodesic distances
# ----------------------------------------------------------------------------
def check_square(graph) -> sp.csr_matrix:
    if not sp.issparse(graph):
        graph = sp.csr_matrix(np.asarray(graph))
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"graph must be a square (N, N) adjacency matrix, got shape {graph.shape}; "
                         "build it with knn_graph(X).")
    graph = graph.tocsr()
    if graph.nnz and (not np.isfinite(graph.data).all() or graph.data.min() < 0):
        raise ValueError("graph edge lengths must be finite and non-negative; build it with knn_graph(X).")
    return graph


def out_dtype(graph) -> np.dtype:
    # Isomap returns float32 geodesics for float32 points; csgraph works in float64.
    return np.dtype(np.float32) if graph.dtype == np.float32 else np.dtype(np.float64)


def geodesic_distances(graph, sources=None) -> np.ndarray:
    """Shortest-path (geodesic) distances in an undirected graph (Dijkstra).

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
        Non-negative edge lengths, read as undirected.
    sources : array-like of int of shape (S,), optional
        Nodes to measure from. ``None`` means all N nodes, allowed only for
        N <= :data:`MAX_ALL_PAIRS` because the result is N x N.

    Returns
    -------
    dist : ndarray of shape (S, N), or (N, N) when ``sources`` is None
        ``dist[a, j]`` is the geodesic distance from ``sources[a]`` to node j
        (``inf`` when unreachable). float32 for a float32 graph, like Isomap.
    """
    graph = check_square(graph)
    n = graph.shape[0]
    if sources is None:
        if n > MAX_ALL_PAIRS:
            raise ValueError(
                f"all-pairs geodesic distances for N={n} points would be an N x N matrix "
                f"(limit MAX_ALL_PAIRS={MAX_ALL_PAIRS}); pass sources=... to get only the rows you need."
            )
        out = dijkstra(graph, directed=False)
    else:
        sources = np.atleast_1d(np.asarray(sources, dtype=np.int64))
        if sources.ndim != 1 or (sources.size and (sources.min() < 0 or sources.max() >= n)):
            raise ValueError(f"sources must be a 1-D array of node indices in [0, {n - 1}].")
        out = dijkstra(graph, directed=False, indices=sources)
        out = out.reshape(len(sources), n)
    return out.astype(out_dtype(graph), copy=False)


def medoid_distance_rows(graph, medoids, *, chunk_size: int = 64) -> np.ndarray:
    """Geodesic distances from each medoid to every node, (K, N) float32.

    What an out-of-sample quantizer needs: a new point linked to its training
    neighbours t reaches medoid k at ``min_t (|x - t| + rows[k, t])`` (the
    rule of ``Isomap.transform``). Computed ``chunk_size`` Dijkstra sources at
    a time so that only a (chunk_size, N) float64 block is alive besides the
    float32 result: K N 4 bytes (123 MB at N = 60,000, K = 512); about
    N x 0.7 us per medoid.

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
    medoids : array-like of int of shape (K,)
    chunk_size : int, default=64

    Returns
    -------
    rows : ndarray of shape (K, N), float32
    """
    graph = check_square(graph)
    medoids = np.atleast_1d(np.asarray(medoids, dtype=np.int64))
    n = graph.shape[0]
    if medoids.size and (medoids.min() < 0 or medoids.max() >= n):
        raise ValueError(f"medoids must be node indices in [0, {n - 1}].")
    rows = np.empty((medoids.size, n), dtype=np.float32)
    for start in range(0, medoids.size, chunk_size):
        block = medoids[start:start + chunk_size]
        rows[start:start + block.size] = dijkstra(graph, directed=False, indices=block).reshape(block.size, n)
    return rows


# ----------------------------------------------------------------------------
# Sparse graph searches used by geodesic_kmedoids
# ----------------------------------------------------------------------------
class CSRGraph:
    """Undirected CSR arrays (each edge stored both ways, float64 lengths).

    Same reading as ``dijkstra(directed=False)``: an edge stored in one or both
    directions, the shorter length when both are stored.
    """

    def __init__(self, graph: sp.csr_matrix, *, symmetric: bool = False):
        if symmetric:  # already both ways, float64 (e.g. a permuted CSRGraph.csr)
            g = sp.csr_matrix(graph)
            g.sort_indices()
        else:
            coo = graph.tocoo()
            g = symmetrize(coo.row, coo.col, coo.data.astype(np.float64), graph.shape[0], reduce=np.minimum)
        self.n = graph.shape[0]
        self.indptr = g.indptr.astype(np.int64)
        self.indices = g.indices.astype(np.int64)
        self.weights = g.data
        self.csr = g

    def expand(self, nodes: np.ndarray):
        """All edges out of ``nodes``: (position in ``nodes``, neighbour, length)."""
        start = self.indptr[nodes]
        deg = self.indptr[nodes + 1] - start
        ends = np.cumsum(deg)
        total = int(ends[-1]) if ends.size else 0
        rep = np.repeat(np.arange(nodes.size), deg)
        pos = np.arange(total) + np.repeat(start - (ends - deg), deg)
        return rep, self.indices[pos], self.weights[pos]

    def reordered(self) -> tuple["CSRGraph", np.ndarray]:
        """The same graph with its nodes in reverse Cuthill-McKee order, and that order.

        Node ``i`` of the result is node ``order[i]`` of this graph. Neighbours
        get nearby indices, so a search reads nearby memory: measured 1.6x
        faster confined searches on 252,265 grid nodes (k = 10), for an O(E)
        reordering (0.1 s there).
        """
        order = reverse_cuthill_mckee(self.csr, symmetric_mode=True).astype(np.int64)
        return CSRGraph(self.csr[order][:, order], symmetric=True), order


class Top2Search:
    """Distance to and slot (0..K-1) of the nearest and second-nearest medoid of every node.

    Maintained by a multi-source Dijkstra that keeps two labels per node
    (:func:`geodesic.kernels.top2_search`). Exactness rests on one fact: if
    medoid s is among the two nearest of v, it is among the two nearest of
    every node u on a shortest s-v path (otherwise two medoids would be closer
    to v than s through u). So
    propagating only the two labels a node keeps loses nothing, and a search
    only goes where a new label enters somebody's top two.
    """

    def __init__(self, g: CSRGraph):
        n = g.n
        self.g = g
        self.d1 = np.full(n, np.inf)
        self.d2 = np.full(n, np.inf)
        self.s1 = np.full(n, -1, dtype=np.int64)
        self.s2 = np.full(n, -1, dtype=np.int64)

    def reset(self, medoids: np.ndarray) -> None:
        """Recompute everything from scratch for ``medoids`` (slot k holds node medoids[k])."""
        self.n_slots = medoids.size
        self.d1.fill(np.inf), self.d2.fill(np.inf), self.s1.fill(-1), self.s2.fill(-1)
        self._run(medoids.astype(np.int64), np.zeros(medoids.size), np.arange(medoids.size, dtype=np.int64))

    def replace(self, slots: np.ndarray, new_nodes: np.ndarray) -> None:
        """Swap the medoids in ``slots`` for ``new_nodes``; only the affected region is searched."""
        g = self.g
        slots = slots.astype(np.int64)
        # gone[s + 1]: slot s was removed (index 0 stands for "no label", s = -1)
        gone = np.zeros(self.n_slots + 1, dtype=bool)
        gone[slots + 1] = True
        lost1, lost2 = gone[self.s1 + 1], gone[self.s2 + 1]
        affected = np.flatnonzero(lost1 | lost2)
        self.d1[lost1], self.s1[lost1] = np.inf, -1
        self.d2[lost2], self.s2[lost2] = np.inf, -1
        promote = np.flatnonzero((self.s1 < 0) & (self.s2 >= 0))
        self.d1[promote], self.s1[promote] = self.d2[promote], self.s2[promote]
        self.d2[promote], self.s2[promote] = np.inf, -1
        # the affected nodes regain labels from their intact neighbours (and
        # from each other): re-send every label held on and around them
        if affected.size:
            _, nbr, _ = g.expand(affected)
            region = np.unique(np.concatenate([affected, nbr]))
        else:
            region = affected
        send_v = np.concatenate([region, region])
        send_d = np.concatenate([self.d1[region], self.d2[region]])
        send_s = np.concatenate([self.s1[region], self.s2[region]])
        ok = send_s >= 0
        send_v, send_d, send_s = send_v[ok], send_d[ok], send_s[ok]
        rep, v, w = g.expand(send_v)
        prop_v = np.concatenate([new_nodes.astype(np.int64), v])
        prop_d = np.concatenate([np.zeros(new_nodes.size), send_d[rep] + w])
        prop_s = np.concatenate([slots, send_s[rep]])
        self._run(prop_v, prop_d, prop_s)

    def _run(self, v, d, s) -> None:
        """Merge proposals (node, distance, slot) and propagate until nothing changes."""
        g = self.g
        top2_search(g.indptr, g.indices, g.weights, self.d1, self.d2, self.s1, self.s2,
                    np.ascontiguousarray(v, dtype=np.int64), np.ascontiguousarray(d, dtype=np.float64),
                    np.ascontiguousarray(s, dtype=np.int64))


class PrunedSearch:
    """Distances from many sources, each search confined to ``{v : d(x, v) < bound[v]}``.

    With ``bound`` 1-Lipschitz on the graph (the distance to the nearest or
    second-nearest medoid is), a node outside the region cannot lead back into
    it: every node on a shortest path from x to a region node is itself in the
    region. So confining the search loses nothing, and it visits about a
    would-be cluster and its border instead of all N nodes.

    One compiled Dijkstra per source (:func:`geodesic.kernels.pruned_search`)
    with two (N,) scratch arrays; ``batch_size`` is the most sources per call.
    """

    def __init__(self, g: CSRGraph, batch_size: int):
        self.g = g
        self.batch_size = batch_size
        self.dist = np.full(g.n, np.inf)
        self.where = np.full(g.n, -1, dtype=np.int64)

    def run(self, sources: np.ndarray, bound: np.ndarray):
        """Return (source position, node, distance) for all region nodes, grouped by source position."""
        g = self.g
        assert sources.size <= self.batch_size
        return pruned_search(g.indptr, g.indices, g.weights, np.ascontiguousarray(sources, dtype=np.int64),
                             np.ascontiguousarray(bound, dtype=np.float64), self.dist, self.where)

