"""GeodesicQuantizer / EuclideanQuantizer against explicit references."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

from models.geodesic_vq import EuclideanQuantizer, GeodesicQuantizer, NotFittedError
from utils.metrics import geodesic_point_code_distances


def blobs(n=300, d=4, seed=0):
    """Three Gaussian blobs close enough for a connected 8-NN graph."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(3, d))
    return (centers[rng.integers(0, 3, n)] + rng.normal(size=(n, d))).astype(np.float32)


def extended_graph_distances(Z_train, k, new_point, nodes):
    """Reference: add ``new_point`` to the symmetric k-NN graph of Z_train as one
    extra node joined to its k nearest training points, run Dijkstra from it."""
    A = kneighbors_graph(Z_train.astype(np.float64), k, mode="distance")
    A = A.maximum(A.T)
    n = len(Z_train)
    dist, nbr = NearestNeighbors(n_neighbors=k).fit(Z_train.astype(np.float64)).kneighbors(
        new_point[None].astype(np.float64))
    extra = sp.csr_matrix((dist[0], (np.full(k, n), nbr[0])), shape=(n + 1, n + 1))
    big = sp.bmat([[A, None], [None, sp.csr_matrix((1, 1))]]).tocsr() + extra
    big = big.maximum(big.T)
    return dijkstra(big, directed=False, indices=n)[nodes]


@pytest.fixture(scope="module")
def fitted():
    Z = blobs()
    return Z, GeodesicQuantizer(8, n_neighbors=8, seed=0).fit(Z)


def test_out_of_sample_equals_dijkstra_on_extended_graph(fitted):
    Z, q = fitted
    rng = np.random.default_rng(1)
    new = Z[rng.integers(0, len(Z), 20)] + rng.normal(scale=0.3, size=(20, Z.shape[1]))
    out = q.quantize(new.astype(np.float32))
    for i, point in enumerate(new):
        ref = extended_graph_distances(Z, 8, point, q.medoids_)  # (K,) to every medoid
        assert out.distances[i].item() == pytest.approx(ref.min(), rel=1e-5)
        assert ref[out.indices[i].item()] == pytest.approx(ref.min(), rel=1e-5)


def test_training_points_quantize_to_their_fitted_medoid(fitted):
    Z, q = fitted
    out = q.quantize(Z)
    np.testing.assert_array_equal(out.indices.numpy(), q.node_labels_)
    np.testing.assert_allclose(out.distances.numpy(), q.node_distances_, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.codes.numpy(), Z[q.medoids_[q.node_labels_]])


def test_codebook_is_medoid_latents_and_same_seed_same_medoids(fitted):
    Z, q = fitted
    assert q.codebook.shape == (8, Z.shape[1])
    np.testing.assert_array_equal(q.codebook.numpy(), Z[q.medoids_])
    again = GeodesicQuantizer(8, n_neighbors=8, seed=0).fit(Z)
    np.testing.assert_array_equal(again.medoids_, q.medoids_)


def test_state_dict_round_trip_through_checkpoint(fitted, tmp_path):
    from utils.checkpoint import load_checkpoint, save_checkpoint

    Z, q = fitted
    save_checkpoint(tmp_path / "q.pt", {"quantizer": q.state_dict()})
    state = load_checkpoint(tmp_path / "q.pt")["quantizer"]
    back = GeodesicQuantizer.from_state_dict(state)
    new = blobs(50, seed=3)
    a, b = q.quantize(new), back.quantize(new)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.codes, b.codes)


@pytest.mark.parametrize("cls,kwargs", [(GeodesicQuantizer, {"n_neighbors": 5}),
                                        (EuclideanQuantizer, {})])
def test_bad_input_gives_clear_errors(cls, kwargs):
    Z = blobs(60)
    with pytest.raises(ValueError, match="larger than the number of points"):
        cls(61, **kwargs).fit(Z)
    with pytest.raises(ValueError, match="n_codes must be an integer >= 1"):
        cls(0, **kwargs).fit(Z)
    bad = Z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 rows"):
        cls(4, **kwargs).fit(bad)
    with pytest.raises(NotFittedError, match="not fitted"):
        cls(4, **kwargs).quantize(Z)
    q = cls(4, **kwargs).fit(Z)
    with pytest.raises(ValueError, match="latent dimension 3 but the quantizer was fitted on dimension 4"):
        q.quantize(Z[:, :3])
    with pytest.raises(ValueError, match="NaN or inf"):
        q.quantize(bad)


def test_k_below_one_is_refused():
    with pytest.raises(ValueError, match="n_neighbors k must be an integer >= 1"):
        GeodesicQuantizer(3, n_neighbors=0).fit(blobs(40))


def test_disconnected_latents_are_repaired_with_a_warning():
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 100]).astype(np.float32)
    with pytest.warns(UserWarning, match="has 2 connected components"):
        q = GeodesicQuantizer(4, n_neighbors=5).fit(Z)
    assert np.isfinite(q.node_distances_).all()


def test_euclidean_quantizer_picks_nearest_centroid():
    Z = blobs(200)
    q = EuclideanQuantizer(6, seed=0).fit(Z)
    new = blobs(40, seed=5)
    out = q.quantize(new)
    brute = np.linalg.norm(new[:, None, :] - q.codebook_[None], axis=2)
    np.testing.assert_array_equal(out.indices.numpy(), brute.argmin(1))
    np.testing.assert_allclose(out.distances.numpy(), brute.min(1), rtol=1e-4, atol=1e-5)


def test_point_code_distances_match_explicit_extended_graph(fitted):
    """Codes off the graph (k-means centroids): compare with Dijkstra on a graph
    that holds both the point and the code as extra nodes."""
    Z, _ = fitted
    k = 8
    codes = EuclideanQuantizer(5, seed=0).fit(Z).codebook_
    rng = np.random.default_rng(2)
    points = Z[:12] + rng.normal(scale=0.2, size=(12, Z.shape[1])).astype(np.float32)
    assign = rng.integers(0, 5, 12)
    A = kneighbors_graph(Z.astype(np.float64), k, mode="distance")
    A = A.maximum(A.T)
    got = geodesic_point_code_distances(A, Z, points, codes, assign, n_neighbors=k, chunk=2)
    nn = NearestNeighbors(n_neighbors=k).fit(Z.astype(np.float64))
    n = len(Z)
    for i in range(12):
        pd_, pn = nn.kneighbors(points[i:i + 1].astype(np.float64))
        cd, cn = nn.kneighbors(codes[assign[i]:assign[i] + 1].astype(np.float64))
        rows = np.r_[np.full(k, n), np.full(k, n + 1)]
        extra = sp.csr_matrix((np.r_[pd_[0], cd[0]], (rows, np.r_[pn[0], cn[0]])), shape=(n + 2, n + 2))
        big = sp.bmat([[A, None], [None, sp.csr_matrix((2, 2))]]).tocsr() + extra
        ref = dijkstra(big.maximum(big.T), directed=False, indices=n)[n + 1]
        assert got[i] == pytest.approx(ref, rel=1e-6)


def test_point_code_distances_for_medoids_equal_the_quantizer(fitted):
    Z, q = fitted
    new = blobs(30, seed=7)
    out = q.quantize(new)
    graph = GeodesicQuantizer.build_graph(Z, 8).graph
    got = geodesic_point_code_distances(graph, Z, new, q.codebook_, out.indices.numpy(), n_neighbors=8)
    np.testing.assert_allclose(got, out.distances.numpy(), rtol=1e-5)


def test_regression_load_state_dict_keeps_stale_neighbour_index():
    """Bug: load_state_dict kept the neighbour index of the old training latents,
    so a reloaded quantizer answered with the old points' neighbours."""
    a = GeodesicQuantizer(6, n_neighbors=6, seed=0).fit(blobs(150, seed=1))
    b = GeodesicQuantizer(6, n_neighbors=6, seed=0).fit(blobs(200, seed=2))
    queries = blobs(40, seed=3)
    a.quantize(queries)  # builds a's neighbour index
    a.load_state_dict(b.state_dict())
    got = a.quantize(queries)
    want = GeodesicQuantizer.from_state_dict(b.state_dict()).quantize(queries)
    np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    np.testing.assert_array_equal(got.distances.numpy(), want.distances.numpy())


def test_kmedoids_options_are_keyword_only_and_saved():
    with pytest.raises(TypeError):
        GeodesicQuantizer(4, 8, 0, "cpu")  # options after the seed must be named
    q = GeodesicQuantizer(5, n_neighbors=8, seed=1, n_swap_passes=2, medoid_candidates=4,
                          tol=0.01).fit(blobs(120))
    config = q.state_dict()["config"]
    assert config["n_swap_passes"] == 2 and config["medoid_candidates"] == 4 and config["tol"] == 0.01
    again = GeodesicQuantizer.from_state_dict(q.state_dict())
    assert again.kmedoids_options() == q.kmedoids_options()
    # the saved options refit to the same medoids
    refit = GeodesicQuantizer(**config).fit(blobs(120))
    np.testing.assert_array_equal(refit.medoids_, q.medoids_)
    with pytest.raises(TypeError, match="unexpected keyword"):
        GeodesicQuantizer(4, not_an_option=1)


@pytest.mark.parametrize("cls", [GeodesicQuantizer, EuclideanQuantizer])
def test_duplicate_latents_warn_when_codes_coincide(cls):
    """Latents with only 10 distinct points cannot give 16 distinct codes: say so."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, 3)).astype(np.float32)
    Z = points[rng.integers(0, 10, 200)] + 0  # 200 latents, 10 distinct values
    Z[:10] = points  # every distinct value present
    with pytest.warns(UserWarning, match="only 10 of the 16 code vectors are distinct"):
        q = cls(16, seed=0).fit(Z) if cls is EuclideanQuantizer else cls(16, n_neighbors=5).fit(Z)
    assert len(np.unique(q.codebook_.round(4), axis=0)) == 10


def scaled_isometry_decoder(scale=0.01):
    """Logits whose Bernoulli mean is 0.5 + scale * z: a decoder that is an isometry
    up to the factor ``scale`` (so decoder lengths are scale x latent lengths)."""
    return lambda z: torch.logit(0.5 + scale * torch.as_tensor(z))


def test_decoder_edge_length_of_a_scaled_isometry_scales_every_geodesic():
    Z = blobs(150, d=3) * 0.5
    latent = GeodesicQuantizer(5, n_neighbors=8, seed=0).fit(Z)
    dec = GeodesicQuantizer(5, n_neighbors=8, seed=0, edge_length="decoder",
                            decoder=scaled_isometry_decoder()).fit(Z)
    np.testing.assert_array_equal(dec.medoids_, latent.medoids_)
    np.testing.assert_allclose(dec.node_distances_, 0.01 * latent.node_distances_, rtol=1e-3,
                               atol=1e-7)
    new = blobs(20, d=3, seed=4) * 0.5
    a, b = latent.quantize(new), dec.quantize(new)
    np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
    np.testing.assert_allclose(b.distances.numpy(), 0.01 * a.distances.numpy(), rtol=1e-3)


def test_edge_length_and_code_vectors_round_trip_through_state_dict():
    Z = blobs(120, d=3) * 0.5
    images = np.random.default_rng(0).random((120, 3)).astype(np.float32)
    identity = lambda z: torch.as_tensor(z)  # noqa: E731 - logits = latent
    q = GeodesicQuantizer(4, n_neighbors=8, edge_length="decoder", code_vectors="refined",
                          decoder=identity, refine_steps=20).fit(Z, images=images)
    state = q.state_dict()
    assert state["config"]["edge_length"] == "decoder" and state["config"]["code_vectors"] == "refined"
    again = GeodesicQuantizer.from_state_dict(state, decoder=identity)
    assert (again.edge_length, again.code_vectors) == ("decoder", "refined")
    new = blobs(10, d=3, seed=9) * 0.5
    np.testing.assert_array_equal(again.quantize(new).indices.numpy(), q.quantize(new).indices.numpy())
    with pytest.raises(ValueError, match="needs the decoder"):
        GeodesicQuantizer.from_state_dict(state).quantize(new)


def test_refined_code_vectors_reach_the_analytic_optimum_and_keep_the_clusters():
    """Decoder = identity logits: the best vector of a cluster is logit(mean member image)."""
    rng = np.random.default_rng(1)
    Z = blobs(200, d=3)
    images = rng.uniform(0.2, 0.8, size=(200, 3)).astype(np.float32)
    identity = lambda z: torch.as_tensor(z)  # noqa: E731
    medoid = GeodesicQuantizer(4, n_neighbors=8, seed=0).fit(Z)
    refined = GeodesicQuantizer(4, n_neighbors=8, seed=0, code_vectors="refined", decoder=identity,
                                refine_steps=600, refine_lr=0.05).fit(Z, images=images)
    np.testing.assert_array_equal(refined.node_labels_, medoid.node_labels_)
    means = np.stack([images[medoid.node_labels_ == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(refined.codebook_, np.log(means / (1 - means)), atol=2e-3)
    new = blobs(30, d=3, seed=3)
    out = refined.quantize(new)
    np.testing.assert_array_equal(out.indices.numpy(), medoid.quantize(new).indices.numpy())
    np.testing.assert_allclose(out.codes.numpy(), refined.codebook_[out.indices.numpy()])
    with pytest.raises(ValueError, match="needs fit"):
        GeodesicQuantizer(4, code_vectors="refined", decoder=identity).fit(Z)


# --- duplicates collapsed into weighted nodes, exact or HNSW neighbours (the grid-rate scale path) ---

def dup_blobs(n_unique=150, n=400, seed=0):
    """``n`` rows drawing on ``n_unique`` distinct blob points (many exact duplicates)."""
    rng = np.random.default_rng(seed)
    points = blobs(n_unique, seed=seed)
    Z = points[rng.integers(0, n_unique, n)]
    Z[:n_unique] = points  # every distinct point present
    return Z


@pytest.mark.parametrize("neighbors", ["exact", "hnsw"])
def test_fit_on_duplicates_is_the_weighted_objective_of_every_row(neighbors):
    """Nodes are the unique rows; the loss is sum over *rows* of their geodesic
    distance to the nearest medoid (Dijkstra on the node graph, by brute force)."""
    Z = dup_blobs()
    q = GeodesicQuantizer(6, n_neighbors=8, seed=0, neighbors=neighbors).fit(Z)
    assert len(q.train_latents_) == 150 and q.node_counts_.sum() == len(Z)
    np.testing.assert_array_equal(np.unique(q.train_latents_, axis=0), np.unique(Z, axis=0))
    node_graph = q.graph_for(Z)
    D = dijkstra(node_graph.graph, directed=False, indices=q.medoids_)  # (K, U)
    row_nodes = node_graph.index.inverse_
    assert q.loss_ == pytest.approx(D.min(axis=0)[row_nodes].sum(), rel=1e-5)
    np.testing.assert_array_equal(q.labels_, D.argmin(axis=0)[row_nodes])
    # a training row quantizes to its node's code at its node's distance
    out = q.quantize(Z)
    np.testing.assert_array_equal(out.indices.numpy(), q.labels_)
    np.testing.assert_allclose(out.distances.numpy(), D.min(axis=0)[row_nodes], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("neighbors", ["exact", "hnsw"])
def test_out_of_sample_with_duplicates_equals_dijkstra_on_extended_node_graph(neighbors):
    """A new point joined to its k nearest *nodes* (exact lengths): the rule
    min_j (e_j + dn(j)) equals Dijkstra from it on the extended node graph."""
    Z = dup_blobs(seed=1)
    k = 8
    q = GeodesicQuantizer(5, n_neighbors=k, seed=0, neighbors=neighbors).fit(Z)
    node_graph = q.graph_for(Z)
    U = len(q.train_latents_)
    new = blobs(20, seed=9)
    out = q.quantize(new)
    dist, nbr = q.index_.kneighbors(new)
    if neighbors == "exact":  # the neighbours themselves, against brute force over the nodes
        bd, bn = NearestNeighbors(n_neighbors=k).fit(q.train_latents_.astype(np.float64)).kneighbors(
            new.astype(np.float64))
        np.testing.assert_allclose(dist, bd, rtol=1e-5)
    for i in range(len(new)):
        extra = sp.csr_matrix((dist[i], (np.full(k, U), nbr[i])), shape=(U + 1, U + 1))
        big = sp.bmat([[node_graph.graph, None], [None, sp.csr_matrix((1, 1))]]).tocsr() + extra
        ref = dijkstra(big.maximum(big.T), directed=False, indices=U)[q.medoids_]
        assert out.distances[i].item() == pytest.approx(ref.min(), rel=1e-5)
        assert ref[out.indices[i].item()] == pytest.approx(ref.min(), rel=1e-5)


def test_hnsw_quantizer_round_trips_through_state_dict():
    """The index is not saved; rebuilt from the nodes it answers the same queries."""
    Z = dup_blobs(seed=2)
    q = GeodesicQuantizer(5, n_neighbors=8, seed=0, neighbors="hnsw").fit(Z)
    state = q.state_dict()
    assert "node_counts_" in state and state["config"]["neighbors"] == "hnsw"
    again = GeodesicQuantizer.from_state_dict(state)
    new = blobs(50, seed=4)
    a, b = q.quantize(new), again.quantize(new)
    np.testing.assert_array_equal(a.indices.numpy(), b.indices.numpy())
    np.testing.assert_allclose(a.distances.numpy(), b.distances.numpy())


def test_codebook_saved_before_duplicates_were_collapsed_still_loads():
    Z = blobs(120)
    q = GeodesicQuantizer(4, n_neighbors=8, seed=0).fit(Z)
    state = q.state_dict()
    del state["node_counts_"]
    for key in ("neighbors", "exact_below"):
        del state["config"][key]
    again = GeodesicQuantizer.from_state_dict(state)
    np.testing.assert_array_equal(again.node_counts_, np.ones(len(Z)))
    np.testing.assert_array_equal(again.quantize(Z[:30]).indices.numpy(), q.quantize(Z[:30]).indices.numpy())


def test_fit_accepts_a_plain_sparse_graph_over_the_rows():
    """The old contract: a precomputed (N, N) graph over the rows of Z."""
    Z = blobs(150)
    A = kneighbors_graph(Z.astype(np.float64), 8, mode="distance")
    A = A.maximum(A.T).tocsr()
    q = GeodesicQuantizer(4, n_neighbors=8, seed=0).fit(Z, graph=A)
    D = dijkstra(A, directed=False, indices=q.medoids_)
    assert q.loss_ == pytest.approx(D.min(axis=0).sum(), rel=1e-5)
    with pytest.raises(ValueError, match="graph has shape"):
        GeodesicQuantizer(4, n_neighbors=8).fit(Z[:100], graph=A)


@pytest.mark.parametrize("algorithm", ["lloyd", "faiss"])
def test_kmeans_on_duplicates_reports_the_inertia_of_every_row(algorithm):
    """Collapsed and weighted, the loss is still sum over rows of the squared
    distance to the nearest centroid (brute force)."""
    Z = dup_blobs(seed=3)
    q = EuclideanQuantizer(6, seed=0, algorithm=algorithm).fit(Z)
    assert q.algorithm_ == algorithm
    brute = ((Z[:, None, :].astype(np.float64) - q.codebook_[None]) ** 2).sum(-1).min(1)
    assert q.loss_ == pytest.approx(brute.sum(), rel=1e-4)


def test_faiss_kmeans_is_close_to_scikit_learn_and_reproducible():
    Z = blobs(2000, d=6, seed=5)
    ref = EuclideanQuantizer(12, seed=0, algorithm="lloyd").fit(Z)
    a = EuclideanQuantizer(12, seed=0, algorithm="faiss").fit(Z)
    b = EuclideanQuantizer(12, seed=0, algorithm="faiss").fit(Z)
    assert a.loss_ <= 1.03 * ref.loss_
    np.testing.assert_array_equal(a.codebook_, b.codebook_)
    assert EuclideanQuantizer(12, faiss_above=1000).fit(Z).algorithm_ == "faiss"
    assert EuclideanQuantizer(12).fit(Z).algorithm_ == "lloyd"
    with pytest.raises(ValueError, match="algorithm must be one of"):
        EuclideanQuantizer(4, algorithm="elkan")


@pytest.mark.parametrize("edge_length", ["latent", "decoder"])
def test_training_rows_take_their_nodes_code_which_the_full_rule_also_gives(edge_length):
    """The shortcut for rows equal to a training node against the extended-graph
    rule min_j (e_j + dn(j)) evaluated over all k neighbours, by hand."""
    from geodesic.decoder_metric import segment_lengths

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))
    Z = blobs(400, d=3, seed=6)
    q = GeodesicQuantizer(8, n_neighbors=8, edge_length=edge_length, decoder=net).fit(Z)
    out = q.quantize(Z)
    e, nbr = q.index_.kneighbors(Z)
    if edge_length == "decoder":
        e = segment_lengths(q._decoded_mean(), np.repeat(Z, 8, axis=0), Z[nbr.ravel()],
                            n_segments=q.n_segments).reshape(-1, 8)
    through = e + q.node_distances_[nbr]
    np.testing.assert_allclose(out.distances.numpy(), through.min(1), rtol=1e-5, atol=1e-6)
    best = q.node_labels_[nbr[np.arange(len(Z)), through.argmin(1)]]
    assert (best == out.indices.numpy()).mean() == 1.0
    # a mixed batch: the new rows still go through the rule
    mixed = np.concatenate([Z[:5], Z[:5] + 0.01])
    np.testing.assert_array_equal(q.quantize(mixed).indices.numpy()[:5], out.indices.numpy()[:5])


# ----------------------------------------------------------------------------- issue #29, item 6

def test_regression_all_identical_latents_give_one_code_with_a_warning():
    """Bug: GeodesicQuantizer on all-identical latents said 'n_neighbors=1 must be ... in
    [1, 0]', advice no k satisfies; now it does what EuclideanQuantizer does."""
    Z = np.full((30, 3), 0.5, dtype=np.float32)
    for q in (GeodesicQuantizer(4, n_neighbors=1), EuclideanQuantizer(4)):
        with pytest.warns(UserWarning, match="only 1 of the 4 code vectors are distinct"):
            q.fit(Z)
        out = q.quantize(Z)
        assert (out.indices == 0).all() and (out.distances == 0).all()
        new = np.array([[0.5, 0.5, 2.5], [0.5, -0.5, 0.5]], dtype=np.float32)
        assert np.allclose(q.quantize(new).distances.numpy(), [2.0, 1.0])
    g = GeodesicQuantizer(1, n_neighbors=3).fit(Z)
    assert g.loss_ == 0 and (g.labels_ == 0).all() and np.array_equal(g.codebook_, Z[:1])
    back = GeodesicQuantizer.from_state_dict(g.state_dict())
    assert np.allclose(back.quantize(new).distances.numpy(), [2.0, 1.0])


@pytest.mark.parametrize("algorithm", ["lloyd", "faiss"])
@pytest.mark.parametrize("magnitude", [1e19, 1e25, 1e30, 1e-25])
def test_regression_euclidean_quantizer_on_huge_or_tiny_latents(magnitude, algorithm):
    """Bug: on latents of magnitude 1e19-1e30, 17-20 % of the assignments were the nearest
    code, distances were inf and only numpy overflow warnings said so."""
    Z = (np.random.default_rng(0).standard_normal((300, 4)) * magnitude).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        q = EuclideanQuantizer(4, algorithm=algorithm).fit(Z)
        out = q.quantize(Z)
    codes = q.codebook_.astype(np.float64) / magnitude
    d = np.sqrt(((Z.astype(np.float64)[:, None] / magnitude - codes[None]) ** 2).sum(-1))  # (N, K)
    assert np.isfinite(q.codebook_).all() and np.isfinite(q.loss_)
    assert np.array_equal(out.indices.numpy(), d.argmin(1))
    assert np.allclose(out.distances.numpy() / magnitude, d.min(1), rtol=1e-4)
    assert q.loss_ == pytest.approx((d.min(1) ** 2).sum() * magnitude ** 2, rel=1e-3)
