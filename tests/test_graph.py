"""Tests for geodesic/graph.py against independent references.

References: scikit-learn's ``kneighbors_graph`` and ``Isomap.dist_matrix_``,
analytic geodesics (circle, line, complete graph), and the all-pairs matrix
for the sparse searches. Geodesic k-medoids is tested in tests/test_kmedoids.py.
"""
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra
from sklearn.datasets import make_blobs, make_swiss_roll
from sklearn.manifold import Isomap
from sklearn.neighbors import kneighbors_graph

import geodesic.graph as gt
from geodesic.graph import connect_components, geodesic_distances, knn_graph, medoid_distance_rows


def isomap_distances(X, k):
    with warnings.catch_warnings():  # Isomap warns about disconnected graphs itself
        warnings.simplefilter("ignore")
        return Isomap(n_neighbors=k).fit(X).dist_matrix_


# ----------------------------------------------------------------------------
# knn_graph
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 12])
def test_knn_graph_is_sklearn_graph_symmetrised(k):
    X = np.random.default_rng(0).normal(size=(200, 6))
    A = kneighbors_graph(X, k, mode="distance").toarray()
    expected = np.maximum(A, A.T)
    graph = knn_graph(X, n_neighbors=k)
    assert sp.issparse(graph) and graph.format == "csr"
    np.testing.assert_allclose(graph.toarray(), expected, rtol=1e-12)
    assert (graph != graph.T).nnz == 0


def test_knn_graph_accepts_torch_and_keeps_float32():
    X = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    from_torch = knn_graph(torch.from_numpy(X), 5)
    from_numpy = knn_graph(X, 5)
    assert from_torch.dtype == np.float32 and from_numpy.dtype == np.float32
    np.testing.assert_array_equal(from_torch.toarray(), from_numpy.toarray())
    assert geodesic_distances(from_numpy, [0]).dtype == np.float32


def test_knn_graph_keeps_zero_length_edges_between_duplicates():
    """Duplicate points are joined by explicit zeros, as csgraph (and Isomap) read them."""
    X = np.repeat(np.random.default_rng(0).normal(size=(50, 3)), 2, axis=0)
    graph = knn_graph(X, 3)
    assert (graph.data == 0).sum() >= 100  # each pair of twins, both ways
    with pytest.warns(UserWarning, match="connected components"):
        graph = connect_components(graph, X)
    D = geodesic_distances(graph)
    assert np.isfinite(D).all()
    np.testing.assert_allclose(D, isomap_distances(X, 3), rtol=1e-6, atol=1e-9)


def test_knn_graph_rejects_bad_n_neighbors():
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_graph(np.zeros((5, 2)), n_neighbors=5)


# ----------------------------------------------------------------------------
# connect_components and geodesic_distances
# ----------------------------------------------------------------------------
def test_geodesics_equal_isomap_on_connected_graph(roll):
    X, graph, D = roll
    np.testing.assert_allclose(D, isomap_distances(X, 10), rtol=1e-6, atol=1e-9)


def test_geodesics_equal_isomap_after_connect_components(two_blobs):
    X = two_blobs
    graph = knn_graph(X, 8)
    with pytest.warns(UserWarning, match="2 connected components"):
        repaired = connect_components(graph, X)
    D = geodesic_distances(repaired)
    assert np.isfinite(D).all()
    np.testing.assert_allclose(D, isomap_distances(X, 8), rtol=1e-6, atol=1e-9)
    assert repaired.nnz == graph.nnz + 2  # one edge, stored both ways


def test_connect_components_joins_every_pair_like_isomap():
    X, _ = make_blobs(240, n_features=2, centers=[[0, 0], [50, 0], [0, 50], [50, 50]], cluster_std=1.0,
                      random_state=0)
    with pytest.warns(UserWarning, match="4 connected components"):
        repaired = connect_components(knn_graph(X, 5), X)
    np.testing.assert_allclose(geodesic_distances(repaired), isomap_distances(X, 5), rtol=1e-6, atol=1e-9)


def test_connect_components_leaves_connected_graph_alone(roll):
    X, graph, _ = roll
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert connect_components(graph, X) is graph


def test_source_rows_equal_all_pairs_rows(roll):
    _, graph, D = roll
    sources = np.array([3, 0, 499, 250])
    np.testing.assert_allclose(geodesic_distances(graph, sources), D[sources], rtol=1e-12)
    assert geodesic_distances(graph, 7).shape == (1, 500)


def test_geodesics_on_circle_are_arc_lengths():
    """Points on a circle, 2 neighbours: the graph is the polygon, geodesic = steps x chord."""
    n, radius = 60, 3.0
    angle = 2 * np.pi * np.arange(n) / n
    X = radius * np.c_[np.cos(angle), np.sin(angle)]
    steps = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    steps = np.minimum(steps, n - steps)
    chord = 2 * radius * np.sin(np.pi / n)
    np.testing.assert_allclose(geodesic_distances(knn_graph(X, 2)), steps * chord, rtol=1e-10, atol=1e-12)


def test_geodesics_on_a_line_are_coordinate_differences():
    """Jittered by < 10 % of the spacing, a point's 2 nearest are its two neighbours on the line."""
    x = np.arange(80) + np.random.default_rng(0).uniform(-0.09, 0.09, size=80)
    D = geodesic_distances(knn_graph(x[:, None], 2))
    np.testing.assert_allclose(D, np.abs(x[:, None] - x[None, :]), rtol=1e-10, atol=1e-12)


def test_geodesics_on_complete_grid_graph_are_euclidean():
    """All points as neighbours (scikit-learn's isomap grid test): geodesic = straight line."""
    X = np.array(list(itertools.product(range(6), repeat=2)), dtype=float)
    D = geodesic_distances(knn_graph(X, len(X) - 1))
    np.testing.assert_allclose(D, np.linalg.norm(X[:, None] - X[None, :], axis=2), rtol=1e-10, atol=1e-12)


def test_all_pairs_refused_above_limit(monkeypatch):
    X = np.random.default_rng(0).normal(size=(60, 3))
    graph = knn_graph(X, 5)
    monkeypatch.setattr(gt, "MAX_ALL_PAIRS", 50)
    with pytest.raises(ValueError, match=r"N=60.*MAX_ALL_PAIRS=50.*pass sources="):
        geodesic_distances(graph)
    assert geodesic_distances(graph, sources=[0, 1]).shape == (2, 60)


def test_geodesic_distances_rejects_non_square_graph():
    with pytest.raises(ValueError, match="square"):
        geodesic_distances(sp.csr_matrix((4, 5)))


# ----------------------------------------------------------------------------
# medoid_distance_rows
# ----------------------------------------------------------------------------
def test_medoid_distance_rows_are_rows_of_all_pairs(roll):
    _, graph, D = roll
    medoids = np.array([5, 400, 17, 250, 0])
    rows = medoid_distance_rows(graph, medoids, chunk_size=2)
    assert rows.shape == (5, 500) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, D[medoids], rtol=1e-6)


# ----------------------------------------------------------------------------
# The sparse bookkeeping inside geodesic_kmedoids, against the all-pairs matrix
# ----------------------------------------------------------------------------
def test_top2_labels_stay_exact_through_swaps(roll):
    """Nearest / second-nearest medoid after a reset and after incremental swaps."""
    _, graph, D = roll
    rng = np.random.default_rng(0)
    top2 = gt.Top2Search(gt.CSRGraph(graph))
    medoids = rng.choice(500, 25, replace=False)
    top2.reset(medoids)
    for step in range(30):
        rows = D[medoids]
        ordered = np.sort(rows, axis=0)
        np.testing.assert_allclose(top2.d1, ordered[0], rtol=1e-12)
        np.testing.assert_allclose(top2.d2, ordered[1], rtol=1e-12)
        np.testing.assert_allclose(rows[top2.s1, np.arange(500)], top2.d1, rtol=1e-12)
        np.testing.assert_allclose(rows[top2.s2, np.arange(500)], top2.d2, rtol=1e-12)
        slots = rng.choice(25, rng.integers(1, 4), replace=False)
        new = rng.choice(np.setdiff1d(np.arange(500), medoids), slots.size, replace=False)
        medoids[slots] = new
        top2.replace(slots, new)


def test_pruned_search_matches_brute_force(roll):
    """The pruned searches find exactly {o : d(x, o) < ds(o)} with exact distances."""
    _, graph, D = roll
    rng = np.random.default_rng(1)
    g = gt.CSRGraph(graph)
    top2 = gt.Top2Search(g)
    medoids = rng.choice(500, 12, replace=False)
    top2.reset(medoids)
    candidates = rng.choice(np.setdiff1d(np.arange(500), medoids), 40, replace=False)
    cpos, nodes, dist = gt.PrunedSearch(g, 40).run(candidates, top2.d2)
    for i, x in enumerate(candidates):
        mine = cpos == i
        np.testing.assert_array_equal(np.sort(nodes[mine]), np.flatnonzero(D[x] < top2.d2))
        np.testing.assert_allclose(dist[mine], D[x, nodes[mine]], rtol=1e-12)


def _with_duplicates(seed=3, n=300, dup=60):
    """A k-NN graph of points where ``dup`` of them repeat others exactly (zero-length edges)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n - dup, 3))
    X = np.vstack([X, X[rng.choice(n - dup, dup)]])
    graph = connect_components(knn_graph(X, 6), X)
    return graph, dijkstra(graph, directed=False)


def test_pruned_search_with_zero_length_edges_and_sources_without_room():
    """Duplicates (zero-length edges) and sources whose bound is 0 (they get nothing), against brute force."""
    graph, D = _with_duplicates()
    n = graph.shape[0]
    rng = np.random.default_rng(4)
    bound = D[rng.choice(n, 8, replace=False)].min(axis=0)  # 1-Lipschitz: distance to 8 nodes
    g = gt.CSRGraph(graph)
    sources = rng.choice(n, 30, replace=False)
    search = gt.PrunedSearch(g, 30)
    cpos, nodes, dist = search.run(sources, bound)
    assert np.all(np.diff(cpos) >= 0)
    for i, x in enumerate(sources):
        mine = cpos == i
        expected = np.flatnonzero(D[x] < bound) if bound[x] > 0 else np.empty(0, dtype=np.int64)
        np.testing.assert_array_equal(np.sort(nodes[mine]), expected)
        np.testing.assert_allclose(dist[mine], D[x, nodes[mine]], rtol=1e-12, atol=1e-15)
    # the scratch is clean again: a second run gives the same answer
    again = search.run(sources, bound)
    assert all(np.array_equal(a, b) for a, b in zip(again, (cpos, nodes, dist)))


def test_top2_with_duplicates_matches_brute_force():
    graph, D = _with_duplicates(seed=5)
    n = graph.shape[0]
    medoids = np.random.default_rng(6).choice(n, 20, replace=False)
    top2 = gt.Top2Search(gt.CSRGraph(graph))
    top2.reset(medoids)
    ordered = np.sort(D[medoids], axis=0)
    np.testing.assert_allclose(top2.d1, ordered[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(top2.d2, ordered[1], rtol=1e-12, atol=1e-15)
    assert np.all(top2.s1 != top2.s2)


def test_reordered_graph_is_the_same_graph_relabelled(roll):
    _, graph, D = roll
    g, order = gt.CSRGraph(graph).reordered()
    assert np.array_equal(np.sort(order), np.arange(graph.shape[0]))
    np.testing.assert_allclose(dijkstra(g.csr, directed=True), D[np.ix_(order, order)], rtol=1e-12)
    assert not np.array_equal(order, np.arange(graph.shape[0]))  # it did reorder
