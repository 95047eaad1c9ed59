"""Tests for geodesic/ann.py: duplicate collapse, exact and HNSW neighbour index, recall.

References: ``np.unique(axis=0)``, ``geodesic.graph.knn_graph`` (the exact
scikit-learn graph), brute-force distances, hand-made neighbour lists, and
Dijkstra on the graph extended by the query point.
"""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from geodesic.ann import NeighborIndex, collapse_duplicates, recall_at_k, sample_recall
from geodesic.graph import connect_components, knn_graph
from geodesic.kmedoids import geodesic_kmedoids


def points_with_duplicates(n=1500, d=6, seed=0):
    """Gaussian points, a third of them repeated, plus 200 copies of one 'background' vector."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Z = np.concatenate([X, X[: n // 3], np.repeat(X[[5]], 200, axis=0)])
    return Z[rng.permutation(len(Z))]


# ----------------------------------------------------------------------------
# collapse_duplicates
# ----------------------------------------------------------------------------
def test_collapse_matches_numpy_unique():
    Z = points_with_duplicates()
    c = collapse_duplicates(Z)
    ref, ref_counts = np.unique(Z, axis=0, return_counts=True)
    assert len(c.points) == len(ref) == 1500
    np.testing.assert_array_equal(c.points[c.inverse], Z)
    # same multiplicity per distinct vector
    order = np.lexsort(c.points.T[::-1])
    np.testing.assert_array_equal(c.points[order], ref)
    np.testing.assert_array_equal(c.counts[order], ref_counts)
    assert c.counts.sum() == len(Z) and c.counts.max() == 202  # row 5: itself, its repeat, 200 copies


def test_collapse_numbers_nodes_by_first_occurrence():
    Z = np.array([[3.0, 1.0], [0.0, 0.0], [3.0, 1.0], [-1.0, 2.0], [0.0, 0.0]])
    c = collapse_duplicates(Z)
    np.testing.assert_array_equal(c.inverse, [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(c.counts, [2, 2, 1])
    np.testing.assert_array_equal(c.points, Z[[0, 1, 3]])


def test_collapse_treats_signed_zeros_as_equal():
    Z = np.array([[0.0, 1.0], [-0.0, 1.0]], dtype=np.float32)
    assert len(collapse_duplicates(Z).points) == 1


def test_collapse_with_decimals_groups_near_duplicates_and_keeps_first_values():
    Z = np.array([[1.0, 2.0], [1.0 + 1e-6, 2.0], [1.5, 2.0]])
    exact = collapse_duplicates(Z)
    rounded = collapse_duplicates(Z, decimals=3)
    assert len(exact.points) == 3 and len(rounded.points) == 2
    np.testing.assert_array_equal(rounded.inverse, [0, 0, 1])
    np.testing.assert_array_equal(rounded.points[0], Z[0])


# ----------------------------------------------------------------------------
# recall_at_k
# ----------------------------------------------------------------------------
def test_recall_at_k_on_a_hand_made_case():
    true = np.array([[3, 2, 9], [7, 8, 9], [1, 2, 3]])
    found = np.array([[1, 2, 3], [4, 5, 6], [3, 1, 2]])  # order does not matter
    assert recall_at_k(found, true) == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert recall_at_k(true, true) == 1.0
    # a missing neighbour (-1) is a miss, never a hit
    assert recall_at_k(np.array([[-1, 2]]), np.array([[2, 5]])) == pytest.approx(0.5)


def test_recall_at_k_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(Q, k\)"):
        recall_at_k(np.zeros((3, 2)), np.zeros((3, 4)))


# ----------------------------------------------------------------------------
# NeighborIndex: exact and HNSW graphs
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return points_with_duplicates()


@pytest.fixture(scope="module")
def exact(data):
    return NeighborIndex(data, 8, method="exact")


@pytest.fixture(scope="module")
def hnsw(data):
    # generous parameters: at this size HNSW should be near exact
    return NeighborIndex(data, 8, method="hnsw", hnsw_m=32, ef_construction=200, ef_search=200)


def test_index_is_built_on_unique_vectors(data, exact, hnsw):
    c = collapse_duplicates(data)
    for index in (exact, hnsw):
        np.testing.assert_array_equal(index.points_, c.points)
        np.testing.assert_array_equal(index.counts_, c.counts)
        np.testing.assert_array_equal(index.inverse_, c.inverse)
    assert exact.method_ == "exact" and hnsw.method_ == "hnsw"


def test_exact_graph_is_knn_graph_of_unique_points(exact):
    ref = knn_graph(exact.points_, 8)
    graph = exact.graph()
    assert graph.shape == ref.shape and graph.dtype == np.float32
    assert (graph != graph.T).nnz == 0
    np.testing.assert_array_equal((graph != 0).toarray(), (ref != 0).toarray())
    np.testing.assert_allclose(graph.toarray(), ref.toarray(), rtol=1e-6)


def test_hnsw_graph_agrees_with_exact_graph(exact, hnsw):
    """Most exact edges found, and where both have an edge its length is bit-identical."""
    e, h = exact.graph().tocoo(), hnsw.graph()
    found = np.asarray(h[e.row, e.col]).ravel()
    assert (found > 0).mean() >= 0.95
    both = found > 0
    np.testing.assert_array_equal(found[both], e.data[both])
    assert sample_recall(hnsw, 500) >= 0.95


def test_sample_recall_is_recall_of_the_graph_lists(data):
    """Against an exact brute-force reference computed here; a weak index has recall < 1."""
    weak = NeighborIndex(data, 8, method="hnsw", hnsw_m=2, ef_construction=2, ef_search=1)
    exact = NeighborIndex(data, 8, method="exact")
    assert sample_recall(exact, 300) == 1.0
    sample = np.random.default_rng(0).choice(len(weak.points_), 300, replace=False)
    P = weak.points_.astype(np.float64)
    D = np.linalg.norm(P[sample][:, None] - P[None], axis=2)
    D[np.arange(300), sample] = np.inf
    true = np.argsort(D, axis=1)[:, :8]
    expected = recall_at_k(weak.node_neighbors(sample)[1], true)
    assert sample_recall(weak, 300) == pytest.approx(expected)
    assert expected < 1.0


def test_hnsw_graph_is_reproducible(data, hnsw):
    again = NeighborIndex(data, 8, method="hnsw", hnsw_m=32, ef_construction=200, ef_search=200)
    assert (again.graph() != hnsw.graph()).nnz == 0


def test_auto_switches_at_the_threshold(data):
    assert NeighborIndex(data, 5, exact_below=2000).method_ == "exact"
    assert NeighborIndex(data, 5, exact_below=1000).method_ == "hnsw"


# ----------------------------------------------------------------------------
# NeighborIndex: queries
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["exact", "hnsw"])
def test_kneighbors_gives_exact_lengths_sorted(which, exact, hnsw):
    index = {"exact": exact, "hnsw": hnsw}[which]
    rng = np.random.default_rng(3)
    Q = rng.normal(size=(50, 6)).astype(np.float32)
    dist, ids = index.kneighbors(Q)
    assert dist.shape == ids.shape == (50, 8) and ids.dtype == np.int64
    ref = np.linalg.norm(Q[:, None].astype(np.float64) - index.points_[ids].astype(np.float64), axis=2)
    np.testing.assert_allclose(dist, ref, rtol=1e-6)
    assert np.all(np.diff(dist, axis=1) >= 0)
    if which == "exact":
        brute = np.sort(np.linalg.norm(Q[:, None] - index.points_[None], axis=2), axis=1)[:, :8]
        np.testing.assert_allclose(dist, brute, rtol=1e-5)


def test_query_equal_to_a_training_vector_finds_its_node_at_distance_zero(data):
    """Even from an HNSW index too weak to find every vector by search."""
    weak = NeighborIndex(data, 8, method="hnsw", hnsw_m=2, ef_construction=2, ef_search=1)
    dist, ids = weak.kneighbors(data)
    np.testing.assert_array_equal(ids[:, 0], weak.inverse_)
    np.testing.assert_array_equal(dist[:, 0], 0.0)
    np.testing.assert_array_equal(weak.node_of(data), weak.inverse_)
    assert np.all(weak.node_of(data[:5] + 1e-3) == -1)


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_out_of_sample_rule_equals_dijkstra_on_extended_graph(method, data):
    """min_j (e_j + dn(j)) over the index's neighbours is Dijkstra from the query added to the graph.

    With duplicates collapsed and k-medoids weighted by multiplicity; queries
    are new points and training points (which must get their node's distance).
    """
    index = NeighborIndex(data, 8, method=method, hnsw_m=8, ef_construction=40, ef_search=16)
    graph = connect_components(index.graph(), index.points_)
    res = geodesic_kmedoids(graph, 12, weights=index.counts_, seed=0)
    rng = np.random.default_rng(1)
    Q = np.concatenate([data[rng.integers(0, len(data), 30)] + rng.normal(scale=0.2, size=(30, 6)),
                        data[:30]]).astype(np.float32)
    dist, ids = index.kneighbors(Q)
    through = dist + res.distances[ids]
    rule = through.min(axis=1)
    label = res.labels[ids[np.arange(len(Q)), through.argmin(axis=1)]]
    n = graph.shape[0]
    coo = graph.tocoo()
    for i in range(len(Q)):
        # built from COO arrays, not by adding matrices, which would drop the
        # zero-length edge of a query equal to a node
        big = sp.csr_matrix((np.r_[coo.data, dist[i]], (np.r_[coo.row, np.full(8, n)], np.r_[coo.col, ids[i]])),
                            shape=(n + 1, n + 1))
        assert big.nnz == coo.nnz + 8
        ref = dijkstra(big, directed=False, indices=n)[res.medoids]
        assert rule[i] == pytest.approx(ref.min(), rel=1e-6, abs=1e-6)
        assert ref[label[i]] == pytest.approx(ref.min(), rel=1e-6, abs=1e-6)
    # training points: exactly their node's distance and label
    np.testing.assert_allclose(rule[30:], res.distances[index.inverse_[:30]], rtol=1e-6)
    np.testing.assert_array_equal(label[30:], res.labels[index.inverse_[:30]])


def test_index_rejects_bad_arguments(data):
    with pytest.raises(ValueError, match="method"):
        NeighborIndex(data, 5, method="annoy")
    with pytest.raises(ValueError, match=r"n_neighbors=1500 must be .*\[1, 1499\]"):
        NeighborIndex(data, 1500)
    index = NeighborIndex(data[:100], 5)
    with pytest.raises(ValueError, match="dimension"):
        index.kneighbors(np.zeros((2, 3)))
