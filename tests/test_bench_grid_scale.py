"""The grid-scale benchmark's subsample-fit stage maps prefix medoids to the right nodes."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_grid_scale as bench  # noqa: E402


def _data(seed=0):
    """(400, 3) points with many exact duplicates (a prefix holds only some of the distinct ones)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(150, 3)).astype(np.float32)
    return base[rng.integers(0, 150, size=400)]


def test_prefix_medoids_are_scored_on_the_same_vectors(tmp_path):
    Z = _data()
    z_path = str(tmp_path / "Z.npy")
    np.save(z_path, Z)
    prefix, full = str(tmp_path / "prefix.npz"), str(tmp_path / "full.npz")
    bench.graph_child(z_path, 160, 5, "exact", prefix)
    bench.graph_child(z_path, len(Z), 5, "exact", full)
    prefix_points = np.load(prefix + ".nodes.npz")["points"]
    medoids = np.array([0, 7, 31, len(prefix_points) - 1])

    out = bench.prefix_on_full_child(full, prefix, medoids)

    # brute force: find each medoid's vector among the full graph's nodes by value
    nodes = np.load(full + ".nodes.npz")
    full_points, counts = nodes["points"], nodes["counts"]
    by_value = [int(np.flatnonzero((full_points == prefix_points[m]).all(axis=1))[0]) for m in medoids]
    D = dijkstra(sp.load_npz(full), directed=False, indices=by_value)
    assert np.isclose(out["loss"], float((counts * D.min(axis=0)).sum()))


def test_prefix_equal_to_whole_set_gives_the_full_fit_loss(tmp_path):
    Z = _data(1)
    z_path = str(tmp_path / "Z.npy")
    np.save(z_path, Z)
    prefix, full = str(tmp_path / "prefix.npz"), str(tmp_path / "full.npz")
    bench.graph_child(z_path, len(Z), 5, "exact", prefix)
    bench.graph_child(z_path, len(Z), 5, "exact", full)
    fit = bench.kmedoids_child(prefix, 6, 0)
    assert np.isclose(bench.prefix_on_full_child(full, prefix, fit["medoids"])["loss"], fit["loss"])


def test_kmedoids_child_fits_from_each_init_and_notes_its_phases(tmp_path):
    Z = _data(2)
    z_path = str(tmp_path / "Z.npy")
    np.save(z_path, Z)
    graph_path = str(tmp_path / "g.npz")
    bench.graph_child(z_path, len(Z), 5, "exact", graph_path)
    counts = np.load(graph_path + ".nodes.npz")["counts"]
    D = dijkstra(sp.load_npz(graph_path), directed=False)
    for init in bench.INITS:
        fit = bench.kmedoids_child(graph_path, 6, 0, init)
        # the loss is that of the medoids on scipy's all-pairs matrix, weighted
        assert np.isclose(fit["loss"], float(counts @ D[fit["medoids"]].min(axis=0)))
        phases = [p.split(" ")[0] for p in fit["note"].split(", ")]
        start = ["k-means"] if init == "k-means" else []
        assert phases == start + ["setup", "seeding", "alternating", "swaps", "assignment"]


def test_kmeans_child_scores_snapped_centroids_on_the_graph(tmp_path):
    """faiss k-means on all vectors (duplicates included); its centroids' nearest nodes
    (brute force, distinct here) scored by scipy's Dijkstra, weighted by multiplicity."""
    from geodesic.kmeans_init import kmeans_centroids

    Z = _data(3)
    z_path = str(tmp_path / "Z.npy")
    np.save(z_path, Z)
    graph_path = str(tmp_path / "g.npz")
    bench.graph_child(z_path, 300, 5, "exact", graph_path)
    out = bench.kmeans_child(z_path, 300, 6, 0, 1, graph_path)
    assert out["seconds"] >= 0 and out["peak_mb"] > 0 and out["n_nodes"] == len(np.unique(Z[:300], axis=0))
    nodes = np.load(graph_path + ".nodes.npz")
    centroids = kmeans_centroids(Z[:300], 6, seed=0, max_points_per_centroid=10**9)  # the same seeded run
    nearest = ((centroids[:, None, :] - nodes["points"][None]) ** 2).sum(-1).argmin(axis=1)
    assert len(np.unique(nearest)) == 6
    D = dijkstra(sp.load_npz(graph_path), directed=False, indices=nearest)
    assert np.isclose(out["loss"], float((nodes["counts"] * D.min(axis=0)).sum()))


def test_init_flag_defaults_to_both_side_by_side():
    assert bench.parse_args([]).init == ["k-medoids++", "k-means"]
    assert bench.parse_args(["--init", "k-means", "k-means"]).init == ["k-means"]


def test_predict_child_labels_new_rows_by_their_least_geodesic_distance(tmp_path):
    """Out-of-sample labels of the rows after the prefix: each the medoid of least geodesic
    distance through the fitted graph (the estimator's dense transform as the reference), and
    k-means' nearest centroid by brute force."""
    from geodesic.kmeans_init import kmeans_centroids
    from models.geodesic_kmedoids import GeodesicKMedoids

    Z = _data(4)
    z_path = str(tmp_path / "Z.npy")
    np.save(z_path, Z)
    out = bench.predict_child(z_path, 300, 100, 5, 0, 1)
    est = GeodesicKMedoids(5, random_state=0).fit(Z[:300])
    assert np.array_equal(out["labels"], est.transform(Z[300:]).argmin(axis=1))
    centroids = kmeans_centroids(Z[:300], 5, seed=0, max_points_per_centroid=10**9)
    brute = ((Z[300:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
    assert np.array_equal(out["kmeans_labels"], brute)
    assert out["seconds"] >= 0 and out["kmeans_seconds"] >= 0


def test_the_swap_budget_fit_runs_beside_the_default_ones():
    assert bench.fit_variants(bench.parse_args([])) == [
        ("k-medoids++", 0.0), ("k-means", 0.0), ("k-medoids++", 32.0)]
    assert bench.fit_variants(bench.parse_args(["--swap-budget", "0", "--init", "k-means"])) == [
        ("k-means", 0.0)]
    assert bench.fit_variants(bench.parse_args(["--init", "--swap-budget", "16", "--swap-init",
                                                "k-means"])) == [("k-means", 16.0)]
    with pytest.raises(SystemExit):  # nothing left to fit
        bench.parse_args(["--init", "--swap-budget", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--max-iter", "-1"])
    assert bench.parse_args([]).max_iter == 3  # geodesic_kmedoids' default


def test_a_swap_budget_caps_the_swaps_and_the_loss_is_still_exact(tmp_path):
    """A budget of no visits leaves k-medoids++ plus alternating (geodesic_kmedoids with no
    swap pass); any budget's loss is its medoids' on scipy's all-pairs matrix."""
    from geodesic.kmedoids import geodesic_kmedoids

    Z = _data(4)
    z_path = str(tmp_path / "Z.npy")
    np.save(z_path, Z)
    graph_path = str(tmp_path / "g.npz")
    bench.graph_child(z_path, len(Z), 5, "exact", graph_path)
    graph, counts = sp.load_npz(graph_path), np.load(graph_path + ".nodes.npz")["counts"]
    none = bench.kmedoids_child(graph_path, 6, 0, "k-medoids++", 1, 1e-9)
    no_swaps = geodesic_kmedoids(graph, 6, weights=counts, seed=0, n_swap_passes=0)
    assert sorted(none["medoids"]) == sorted(no_swaps.medoids)
    D = dijkstra(graph, directed=False)
    for budget in (1e-9, 2.0, 0.0):
        fit = bench.kmedoids_child(graph_path, 6, 0, "k-medoids++", 1, budget)
        assert np.isclose(fit["loss"], float(counts @ D[fit["medoids"]].min(axis=0)))
    # --max-iter reaches geodesic_kmedoids: one alternating step and no swaps, as called directly
    import geodesic.kmedoids as gk

    seen = {}
    real = gk.geodesic_kmedoids
    mp = pytest.MonkeyPatch()
    mp.setattr(gk, "geodesic_kmedoids", lambda *a, **k: seen.update(k) or real(*a, **k))
    try:
        one = bench.kmedoids_child(graph_path, 6, 0, "k-medoids++", 1, 1e-9, max_iter=1)
    finally:
        mp.undo()
    assert seen["max_iter"] == 1
    direct = geodesic_kmedoids(graph, 6, weights=counts, seed=0, n_swap_passes=0, max_iter=1)
    assert sorted(one["medoids"]) == sorted(direct.medoids)
