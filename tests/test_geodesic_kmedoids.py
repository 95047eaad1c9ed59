"""GeodesicKMedoids: scikit-learn's own estimator checks, and independent references
(FasterPAM of the ``kmedoids`` package on scipy's Dijkstra matrix)."""
import pickle

import kmedoids
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import kneighbors_graph
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.geodesic_kmedoids import EXPECTED_FAILED_CHECKS, GeodesicKMedoids


# the checks' tiny data often leave a disconnected graph or fewer than k + 1 distinct
# points: both are repaired with a warning, which is the documented behaviour
@pytest.mark.filterwarnings("ignore:The neighbour graph has:UserWarning")
@pytest.mark.filterwarnings("ignore:n_neighbors=5 is not below:UserWarning")
@parametrize_with_checks([GeodesicKMedoids(n_clusters=3, n_neighbors=5, random_state=0),
                          GeodesicKMedoids(n_clusters=3, n_neighbors=5, init="k-means", random_state=0)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def swiss_roll(n=150, seed=0):
    """Points on a 2-D spiral strip in 3-D, where geodesic and Euclidean distances differ."""
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    return np.c_[t * np.cos(t), 10 * rng.random(n), t * np.sin(t)]


def reference_graph(X, k):
    """scikit-learn's symmetric k-NN graph with Euclidean edge lengths (connected here)."""
    g = kneighbors_graph(X, k, mode="distance")
    g = g.maximum(g.T).tocsr()
    assert sp.csgraph.connected_components(g)[0] == 1
    return g


@pytest.fixture(scope="module")
def fitted():
    X = swiss_roll()
    return X, GeodesicKMedoids(6, n_neighbors=8, random_state=0).fit(X)


def test_graph_and_loss_match_fasterpam_on_the_dijkstra_matrix(fitted):
    X, km = fitted
    g = reference_graph(X, 8)
    assert abs(km.graph_ - g).max() < 1e-12
    D = dijkstra(g, directed=False)  # (N, N) exact geodesics
    # our inertia is the loss of our medoids on the exact matrix ...
    assert km.inertia_ == pytest.approx(D[km.medoid_nodes_].min(axis=0).sum(), rel=1e-9)
    # ... and within 1 % of FasterPAM's (Schubert & Rousseeuw 2021), the best of 5 seeds
    best = min(kmedoids.fasterpam(D, 6, random_state=s, n_cpu=1).loss for s in range(5))
    assert km.inertia_ <= 1.01 * best


def test_predict_on_training_points_is_labels_and_transform_is_dijkstra(fitted):
    X, km = fitted
    assert np.array_equal(km.predict(X), km.labels_)
    assert np.array_equal(km.fit_predict(X), km.labels_)  # same seed, same fit
    D = dijkstra(reference_graph(X, 8), directed=False, indices=km.medoid_indices_)  # (K, N)
    assert np.allclose(km.transform(X), D.T, rtol=1e-12)
    assert np.array_equal(km.labels_, D.argmin(axis=0))
    assert np.array_equal(km.cluster_centers_, X[km.medoid_indices_])
    assert km.n_features_in_ == 3 and km.transform(X).dtype == np.float64
    assert list(km.get_feature_names_out()) == [f"geodesickmedoids{i}" for i in range(6)]


def test_new_points_are_placed_by_dijkstra_on_the_extended_graph(fitted):
    """A new point joins the graph through its k nearest training points (Isomap's
    transform); its distances are Dijkstra's on that extended graph, never Euclidean."""
    X, km = fitted
    new = swiss_roll(5, seed=1)
    got = km.transform(new)
    for x, row in zip(new, got):
        ext = sp.lil_matrix(sp.block_diag([reference_graph(X, 8), sp.csr_matrix((1, 1))]))
        d = np.linalg.norm(X - x, axis=1)
        for j in np.argsort(d)[:8]:
            ext[len(X), j] = ext[j, len(X)] = d[j]
        want = dijkstra(ext.tocsr(), directed=False, indices=[len(X)])[0, km.medoid_indices_]
        assert np.allclose(row, want, rtol=1e-12)
    assert np.array_equal(km.predict(new), got.argmin(axis=1))


def test_integer_weights_are_repeated_rows_and_zero_weights_absent():
    X = swiss_roll(80)
    w = np.random.default_rng(2).integers(0, 4, len(X))
    weighted = GeodesicKMedoids(4, n_neighbors=6, random_state=0).fit(X, sample_weight=w)
    repeated = GeodesicKMedoids(4, n_neighbors=6, random_state=0).fit(np.repeat(X, w, axis=0))
    assert np.array_equal(weighted.cluster_centers_, repeated.cluster_centers_)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_)
    assert np.allclose(weighted.transform(X), repeated.transform(X))
    assert np.array_equal(weighted.labels_, repeated.predict(X))
    assert len(weighted.nodes_) == (w > 0).sum()


def test_the_quantizer_fits_through_the_estimator():
    from models.geodesic_vq import GeodesicQuantizer

    Z = swiss_roll(120).astype(np.float32)
    q = GeodesicQuantizer(5, n_neighbors=7, seed=3).fit(Z)
    km = GeodesicKMedoids(5, n_neighbors=7, random_state=3).fit(Z)
    assert np.array_equal(q.codebook_, km.cluster_centers_) and q.loss_ == pytest.approx(km.inertia_)
    assert np.array_equal(q.labels_, km.labels_)
    new = swiss_roll(20, seed=4).astype(np.float32)
    out = q.quantize(new)
    assert np.array_equal(out.indices.numpy(), km.predict(new))
    assert np.allclose(out.distances.numpy(), km.transform(new).min(axis=1), rtol=1e-5)


def test_one_distinct_vector_and_duplicates_warn_and_repair():
    X = np.ones((10, 2))
    with pytest.warns(UserWarning, match="one distinct vector"):
        km = GeodesicKMedoids(3, random_state=0).fit(X)
    assert (km.labels_ == 0).all() and km.inertia_ == 0
    assert np.allclose(km.transform([[1.0, 4.0]]), 3.0)
    X = np.repeat(swiss_roll(4), 5, axis=0)
    with pytest.warns(UserWarning, match="only 4 distinct points for n_clusters=6"):
        km = GeodesicKMedoids(6, n_neighbors=2, random_state=0).fit(X)
    assert set(km.labels_) == {0, 1, 2, 3} and km.inertia_ == 0


def test_disconnected_graph_is_repaired_with_a_warning_not_dropped():
    X = np.r_[swiss_roll(40), swiss_roll(40) + 500.0]
    with pytest.warns(UserWarning, match="2 connected components"):
        km = GeodesicKMedoids(2, n_neighbors=5, random_state=0).fit(X)
    assert np.isfinite(km.transform(X)).all() and set(km.labels_) == {0, 1}


@pytest.mark.parametrize("bad, match", [({"n_clusters": 0}, "n_clusters must be an integer >= 1"),
                                        ({"n_neighbors": 2.5}, "n_neighbors must be an integer"),
                                        ({"neighbors": "kd"}, "neighbors must be"),
                                        ({"init": "random"}, "init must be 'k-medoids\\+\\+' or 'k-means'"),
                                        ({"max_swap_visits": -1}, "max_swap_visits must be an integer >= 0"),
                                        ({"max_swap_visits": "fast"}, "'auto' or None, got 'fast'"),
                                        ({"n_clusters": 200}, "n_samples=150 .* should be >= n_clusters=200")])
def test_bad_parameters_say_how_to_fix_them(bad, match):
    with pytest.raises(ValueError, match=match):
        GeodesicKMedoids(**bad).fit(swiss_roll())


def test_pickle_round_trip(fitted):
    X, km = fitted
    back = pickle.loads(pickle.dumps(km))
    assert np.array_equal(back.transform(X), km.transform(X))


def test_hnsw_index_pickles_by_rebuilding_it():
    X = swiss_roll(300).astype(np.float32)
    km = GeodesicKMedoids(3, n_neighbors=6, neighbors="hnsw", random_state=0).fit(X)
    back = pickle.loads(pickle.dumps(km))
    new = swiss_roll(30, seed=9).astype(np.float32)
    assert np.array_equal(back.transform(new), km.transform(new))
    # training rows are found as nodes, not searched: their labels and geodesics exactly
    assert np.array_equal(back.predict(X), km.labels_) and np.array_equal(km.labels_, km.node_labels_)
    D = dijkstra(km.graph_, directed=False, indices=km.medoid_nodes_)
    assert np.allclose(km.transform(X), D.T, rtol=1e-6)


def test_kmeans_init_starts_from_snapped_centroids_and_fits_as_well(fitted):
    """init="k-means" passes kmeans_init_nodes' nodes (weighted by multiplicity) to
    geodesic_kmedoids; the fit's loss stays within 2 % of the default's, and of FasterPAM."""
    from geodesic.kmeans_init import kmeans_init_nodes
    from geodesic.kmedoids import geodesic_kmedoids

    X, default = fitted
    km = GeodesicKMedoids(6, n_neighbors=8, init="k-means", random_state=0).fit(X)
    order = np.lexsort(km.nodes_.T[::-1])  # k-means sees the nodes in lexicographic order
    start = order[kmeans_init_nodes(km.nodes_[order], None, 6, seed=0)]
    direct = geodesic_kmedoids(km.graph_, 6, seed=0, init=start)
    assert np.array_equal(km.medoid_nodes_, direct.medoids) and km.inertia_ == direct.loss
    assert km.inertia_ <= 1.02 * default.inertia_
    D = dijkstra(reference_graph(X, 8), directed=False)
    assert km.inertia_ <= 1.02 * min(kmedoids.fasterpam(D, 6, random_state=s, n_cpu=1).loss for s in range(5))


def test_kmeans_init_with_as_many_medoids_as_distinct_points():
    X = np.repeat(swiss_roll(4), 5, axis=0)
    with pytest.warns(UserWarning, match="only 4 distinct points for n_clusters=6"):
        km = GeodesicKMedoids(6, n_neighbors=2, init="k-means", random_state=0).fit(X)
    assert set(km.labels_) == {0, 1, 2, 3} and km.inertia_ == 0
