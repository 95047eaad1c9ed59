"""Tests for geodesic/kmedoids.py (geodesic k-medoids) against independent references.

References: ``kmedoids.fasterpam`` on the full geodesic matrix (scikit-learn
Isomap's distances via ``geodesic_distances``), brute force over all
K-subsets, and for the weighted objective the same data with every duplicate
expanded into its own point.
"""
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_blobs, make_swiss_roll

import kmedoids
import geodesic.graph as gt
import geodesic.kmedoids as km
from geodesic.ann import collapse_duplicates
from geodesic.graph import connect_components, geodesic_distances, knn_graph
from geodesic.kmedoids import geodesic_kmedoids, kmedoids_loss


def with_duplicates(n_unique=300, d=3, seed=0):
    """Points with heavy duplicates: one 'background' vector repeated 150 times, others 1-4 times."""
    rng = np.random.default_rng(seed)
    X = make_swiss_roll(n_unique, noise=0.3, random_state=seed)[0][:, :d]
    reps = rng.integers(1, 5, n_unique)
    reps[7] = 150
    return np.repeat(X, reps, axis=0)[rng.permutation(reps.sum())]


def expanded_distances(graph, inverse):
    """All-pairs geodesics on the expanded data: every copy sits on its node at distance 0.

    This is the geodesic matrix of the collapsed graph with each copy joined to
    its node by a zero-length edge, built independently of the weights.
    """
    D = geodesic_distances(graph)
    return D[np.ix_(inverse, inverse)]


# ----------------------------------------------------------------------------
# geodesic_kmedoids
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("K", [10, 30])
def test_kmedoids_loss_close_to_fasterpam(roll, K):
    """Within 1 % of FasterPAM on the full geodesic matrix, averaged over seeds.

    Both are local searches from random starts, so single runs scatter by
    about +-1.5 % around each other; each seed must be within the issue's 2 %.
    """
    _, graph, D = roll
    seeds = range(4)
    ours = np.array([geodesic_kmedoids(graph, K, seed=s).loss for s in seeds])
    pam = np.array([kmedoids.fasterpam(D, K, random_state=s, n_cpu=1).loss for s in seeds])
    assert ours.mean() <= 1.01 * pam.mean()
    assert np.all(ours <= 1.02 * pam)


@pytest.mark.parametrize("K", [2, 3])
def test_kmedoids_finds_brute_force_optimum_on_tiny_clustered_data(K):
    """K small blobs, N = 12: the best K-subset, by brute force, is found exactly.

    (On unclustered tiny data any swap-based local search, FasterPAM's too,
    can stop in a worse local optimum, so exactness is asked only here.)
    """
    centers = [[0, 0], [6, 0], [0, 6]][:K]
    X, _ = make_blobs(12, n_features=2, centers=centers, cluster_std=1.0, random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the blobs may be joined by connect_components
        graph = connect_components(knn_graph(X, 3), X)
    D = geodesic_distances(graph)
    best = min(D[list(subset)].min(axis=0).sum() for subset in itertools.combinations(range(12), K))
    for seed in range(5):
        assert geodesic_kmedoids(graph, K, seed=seed).loss == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("K", [1, 7, 64])
def test_kmedoids_result_is_self_consistent(roll, K):
    _, graph, D = roll
    res = geodesic_kmedoids(graph, K, seed=3)
    assert res.medoids.shape == (K,) and res.medoids.dtype == np.int64
    assert len(np.unique(res.medoids)) == K
    assert res.labels.shape == (500,) and res.labels.min() >= 0 and res.labels.max() < K
    np.testing.assert_allclose(res.distances, D[res.medoids[res.labels], np.arange(500)], rtol=1e-12)
    np.testing.assert_allclose(res.distances, D[res.medoids].min(axis=0), rtol=1e-12)  # nearest medoid
    assert res.loss == pytest.approx(res.distances.sum(), rel=1e-12)
    np.testing.assert_array_equal(res.labels[res.medoids], np.arange(K))


def test_kmedoids_is_reproducible(roll):
    _, graph, _ = roll
    a, b = geodesic_kmedoids(graph, 20, seed=5), geodesic_kmedoids(graph, 20, seed=5)
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss
    # another seed may end elsewhere, but must be an equally valid clustering
    c = geodesic_kmedoids(graph, 20, seed=6)
    assert len(np.unique(c.medoids)) == 20


def test_kmedoids_with_all_points_as_medoids_has_zero_loss():
    X = np.random.default_rng(0).normal(size=(40, 3))
    res = geodesic_kmedoids(connect_components(knn_graph(X, 4), X), 40)
    assert res.loss == 0.0
    np.testing.assert_array_equal(np.sort(res.medoids), np.arange(40))


def test_kmedoids_alternating_only_is_worse_than_with_swaps(roll):
    """The swap passes are what closes the gap to PAM (shared design notes)."""
    _, graph, _ = roll
    alternating = geodesic_kmedoids(graph, 30, seed=0, n_swap_passes=0).loss
    assert geodesic_kmedoids(graph, 30, seed=0).loss < alternating


def test_kmedoids_float32_graph_gives_float32_distances():
    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    res = geodesic_kmedoids(connect_components(knn_graph(X, 6), X), 5, device="cpu")
    assert res.distances.dtype == np.float32
    assert isinstance(res.loss, float)


def test_kmedoids_rejects_bad_n_clusters(roll):
    _, graph, _ = roll
    with pytest.raises(ValueError, match=r"K=600 is larger than the number of points N=500"):
        geodesic_kmedoids(graph, 600)
    with pytest.raises(ValueError, match=r"at least 1"):
        geodesic_kmedoids(graph, 0)


def test_kmedoids_rejects_non_square_graph():
    with pytest.raises(ValueError, match="square"):
        geodesic_kmedoids(sp.random(5, 6, density=0.5, format="csr", random_state=0), 2)


def test_kmedoids_rejects_disconnected_graph(two_blobs):
    X = two_blobs
    with pytest.raises(ValueError, match=r"2 connected components.*connect_components"):
        geodesic_kmedoids(knn_graph(X, 8), 4)



def test_swap_gains_match_brute_force_with_weights(roll):
    """FasterPAM's gains (weighted) equal the change of the brute-force weighted loss."""
    _, graph, D = roll
    rng = np.random.default_rng(1)
    w = rng.integers(1, 50, 500).astype(float)
    g = gt.CSRGraph(graph)
    top2 = gt.Top2Search(g)
    medoids = rng.choice(500, 12, replace=False)
    top2.reset(medoids)
    candidates = rng.choice(np.setdiff1d(np.arange(500), medoids), 40, replace=False)
    cpos, nodes, dist = gt.PrunedSearch(g, 40).run(candidates, top2.d2)
    delta = km._swap_gains(top2.s1, top2.d1, top2.d2, w, 12, 40, cpos, nodes, dist, device=torch.device("cpu"))
    loss = w @ D[medoids].min(axis=0)
    for i, x in enumerate(candidates):
        for slot in range(12):
            swapped = medoids.copy()
            swapped[slot] = x
            assert delta[i, slot] == pytest.approx(w @ D[swapped].min(axis=0) - loss, abs=1e-7)


# ----------------------------------------------------------------------------
# Weights: collapsed duplicates against the expanded data
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dup_data():
    Z = with_duplicates()
    nodes = collapse_duplicates(Z)
    graph = connect_components(knn_graph(nodes.points, 8), nodes.points)
    return Z, nodes, graph, expanded_distances(graph, nodes.inverse)


def test_weighted_loss_of_any_medoid_set_equals_expanded_loss(dup_data):
    Z, nodes, graph, D_exp = dup_data
    rng = np.random.default_rng(0)
    for K in (1, 5, 40):
        medoids = rng.choice(len(nodes.points), K, replace=False)
        # any copy of a medoid node is that medoid in the expanded data
        copies = np.array([np.flatnonzero(nodes.inverse == m)[0] for m in medoids])
        expected = D_exp[copies].min(axis=0).sum()
        assert kmedoids_loss(graph, medoids, nodes.counts) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("K", [8, 30])
def test_weighted_kmedoids_on_collapsed_nodes_matches_fasterpam_on_expanded_data(dup_data, K):
    """Same objective: ours on U weighted nodes is as good as FasterPAM on all N points."""
    Z, nodes, graph, D_exp = dup_data
    seeds = range(3)
    ours = [geodesic_kmedoids(graph, K, weights=nodes.counts, seed=s) for s in seeds]
    for res in ours:  # the reported loss is the expanded-data loss of its medoids
        copies = np.array([np.flatnonzero(nodes.inverse == m)[0] for m in res.medoids])
        assert res.loss == pytest.approx(D_exp[copies].min(axis=0).sum(), rel=1e-9)
        assert res.loss == pytest.approx(nodes.counts @ res.distances, rel=1e-9)
    ours = np.array([r.loss for r in ours])
    pam = np.array([kmedoids.fasterpam(D_exp, K, random_state=s, n_cpu=1).loss for s in seeds])
    # both are local searches from random starts; single runs scatter by ~2 %
    assert ours.mean() <= 1.01 * pam.mean()
    assert ours.min() <= 1.005 * pam.min()


def test_weighted_kmedoids_finds_brute_force_optimum_of_expanded_data():
    """Tiny clustered data with duplicates: the best K-subset of the expanded points is found."""
    X, _ = make_blobs(12, n_features=2, centers=[[0, 0], [6, 0], [0, 6]], cluster_std=1.0, random_state=4)
    reps = np.array([1, 5, 1, 2, 1, 1, 9, 1, 3, 1, 1, 2])
    Z = np.repeat(X, reps, axis=0)
    nodes = collapse_duplicates(Z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the blobs may be joined by connect_components
        graph = connect_components(knn_graph(nodes.points, 3), nodes.points)
    D_exp = expanded_distances(graph, nodes.inverse)
    best = min(D_exp[list(s)].min(axis=0).sum() for s in itertools.combinations(range(len(Z)), 3))
    for seed in range(5):
        assert geodesic_kmedoids(graph, 3, weights=nodes.counts, seed=seed).loss == pytest.approx(best, rel=1e-12)


def test_weights_change_the_answer_where_they_should():
    """A heavy node pulls the single medoid onto itself (the unweighted medoid is elsewhere)."""
    X = np.linspace(0, 10, 41)[:, None]
    graph = knn_graph(X, 2)
    w = np.ones(41)
    w[3] = 1000.0
    assert geodesic_kmedoids(graph, 1).medoids[0] == 20
    assert geodesic_kmedoids(graph, 1, weights=w).medoids[0] == 3


def test_unit_weights_give_the_unweighted_result(roll):
    _, graph, _ = roll
    a = geodesic_kmedoids(graph, 20, seed=2)
    b = geodesic_kmedoids(graph, 20, seed=2, weights=np.ones(500))
    np.testing.assert_array_equal(a.medoids, b.medoids)
    assert a.loss == b.loss


def test_kmedoids_rejects_bad_weights(roll):
    _, graph, _ = roll
    with pytest.raises(ValueError, match=r"shape \(N,\) = \(500,\)"):
        geodesic_kmedoids(graph, 3, weights=np.ones(499))
    with pytest.raises(ValueError, match="non-negative"):
        geodesic_kmedoids(graph, 3, weights=-np.ones(500))


def test_kmedoids_loss_equals_dense_reference(roll):
    _, graph, D = roll
    medoids = np.array([4, 80, 311])
    w = np.arange(500) % 7 + 1.0
    assert kmedoids_loss(graph, medoids) == pytest.approx(D[medoids].min(axis=0).sum(), rel=1e-12)
    assert kmedoids_loss(graph, medoids, w) == pytest.approx(w @ D[medoids].min(axis=0), rel=1e-12)


def test_small_search_scratch_gives_a_valid_result(roll):
    """max_search_entries caps the (batch, N) scratch; batch 1 still gives an exact, consistent answer."""
    _, graph, D = roll
    res = geodesic_kmedoids(graph, 10, seed=0, max_search_entries=500)
    np.testing.assert_allclose(res.distances, D[res.medoids].min(axis=0), rtol=1e-12)
    full = geodesic_kmedoids(graph, 10, seed=0)
    assert res.loss <= 1.02 * full.loss


@pytest.mark.parametrize("seed_batch", [1, 2, 8])
def test_seeding_keeps_exact_nearest_distances(roll, seed_batch):
    """Sequential, and k-means||-style rounds (scipy rounds, then pruned searches together)."""
    _, graph, D = roll
    g = gt.CSRGraph(graph)
    w = np.arange(500) % 5 + 1.0
    medoids, nearest = km._kmedoids_plusplus(g, 40, np.random.default_rng(0), gt.PrunedSearch(g, 16), w,
                                             seed_batch=seed_batch)
    assert len(np.unique(medoids)) == 40
    np.testing.assert_allclose(nearest, D[medoids].min(axis=0), rtol=1e-12)


def test_batched_seeding_is_as_good(roll):
    _, graph, _ = roll
    batched = [geodesic_kmedoids(graph, 30, seed=s, seed_batch=8).loss for s in range(3)]
    sequential = [geodesic_kmedoids(graph, 30, seed=s).loss for s in range(3)]
    assert np.mean(batched) <= 1.01 * np.mean(sequential)


def test_default_seeding_switches_to_rounds_on_large_graphs(roll, monkeypatch):
    _, graph, _ = roll
    calls = []
    original = km._kmedoids_plusplus

    def spy(*args, seed_batch, **kwargs):
        calls.append(seed_batch)
        return original(*args, seed_batch=seed_batch, **kwargs)

    monkeypatch.setattr(km, "_kmedoids_plusplus", spy)
    geodesic_kmedoids(graph, 32, n_swap_passes=0)
    monkeypatch.setattr(km, "SEQUENTIAL_SEEDING_MAX_N", 100)
    geodesic_kmedoids(graph, 32, n_swap_passes=0)
    assert calls == [1, 2]


def test_swap_work_budget_stops_the_swaps(roll, capsys):
    """max_swap_visits=0 is alternating only; a small budget lies between; None is unbounded."""
    _, graph, D = roll
    none = geodesic_kmedoids(graph, 30, seed=0, max_swap_visits=0)
    assert none.loss == geodesic_kmedoids(graph, 30, seed=0, n_swap_passes=0).loss
    small = geodesic_kmedoids(graph, 30, seed=0, max_swap_visits=2000, verbose=True)
    assert "max_swap_visits" in capsys.readouterr().out
    full = geodesic_kmedoids(graph, 30, seed=0, max_swap_visits=None)
    assert full.loss <= small.loss <= none.loss and full.loss < none.loss
    np.testing.assert_allclose(small.distances, D[small.medoids].min(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="max_swap_visits"):
        geodesic_kmedoids(graph, 3, max_swap_visits=-1)


def test_auto_swap_budget_is_the_larger_of_2_26_and_64_n(roll, monkeypatch):
    """'auto' is max(2**26, 64 N): spy on the budget the swap passes receive."""
    _, graph, _ = roll
    seen = []
    real = km._swap_pass

    def spy(*args, max_visits, **kwargs):
        seen.append(max_visits)
        return real(*args, max_visits=max_visits, **kwargs)

    monkeypatch.setattr(km, "_swap_pass", spy)
    auto = geodesic_kmedoids(graph, 30, seed=0)  # the default
    assert seen[0] == float(max(2**26, 64 * graph.shape[0])) == float(2**26)
    explicit = geodesic_kmedoids(graph, 30, seed=0, max_swap_visits=2**26)
    np.testing.assert_array_equal(auto.medoids, explicit.medoids)
    with pytest.raises(ValueError, match="'auto'"):
        geodesic_kmedoids(graph, 3, max_swap_visits="many")


# ----------------------------------------------------------------------------
# init: given starting medoids, and the per-phase seconds
# ----------------------------------------------------------------------------
def test_given_init_without_iterations_returns_it_with_dijkstras_loss(roll):
    """max_iter=0, n_swap_passes=0: the given medoids come back as they are, scored by
    scipy's multi-source Dijkstra (an independent reference), weighted."""
    _, graph, _ = roll
    init = np.array([412, 3, 250, 77, 499, 120, 0])
    w = np.random.default_rng(0).integers(1, 6, 500).astype(float)
    res = geodesic_kmedoids(graph, 7, weights=w, init=init, max_iter=0, n_swap_passes=0)
    np.testing.assert_array_equal(res.medoids, init)
    reference = sp.csgraph.dijkstra(graph, directed=False, indices=init, min_only=True)
    np.testing.assert_allclose(res.distances, reference, rtol=1e-12)
    assert res.loss == pytest.approx(float(w @ reference), rel=1e-12)
    np.testing.assert_array_equal(init[res.labels], init[np.argmin(
        sp.csgraph.dijkstra(graph, directed=False, indices=init), axis=0)])


def test_given_init_is_improved_from_and_accepts_lists(roll):
    _, graph, D = roll
    init = list(range(0, 500, 25))  # 20 medoids, a poor start
    res = geodesic_kmedoids(graph, 20, init=init, seed=1)
    assert res.loss < D[init].min(axis=0).sum()
    assert len(np.unique(res.medoids)) == 20


def test_default_init_is_k_medoids_plus_plus(roll):
    """Leaving init out and init="k-medoids++" are the same run, draw for draw."""
    _, graph, _ = roll
    for seed in (0, 4):
        a = geodesic_kmedoids(graph, 20, seed=seed)
        b = geodesic_kmedoids(graph, 20, seed=seed, init="k-medoids++")
        np.testing.assert_array_equal(a.medoids, b.medoids)
        assert a.loss == b.loss


@pytest.mark.parametrize("init, match", [
    ("k-means", r"kmeans_init_nodes"),
    (np.arange(6), r"shape \(K,\) = \(5,\)"),
    (np.arange(10).reshape(2, 5), r"shape \(K,\) = \(5,\)"),
    (np.array([0.0, 1, 2, 3, 4]), "integer node indices"),
    (np.array([True, False, True, False, True]), "integer node indices"),
    (np.array([0, 1, 2, 3, 500]), r"outside \[0, N\) = \[0, 500\)"),
    (np.array([-1, 1, 2, 3, 4]), r"outside \[0, N\)"),
    (np.array([0, 1, 2, 3, 3]), "5 distinct nodes, got 4"),
])
def test_bad_init_is_rejected(roll, init, match):
    _, graph, _ = roll
    with pytest.raises(ValueError, match=match):
        geodesic_kmedoids(graph, 5, init=init)


def test_result_reports_seconds_per_phase(roll):
    _, graph, _ = roll
    for init in ("k-medoids++", np.arange(0, 500, 50)):
        res = geodesic_kmedoids(graph, 10, init=init, seed=0)
        assert list(res.seconds) == ["setup", "seeding", "alternating", "swaps", "assignment"]
        assert all(isinstance(s, float) and s >= 0 for s in res.seconds.values())


def test_verbose_draws_no_progress_bar_into_a_log(roll, capsys):
    """stderr is not a terminal under pytest (as in a benchmark's log): no tqdm bar."""
    _, graph, _ = roll
    geodesic_kmedoids(graph, 10, seed=0, verbose=True)
    captured = capsys.readouterr()
    assert "swap pass 1:" in captured.out and "final assignment" in captured.out
    assert "it/s" not in captured.err and "swap pass" not in captured.err
