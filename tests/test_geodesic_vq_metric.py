"""GeodesicQuantizer(edge_length="metric"): every row with its own metric G (the grid rate's
per-position pull-back, geodesic/position_metric.py). With G = I it is the latent-edge
quantizer exactly; its graph and its new points' edges match the trapezoid rule by hand;
its state round-trips."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.geodesic_vq import GeodesicQuantizer


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 3)).astype(np.float32)
    M = rng.normal(size=(300, 3, 3)) * 0.5
    G = M @ M.transpose(0, 2, 1) + 0.2 * np.eye(3)
    new = rng.normal(size=(40, 3)).astype(np.float32)
    M2 = rng.normal(size=(40, 3, 3)) * 0.5
    return Z, G, new, M2 @ M2.transpose(0, 2, 1) + 0.2 * np.eye(3)


def test_identity_metrics_give_the_latent_quantizer(data):
    Z, _, new, _ = data
    eye = np.broadcast_to(np.eye(3), (len(Z), 3, 3))
    latent = GeodesicQuantizer(8, n_neighbors=6, seed=0).fit(Z)
    metric = GeodesicQuantizer(8, n_neighbors=6, seed=0, edge_length="metric").fit(Z, metrics=eye)
    np.testing.assert_array_equal(metric.medoids_, latent.medoids_)
    np.testing.assert_array_equal(metric.labels_, latent.labels_)
    a = latent.quantize(new)
    b = metric.quantize(new, metrics=np.broadcast_to(np.eye(3), (len(new), 3, 3)))
    np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
    np.testing.assert_allclose(a.distances.numpy(), b.distances.numpy(), rtol=1e-5)


def test_the_graph_uses_the_trapezoid_rule_on_the_metrics(data):
    Z, G, _, _ = data
    q = GeodesicQuantizer(8, n_neighbors=6, seed=0, edge_length="metric")
    latent = GeodesicQuantizer(8, n_neighbors=6, seed=0).graph_for(Z)
    graph = q.graph_for(Z, latent_graph=latent, metrics=G).graph
    assert (graph != graph.T).nnz == 0
    assert set(zip(*graph.nonzero())) == set(zip(*latent.graph.nonzero()))
    for i, j in list(zip(*sp.triu(graph, k=1).nonzero()))[:50]:
        d = Z[j].astype(np.float64) - Z[i]
        assert graph[i, j] == pytest.approx(np.sqrt(d @ (0.5 * (G[i] + G[j])) @ d), rel=1e-5)


def test_new_points_take_the_best_neighbour_by_their_own_metric(data):
    """Brute force over each new point's k latent neighbours: min_j e_j + dn(j), e_j the
    trapezoid length with the point's own metric and node j's."""
    Z, G, new, Gn = data
    q = GeodesicQuantizer(8, n_neighbors=6, seed=0, edge_length="metric").fit(Z, metrics=G)
    out = q.quantize(new, metrics=Gn)
    for b in range(len(new)):
        nbr = np.argsort(((Z - new[b]) ** 2).sum(1))[:6]
        costs = [np.sqrt((Z[j] - new[b]) @ (0.5 * (Gn[b] + G[j])) @ (Z[j] - new[b]))
                 + q.node_distances_[j] for j in nbr]
        best = nbr[int(np.argmin(costs))]
        assert out.indices[b] == q.node_labels_[best]
        assert float(out.distances[b]) == pytest.approx(min(costs), rel=1e-4)


def test_state_round_trip_keeps_the_node_metrics(data):
    Z, G, new, Gn = data
    q = GeodesicQuantizer(8, n_neighbors=6, seed=0, edge_length="metric").fit(Z, metrics=G)
    state = q.state_dict()
    assert state["node_metrics_"].shape == (len(Z), 6)
    again = GeodesicQuantizer.from_state_dict(state)
    a, b = q.quantize(new, metrics=Gn), again.quantize(new, metrics=Gn)
    np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
    assert "node_metrics_" not in GeodesicQuantizer(8, n_neighbors=6).fit(Z).state_dict()


def test_metrics_are_required_checked_and_refused_elsewhere(data):
    Z, G, new, _ = data
    q = GeodesicQuantizer(8, n_neighbors=6, edge_length="metric")
    with pytest.raises(ValueError, match="needs fit"):
        q.fit(Z)
    with pytest.raises(ValueError, match="shape"):
        q.fit(Z, metrics=G[:10])
    q.fit(Z, metrics=G)
    with pytest.raises(ValueError, match="needs quantize"):
        q.quantize(new)
    with pytest.raises(ValueError, match="only used with"):
        GeodesicQuantizer(8, n_neighbors=6).fit(Z).quantize(new, metrics=G[:40])
