"""A-posteriori quantizers of a trained VAE's latent space.

* :class:`GeodesicQuantizer` - geodesic k-medoids on the k-NN graph of the
  training latents (Isomap's geodesics); the codebook is K medoid latents.
  It fits through the scikit-learn estimator
  :class:`models.geodesic_kmedoids.GeodesicKMedoids` (one implementation).
* :class:`EuclideanQuantizer` - k-means on the same latents: the ablation that
  separates "a posteriori" from "geodesic".

Both follow scikit-learn's contract: ``fit(Z) -> self``, learned state with a
trailing underscore, ``quantize(Z) -> (indices, codes)``, validation at the
boundary, and ``state_dict()`` / ``load_state_dict()`` of tensors and plain
values for the shared checkpoint helpers.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from geodesic.ann import EXACT_BELOW, NeighborIndex
from models.geodesic_kmedoids import GeodesicKMedoids, NodeGraph, build_node_graph, through_nearest
from utils import methods as methods_registry


class NotFittedError(ValueError):
    """quantize() or codebook before fit()."""


class Quantized(NamedTuple):
    indices: torch.Tensor  # (B,) int64 code index in [0, K)
    codes: torch.Tensor  # (B, d) codebook vectors
    distances: torch.Tensor  # (B,) distance to the code (geodesic or Euclidean)


def as_latents(Z, *, dim: int | None = None, name: str = "Z") -> np.ndarray:
    """Validate latents: a finite 2-D array (N, d), with d == ``dim`` when given.

    Returns a float32 numpy array (a copy only when needed).
    """
    if isinstance(Z, torch.Tensor):
        Z = Z.detach().cpu().numpy()
    Z = np.asarray(Z, dtype=np.float32)
    if Z.ndim != 2 or Z.shape[0] < 1:
        raise ValueError(f"{name} must be a 2-D array (N, d) of latents, got shape {Z.shape}")
    if dim is not None and Z.shape[1] != dim:
        raise ValueError(f"{name} has latent dimension {Z.shape[1]} but the quantizer was fitted "
                         f"on dimension {dim}; encode with the same VAE")
    if not np.isfinite(Z).all():
        bad = int((~np.isfinite(Z)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or inf in {bad} rows; check the encoder's output")
    return Z


def _check_counts(n_codes: int, n_points: int, n_neighbors: int | None = None) -> None:
    if not isinstance(n_codes, (int, np.integer)) or n_codes < 1:
        raise ValueError(f"n_codes must be an integer >= 1, got {n_codes!r}")
    if n_codes > n_points:
        raise ValueError(f"n_codes K={n_codes} is larger than the number of points N={n_points}; "
                         f"use K <= N")
    if n_neighbors is not None:
        if not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 1:
            raise ValueError(f"n_neighbors k must be an integer >= 1, got {n_neighbors!r}")
        if n_neighbors >= n_points:
            raise ValueError(f"n_neighbors k={n_neighbors} needs more than k points, got N={n_points}")


def warn_if_codes_coincide(codebook: np.ndarray, n_codes: int, *, stacklevel: int = 2) -> int:
    """Warn when fewer than K of the (K, d) code vectors are distinct (latents with many
    duplicates leave fewer distinct points than codes); returns the distinct count."""
    # Centroids of identical points differ by rounding only: count codes within a relative
    # 1e-5 of an earlier one as the same (K x K is small: K is a codebook size); relative
    # to the largest code, so that latents of magnitude 1e-25 are not all "the same".
    c = np.asarray(codebook, dtype=np.float64)
    c = c / max(float(np.abs(c).max(initial=0.0)), np.finfo(np.float64).tiny)
    d2 = (c * c).sum(1)[:, None] - 2 * c @ c.T + (c * c).sum(1)[None]
    tol = 1e-5 ** 2
    same_as_earlier = np.tril(d2 <= tol, k=-1).any(axis=1)
    distinct = int(len(c) - same_as_earlier.sum())
    if distinct < n_codes:
        warnings.warn(f"only {distinct} of the {n_codes} code vectors are distinct: the latents "
                      f"hold fewer distinct points than codes (duplicates); codes that coincide "
                      f"are never both used, so the effective codebook size is {distinct}",
                      stacklevel=stacklevel + 1)
    return distinct


class _Quantizer:
    """Shared contract: fitted check, codebook, quantize in chunks, state_dict."""

    _state_keys: tuple[str, ...] = ()
    _optional_state: frozenset[str] = frozenset()  # state keys older checkpoints may lack
    _config_keys: tuple[str, ...] = ()

    def _reset_caches(self) -> None:
        """Drop anything derived from the fitted state (none by default)."""

    def _check_fitted(self) -> None:
        if getattr(self, "codebook_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(Z) first")

    @property
    def codebook(self) -> torch.Tensor:
        """(K, d) float32 code vectors."""
        self._check_fitted()
        return torch.from_numpy(self.codebook_)

    @property
    def n_features_(self) -> int:
        self._check_fitted()
        return self.codebook_.shape[1]

    def quantize(self, Z, batch_size: int = 4096) -> Quantized:
        """Z (B, d) -> Quantized(indices (B,), codes (B, d), distances (B,))."""
        self._check_fitted()
        return self._quantize_rows(as_latents(Z, dim=self.n_features_), batch_size)

    def _quantize_rows(self, Z: np.ndarray, batch_size: int, *per_row: np.ndarray) -> Quantized:
        """:meth:`_assign` batch by batch; ``per_row``: arrays with one entry per row of Z
        (a GeodesicQuantizer's metrics), batched alongside it."""
        idx, dist = [], []
        for start in range(0, len(Z), batch_size):
            rows = slice(start, start + batch_size)
            i, d = self._assign(Z[rows], *(a[rows] for a in per_row))
            idx.append(i)
            dist.append(d)
        indices = torch.from_numpy(np.concatenate(idx).astype(np.int64))
        return Quantized(indices, self.codebook[indices], torch.from_numpy(np.concatenate(dist)))

    def state_dict(self) -> dict:
        """Learned arrays as tensors plus the constructor config (plain values)."""
        self._check_fitted()
        state = {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
                 for k in self._state_keys
                 if not (k in self._optional_state and getattr(self, k, None) is None)}
        state["config"] = self.get_params()
        return state

    def get_params(self) -> dict:
        """The constructor's arguments (plain values), as scikit-learn's ``get_params``."""
        return {k: getattr(self, k) for k in self._config_keys}

    def load_state_dict(self, state: dict, *, source=None):
        """Restore what ``state_dict`` returned; returns self.

        Every floating-point array must be finite: a codebook with a NaN would
        otherwise load silently and put every latent on one code. ``source``
        (the file the state came from) names it in the error.
        """
        where = f"{source}: " if source is not None else ""
        missing = [k for k in (*self._state_keys, "config")
                   if k not in state and k not in self._optional_state]
        if missing:
            raise ValueError(f"{where}state lacks {missing}; was it saved by a {type(self).__name__}?")
        arrays = {key: state[key].cpu().numpy() if key in state else None for key in self._state_keys}
        for key, value in arrays.items():
            if value is not None and value.dtype.kind == "f" and not np.isfinite(value).all():
                bad = int((~np.isfinite(value)).sum())
                raise ValueError(f"{where}the saved {type(self).__name__} holds {bad} NaN or inf "
                                 f"values in {key} {value.shape}; the file is corrupt or was fitted "
                                 f"on non-finite latents: delete it and refit")
        for key, value in state["config"].items():
            setattr(self, key, value)
        for key, value in arrays.items():
            setattr(self, key, value)
        self._reset_caches()
        return self

    @classmethod
    def from_state_dict(cls, state: dict, *, source=None, **extra):
        """Rebuild a fitted quantizer from ``state_dict()``'s output; ``extra``:
        constructor arguments that are not state (a GeodesicQuantizer's decoder);
        ``source``: the file the state was read from, named in any error."""
        return cls(**state["config"], **extra).load_state_dict(state, source=source)


class GeodesicQuantizer(_Quantizer):
    """Geodesic k-medoids codebook on the k-NN graph of training latents.

    ``fit(Z)``: collapses exact duplicate rows of Z (N, d) into U weighted nodes
    (:func:`geodesic.ann.collapse_duplicates`), builds the symmetric k-NN graph of
    the nodes with Euclidean edge lengths (exact below ``exact_below`` nodes,
    faiss HNSW above: :class:`geodesic.ann.NeighborIndex`), joins its components
    if needed (with a warning, as Isomap does), and runs
    :func:`geodesic.kmedoids.geodesic_kmedoids` with the multiplicities as weights,
    which is the k-medoids objective of the N rows; the codebook is the K
    medoid latents (K, d), i.e. actual encodings of training images. This is
    what lets one fit run on the ~2.6M vectors of a 7x7 latent grid.

    ``quantize(Z)`` for training *and* unseen latents: a point is joined to its
    k nearest training latents (edge lengths e_j) and its geodesic distance to
    medoid m is min_j (e_j + d(j, m)), exactly Dijkstra on the extended graph
    (scikit-learn Isomap's ``transform``). Because
    min_m min_j (e_j + d(j, m)) = min_j (e_j + dn(j)), where dn(j) is node j's
    distance to its own medoid, only dn and the labels of the training nodes
    are stored - O(N) memory, O(k) work per point after the neighbour search.

    Two options separate the parts of the method (the ablation of the report):

    * ``edge_length``: ``"latent"`` measures an edge by its Euclidean length in
      the latent space; ``"decoder"`` by the length of the decoded segment, the
      pull-back metric of ``decoder`` (:mod:`geodesic.decoder_metric`; Arvanitidis
      et al. 2018); ``"metric"`` by sqrt(Delta^T (G_i + G_j)/2 Delta), each row
      with its own metric G given by the caller (``fit(Z, metrics=G)``,
      ``quantize(Z, metrics=G)``; G (N, d, d)): the grid rate's per-position
      pull-back metric in its image's context (:mod:`geodesic.position_metric`).
      Neighbours are chosen in latent space either way; the edges of new points
      to their k neighbours are measured the same way.
    * ``code_vectors``: ``"medoid"`` uses the medoid latents as the codebook;
      ``"refined"`` keeps every geodesic cluster (which points share a code)
      but moves its vector to the latent that minimises the summed decoder
      reconstruction loss of its training members (``fit(Z, images=X)``;
      :func:`geodesic.refinement.refine_code_vectors`).

    ``decoder`` (a callable latents (B, d) -> Bernoulli logits) is needed by
    both non-default options; it is not part of ``state_dict`` (pass it again to
    :meth:`from_state_dict`).
    """

    _state_keys = ("train_latents_", "node_distances_", "node_labels_", "medoids_", "codebook_",
                   "node_counts_", "node_metrics_")
    # node_counts_: absent from codebooks saved before duplicates were collapsed;
    # node_metrics_: only with edge_length="metric" (packed upper triangles, (U, d(d+1)/2))
    _optional_state = frozenset({"node_counts_", "node_metrics_"})
    _config_keys = ("n_codes", "n_neighbors", "seed", "device", "max_iter", "n_swap_passes",
                    "candidate_fraction", "candidates_per_cluster", "medoid_candidates", "tol",
                    "edge_length", "n_segments", "code_vectors", "refine_steps", "refine_lr",
                    "neighbors", "exact_below")
    _kmedoids_keys = ("device", "max_iter", "n_swap_passes", "candidate_fraction",
                      "candidates_per_cluster", "medoid_candidates", "tol")
    EDGE_LENGTHS = ("latent", "decoder", "metric")
    CODE_VECTORS = ("medoid", "refined")
    NEIGHBORS = ("auto", "exact", "hnsw")

    def __init__(self, n_codes: int, n_neighbors: int = 10, seed: int = 0, *, device: str = "cpu",
                 max_iter: int = 3, n_swap_passes: int = 10, candidate_fraction: float = 1.0,
                 candidates_per_cluster: int = 32, medoid_candidates: int = 16, tol: float = 1e-3,
                 edge_length: str = "latent", n_segments: int = 2, code_vectors: str = "medoid",
                 refine_steps: int = 200, refine_lr: float = 0.05, neighbors: str = "auto",
                 exact_below: int = EXACT_BELOW, decoder=None):
        if neighbors not in self.NEIGHBORS:
            raise ValueError(f"neighbors must be one of {self.NEIGHBORS}, got {neighbors!r}")
        if edge_length not in self.EDGE_LENGTHS:
            raise ValueError(f"edge_length must be one of {self.EDGE_LENGTHS}, got {edge_length!r}")
        if code_vectors not in self.CODE_VECTORS:
            raise ValueError(f"code_vectors must be one of {self.CODE_VECTORS}, got {code_vectors!r}")
        self.n_codes = n_codes
        self.n_neighbors = n_neighbors
        self.seed = seed
        self.edge_length = edge_length
        self.n_segments = n_segments
        self.code_vectors = code_vectors
        self.refine_steps = refine_steps
        self.refine_lr = refine_lr
        self.decoder = decoder
        self.neighbors = neighbors
        self.exact_below = exact_below
        # The k-medoids options (geodesic.graph.geodesic_kmedoids), recorded in state_dict
        # so that a saved codebook says how it was fitted.
        self.device = str(device)
        self.max_iter = max_iter
        self.n_swap_passes = n_swap_passes
        self.candidate_fraction = candidate_fraction
        self.candidates_per_cluster = candidates_per_cluster
        self.medoid_candidates = medoid_candidates
        self.tol = tol
        self.codebook_ = None
        self.node_metrics_ = None
        self._nn = None

    def kmedoids_options(self) -> dict:
        """The keyword arguments this quantizer passes to geodesic_kmedoids."""
        return {k: getattr(self, k) for k in self._kmedoids_keys}

    def _needs_decoder(self, what: str):
        if self.decoder is None:
            raise ValueError(f"{what} needs the decoder: GeodesicQuantizer(..., decoder=fn) or "
                             f"from_state_dict(state, decoder=fn), fn: latents -> logits")
        return self.decoder

    def _decoded_mean(self):
        logits = self._needs_decoder(f"edge_length={self.edge_length!r}")
        return lambda z: torch.sigmoid(logits(z))

    def _row_metrics(self, metrics, Z: np.ndarray, what: str) -> np.ndarray | None:
        """``metrics`` checked as (N, d, d) float64 for the rows of Z (N, d) when
        edge_length="metric" (else None)."""
        if self.edge_length != "metric":
            return None
        if metrics is None:
            raise ValueError(f"edge_length='metric' needs {what}(Z, metrics=G), G (N, d, d): "
                             f"each row's metric (geodesic.position_metric)")
        G = np.asarray(metrics, dtype=np.float64)
        n, d = Z.shape
        if G.shape != (n, d, d) or not np.isfinite(G).all():
            raise ValueError(f"metrics must be finite with shape ({n}, {d}, {d}), got {G.shape}")
        return G

    def fit(self, Z, graph=None, images=None, metrics=None):
        """Z (N, d) training latents -> self.

        ``graph``: what :meth:`graph_for` returned for these Z (a
        :class:`NodeGraph`), to share one graph between several K; a plain
        sparse (N, N) graph over the rows of Z is also accepted (then every
        row is its own node and neighbours are exact). ``images`` (N, ...):
        the training images of Z, needed by ``code_vectors="refined"``.

        Sets ``train_latents_`` (U, d) nodes, ``node_counts_`` (U,),
        ``node_labels_`` / ``node_distances_`` (U,), ``medoids_`` (K,) node
        ids, ``codebook_`` (K, d), ``labels_`` (N,) the code of every training
        row, ``loss_`` the weighted k-medoids objective and ``index_`` the
        neighbour index (not saved; rebuilt from the nodes on load).

        ``metrics`` (N, d, d): every row's metric, with ``edge_length="metric"`` (a
        node standing for several equal rows gets their mean; ``node_metrics_``).
        """
        Z = as_latents(Z)
        G = self._row_metrics(metrics, Z, "fit")
        _check_counts(self.n_codes, len(Z), self.n_neighbors)
        if self.code_vectors == "refined" and (images is None or len(images) != len(Z)):
            raise ValueError("code_vectors='refined' needs fit(Z, images=X) with one image per latent")
        if graph is None and (Z == Z[0]).all():
            if G is not None:
                from geodesic.position_metric import pack

                self.node_metrics_ = pack(G.mean(0, keepdims=True)).astype(np.float32)
            return self._fit_one_vector(Z, images)
        if graph is None:
            graph = self.graph_for(Z, metrics=G)
        elif sp.issparse(graph):
            if graph.shape != (len(Z), len(Z)):
                raise ValueError(f"graph has shape {graph.shape}, but Z has {len(Z)} rows")
            graph = NodeGraph(NeighborIndex(Z, self.n_neighbors, method="exact", collapse=False), graph)
        index = graph.index
        if len(index.inverse_) != len(Z):
            raise ValueError(f"graph was built on {len(index.inverse_)} vectors, but Z has {len(Z)} rows")
        if G is not None:
            from geodesic.position_metric import pack

            self.node_metrics_ = pack(node_means(G, index.inverse_, len(index.points_))).astype(np.float32)
        # K above the number of distinct vectors: every node is a medoid, and the codes
        # beyond U repeat the first ones (never assigned; warn_if_codes_coincide says so)
        n_fit = min(self.n_codes, len(index.points_))
        # the one implementation of geodesic k-medoids, its scikit-learn estimator, on this graph
        km = GeodesicKMedoids(n_fit, n_neighbors=self.n_neighbors, neighbors=self.neighbors,
                              exact_below=self.exact_below, random_state=self.seed,
                              **self.kmedoids_options()).fit_graph(graph, weights=index.counts_)
        self._set_fitted(index.points_, index.counts_, index.inverse_, km.medoid_nodes_, km.node_labels_,
                         km.node_distances_, km.inertia_, images)
        self.index_ = index
        return self

    def _fit_one_vector(self, Z: np.ndarray, images) -> "GeodesicQuantizer":
        """All N rows equal: no k-NN graph exists (one node), and the one node is the
        medoid of every code (warned, as :class:`EuclideanQuantizer` does)."""
        one = np.zeros(1, dtype=np.int64)
        self._set_fitted(Z[:1].copy(), np.array([len(Z)], dtype=np.int64), np.zeros(len(Z), dtype=np.int64),
                         one, one, np.zeros(1, dtype=np.float32), 0.0, images)
        return self

    def _set_fitted(self, nodes, counts, inverse, medoids, labels, distances, loss: float, images) -> None:
        """The fitted state from k-medoids' result on the (U, d) nodes."""
        self.train_latents_ = nodes
        self.node_counts_ = counts
        self.medoids_ = np.resize(np.asarray(medoids, dtype=np.int64), self.n_codes)
        self.node_labels_ = np.asarray(labels, dtype=np.int64)
        self.node_distances_ = np.asarray(distances, dtype=np.float32)
        self.codebook_ = self.train_latents_[self.medoids_]
        self.loss_ = loss
        if self.code_vectors == "refined":
            from geodesic.refinement import refine_code_vectors

            self.codebook_ = refine_code_vectors(
                self._needs_decoder("code_vectors='refined'"), self.codebook_,
                self.node_labels_[inverse], images, steps=self.refine_steps,
                lr=self.refine_lr, seed=self.seed)
        self._reset_caches()
        self.labels_ = self.node_labels_[inverse]
        warn_if_codes_coincide(self.codebook_, self.n_codes, stacklevel=4)

    @staticmethod
    def build_graph(Z: np.ndarray, n_neighbors: int, *, neighbors: str = "auto",
                    exact_below: int = EXACT_BELOW, seed: int = 0) -> NodeGraph:
        """The repaired symmetric k-NN graph of Z's unique rows with Euclidean
        edge lengths, and its index (:class:`NodeGraph`)."""
        return build_node_graph(Z, n_neighbors, neighbors=neighbors, exact_below=exact_below, seed=seed,
                                stacklevel=3)

    def graph_for(self, Z, latent_graph: NodeGraph | None = None, metrics=None) -> NodeGraph:
        """The graph this quantizer fits on: the repaired k-NN graph of Z
        (``latent_graph`` when already built), its edges re-measured through
        the decoder when ``edge_length="decoder"``, or by the rows' ``metrics``
        (N, d, d) when ``edge_length="metric"``."""
        Z = as_latents(Z)
        G = self._row_metrics(metrics, Z, "graph_for")
        if latent_graph is None:
            latent_graph = self.build_graph(Z, self.n_neighbors, neighbors=self.neighbors,
                                            exact_below=self.exact_below, seed=self.seed)
        if self.edge_length == "latent":
            return latent_graph
        if self.edge_length == "metric":
            from geodesic.position_metric import reweight_graph_by_metric

            index = latent_graph.index
            nodes = node_means(G, index.inverse_, len(index.points_))
            return NodeGraph(index, reweight_graph_by_metric(latent_graph.graph, index.points_, nodes))
        from geodesic.decoder_metric import reweight_graph

        index = latent_graph.index
        return NodeGraph(index, reweight_graph(latent_graph.graph, index.points_, self._decoded_mean(),
                                               n_segments=self.n_segments))

    def _reset_caches(self) -> None:
        """Forget what was derived from the training latents (the neighbour index)."""
        self.index_ = None

    def load_state_dict(self, state: dict, *, source=None):
        super().load_state_dict(state, source=source)
        if getattr(self, "node_counts_", None) is None:  # saved before duplicates were collapsed
            self.node_counts_ = np.ones(len(self.train_latents_), dtype=np.int64)
        self.labels_ = None  # the training rows are not saved, only their nodes
        return self

    def _neighbors(self) -> NeighborIndex:
        """The index over the nodes; after a load, rebuilt from them (the nodes are
        unique, and HNSW is seeded and single-threaded, so it is the same index)."""
        if self.index_ is None:
            self.index_ = NeighborIndex(self.train_latents_, self.n_neighbors, method=self.neighbors,
                                        exact_below=self.exact_below, collapse=False, seed=self.seed)
        return self.index_

    def quantize(self, Z, batch_size: int = 4096, metrics=None) -> Quantized:
        """Z (B, d) -> Quantized(indices (B,), codes (B, d), distances (B,)); ``metrics``
        (B, d, d): the rows' own metrics, needed with ``edge_length="metric"`` only."""
        if self.edge_length != "metric":
            if metrics is not None:
                raise ValueError(f"metrics are only used with edge_length='metric', not "
                                 f"{self.edge_length!r}")
            return super().quantize(Z, batch_size)
        self._check_fitted()
        Z = as_latents(Z, dim=self.n_features_)
        return self._quantize_rows(Z, batch_size, self._row_metrics(metrics, Z, "quantize"))

    def _assign(self, Z: np.ndarray, G: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, d) -> nearest medoid index (B,) and geodesic distance (B,); ``G`` (B, d, d)
        the rows' metrics with edge_length="metric".

        A row equal to a training node gets that node's label and distance
        directly: its own edge has length 0 and every other neighbour j gives
        e_j + dn(j) >= dn(node) (the triangle inequality of the graph, whose
        edges have these same lengths), so the rule's minimum is attained
        there. This skips the neighbour search and, for decoder lengths, the
        Jacobian-vector products of every training row. (With metric edges the
        row's own metric may differ from its node's, as two images can share a
        vector; the node's label is kept all the same.)
        """
        if len(self.train_latents_) == 1:
            return self._assign_new(Z, G)  # a copy of the node gets edge 0 there
        index = self._neighbors()
        own = index.node_of(Z)
        hit = own >= 0
        if hit.any():
            labels = self.node_labels_[np.maximum(own, 0)].copy()
            dist = self.node_distances_[np.maximum(own, 0)].astype(np.float32)
            if not hit.all():
                labels[~hit], dist[~hit] = self._assign_new(Z[~hit], None if G is None else G[~hit])
            return labels, dist
        return self._assign_new(Z, G)

    def _assign_new(self, Z: np.ndarray, G: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The extended-graph rule for rows that are not training nodes."""
        if len(self.train_latents_) == 1:  # one node, no index: its edge is the only path
            nbr = np.zeros((len(Z), 1), dtype=np.int64)
            diff = Z.astype(np.float64) - self.train_latents_[0].astype(np.float64)
            edge = np.sqrt((diff * diff).sum(1, keepdims=True)).astype(np.float32)
        else:
            edge, nbr = self._neighbors().kneighbors(Z)  # (B, k) each
        if self.edge_length == "decoder":
            from geodesic.decoder_metric import segment_lengths

            k = nbr.shape[1]
            edge = segment_lengths(self._decoded_mean(), np.repeat(Z, k, axis=0),
                                   self.train_latents_[nbr.ravel()],
                                   n_segments=self.n_segments).reshape(-1, k)
        elif self.edge_length == "metric":
            from geodesic.position_metric import trapezoid_lengths, unpack

            nodes = unpack(self.node_metrics_[nbr], Z.shape[1])  # (B, k, d, d)
            delta = self.train_latents_[nbr].astype(np.float64) - Z.astype(np.float64)[:, None, :]
            edge = trapezoid_lengths(delta, G[:, None], nodes).astype(np.float32)
        return through_nearest(edge, nbr, self.node_labels_, self.node_distances_)


def node_means(G: np.ndarray, inverse: np.ndarray, n_nodes: int) -> np.ndarray:
    """(N, d, d) metrics of the rows -> (U, d, d) mean over the rows of each node
    (``inverse``: the node of every row)."""
    out = np.zeros((n_nodes,) + G.shape[1:])
    np.add.at(out, inverse, G)
    return out / np.bincount(inverse, minlength=n_nodes)[:, None, None]


#: Largest latent magnitude whose squared distances stay far inside float32 (d (2 M)^2
#: < 3.4e38 for any d below 6e7); k-means and the nearest-code search run on latents
#: scaled by a power of two (exact) into this range when they are larger or tinier.
SAFE_MAGNITUDE = 2.0 ** 50


def power_of_two_scale(*arrays: np.ndarray) -> int:
    """The exponent e such that ``np.ldexp(x, -e)`` brings the largest magnitude of
    ``arrays`` into [1, 2) when it lies outside [1/SAFE_MAGNITUDE, SAFE_MAGNITUDE]
    (0 otherwise, so that ordinary latents are computed on exactly as given).
    Scaling by a power of two is exact, and k-means and nearest codes are
    equivariant under scaling."""
    top = max((float(np.abs(a).max(initial=0.0)) for a in arrays), default=0.0)
    if top == 0.0 or 1.0 / SAFE_MAGNITUDE <= top <= SAFE_MAGNITUDE:
        return 0
    return int(np.frexp(top)[1]) - 1


class EuclideanQuantizer(_Quantizer):
    """k-means on the latents; ``quantize`` picks the nearest centroid in Euclidean distance.

    ``algorithm``: ``"lloyd"`` is scikit-learn's ``KMeans`` (k-means++, ``n_init``
    restarts), ``"faiss"`` faiss's k-means (``n_iter`` Lloyd iterations from a
    seeded random init, one thread, every point used), ``"auto"`` faiss from
    ``faiss_above`` distinct vectors. Exact duplicates are collapsed and
    weighted by multiplicity either way (the same objective). Chosen by
    measurement (``benchmarks/bench_grid_kmeans.py``,
    ``benchmarks/results/grid_kmeans.csv``): on 490,000 grid stand-in vectors
    at K = 256, scikit-learn took 78 CPU s (one restart) for inertia 279.9k,
    faiss 8.6 s for 282.9k (+1.1 %) and MiniBatchKMeans 4.4 s for 300.6k (+7.4 %).
    """

    _state_keys = ("codebook_",)
    _config_keys = ("n_codes", "seed", "n_init", "algorithm", "n_iter", "faiss_above")
    ALGORITHMS = ("auto", "lloyd", "faiss")

    def __init__(self, n_codes: int, seed: int = 0, n_init: int = 3, *, algorithm: str = "auto",
                 n_iter: int = 50, faiss_above: int = EXACT_BELOW):
        if algorithm not in self.ALGORITHMS:
            raise ValueError(f"algorithm must be one of {self.ALGORITHMS}, got {algorithm!r}")
        self.n_codes = n_codes
        self.seed = seed
        self.n_init = n_init
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.faiss_above = faiss_above
        self.codebook_ = None

    def fit(self, Z):
        """Z (N, d) -> self; ``codebook_`` (K, d) are the centroids, ``loss_`` the
        inertia (sum of squared distances), ``algorithm_`` the algorithm used."""
        from geodesic.ann import collapse_duplicates

        Z = as_latents(Z)
        _check_counts(self.n_codes, len(Z))
        nodes = collapse_duplicates(Z)
        # Latents of magnitude 1e19 overflow squared distances in float32 (and 1e-25 underflow
        # them): fit on latents scaled by 2^-e and scale the centroids back.
        exponent = power_of_two_scale(nodes.points)
        points = np.ldexp(nodes.points, -exponent).astype(np.float32) if exponent else nodes.points
        # K above the number of distinct vectors: each is a centroid, the rest repeat them
        n_fit = min(self.n_codes, len(points))
        self.algorithm_ = self.algorithm if self.algorithm != "auto" else (
            "faiss" if len(points) >= self.faiss_above else "lloyd")
        if self.algorithm_ == "faiss":
            codebook, loss = self._fit_faiss(points, nodes.counts, n_fit)
        else:
            from sklearn.cluster import KMeans

            with warnings.catch_warnings():
                # scikit-learn's own "distinct clusters" warning; ours below says it for both quantizers.
                warnings.filterwarnings("ignore", message="Number of distinct clusters")
                km = KMeans(n_clusters=n_fit, n_init=self.n_init, random_state=self.seed).fit(
                    points, sample_weight=nodes.counts)
            codebook, loss = km.cluster_centers_.astype(np.float32), float(km.inertia_)
        if exponent:
            codebook, loss = np.ldexp(codebook, exponent).astype(np.float32), loss * 4.0 ** exponent
        self.codebook_ = np.resize(codebook, (self.n_codes, Z.shape[1]))
        self.loss_ = loss
        warn_if_codes_coincide(self.codebook_, self.n_codes, stacklevel=3)
        return self

    def _fit_faiss(self, points: np.ndarray, counts: np.ndarray, n_fit: int) -> tuple[np.ndarray, float]:
        from geodesic.ann import faiss_threads

        with faiss_threads(1) as faiss:
            km = faiss.Kmeans(points.shape[1], n_fit, niter=self.n_iter, seed=self.seed,
                              max_points_per_centroid=len(points))  # no subsampling
            km.train(np.ascontiguousarray(points, dtype=np.float32),
                     weights=np.ascontiguousarray(counts, dtype=np.float32))
        codebook = np.ascontiguousarray(km.centroids, dtype=np.float32)
        self.codebook_ = codebook
        _, dist = self._assign(points)
        return codebook, float((counts * dist.astype(np.float64) ** 2).sum())

    def _assign(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, d) -> nearest centroid (B,) and Euclidean distance (B,), without (B, K, d).

        Latents and codes far from magnitude 1 are scaled together by a power
        of two first (:func:`power_of_two_scale`), so that the squared distances
        neither overflow nor underflow float32.
        """
        exponent = power_of_two_scale(Z, self.codebook_)
        z, c = torch.from_numpy(np.ldexp(Z, -exponent).astype(np.float32)), \
            torch.from_numpy(np.ldexp(self.codebook_, -exponent).astype(np.float32))
        d2 = (z.pow(2).sum(1, keepdim=True) - 2 * z @ c.T + c.pow(2).sum(1)).clamp_min(0)
        dist, idx = d2.min(dim=1)
        return idx.numpy(), np.ldexp(dist.sqrt().numpy(), exponent).astype(np.float32)


def make_quantizer(name: str, K: int, *, seed: int, n_neighbors: int = 10, device: str = "cpu",
                   variant: dict | None = None, decoder=None):
    """The unfitted a-posteriori quantizer of method ``name`` at codebook size K
    (its ``variant`` cell, see :func:`variants`; ``decoder``: latents -> logits,
    for decoder edge lengths and refined codes): the one place where a method
    entry becomes a quantizer object."""
    method = methods_registry.get(name)
    if method.build != "quantizer":
        raise ValueError(f"{name} is not an a-posteriori quantizer method")
    kind = method.options["quantizer"]
    variant = variant or {}
    if kind == "geodesic":
        edge = variant.get("edge_length") or "latent"
        if edge == "decoder" and method.rate == methods_registry.GRID_RATE:
            edge = "metric"  # a grid vector's decoder edges: its position's metric in its image
        return GeodesicQuantizer(K, n_neighbors, seed, device=device, decoder=decoder,
                                 edge_length=edge,
                                 code_vectors=variant.get("code_vectors") or "medoid")
    if kind == "euclidean":
        if variant.get("code_vectors", "centroid") not in ("", "centroid"):
            raise ValueError(f"{name} has centroids only, not {variant['code_vectors']!r} codes")
        return EuclideanQuantizer(K, seed)
    raise ValueError(f"{name}: unknown quantizer kind {kind!r}")
