"""Geodesic (k-NN graph) distances and geodesic k-medoids that scale to 10^5 points.

The geodesic distance between two latent codes is the length of the shortest
path between them in the symmetric k-nearest-neighbour graph with Euclidean
edge lengths (Tenenbaum et al., 2000, "A Global Geometric Framework for
Nonlinear Dimensionality Reduction", the Isomap distance). scikit-learn's
``Isomap`` computes it for all pairs, an N x N matrix (14.4 GB in float32 at
N = 60,000); this module never does at scale:

* :func:`knn_graph` and :func:`connect_components` build the same graph as
  ``Isomap.fit`` (same neighbours, same repair of a disconnected graph).
* :func:`geodesic_distances` gives rows of the geodesic matrix (all pairs only
  below :data:`MAX_ALL_PAIRS` points).
* :func:`geodesic_kmedoids` clusters the nodes with k-medoids under the
  geodesic distance from sparse graph searches only; see its docstring for the
  algorithm and its cost.
* :func:`medoid_distance_rows` gives the (K, N) distances from the medoids
  that an out-of-sample quantizer needs.

All graphs are ``scipy.sparse`` matrices read as undirected, as
``scipy.sparse.csgraph.dijkstra(..., directed=False)`` reads them: an edge
i-j exists when ``graph[i, j]`` or ``graph[j, i]`` is stored (explicit zeros
included, which are zero-length edges between duplicate points).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra
from sklearn.metrics import pairwise_distances, pairwise_distances_argmin_min
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

__all__ = [
    "MAX_ALL_PAIRS",
    "GeodesicKMedoidsResult",
    "knn_graph",
    "connect_components",
    "geodesic_distances",
    "geodesic_kmedoids",
    "medoid_distance_rows",
]

#: Largest N for which :func:`geodesic_distances` returns all pairs when no
#: ``sources`` are given: 10,000^2 float64 distances are already 800 MB.
MAX_ALL_PAIRS = 10_000


class GeodesicKMedoidsResult(NamedTuple):
    """Result of :func:`geodesic_kmedoids`.

    Attributes
    ----------
    medoids : ndarray of shape (K,), int64
        Node indices of the medoids.
    labels : ndarray of shape (N,), int64
        Index into ``medoids`` (0..K-1) of each node's nearest medoid.
    distances : ndarray of shape (N,)
        Geodesic distance of each node to its medoid (float32 for a float32
        graph, float64 otherwise).
    loss : float
        ``distances.sum()``, the k-medoids objective (total deviation).
    """

    medoids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    loss: float


# ----------------------------------------------------------------------------
# Graph construction
# ----------------------------------------------------------------------------
def _as_points(X) -> np.ndarray:
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
    X = _as_points(X)
    n = X.shape[0]
    if not 1 <= n_neighbors < n:
        raise ValueError(f"n_neighbors={n_neighbors} must be in [1, N-1] = [1, {n - 1}]; pass a smaller n_neighbors.")
    nbrs = NearestNeighbors(n_neighbors=n_neighbors).fit(X)
    directed = kneighbors_graph(nbrs, n_neighbors, mode="distance").tocoo()
    # scikit-learn returns float64 lengths even for float32 points (and Isomap
    # casts its geodesics back to float32): keep the points' precision
    weights = directed.data.astype(X.dtype, copy=False)
    return _symmetrize(directed.row, directed.col, weights, n, reduce=np.maximum)


def _symmetrize(rows, cols, weights, n, *, reduce) -> sp.csr_matrix:
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
    graph = _check_square(graph)
    X = _as_points(X)
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
def _check_square(graph) -> sp.csr_matrix:
    if not sp.issparse(graph):
        graph = sp.csr_matrix(np.asarray(graph))
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"graph must be a square (N, N) adjacency matrix, got shape {graph.shape}; "
                         "build it with knn_graph(X).")
    graph = graph.tocsr()
    if graph.nnz and (not np.isfinite(graph.data).all() or graph.data.min() < 0):
        raise ValueError("graph edge lengths must be finite and non-negative; build it with knn_graph(X).")
    return graph


def _out_dtype(graph) -> np.dtype:
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
    graph = _check_square(graph)
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
    return out.astype(_out_dtype(graph), copy=False)


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
    graph = _check_square(graph)
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
class _Graph:
    """Undirected CSR arrays (each edge stored both ways, float64 lengths).

    Same reading as ``dijkstra(directed=False)``: an edge stored in one or both
    directions, the shorter length when both are stored.
    """

    def __init__(self, graph: sp.csr_matrix):
        coo = graph.tocoo()
        g = _symmetrize(coo.row, coo.col, coo.data.astype(np.float64), graph.shape[0], reduce=np.minimum)
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


def _first_of_each(keys: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Mask keeping one occurrence of each key, in O(len(keys)) (``np.unique`` sorts).

    ``owner`` is scratch indexed by key; whatever it holds is overwritten.
    """
    pos = np.arange(keys.size, dtype=np.int32)
    owner[keys] = pos  # one of the writes to a repeated key wins
    return owner[keys] == pos


class _Top2:
    """Distance to and slot (0..K-1) of the nearest and second-nearest medoid of every node.

    Maintained by a label-correcting multi-source search that keeps two labels
    per node. Exactness rests on one fact: if medoid s is among the two nearest
    of v, it is among the two nearest of every node u on a shortest s-v path
    (otherwise two medoids would be closer to v than s through u). So
    propagating only the two labels a node keeps loses nothing, and a search
    only goes where a new label enters somebody's top two.
    """

    def __init__(self, g: _Graph):
        n = g.n
        self.g = g
        self.d1 = np.full(n, np.inf)
        self.d2 = np.full(n, np.inf)
        self.s1 = np.full(n, -1, dtype=np.int64)
        self.s2 = np.full(n, -1, dtype=np.int64)
        # scratch for the best two proposals per node in one round
        self._pd1 = np.full(n, np.inf)
        self._pd2 = np.full(n, np.inf)
        self._ps1 = np.full(n, -1, dtype=np.int64)
        self._ps2 = np.full(n, -1, dtype=np.int64)
        self._owner = np.zeros(n, dtype=np.int32)

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
        d1, d2, s1, s2 = self.d1, self.d2, self.s1, self.s2
        pd1, pd2, ps1, ps2 = self._pd1, self._pd2, self._ps1, self._ps2
        while v.size:
            # a proposal matters only if it enters the top two (or shortens its own label)
            keep = (d < d2[v]) & ~((s == s1[v]) & (d >= d1[v]))
            if not keep.all():
                v, d, s = v[keep], d[keep], s[keep]
                if not v.size:
                    break
            # best and second-best proposal per node, from distinct medoids
            np.minimum.at(pd1, v, d)
            win = d == pd1[v]
            ps1[v[win]] = s[win]
            rest = s != ps1[v]
            np.minimum.at(pd2, v[rest], d[rest])
            win2 = rest & (d == pd2[v])
            ps2[v[win2]] = s[win2]
            nodes = v[_first_of_each(v, self._owner)]
            D = np.stack([d1[nodes], d2[nodes], pd1[nodes], pd2[nodes]], axis=1)
            S = np.stack([s1[nodes], s2[nodes], ps1[nodes], ps2[nodes]], axis=1)
            pd1[nodes], pd2[nodes], ps1[nodes], ps2[nodes] = np.inf, np.inf, -1, -1
            old_d, old_s = D[:, :2].copy(), S[:, :2].copy()
            # a proposal from a medoid the node already holds shortens that label
            for p in (2, 3):
                for o in (0, 1):
                    same = (S[:, p] == S[:, o]) & (S[:, p] >= 0)
                    if same.any():
                        D[same, o] = np.minimum(D[same, o], D[same, p])
                        D[same, p], S[same, p] = np.inf, -1
            order = np.argsort(D, axis=1, kind="stable")[:, :2]
            new_d = np.take_along_axis(D, order, axis=1)
            new_s = np.take_along_axis(S, order, axis=1)
            d1[nodes], d2[nodes] = new_d[:, 0], new_d[:, 1]
            s1[nodes], s2[nodes] = new_s[:, 0], new_s[:, 1]
            held = ((new_s[:, :, None] == old_s[:, None, :]) & (new_d[:, :, None] == old_d[:, None, :])).any(axis=2)
            changed = ~held & (new_s >= 0)
            fv = np.broadcast_to(nodes[:, None], changed.shape)[changed]
            fd, fs = new_d[changed], new_s[changed]
            if not fv.size:
                break
            rep, v, w = g.expand(fv)
            d, s = fd[rep] + w, fs[rep]


class _PrunedSearch:
    """Distances from many sources at once, each search confined to ``{v : d(x, v) < bound[v]}``.

    With ``bound`` 1-Lipschitz on the graph (the distance to the nearest or
    second-nearest medoid is), a node outside the region cannot lead back into
    it: every node on a shortest path from x to a region node is itself in the
    region. So confining the search loses nothing, and it visits about a
    would-be cluster and its border instead of all N nodes.

    Sources are searched together by label-correcting rounds over (source,
    node) pairs held in one flat (B, N) float64 scratch array.
    """

    def __init__(self, g: _Graph, batch_size: int):
        self.g = g
        self.batch_size = batch_size
        self.buf = np.full(batch_size * g.n, np.inf)
        self.owner = np.zeros(batch_size * g.n, dtype=np.int32)  # scratch of _first_of_each

    def run(self, sources: np.ndarray, bound: np.ndarray):
        """Return (source position, node, distance) for all region nodes, sorted by source then node."""
        g, n, buf = self.g, self.g.n, self.buf
        assert sources.size <= self.batch_size
        keys = np.arange(sources.size, dtype=np.int64) * n + sources
        keys = keys[bound[sources] > 0]
        dist = np.zeros(keys.size)
        buf[keys] = 0.0
        touched = [keys]
        while keys.size:
            node = keys % n
            rep, v, w = g.expand(node)
            d = dist[rep] + w
            keep = d < bound[v]
            k = (keys - node)[rep[keep]] + v[keep]
            d = d[keep]
            better = d < buf[k]
            k, d = k[better], d[better]
            np.minimum.at(buf, k, d)
            win = d == buf[k]
            keys, dist = k[win], d[win]
            if keys.size:
                first = _first_of_each(keys, self.owner)
                keys, dist = keys[first], dist[first]
                touched.append(keys)
        keys = np.unique(np.concatenate(touched))
        dist = buf[keys]
        buf[keys] = np.inf
        return keys // n, keys % n, dist


# ----------------------------------------------------------------------------
# Geodesic k-medoids
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def _single_torch_thread(device: torch.device):
    """Run small CPU tensor ops on one thread, then restore the setting.

    The dense blocks here are small (<= a few 10^5 entries); torch's intra-op
    thread pool then only adds wake-up latency, which on a busy 2-core machine
    made single ops 10-1000x slower (measured: ``Tensor.min(dim)`` on a
    (16, 64) tensor took 23 ms instead of 3 us).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_kmedoids_input(graph, n_clusters) -> sp.csr_matrix:
    graph = _check_square(graph)
    n = graph.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}.")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got K={n_clusters}.")
    if n_clusters > n:
        raise ValueError(f"K={n_clusters} is larger than the number of points N={n}; pass n_clusters <= {n}.")
    n_components, _ = connected_components(graph, directed=False)
    if n_components > 1:
        raise ValueError(
            f"the graph has {n_components} connected components, so some geodesic distances are infinite; "
            "call connect_components(graph, X) first."
        )
    return graph


def _kmedoids_plusplus(g: _Graph, n_clusters: int, rng: np.random.Generator, search: _PrunedSearch) -> np.ndarray:
    """Geodesic k-medoids++ seeding (Arthur & Vassilvitskii, 2007, D^2 sampling).

    Each new medoid is drawn with probability proportional to the squared
    geodesic distance to the nearest medoid so far; that distance is updated by
    a search confined to where the new medoid is nearer (it is 1-Lipschitz),
    i.e. to the new medoid's cell.
    """
    n = g.n
    medoids = np.empty(n_clusters, dtype=np.int64)
    is_medoid = np.zeros(n, dtype=bool)
    x = int(rng.integers(n))
    # the first search covers the whole graph: scipy's Dijkstra is faster there
    nearest = dijkstra(g.csr, directed=True, indices=x)
    medoids[0] = x
    is_medoid[x] = True
    for k in range(1, n_clusters):
        weight = nearest**2
        total = weight.sum()
        if total > 0:
            x = int(rng.choice(n, p=weight / total))
        else:  # only duplicates of medoids are left: any non-medoid will do
            x = int(rng.choice(np.flatnonzero(~is_medoid)))
        medoids[k] = x
        is_medoid[x] = True
        _, v, d = search.run(np.array([x]), nearest)
        nearest[v] = d
        nearest[x] = 0.0
    return medoids


#: Clusters are packed into dense blocks of about this many nodes: a block is
#: (nodes, nodes), so packing more small clusters together only adds zeros.
_GROUP_NODES = 256
#: Most float64 entries of one dense block of within-cluster distances (128 MB).
_BLOCK_ENTRIES = 2**24


def _cluster_costs(sub: sp.csr_matrix, rows: np.ndarray, cluster_of: np.ndarray, device) -> np.ndarray:
    """Summed distance from each of ``rows`` to the other members of its cluster.

    ``sub`` is a block-diagonal graph (one block per cluster, positions
    ``cluster_of``); distances are shortest paths inside each block, computed
    for a chunk of rows at a time so that the dense (rows, nodes) block stays
    below ``_BLOCK_ENTRIES`` entries. The masked row sums run on ``device``.
    """
    n_nodes = sub.shape[0]
    cl = torch.as_tensor(cluster_of, device=device)
    out = np.empty(rows.size)
    step = max(1, _BLOCK_ENTRIES // max(n_nodes, 1))
    for start in range(0, rows.size, step):
        chunk = rows[start:start + step]
        dist = torch.as_tensor(dijkstra(sub, directed=True, indices=chunk), device=device)
        same = cl[torch.as_tensor(chunk, device=device)][:, None] == cl[None, :]
        zero = torch.zeros((), dtype=dist.dtype, device=device)
        out[start:start + chunk.size] = torch.where(same, dist, zero).sum(1).cpu().numpy()
    return out


def _update_medoids(g: _Graph, top2: _Top2, medoids: np.ndarray, *, n_candidates: int,
                    device: torch.device) -> int:
    """One medoid-update step of the alternating (Voronoi iteration) algorithm.

    For every cluster, its ``n_candidates`` members closest to the current
    medoid are scored by their summed distance to all members, with shortest
    paths *inside* the cluster's subgraph. Those are upper bounds on the
    geodesic distances, so a member whose bound beats the current medoid's
    true cost (from ``top2``) really is better: the step never increases the
    loss. Only members near the medoid are scored because the best one
    rarely lies far from it (swaps handle the big moves), which makes the
    step cost O(n_candidates N) instead of O(sum of squared cluster sizes).
    Small clusters are packed into block-diagonal groups of about
    ``_GROUP_NODES`` nodes, scored by one Dijkstra per group.

    Returns the number of medoids moved (``medoids`` is updated in place).
    """
    n, K = g.n, medoids.size
    label = top2.s1
    # nodes cluster by cluster, each cluster from its medoid outwards
    order = np.lexsort((top2.d1, label))
    sizes = np.bincount(label, minlength=K)
    starts = np.r_[0, np.cumsum(sizes)]
    rank_in_cluster = np.arange(n) - np.repeat(starts[:-1], sizes)
    current_cost = np.bincount(label, weights=top2.d1, minlength=K)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    coo = g.csr.tocoo()
    intra = label[coo.row] == label[coo.col]
    sub_all = sp.csr_matrix((coo.data[intra], (rank[coo.row[intra]], rank[coo.col[intra]])), shape=(n, n))
    moved = 0
    k = 0
    while k < K:
        k_end, total = k + 1, sizes[k]
        while k_end < K and total + sizes[k_end] <= _GROUP_NODES:
            total += sizes[k_end]
            k_end += 1
        lo, hi = starts[k], starts[k_end]
        cluster_of = np.repeat(np.arange(k_end - k), sizes[k:k_end])
        rows = np.flatnonzero(rank_in_cluster[lo:hi] < n_candidates)
        costs = _cluster_costs(sub_all[lo:hi, lo:hi], rows, cluster_of, device)
        # best row per cluster of the group
        by_cluster = np.lexsort((costs, cluster_of[rows]))
        first = np.flatnonzero(np.r_[True, np.diff(cluster_of[rows][by_cluster]) != 0])
        for pos in by_cluster[first]:
            kk = k + cluster_of[rows[pos]]
            node = order[lo + rows[pos]]
            if costs[pos] < current_cost[kk] * (1 - 1e-12) and node != medoids[kk]:
                medoids[kk] = node
                moved += 1
        k = k_end
    return moved


def _swap_gains(s1, d1, d2, K, n_cand, cpos, v, d, *, device):
    """FasterPAM's swap gains (Schubert & Rousseeuw, 2021, Alg. 2) for a batch of candidates.

    Parameters
    ----------
    s1, d1, d2 : ndarray of shape (N,)
        Slot of and distance to the nearest medoid, distance to the second.
    K, n_cand : int
    cpos, v, d : ndarray of shape (P,)
        Candidate position, node and d(x, node) for every node with
        d(x, node) < d2[node] (the only nodes that contribute).

    Returns
    -------
    delta : ndarray of shape (n_cand, K)
        Change of the loss when candidate c replaces the medoid in slot m
        (negative = better).
    """
    near = d < d1[v]
    t_near = torch.as_tensor(near, device=device)
    t_d = torch.as_tensor(d, device=device)
    t_d1 = torch.as_tensor(d1[v], device=device)
    t_d2 = torch.as_tensor(d2[v], device=device)
    t_c = torch.as_tensor(cpos, device=device)
    # gain shared by all removals: the nodes that move to x
    shared = torch.zeros(n_cand, dtype=torch.float64, device=device)
    shared.index_add_(0, t_c[t_near], (t_d - t_d1)[t_near])
    # per removed medoid: its removal loss (members fall back to their second
    # medoid), corrected where x is nearer than that second medoid
    removal = torch.as_tensor(np.bincount(s1, weights=d2 - d1, minlength=K), device=device)
    corr = torch.zeros(n_cand * K, dtype=torch.float64, device=device)
    corr.index_add_(0, t_c * K + torch.as_tensor(s1[v], device=device),
                    torch.where(t_near, t_d1 - t_d2, t_d - t_d2))
    return (removal[None, :] + corr.view(n_cand, K) + shared[:, None]).cpu().numpy()


def _swap_pass(g: _Graph, top2: _Top2, medoids: np.ndarray, candidates: np.ndarray,
               search: _PrunedSearch, *, batch_size: int, device: torch.device, progress=None) -> int:
    """One pass of FasterPAM-style swaps (Schubert & Rousseeuw, 2021, Alg. 2) over ``candidates``.

    FasterPAM's gain of swapping a non-medoid x in for medoid m needs, besides
    the removal loss of every medoid, only the nodes o with d(x, o) < ds(o)
    (ds: distance to the second-nearest medoid): ``_PrunedSearch`` finds
    exactly those. Candidates are evaluated ``batch_size`` at a time; per batch
    the (B, K) matrix of swap gains is accumulated on ``device`` and the
    improving swaps are applied best first, skipping any whose region (searched
    nodes plus the nodes that hold the removed medoid among their two nearest)
    overlaps one already applied in this batch. Non-overlapping swaps change
    the loss independently, so the loss falls by at least the sum of their
    gains; this stands in for FasterPAM's eager one-at-a-time swaps. A skipped
    candidate goes to the front of the next batch (once).

    Returns the number of swaps made; ``medoids`` and ``top2`` are updated.
    """
    n, K = g.n, medoids.size
    is_medoid = np.zeros(n, dtype=bool)
    is_medoid[medoids] = True
    retried = np.zeros(n, dtype=bool)
    mark = np.zeros(n, dtype=bool)
    swaps, pos = 0, 0
    retry = np.empty(0, dtype=np.int64)
    while pos < candidates.size or retry.size:
        take = max(batch_size - retry.size, 0)
        fresh = candidates[pos:pos + take]
        pos += fresh.size
        if progress is not None:
            progress.update(fresh.size)
        batch = np.concatenate([retry, fresh])
        retry = np.empty(0, dtype=np.int64)
        batch = batch[~is_medoid[batch]]
        if not batch.size:
            continue
        d1 = top2.d1
        # K = 1 has no second medoid: a finite stand-in larger than any
        # distance gives FasterPAM's formula the right totals
        d2 = top2.d2 if K > 1 else np.full(n, 2 * d1.max() + 1.0)
        cpos, v, d = search.run(batch, d2)
        delta = _swap_gains(top2.s1, d1, d2, K, batch.size, cpos, v, d, device=device)
        gain = delta.min(axis=1)
        # gains below round-off of the loss are not improvements
        eps = 1e-10 * max(float(d1.sum()), 1e-300)
        improving = np.flatnonzero(gain < -eps)
        if not improving.size:
            continue
        improving = improving[np.argsort(gain[improving], kind="stable")]
        seg = np.searchsorted(cpos, np.arange(batch.size + 1))
        # blocked[m]: removing slot m would touch a region already changed in this batch
        blocked = np.zeros(K, dtype=bool)
        touched, slots, new_nodes, skipped = [], [], [], []
        for c in improving:
            region = v[seg[c]:seg[c + 1]]
            if mark[region].any():
                slot = -1
            else:
                # many far-away candidates want the same cheapest medoid: take
                # the best slot still free rather than give up the candidate
                gains = np.where(blocked, np.inf, delta[c])
                slot = int(np.argmin(gains))
                if not gains[slot] < -eps:
                    slot = -1
            if slot < 0:
                if not retried[batch[c]]:
                    retried[batch[c]] = True
                    skipped.append(batch[c])
                continue
            holders = np.flatnonzero((top2.s1 == slot) | (top2.s2 == slot))
            for nodes in (region, holders):
                mark[nodes] = True
                blocked[top2.s1[nodes]] = True
                blocked[top2.s2[nodes][top2.s2[nodes] >= 0]] = True
                touched.append(nodes)
            slots.append(slot)
            new_nodes.append(batch[c])
        for t in touched:
            mark[t] = False
        retry = np.asarray(skipped, dtype=np.int64)
        slots = np.asarray(slots, dtype=np.int64)
        new_nodes = np.asarray(new_nodes, dtype=np.int64)
        is_medoid[medoids[slots]] = False
        is_medoid[new_nodes] = True
        medoids[slots] = new_nodes
        top2.replace(slots, new_nodes)
        swaps += slots.size
    return swaps


def geodesic_kmedoids(graph, n_clusters: int, *, seed: int = 0, max_iter: int = 3, n_swap_passes: int = 10,
                      candidate_fraction: float = 1.0, candidates_per_cluster: int = 32,
                      batch_size: int | None = None, medoid_candidates: int = 16, tol: float = 1e-3,
                      device=None, verbose: bool = False) -> GeodesicKMedoidsResult:
    """k-medoids on the geodesic distance of a graph, without any N x N matrix.

    Minimises the total deviation ``sum_i min_k d(i, m_k)`` over K medoid
    nodes, d the shortest-path distance in the undirected ``graph``, to
    within about 1 % of FasterPAM on the full geodesic matrix (measured on
    PCA-20 Fashion-MNIST, N = 5,000 and 20,000, K = 64 and 512).

    Algorithm
    ---------
    1. **Geodesic k-medoids++ seeding**: D^2 sampling (Arthur & Vassilvitskii,
       2007, "k-means++") with ``numpy.random.default_rng(seed)``; each new
       medoid updates the nearest-medoid distances by a search confined to
       its own cell (:class:`_PrunedSearch`).
    2. **Alternating** (Voronoi iteration; Park & Jun, 2009): assign every
       node to its nearest medoid, then move each medoid to the best of the
       ``medoid_candidates`` members nearest to it, scored by shortest paths
       inside the cluster (upper bounds, so the loss never rises); at most
       ``max_iter`` steps. Alone this stays 7-12 % above PAM.
    3. **Swaps**: up to ``n_swap_passes`` passes of FasterPAM's swap rule
       (Schubert & Rousseeuw, 2021, "Fast and eager k-medoids clustering",
       Alg. 2) over fresh random candidates, ``candidate_fraction`` of the
       nodes but at most ``candidates_per_cluster * K`` per pass, each pass
       followed by one alternating step; stop when a pass lowers the loss by
       less than ``tol`` (relative). The gain of swapping in x needs d(x, o)
       only where d(x, o) < ds(o), ds the distance to o's second-nearest
       medoid; ds is 1-Lipschitz, so a search from x pruned there is exact and
       visits x's would-be cell and its border (~1.5 N/K nodes), not N.
       Candidates are evaluated in batches (gains as a (B, K) tensor) and the
       improving swaps of a batch whose regions do not overlap are all applied
       (:func:`_swap_pass`).
    4. The result is read off one multi-source Dijkstra
       (``dijkstra(indices=medoids, min_only=True)``), independent of the
       bookkeeping above.

    The nearest and second-nearest medoid of every node are maintained by a
    two-label multi-source search (:class:`_Top2`); after a swap only the
    nodes that held the removed medoid, or that the new one enters, are
    searched again.

    Cost: with E ~ N k edges, the seeding and each alternating step touch
    O(E) edges (plus ``medoid_candidates`` N for the cluster scores), a swap
    pass about ``min(candidate_fraction N, candidates_per_cluster K) x 1.5
    N/K x k`` edges, i.e. O(N k candidates_per_cluster) at most. Memory is
    O(E + B N) with B = ``batch_size`` ((B, N) float64 and int32 scratch:
    92 MB at N = 60,000, K = 512) and dense blocks of at most 2^24 float64; nothing is
    N x N. Measured on 2 shared CPU cores (``benchmarks/results/geodesic.csv``):
    N = 60,000, d = 20, k = 10, K = 512: 15 s for graph and fit, 0.83 GB
    peak RSS (0.63 GB of it imports); N = 20,000: 2.3-2.8 s against 92 s and
    9.8 GB for Isomap + FasterPAM, with the loss within 0.5 %.

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
        Connected neighbour graph (:func:`knn_graph` then
        :func:`connect_components`), read as undirected.
    n_clusters : int
        Number of medoids K, 1 <= K <= N.
    seed : int, default=0
        Seed of the numpy Generator used for seeding and candidate order.
    max_iter : int, default=3
        Most alternating steps before the swap passes; 0 turns alternating
        off (also between passes).
    n_swap_passes : int, default=10
        Most passes of swaps (``tol`` usually ends them after 3-6); 0 gives
        k-medoids++ plus alternating only.
    candidate_fraction : float, default=1.0
        Fraction of the nodes tried as swap candidates per pass (a fresh random
        subset each pass), capped by ``candidates_per_cluster``.
    batch_size : int, optional
        Swap candidates evaluated together; memory 8 N batch_size bytes.
        Default ``clip(K // 4, 4, 256)``: roughly as many swaps fit side by
        side as there are groups of neighbouring clusters.
    medoid_candidates : int, default=16
        Members (nearest to the medoid) scored per cluster in an alternating
        step; more cost more and, measured, gain nothing once swaps follow.
    candidates_per_cluster : int, default=32
        Cap on swap candidates per pass, per medoid (K times this in all):
        what finds the improving swaps is how many candidates land in each
        cluster, and each candidate costs ~N/K, so this keeps a pass O(N k)
        whatever K. Small problems (N <= 32 K) get full passes.
    tol : float, default=1e-3
        Stop the swap passes when one lowers the loss by less than this
        fraction.
    device : str or torch.device, optional
        Where the dense parts (cluster distance blocks, swap gains) run; CPU by
        default, e.g. ``"cuda"``. The graph searches always run on the CPU.
    verbose : bool, default=False
        Print the loss after each phase and a tqdm bar over swap candidates.

    Returns
    -------
    GeodesicKMedoidsResult
        ``(medoids (K,), labels (N,), distances (N,), loss)``.

    Raises
    ------
    ValueError
        K < 1 or K > N, a non-square graph, negative or non-finite edge
        lengths, or a disconnected graph (call :func:`connect_components`).
    """
    graph = _check_kmedoids_input(graph, n_clusters)
    if not 0 < candidate_fraction <= 1:
        raise ValueError(f"candidate_fraction must be in (0, 1], got {candidate_fraction}.")
    if batch_size is None:
        batch_size = int(np.clip(n_clusters // 4, 4, 256))
    if min(batch_size, medoid_candidates, candidates_per_cluster) < 1 or min(max_iter, n_swap_passes) < 0:
        raise ValueError("batch_size, medoid_candidates and candidates_per_cluster must be >= 1, "
                         "max_iter and n_swap_passes >= 0.")
    device = torch.device(device) if device is not None else torch.device("cpu")
    n = graph.shape[0]
    rng = np.random.default_rng(seed)
    g = _Graph(graph)
    search = _PrunedSearch(g, batch_size=min(batch_size, n))

    def log(msg):
        if verbose:
            print(f"[geodesic_kmedoids] {msg}", flush=True)

    with _single_torch_thread(device):
        medoids = _kmedoids_plusplus(g, n_clusters, rng, search)
        top2 = _Top2(g)
        top2.reset(medoids)
        log(f"k-medoids++ seeding: loss {top2.d1.sum():.6g}")

        def alternate(steps):
            for _ in range(steps):
                if _update_medoids(g, top2, medoids, n_candidates=medoid_candidates, device=device) == 0:
                    break
                top2.reset(medoids)

        alternate(max_iter)
        log(f"alternating: loss {top2.d1.sum():.6g}")
        n_candidates = max(1, min(math.ceil(candidate_fraction * n), candidates_per_cluster * n_clusters))
        for p in range(n_swap_passes):
            before = top2.d1.sum()
            candidates = rng.permutation(n)[:n_candidates]
            progress = None
            if verbose:
                from tqdm import tqdm
                progress = tqdm(total=n_candidates, desc=f"swap pass {p + 1}", leave=False)
            swaps = _swap_pass(g, top2, medoids, candidates, search, batch_size=search.batch_size, device=device,
                               progress=progress)
            if progress is not None:
                progress.close()
            alternate(min(max_iter, 1))
            after = top2.d1.sum()
            log(f"swap pass {p + 1}: {swaps} swaps, loss {after:.6g}")
            if before - after <= tol * before:
                break

    # final assignment from one exact multi-source Dijkstra
    dist, _, src = dijkstra(g.csr, directed=True, indices=medoids, min_only=True, return_predecessors=True)
    slot_of = np.full(n, -1, dtype=np.int64)
    slot_of[medoids] = np.arange(n_clusters)
    labels = slot_of[src]
    distances = dist.astype(_out_dtype(graph), copy=False)
    return GeodesicKMedoidsResult(medoids=medoids.astype(np.int64), labels=labels, distances=distances,
                                  loss=float(dist.sum()))
