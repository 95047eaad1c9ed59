"""geodesic/decoder_metric.py against analytic lengths and a fine numerical reference."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geodesic.decoder_metric import reweight_graph, segment_lengths


def linear_decoder(d=3, D=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    A, b = torch.randn(D, d, generator=g), torch.randn(D, generator=g)
    return A, (lambda z: z @ A.T + b)


def mlp_decoder(d=2, D=50, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, D),
                              torch.nn.Sigmoid())
    return lambda z: net(z)


@pytest.mark.parametrize("estimator", ["jvp", "chords"])
@pytest.mark.parametrize("n_segments", [1, 3])
def test_linear_decoder_gives_the_norm_of_A_delta_exactly(estimator, n_segments):
    A, f = linear_decoder()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    got = segment_lengths(f, a, b, n_segments=n_segments, estimator=estimator)
    want = np.linalg.norm((b - a) @ A.numpy().T, axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def curve_length_reference(f, a, b, n=4000):
    """Length of the decoded curve f(a + t (b - a)) by a very fine polygon."""
    t = torch.linspace(0, 1, n + 1)[:, None, None]
    za, zb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    with torch.no_grad():
        pts = torch.stack([f((za + s * (zb - za)).float()).double() for s in t[:, 0, 0]])
    return (pts[1:] - pts[:-1]).norm(dim=2).sum(0).numpy()


@pytest.mark.parametrize("estimator", ["jvp", "chords"])
def test_lengths_converge_to_the_curve_length_as_segments_are_added(estimator):
    f = mlp_decoder()
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 2)) * 2, rng.normal(size=(10, 2)) * 2
    ref = curve_length_reference(f, a, b)
    errors = [np.abs(segment_lengths(f, a, b, n_segments=s, estimator=estimator) - ref).max()
              for s in (1, 2, 4, 8, 16, 32)]
    assert errors[-1] < 1e-3 * ref.max()
    assert all(e2 <= e1 * 1.05 for e1, e2 in zip(errors, errors[1:]))
    if estimator == "chords":  # a polygon through points of the curve is never longer than it
        assert (segment_lengths(f, a, b, n_segments=4, estimator="chords") <= ref + 1e-6).all()


def test_reweighted_graph_is_symmetric_with_each_edge_measured_once():
    A, f = linear_decoder(d=2, D=5)
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(6, 2)).astype(np.float32)
    rows, cols = np.array([0, 1, 2, 3, 4]), np.array([1, 2, 3, 4, 5])
    g = sp.csr_matrix((np.ones(5), (rows, cols)), shape=(6, 6))
    g = g + g.T
    out = reweight_graph(g, Z, f, n_segments=1)
    assert (out != out.T).nnz == 0 and out.nnz == g.nnz
    for i, j in zip(rows, cols):
        assert out[i, j] == pytest.approx(np.linalg.norm(A.numpy() @ (Z[j] - Z[i])), rel=1e-5)


def test_bad_options_are_refused():
    _, f = linear_decoder()
    with pytest.raises(ValueError, match="estimator"):
        segment_lengths(f, np.zeros((1, 3)), np.ones((1, 3)), estimator="simpson")
    with pytest.raises(ValueError, match="n_segments"):
        segment_lengths(f, np.zeros((1, 3)), np.ones((1, 3)), n_segments=0)
