"""Tests for geodesic/kmeans_init.py: k-means centroids snapped to distinct graph nodes.

References: brute-force nearest points (numpy, float64), scikit-learn's
weighted k-means objective, and geodesic k-medoids' own default start.
"""
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from geodesic.graph import connect_components, knn_graph
from geodesic.kmeans_init import kmeans_centroids, kmeans_init_nodes, snap_to_nodes
from geodesic.kmedoids import geodesic_kmedoids


def brute_force_nearest(centroids, points):
    """(K,) index of the point nearest each centroid, float64."""
    d = ((centroids[:, None, :].astype(np.float64) - points[None].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(axis=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kmeans_init_nodes_are_the_nodes_nearest_the_centroids(dtype):
    points = np.random.default_rng(0).normal(size=(400, 5)).astype(dtype)
    w = np.random.default_rng(1).integers(1, 5, 400)
    nodes = kmeans_init_nodes(points, w, 12, seed=3)
    assert nodes.shape == (12,) and nodes.dtype == np.int64 and len(np.unique(nodes)) == 12
    centroids = kmeans_centroids(points, 12, weights=w, seed=3)  # the same run: faiss is seeded
    nearest = brute_force_nearest(centroids, points)
    assert len(np.unique(nearest)) == 12  # no collision here, so every node is its centroid's nearest
    np.testing.assert_array_equal(nodes, nearest)


def test_snapping_makes_colliding_centroids_distinct():
    """Three centroids nearest the same point: the nearest keeps it, the others get their
    next-nearest free points (brute force)."""
    points = np.array([[0.0, 0], [1, 0], [0, 1], [-1, 0], [5, 5], [5, 6]])
    centroids = np.array([[0.1, 0.0], [0.0, 0.05], [-0.2, 0.0], [5, 5.4]])
    nodes = snap_to_nodes(centroids, points)
    # centroid 1 is nearest point 0 (0.05); centroid 0 then takes point 1 (0.9 < 1.0 to point 2),
    # centroid 2 point 3 (0.8); centroid 3 its own nearest, point 4
    np.testing.assert_array_equal(nodes, [1, 0, 3, 4])


def test_snapping_when_every_point_is_needed():
    """K = N with all centroids at one point: the second round hands out the rest."""
    points = np.random.default_rng(2).normal(size=(20, 3))
    nodes = snap_to_nodes(np.zeros((20, 3)), points)
    np.testing.assert_array_equal(np.sort(nodes), np.arange(20))
    assert nodes[0] == np.linalg.norm(points, axis=1).argmin()


def test_weights_are_multiplicities():
    """K = 1: the centroid is the weighted mean (numpy's np.average), pulled onto a heavy node."""
    points = np.r_[np.zeros((1, 2)), np.random.default_rng(3).uniform(1, 2, size=(99, 2))]
    w = np.ones(100)
    w[0] = 1e4
    np.testing.assert_allclose(kmeans_centroids(points, 1, weights=w)[0], np.average(points, axis=0, weights=w),
                               atol=1e-6)
    np.testing.assert_allclose(kmeans_centroids(points, 1)[0], points.mean(axis=0), atol=1e-6)


def test_kmeans_init_is_reproducible_and_seeded():
    points = np.random.default_rng(4).normal(size=(300, 4))
    a, b = kmeans_init_nodes(points, None, 10, seed=0), kmeans_init_nodes(points, None, 10, seed=0)
    np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_rejected():
    points = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"n_clusters must be an integer in \[1, N\] = \[1, 5\]"):
        kmeans_init_nodes(points, None, 6)
    with pytest.raises(ValueError, match="weights must have shape"):
        kmeans_centroids(points, 2, weights=np.ones(4))
    with pytest.raises(ValueError, match="centroids must be"):
        snap_to_nodes(np.zeros((2, 3)), points)


@pytest.mark.filterwarnings("ignore:The neighbour graph has:UserWarning")
def test_kmeans_start_is_as_good_as_kmedoids_plus_plus_on_blobs():
    """On clustered data, the fit from a k-means start is within 2 % of the default's loss."""
    X, _ = make_blobs(3000, centers=25, n_features=4, cluster_std=1.5, random_state=0)
    graph = connect_components(knn_graph(X, 10), X)
    w = np.random.default_rng(0).integers(1, 4, len(X)).astype(float)
    for seed in (0, 1):
        default = geodesic_kmedoids(graph, 40, weights=w, seed=seed)
        start = kmeans_init_nodes(X, w, 40, seed=seed)
        ours = geodesic_kmedoids(graph, 40, weights=w, seed=seed, init=start)
        assert ours.loss <= 1.02 * default.loss
