"""Neighbour search for geodesic quantizers at scale: duplicates collapsed, exact or HNSW.

A conv encoder's latent grid gives millions of vectors, many of them exact
duplicates (the all-zero background patch alone is 14 % of the Fashion-MNIST
grid). Two things follow, and this module does both:

* :func:`collapse_duplicates` turns the N vectors into U unique *nodes* with a
  multiplicity each; geodesic k-medoids then runs on the U nodes with the
  objective weighted by multiplicity (``geodesic.kmedoids.geodesic_kmedoids(...,
  weights=counts)``), which is the same objective as on the N vectors.
* :class:`NeighborIndex` finds neighbours among the nodes, once for the k-NN
  graph (:meth:`NeighborIndex.graph`) and again for out-of-sample queries
  (:meth:`NeighborIndex.kneighbors`), from the *same* index, so that a new
  point is linked into exactly the graph the medoids were fitted on.

Below ``exact_below`` nodes the neighbours are exact (scikit-learn, the graph of
:func:`geodesic.graph.knn_graph`); above, approximate with faiss's HNSW
(Malkov & Yashunin, 2018, "Efficient and robust approximate nearest neighbor
search using Hierarchical Navigable Small World graphs"). Chosen by
measurement on the grid stand-in (252,265 unique vectors of the 300k prefix,
PCA-16, k = 10, one thread, busy 2-core machine): faiss ``IndexHNSWFlat(M=16,
efConstruction=40)``, efSearch 32: 12.7 s to add + 8.8 s to search all,
recall@10 0.979; pynndescent 0.7 ``NNDescent``: 50 s (plus 168 s of numba
compilation in a fresh process), recall@10 0.991 (wall seconds; the machine
was loaded). The defaults (M 12, efConstruction 16, efSearch 12) trade some of
faiss's recall margin for time (see :class:`NeighborIndex`). Edge lengths are
always recomputed exactly from the vectors, so exact and HNSW give identical
lengths wherever they find the same neighbour.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from geodesic.graph import as_points, symmetrize

__all__ = ["EXACT_BELOW", "Collapsed", "collapse_duplicates", "NeighborIndex", "recall_at_k", "sample_recall"]

#: Default node count from which ``method="auto"`` switches from exact to HNSW
#: neighbours: scikit-learn's exact graph of 252,265 grid vectors took 97 s,
#: HNSW ~20 s; at 60,000 the exact graph takes ~4 s and is what Isomap builds.
EXACT_BELOW = 200_000


class Collapsed(NamedTuple):
    """Unique vectors of a set with duplicates (:func:`collapse_duplicates`).

    Attributes
    ----------
    points : ndarray of shape (U, d)
        The unique vectors, in order of first occurrence (``points[u]`` is the
        first input row of node u, the original values even when ``decimals``
        groups near-duplicates).
    inverse : ndarray of shape (N,), int64
        Node of every input row: ``Z[i]`` is (or, with ``decimals``, rounds
        like) ``points[inverse[i]]``.
    counts : ndarray of shape (U,), int64
        Multiplicity of each node, ``np.bincount(inverse)``.
    """

    points: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray


def _row_keys(X: np.ndarray) -> np.ndarray:
    """(N, d) float -> (N,) void keys that compare equal exactly when the rows are equal.

    ``+ 0.0`` turns -0.0 into +0.0, the one pair of equal floats with different bytes.
    """
    X = np.ascontiguousarray(X + X.dtype.type(0.0))
    return X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()


def collapse_duplicates(Z, *, decimals: int | None = None) -> Collapsed:
    """Collapse exact (or, with ``decimals``, rounded) duplicate rows into nodes.

    ``np.unique`` over the rows' bytes (3.6 s for 2.94M x 16 float32; the
    ``axis=0`` form takes several times longer), renumbered by first occurrence
    so that the nodes of a prefix of Z come first.

    Parameters
    ----------
    Z : array-like or torch.Tensor of shape (N, d)
    decimals : int, optional
        Group rows that are equal after ``np.round(Z, decimals)``; each node
        keeps its first row's original values. ``None`` (default): exact
        duplicates only, so that every input row lies exactly on its node and
        its geodesic distances are unchanged by the collapse.

    Returns
    -------
    Collapsed
        ``(points (U, d), inverse (N,), counts (U,))``.
    """
    Z = as_points(Z)
    keyed = Z if decimals is None else np.round(Z, decimals)
    _, first, inverse = np.unique(_row_keys(keyed), return_index=True, return_inverse=True)
    # np.unique orders nodes by bytes; number them by first occurrence instead
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    inverse = rank[inverse.ravel()].astype(np.int64)
    return Collapsed(points=Z[first[order]], inverse=inverse,
                     counts=np.bincount(inverse, minlength=order.size).astype(np.int64))


def recall_at_k(found_ids, true_ids) -> float:
    """Mean recall@k of approximate neighbour lists: |found_i & true_i| / k, averaged over i.

    Parameters
    ----------
    found_ids : array-like of int of shape (Q, k)
        Neighbours returned by the approximate search (any order; -1 = missing).
    true_ids : array-like of int of shape (Q, k)
        The exact k nearest neighbours of the same queries.

    Returns
    -------
    recall : float in [0, 1]
    """
    found, true = np.asarray(found_ids), np.asarray(true_ids)
    if found.shape != true.shape or found.ndim != 2 or found.shape[1] < 1:
        raise ValueError(f"found_ids and true_ids must both be (Q, k) with k >= 1, got {found.shape} and "
                         f"{true.shape}.")
    # sort each row and look every true id up in the found row: O(Q k log k)
    found = np.sort(found, axis=1)
    pos = np.stack([np.searchsorted(f, t) for f, t in zip(found, true)]) if len(found) else true
    hit = np.take_along_axis(found, np.minimum(pos, found.shape[1] - 1), axis=1) == true
    return float((hit & (true >= 0)).sum() / true.size) if true.size else 1.0


def _edge_lengths(A: np.ndarray, B: np.ndarray, ids: np.ndarray, dtype) -> np.ndarray:
    """||A[i] - B[ids[i, j]]|| for (Q, d) A, (U, d) B, (Q, k) ids, in float64, returned as ``dtype``.

    Recomputed from the vectors, not taken from the search, so that every
    method gives bit-identical lengths for the same pair.
    """
    diff = A[:, None, :].astype(np.float64) - B[ids].astype(np.float64)
    return np.sqrt(np.einsum("qkd,qkd->qk", diff, diff)).astype(dtype, copy=False)


@contextlib.contextmanager
def faiss_threads(n_threads: int | None):
    import faiss

    before = faiss.omp_get_max_threads()
    if n_threads is not None:
        faiss.omp_set_num_threads(n_threads)
    try:
        yield faiss
    finally:
        faiss.omp_set_num_threads(before)


class NeighborIndex:
    """k-nearest-neighbour index over the unique training vectors, for the graph and for queries.

    Parameters
    ----------
    Z : array-like or torch.Tensor of shape (N, d)
        Training vectors (float32 stays float32).
    n_neighbors : int, default=10
        k of the k-NN graph, and the default k of :meth:`kneighbors`.
    method : {"auto", "exact", "hnsw"}, default="auto"
        ``"exact"``: scikit-learn ``NearestNeighbors`` (the neighbours of
        ``knn_graph`` and ``Isomap``); ``"hnsw"``: faiss ``IndexHNSWFlat``;
        ``"auto"``: exact below ``exact_below`` unique vectors, else HNSW.
    exact_below : int, default=EXACT_BELOW (200,000)
    collapse : bool, default=True
        Build on the unique vectors (:func:`collapse_duplicates`) and expose
        their multiplicities as ``counts_``. ``False`` keeps every row as its
        own node (``counts_`` all ones); duplicates then share zero-length
        edges, as in ``knn_graph``.
    decimals : int, optional
        Near-duplicate tolerance of the collapse (see
        :func:`collapse_duplicates`); default exact duplicates only.
    hnsw_m, ef_construction, ef_search : int, default=12, 16, 12
        HNSW graph degree, build beam and search beam (faiss's names M,
        efConstruction, efSearch); the search beam is raised to k + 1 when
        smaller. Chosen on the 252,265 unique vectors of the grid stand-in's
        300k prefix (k = 10, CPU seconds of one thread to add + search all,
        recall@10 on 2,000 nodes): (16, 40, 32) 17.7 + 11.1 s, 0.982;
        (16, 24, 16) 15.1 + 8.1 s, 0.985; (16, 16, 12) 10.8 + 6.5 s, 0.968;
        (12, 16, 12) 8.6 + 5.0 s, 0.963; (8, 24, 16) 9.5 + 5.6 s, 0.941.
        Recall falls slowly with size: (16, 40, 32) gave 0.982 at 252k and
        0.975 on all 2,459,354 unique grid vectors.
    n_threads : int, optional, default=1
        OpenMP threads of faiss. One thread makes the HNSW graph independent
        of thread timing (same input, same graph); more are faster on an
        idle machine (all 2,940,000 grid stand-in vectors, graph and repair:
        204 s on one thread, 118 s on two, same recall@10 0.941;
        ``benchmarks/results/grid_scale.csv``). ``None`` uses faiss's default.
    seed : int, default=0
        Seed of HNSW's level draws.

    Attributes
    ----------
    points_ : ndarray of shape (U, d)
        The node vectors the index is built on.
    inverse_ : ndarray of shape (N,), int64
        Node of every training row.
    counts_ : ndarray of shape (U,), int64
        Multiplicity of every node (the ``weights`` of k-medoids).
    method_ : {"exact", "hnsw"}
        The method in use.
    """

    def __init__(self, Z, n_neighbors: int = 10, *, method: str = "auto", exact_below: int = EXACT_BELOW,
                 collapse: bool = True, decimals: int | None = None, hnsw_m: int = 12,
                 ef_construction: int = 16, ef_search: int = 12, n_threads: int | None = 1, seed: int = 0):
        if method not in ("auto", "exact", "hnsw"):
            raise ValueError(f"method must be 'auto', 'exact' or 'hnsw', got {method!r}.")
        if min(hnsw_m, ef_construction, ef_search) < 1 or (n_threads is not None and n_threads < 1):
            raise ValueError("hnsw_m, ef_construction, ef_search and n_threads must be >= 1.")
        Z = as_points(Z)
        if collapse:
            self.points_, self.inverse_, self.counts_ = collapse_duplicates(Z, decimals=decimals)
        else:
            self.points_ = Z
            self.inverse_ = np.arange(len(Z), dtype=np.int64)
            self.counts_ = np.ones(len(Z), dtype=np.int64)
        n = len(self.points_)
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or \
                not 1 <= n_neighbors < n:
            raise ValueError(f"n_neighbors={n_neighbors!r} must be an integer in [1, U-1] = [1, {n - 1}] "
                             f"(U = {n} unique vectors); pass a smaller n_neighbors.")
        self.n_neighbors = int(n_neighbors)
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.n_threads, self.seed = n_threads, seed
        self.method_ = method if method != "auto" else ("exact" if n < exact_below else "hnsw")
        # sorted keys of the nodes: a query equal to a node must find it at distance 0
        keys = _row_keys(self.points_)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        self._index = self._build()

    # ------------------------------------------------------------------
    def _build(self):
        if self.method_ == "exact":
            from sklearn.neighbors import NearestNeighbors

            return NearestNeighbors(n_neighbors=self.n_neighbors).fit(self.points_)
        with faiss_threads(self.n_threads) as faiss:
            index = faiss.IndexHNSWFlat(self.points_.shape[1], self.hnsw_m)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.rng = faiss.RandomGenerator(self.seed)
            index.add(np.ascontiguousarray(self.points_, dtype=np.float32))
        return index

    def _search(self, Q: np.ndarray, k: int) -> np.ndarray:
        """(B, d) -> (B, k) ids of (approximately) nearest nodes, nearest first; -1 where none."""
        if self.method_ == "exact":
            return self._index.kneighbors(Q, n_neighbors=k, return_distance=False)
        with faiss_threads(self.n_threads):
            self._index.hnsw.efSearch = max(self.ef_search, k)
            _, ids = self._index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        return ids

    def node_of(self, Q) -> np.ndarray:
        """(B, d) -> (B,) node equal to each query row, -1 where none is."""
        keys = _row_keys(np.asarray(Q, dtype=self.points_.dtype))
        pos = np.minimum(np.searchsorted(self._sorted_keys, keys), len(self._sorted_keys) - 1)
        return np.where(self._sorted_keys[pos] == keys, self._key_order[pos], -1)

    def kneighbors(self, Q, k: int | None = None, *, batch_size: int = 65_536):
        """The k nearest nodes of each query, with exact Euclidean edge lengths.

        What an out-of-sample point needs to be linked into the graph (the
        rule of ``Isomap.transform``): its geodesic distance to a medoid m is
        ``min_j (dist[j] + d(ids[j], m))``. A query equal to a node always
        gets that node first, at distance 0 (HNSW could miss it otherwise),
        and a query equal to training node u gets, from the same search as
        the graph, u and neighbours of u in the graph; so the rule gives a
        training point exactly its node's geodesic distances.

        Parameters
        ----------
        Q : array-like or torch.Tensor of shape (B, d)
        k : int, optional
            Default ``n_neighbors``.
        batch_size : int, default=65,536
            Queries searched together (bounds the (batch, k, d) float64 scratch).

        Returns
        -------
        dist : ndarray of shape (B, k)
            ``||Q[i] - points_[ids[i, j]]||`` in the points' dtype, ascending.
        ids : ndarray of shape (B, k), int64
            Node indices in [0, U).
        """
        Q = as_points(Q)
        k = self.n_neighbors if k is None else int(k)
        if Q.shape[1] != self.points_.shape[1]:
            raise ValueError(f"Q has dimension {Q.shape[1]} but the index holds dimension "
                             f"{self.points_.shape[1]}.")
        if not 1 <= k <= len(self.points_):
            raise ValueError(f"k={k} must be in [1, {len(self.points_)}].")
        out = [self._lists(Q[s:s + batch_size], self.node_of(Q[s:s + batch_size]), k, drop_own=False)
               for s in range(0, len(Q), batch_size)]
        return np.concatenate([d for d, _ in out]), np.concatenate([i for _, i in out])

    def _lists(self, q: np.ndarray, own: np.ndarray, k: int, *, drop_own: bool):
        """Neighbour lists of queries ``q`` whose own node is ``own`` (-1: none), sorted by exact length.

        Always one search for ``n_neighbors + 1``, for the graph and for
        queries alike, so that a training vector's query neighbours are its
        own node and its graph neighbours. ``drop_own``: the graph's lists
        (own node left out, ``n_neighbors`` kept), else own node first and
        ``k`` kept.
        """
        ids = self._search(q, min(max(k, self.n_neighbors) + 1, len(self.points_)))
        ids = self._put_first(ids, own)
        ids = ids[:, 1:k + 1] if drop_own else ids[:, :k]
        d = _edge_lengths(q, self.points_, np.maximum(ids, 0), self.points_.dtype)
        d[ids < 0] = np.inf
        order = np.argsort(d, axis=1, kind="stable")
        return np.take_along_axis(d, order, axis=1), np.take_along_axis(ids, order, axis=1).astype(np.int64)

    @staticmethod
    def _put_first(ids: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` (B, k) with ``own[i]`` first (where ``own[i] >= 0``) and not repeated.

        Where ``own[i]`` was missing from the row, the row's last id drops out;
        where it was there, it moves to the front. -1 (no neighbour) entries go last.
        """
        aug = np.concatenate([own[:, None], ids], axis=1)
        gone = np.concatenate([(own < 0)[:, None], (ids == own[:, None]) | (ids < 0)], axis=1)
        order = np.argsort(gone, axis=1, kind="stable")[:, :ids.shape[1]]
        out = np.take_along_axis(aug, order, axis=1)
        out[np.take_along_axis(gone, order, axis=1)] = -1
        return out

    def node_neighbors(self, nodes=None, *, batch_size: int = 65_536):
        """The ``n_neighbors`` neighbours of existing nodes, themselves excluded: the graph's edge lists.

        Exact method: the neighbours of ``knn_graph(points_)``; HNSW: each
        node's search for k + 1 with the node itself dropped (or, where the
        search missed it, the farthest).

        Parameters
        ----------
        nodes : array-like of int of shape (S,), optional
            Default all U nodes.

        Returns
        -------
        dist : ndarray of shape (S, k)
            Exact Euclidean lengths, ascending (``inf`` where the search found fewer).
        ids : ndarray of shape (S, k), int64
            Neighbour nodes (-1 where none).
        """
        nodes = np.arange(len(self.points_)) if nodes is None else np.asarray(nodes, dtype=np.int64).ravel()
        out = [self._lists(self.points_[nodes[s:s + batch_size]], nodes[s:s + batch_size], self.n_neighbors,
                           drop_own=True) for s in range(0, nodes.size, batch_size)]
        return np.concatenate([d for d, _ in out]), np.concatenate([i for _, i in out])

    def graph(self) -> sp.csr_matrix:
        """Symmetric k-NN graph of the nodes, (U, U) CSR, Euclidean edge lengths in the points' dtype.

        Edge i-j when j is among the ``n_neighbors`` nearest of i or i among
        those of j (``knn_graph``'s reading), from :meth:`node_neighbors`.
        Not repaired: pass it to
        ``geodesic.graph.connect_components(graph, index.points_)``.
        """
        dist, ids = self.node_neighbors()
        ok = ids >= 0
        rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)[ok]
        return symmetrize(rows, ids[ok], dist[ok], len(self.points_), reduce=np.maximum)


def sample_recall(index: NeighborIndex, n_sample: int = 1000, *, seed: int = 0) -> float:
    """recall@k of an index's graph neighbours against exact search, on a random sample of nodes.

    The exact k nearest of each sampled node (itself excluded) come from
    brute force over all U nodes (scikit-learn ``NearestNeighbors(algorithm=
    "brute")``, O(n_sample U d) time, chunked memory); the found ones from
    :meth:`NeighborIndex.node_neighbors`.

    Parameters
    ----------
    index : NeighborIndex
    n_sample : int, default=1000
        Nodes sampled without replacement (all when U is smaller).
    seed : int, default=0

    Returns
    -------
    recall : float
        :func:`recall_at_k` of the two (n_sample, k) lists.
    """
    from sklearn.neighbors import NearestNeighbors

    n, k = len(index.points_), index.n_neighbors
    sample = np.random.default_rng(seed).choice(n, min(n_sample, n), replace=False)
    exact = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(index.points_)
    true = NeighborIndex._put_first(exact.kneighbors(index.points_[sample], return_distance=False), sample)[:, 1:]
    return recall_at_k(index.node_neighbors(sample)[1], true)
