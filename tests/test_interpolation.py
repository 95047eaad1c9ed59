"""geodesic/interpolation.py: paths follow the manifold, lengths match Dijkstra, resampling is even."""
import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import kneighbors_graph

from geodesic.interpolation import extended_graph, geodesic_path, resample, straight_line


def half_circle(n=200):
    t = np.linspace(0, np.pi, n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def graph_of(Z, k=4):
    A = kneighbors_graph(Z, k, mode="distance")
    return A.maximum(A.T).tocsr()


def test_path_between_the_ends_of_a_half_circle_follows_the_arc():
    Z = half_circle()
    path = geodesic_path(graph_of(Z), Z, np.array([1.0, 0.0]), np.array([-1.0, 0.0]), n_neighbors=4)
    assert path.length == pytest.approx(np.pi, rel=0.01)  # the arc, not the chord of length 2
    radii = np.linalg.norm(path.points, axis=1)
    assert radii.min() > 0.99  # never cuts across the inside
    assert np.all(np.diff(path.nodes) > 0)  # walks the arc in order


def test_path_length_equals_dijkstra_on_the_extended_graph_and_the_polyline():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(120, 3))
    a, b = rng.normal(size=3), rng.normal(size=3)
    g = graph_of(Z, 6)
    path = geodesic_path(g, Z, a, b, n_neighbors=6)
    big = extended_graph(g, Z, np.stack([a, b]), 6)
    assert path.length == pytest.approx(dijkstra(big, indices=120)[121], rel=1e-9)
    polyline = np.linalg.norm(np.diff(path.points, axis=0), axis=1).sum()
    assert polyline == pytest.approx(path.length, rel=1e-6)
    np.testing.assert_allclose(path.points[0], a)
    np.testing.assert_allclose(path.points[-1], b)


def test_custom_edge_length_is_used_for_the_new_points():
    Z = half_circle(50)
    g = graph_of(Z)
    a, b = np.array([1.2, 0.0]), np.array([-1.2, 0.0])  # 0.2 off the arc's ends
    plain = geodesic_path(g, Z, a, b, n_neighbors=1)  # one edge each, to the arc's end nodes
    tripled = geodesic_path(g, Z, a, b, n_neighbors=1,
                            edge_length=lambda s, e: 3 * np.linalg.norm(e - s, axis=1))
    assert tripled.length - plain.length == pytest.approx(2 * (0.2 + 0.2), rel=1e-6)


def test_resample_is_even_in_arc_length_and_keeps_the_ends():
    poly = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 3.0]])
    frames = resample(poly, 5)
    np.testing.assert_allclose(frames, [[0, 0], [1, 0], [1, 1], [1, 2], [1, 3]])
    line = straight_line(np.zeros(2), np.ones(2), 3)
    np.testing.assert_allclose(line, [[0, 0], [0.5, 0.5], [1, 1]])
