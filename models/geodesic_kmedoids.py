"""Geodesic k-medoids as a scikit-learn estimator: :class:`GeodesicKMedoids`.

The research algorithm (:func:`geodesic.kmedoids.geodesic_kmedoids` on the
repaired k-NN graph of :mod:`geodesic.ann` / :mod:`geodesic.graph`) behind
scikit-learn's contract: ``fit(X, y=None, sample_weight=None) -> self``,
``predict``, ``fit_predict``, ``transform``, learned state with a trailing
underscore, ``get_params`` / ``set_params`` from the constructor, and it
passes ``sklearn.utils.estimator_checks`` (except the checks listed in
:data:`EXPECTED_FAILED_CHECKS`, each with its reason). It is the one
implementation: :class:`models.geodesic_vq.GeodesicQuantizer` fits through
:meth:`GeodesicKMedoids.fit_graph` and assigns new latents with
:func:`through_nearest`.
"""
from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from geodesic.ann import EXACT_BELOW, NeighborIndex, collapse_duplicates
from geodesic.graph import connect_components, geodesic_distances
from geodesic.kmeans_init import kmeans_init_nodes
from geodesic.kmedoids import geodesic_kmedoids

__all__ = ["EXPECTED_FAILED_CHECKS", "GeodesicKMedoids", "NodeGraph", "build_node_graph", "through_nearest"]

#: scikit-learn estimator checks that cannot hold for a graph method, with the reason
#: (``parametrize_with_checks(..., expected_failed_checks=...)`` in tests/test_geodesic_kmedoids.py).
EXPECTED_FAILED_CHECKS = {
    "check_transformer_n_iter": (
        "max_iter caps the alternating steps of geodesic.kmedoids.geodesic_kmedoids, which does "
        "not report how many alternating steps and swap passes ran, so there is no n_iter_ to "
        "give (inventing one would mislead)"),
}


class NodeGraph(NamedTuple):
    """The graph geodesic k-medoids is fitted on, with the index that built it.

    ``index.points_`` (U, d) are the unique vectors (the nodes),
    ``index.counts_`` (U,) their multiplicities and ``index.inverse_`` (N,)
    the node of each input row; ``graph`` is the repaired symmetric (U, U)
    k-NN graph. Without duplicates U = N and node i is row i.
    """

    index: NeighborIndex
    graph: sp.csr_matrix


def build_node_graph(Z: np.ndarray, n_neighbors: int, *, neighbors: str = "auto",
                     exact_below: int = EXACT_BELOW, seed: int = 0, stacklevel: int = 2) -> NodeGraph:
    """The repaired symmetric k-NN graph of Z's unique rows, Euclidean edge lengths.

    Parameters
    ----------
    Z : ndarray of shape (N, d)
    n_neighbors : int
        k, in [1, U - 1] for U unique rows.
    neighbors : {"auto", "exact", "hnsw"}
        See :class:`geodesic.ann.NeighborIndex`.
    exact_below, seed : int
    stacklevel : int
        Where the "graph was disconnected" warning points (Isomap's repair:
        :func:`geodesic.graph.connect_components`).

    Returns
    -------
    NodeGraph
    """
    index = NeighborIndex(Z, n_neighbors, method=neighbors, exact_below=exact_below, seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = connect_components(index.graph(), index.points_)
    for w in caught:
        warnings.warn(str(w.message), w.category, stacklevel=stacklevel + 1)
    return NodeGraph(index, graph)


def through_nearest(edge: np.ndarray, nbr: np.ndarray, node_labels: np.ndarray,
                    node_distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest medoid of points linked into the graph: Isomap's out-of-sample rule.

    A point joined to training nodes j by edges e_j reaches medoid m at
    min_j (e_j + d(j, m)); minimised over m this is min_j (e_j + dn(j)), dn(j)
    the distance of node j to its own medoid, so only (U,) labels and
    distances are needed.

    Parameters
    ----------
    edge : ndarray of shape (B, k)
        Edge lengths to the k neighbour nodes.
    nbr : ndarray of shape (B, k), int
        The neighbour nodes.
    node_labels : ndarray of shape (U,), int
    node_distances : ndarray of shape (U,)

    Returns
    -------
    labels : ndarray of shape (B,), int64
    distances : ndarray of shape (B,), float32
    """
    through = edge + node_distances[nbr]
    best = through.argmin(axis=1)  # the first minimum: a node the point equals comes first
    rows = np.arange(len(edge))
    return node_labels[nbr[rows, best]].astype(np.int64), through[rows, best].astype(np.float32)


class GeodesicKMedoids(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """k-medoids on the geodesic (shortest-path) distance of the k-NN graph of X.

    ``fit`` collapses exact duplicate rows of X into weighted nodes (weights:
    the summed ``sample_weight`` of their rows; rows of weight 0 are left out
    of the graph, as if removed), builds the symmetric k-NN graph of the
    nodes with Euclidean edge lengths (exact neighbours below
    ``exact_below`` nodes, faiss HNSW above), joins its connected components
    with a warning as Isomap does, and minimises the weighted total geodesic
    deviation ``sum_i w_i min_m d(x_i, x_m)`` over K medoids with
    :func:`geodesic.kmedoids.geodesic_kmedoids` (geodesic k-medoids++, Park
    & Jun alternation, FasterPAM swaps; within about 1 % of FasterPAM on the
    full geodesic matrix).

    ``predict`` and ``transform`` of any point, training or new, link it into
    the fitted graph through its ``n_neighbors`` nearest nodes (edges e_j)
    and take min_j (e_j + d(j, m)) as its geodesic distance to medoid m: the
    rule of scikit-learn's ``Isomap.transform``, never the Euclidean-nearest
    medoid. A training point is its own nearest node at distance 0, so it
    gets exactly its training label and its Dijkstra distances.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of medoids K.
    n_neighbors : int, default=10
        k of the k-NN graph; above U - 1 (U distinct points) it is lowered to
        U - 1 with a warning (the graph is then complete).
    neighbors : {"auto", "exact", "hnsw"}, default="auto"
        Neighbour search (:class:`geodesic.ann.NeighborIndex`).
    exact_below : int, default=200,000
        ``neighbors="auto"`` uses exact neighbours below this many nodes.
    max_iter, n_swap_passes, candidate_fraction, candidates_per_cluster, medoid_candidates, tol
        Options of :func:`geodesic.kmedoids.geodesic_kmedoids` (same names
        and defaults as :class:`models.geodesic_vq.GeodesicQuantizer`).
    max_swap_visits : int, "auto" or None, default="auto"
        The swap phase's work cap in visited (candidate, node) pairs
        (:func:`geodesic.kmedoids.geodesic_kmedoids`): the time/loss knob at
        10^5-10^6 nodes. At 300,000 vectors (252,265 nodes, K = 512)
        ``32 * n_nodes`` cuts the fit from 44 s to 15 s (graph + fit 20 s,
        22x faiss k-means) for 1.7% more loss, still 4.6% below CLARA's
        (``benchmarks/results/grid_kmeans_prefix.csv``); 0 skips the swaps.
    init : {"k-medoids++", "k-means"}, default="k-medoids++"
        Starting medoids: geodesic k-medoids++, or faiss k-means on the nodes
        (weighted by node weight, 20 iterations, seeded like the rest, the
        nodes in lexicographic order so that X's row order does not matter)
        with each centroid snapped to its nearest distinct node
        (:func:`geodesic.kmeans_init.kmeans_init_nodes`).
    device : str, default="cpu"
        Torch device of the swap gains.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-medoids++ draws (or k-means) and the HNSW levels; an int is used as
        the seed itself (``GeodesicQuantizer(seed=s)`` fits the same medoids).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,), int64
        Cluster of every training row, in [0, K).
    medoid_indices_ : ndarray of shape (K,), int64
        Row of X of each medoid (its first row when it has duplicates).
    cluster_centers_ : ndarray of shape (K, n_features)
        ``X[medoid_indices_]``.
    inertia_ : float
        The weighted total geodesic deviation ``sum_i w_i d(x_i, medoid)``
        (distances, not squared distances: the k-medoids objective).
    n_features_in_ : int
    nodes_ : ndarray of shape (U, n_features)
        The distinct training rows of positive weight (graph nodes).
    node_weights_, node_labels_, node_distances_ : ndarray of shape (U,)
        Weight, cluster and geodesic distance to its medoid of every node.
    medoid_nodes_ : ndarray of shape (K,), int64
        Node of each medoid.
    graph_ : scipy.sparse.csr_matrix of shape (U, U)
        The repaired k-NN graph.
    index_ : geodesic.ann.NeighborIndex or None
        Neighbour index over the nodes (None when U = 1).
    """

    def __init__(self, n_clusters: int = 8, *, n_neighbors: int = 10, neighbors: str = "auto",
                 exact_below: int = EXACT_BELOW, max_iter: int = 3, n_swap_passes: int = 10,
                 candidate_fraction: float = 1.0, candidates_per_cluster: int = 32,
                 medoid_candidates: int = 16, tol: float = 1e-3, max_swap_visits="auto",
                 init: str = "k-medoids++", device: str = "cpu", random_state=None):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.neighbors = neighbors
        self.exact_below = exact_below
        self.max_iter = max_iter
        self.n_swap_passes = n_swap_passes
        self.candidate_fraction = candidate_fraction
        self.candidates_per_cluster = candidates_per_cluster
        self.medoid_candidates = medoid_candidates
        self.tol = tol
        self.max_swap_visits = max_swap_visits
        self.init = init
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # geodesics are computed in the points' own precision (float32 in, float32 out)
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _check_params(self) -> None:
        def integer(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        for name, low in (("n_clusters", 1), ("n_neighbors", 1), ("exact_below", 0), ("max_iter", 0),
                          ("n_swap_passes", 0), ("candidates_per_cluster", 1), ("medoid_candidates", 1)):
            integer(name, low)
        if self.neighbors not in ("auto", "exact", "hnsw"):
            raise ValueError(f"neighbors must be 'auto', 'exact' or 'hnsw', got {self.neighbors!r}")
        if not (isinstance(self.candidate_fraction, numbers.Real) and 0 < self.candidate_fraction <= 1):
            raise ValueError(f"candidate_fraction must be in (0, 1], got {self.candidate_fraction!r}")
        if not (isinstance(self.tol, numbers.Real) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        cap = self.max_swap_visits
        if not (cap is None or (isinstance(cap, str) and cap == "auto") or (
                isinstance(cap, numbers.Integral) and not isinstance(cap, bool) and cap >= 0)):
            raise ValueError(f"max_swap_visits must be an integer >= 0, 'auto' or None, got {cap!r}")
        if not (isinstance(self.init, str) and self.init in ("k-medoids++", "k-means")):
            raise ValueError(f"init must be 'k-medoids++' or 'k-means', got {self.init!r}")

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _kmedoids_options(self) -> dict:
        return {"max_iter": self.max_iter, "n_swap_passes": self.n_swap_passes,
                "candidate_fraction": self.candidate_fraction,
                "candidates_per_cluster": self.candidates_per_cluster,
                "medoid_candidates": self.medoid_candidates, "tol": self.tol,
                "max_swap_visits": self.max_swap_visits, "device": self.device}

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None):
        """Fit the medoids.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values; float32 stays float32.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row (default 1); a row of weight w
            counts as w copies of it, a row of weight 0 as absent.

        Returns
        -------
        self
        """
        self._check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        present = np.flatnonzero(weights > 0)
        if len(present) < self.n_clusters:
            raise ValueError(f"n_samples={len(present)} (of positive weight) should be >= "
                             f"n_clusters={self.n_clusters}; lower n_clusters")
        seed = self._seed()
        nodes = collapse_duplicates(X[present])
        n_nodes = len(nodes.points)
        node_weights = np.bincount(nodes.inverse, weights=weights[present], minlength=n_nodes)
        if n_nodes == 1:
            self._fit_one_node(nodes.points, node_weights)
        else:
            k = min(self.n_neighbors, n_nodes - 1)
            if k < self.n_neighbors:
                warnings.warn(f"n_neighbors={self.n_neighbors} is not below the {n_nodes} distinct "
                              f"points; using {k} (the complete graph)", stacklevel=2)
            index = NeighborIndex(nodes.points, k, method=self.neighbors, exact_below=self.exact_below,
                                  collapse=False, seed=seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                graph = connect_components(index.graph(), index.points_)
            for w in caught:
                warnings.warn(str(w.message), w.category, stacklevel=2)
            self._fit_nodes(NodeGraph(index, graph), node_weights, seed)
        _, first = np.unique(nodes.inverse, return_index=True)  # first row of every node
        self.medoid_indices_ = present[first[self.medoid_nodes_]].astype(np.int64)
        self.cluster_centers_ = X[self.medoid_indices_]
        # rows of weight 0 are not nodes: the out-of-sample rule labels them (and gives the
        # others their node's label, since a node is its own nearest at distance 0)
        self.labels_ = self._assign(X)[0]
        return self

    def fit_graph(self, node_graph: NodeGraph, weights=None):
        """Fit the medoids on a graph already built (shared between several K, or
        with other edge lengths, as :class:`~models.geodesic_vq.GeodesicQuantizer` does).

        Parameters
        ----------
        node_graph : NodeGraph
            From :func:`build_node_graph`; its index's rows are the training rows.
        weights : array-like of shape (U,), optional
            Node weights; default the multiplicities ``node_graph.index.counts_``.

        Returns
        -------
        self
        """
        self._check_params()
        index = node_graph.index
        if weights is None:
            weights = index.counts_
        if self.n_clusters > len(index.points_):
            raise ValueError(f"n_clusters={self.n_clusters} is more than the {len(index.points_)} "
                             f"nodes of the graph")
        self._fit_nodes(node_graph, np.asarray(weights, dtype=np.float64), self._seed())
        self.n_features_in_ = index.points_.shape[1]
        self.cluster_centers_ = self.nodes_[self.medoid_nodes_]
        _, first = np.unique(index.inverse_, return_index=True)
        self.medoid_indices_ = first[self.medoid_nodes_].astype(np.int64)
        self.labels_ = self.node_labels_[index.inverse_]
        return self

    def _fit_nodes(self, node_graph: NodeGraph, node_weights: np.ndarray, seed: int) -> None:
        nodes = node_graph.index.points_
        n_fit = min(self.n_clusters, len(nodes))
        if n_fit < self.n_clusters:
            warnings.warn(f"only {len(nodes)} distinct points for n_clusters={self.n_clusters}: "
                          f"every point is a medoid and the medoids repeat", stacklevel=3)
        # weights None when all ones: the unweighted path of geodesic_kmedoids (the same objective)
        weights = None if (node_weights == 1).all() else node_weights
        init = "k-medoids++" if self.init == "k-medoids++" else self._kmeans_start(nodes, weights, n_fit, seed)
        result = geodesic_kmedoids(node_graph.graph, n_fit, seed=seed, weights=weights, init=init,
                                   **self._kmedoids_options())
        self._set_nodes(nodes, node_weights, node_graph.graph, node_graph.index, result.medoids,
                        result.labels, result.distances, float(result.loss))

    @staticmethod
    def _kmeans_start(nodes: np.ndarray, weights, n_fit: int, seed: int) -> np.ndarray:
        """(n_fit,) node indices: :func:`kmeans_init_nodes` on the nodes in lexicographic order.

        faiss draws its first centroids (and its subsample) by row position, so
        the same data in another row order (weights against repeated rows)
        would start, and number the clusters, differently; sorted, it does not.
        """
        order = np.lexsort(nodes.T[::-1])
        return order[kmeans_init_nodes(nodes[order], None if weights is None else weights[order], n_fit, seed)]

    def _fit_one_node(self, nodes: np.ndarray, node_weights: np.ndarray) -> None:
        warnings.warn(f"X holds one distinct vector: all {self.n_clusters} medoids are that "
                      f"vector and every point is in cluster 0", stacklevel=3)
        one = np.zeros(1, dtype=np.int64)
        self._set_nodes(nodes, node_weights, sp.csr_matrix((1, 1), dtype=nodes.dtype), None, one, one,
                        np.zeros(1, dtype=nodes.dtype), 0.0)

    def _set_nodes(self, nodes, node_weights, graph, index, medoids, labels, distances, loss) -> None:
        self.nodes_ = nodes
        self.node_weights_ = node_weights
        self.graph_ = graph
        self.index_ = index
        self.medoid_nodes_ = np.resize(np.asarray(medoids, dtype=np.int64), self.n_clusters)
        self.node_labels_ = np.asarray(labels, dtype=np.int64)
        self.node_distances_ = np.asarray(distances)
        self.inertia_ = loss
        self._n_features_out = self.n_clusters

    # ------------------------------------------------------------------ new points
    def _links(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, d) -> edge lengths (B, k) and neighbour nodes (B, k) linking X into the graph."""
        if self.index_ is None:  # one node: its edge is the only path
            diff = X.astype(np.float64) - self.nodes_[0].astype(np.float64)
            return np.sqrt((diff * diff).sum(1, keepdims=True)), np.zeros((len(X), 1), dtype=np.int64)
        X = X.astype(self.nodes_.dtype, copy=False)
        # A row equal to node u is linked to u alone at length 0: exactly u's geodesics, and no
        # search (HNSW may return neighbours that are not u's graph edges)
        own = self.index_.node_of(X)
        miss = own < 0
        edge = np.zeros((len(X), self.index_.n_neighbors))
        nbr = np.repeat(own[:, None], self.index_.n_neighbors, axis=1).astype(np.int64)
        if miss.any():
            found, ids = self.index_.kneighbors(X[miss])
            edge[miss], nbr[miss] = found, ids
        return edge, nbr

    def _assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edge, nbr = self._links(X)
        return through_nearest(edge, nbr, self.node_labels_, self.node_distances_.astype(np.float64))

    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def predict(self, X):
        """Cluster of each row: the medoid at the least geodesic distance.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        return self._assign(self._check_X(X))[0]

    def assign(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Cluster of each row and its geodesic distance to that medoid, without the
        (n_samples, K) matrix of :meth:`transform` (O(k) per row after the search).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        distances : ndarray of shape (n_samples,), float32
        """
        return self._assign(self._check_X(X))

    def transform(self, X):
        """Geodesic distance of each row to each medoid, through the fitted graph.

        One Dijkstra run per medoid gives d(j, m) for every node j; a row
        linked to its nearest nodes by edges e_j is at min_j (e_j + d(j, m))
        from medoid m. Computed on every call (K x U distances are not kept,
        so that a large fit holds O(U) memory), in batches of rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters), X's float dtype
        """
        X = self._check_X(X)
        medoid_rows = geodesic_distances(self.graph_, self.medoid_nodes_).astype(np.float64)  # (K, U)
        out = np.empty((len(X), self.n_clusters), dtype=X.dtype)
        step = max(1, 2**22 // max(1, self.n_clusters * (self.index_.n_neighbors if self.index_ else 1)))
        for start in range(0, len(X), step):
            edge, nbr = self._links(X[start:start + step])  # (B, k) each
            out[start:start + step] = (edge[None] + medoid_rows[:, nbr]).min(axis=2).T
        return out

    def __getstate__(self):
        state = super().__getstate__()
        index = state.get("index_")
        if index is not None and index.method_ == "hnsw":  # a faiss index does not pickle: rebuilt
            state = {**state, "index_": ("hnsw", index.n_neighbors, index.seed)}
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if isinstance(getattr(self, "index_", None), tuple):
            # the nodes are unique and HNSW is seeded and single-threaded: the same index
            _, k, seed = self.index_
            self.index_ = NeighborIndex(self.nodes_, k, method="hnsw", collapse=False, seed=seed)
