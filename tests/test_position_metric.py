"""geodesic/position_metric.py: per-position pull-back metrics of a conv decoder (#31 item 2),
against reverse-mode Jacobians (torch.autograd.functional.jacobian), an analytic linear
decoder and finite-difference chords; grouping positions with disjoint supports gives the
same tensors as one position at a time."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from geodesic import position_metric as pm

D, H, W = 3, 5, 5


def local_decoder(seed: int = 0) -> nn.Module:
    """A 3x3 conv at the grid, then each position to its own 4x4 output block: position p
    reaches the blocks of the positions within one step of it."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(D, D, 3, padding=1), nn.Tanh(),
                         nn.ConvTranspose2d(D, 1, 4, stride=4), nn.Sigmoid()).double()


def reverse_mode_metrics(decoder, z: torch.Tensor) -> torch.Tensor:
    """G_p from the full reverse-mode Jacobian of one grid, sliced at p: (H, W, D, D)."""
    J = torch.autograd.functional.jacobian(lambda x: decoder(x[None]).flatten(), z)  # (n, D, H, W)
    J = J.reshape(J.shape[0], D, H, W)
    return torch.einsum("nahw,nbhw->hwab", J, J)


def test_metrics_match_reverse_mode_jacobians():
    dec = local_decoder()
    z = torch.randn(4, D, H, W, dtype=torch.float64)
    G = pm.position_metrics(lambda x: dec(x.double()), z, batch_size=3)
    assert G.shape == (4, H, W, D, D)
    for i in range(4):
        np.testing.assert_allclose(G[i].numpy(), reverse_mode_metrics(dec, z[i]).numpy(),
                                   rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("batch_size, tangent_chunk", [(1, 1), (3, 7), (4, None)])
def test_vectorized_tangents_give_one_jvp_per_tangent(batch_size, tangent_chunk):
    """The tangents pushed through together (vmap) give the numbers of one
    torch.func.jvp per position and coordinate, whatever the batch and chunk."""
    dec = local_decoder(3)
    z = torch.randn(4, D, H, W, dtype=torch.float64)
    G = pm.position_metrics(dec, z, batch_size=batch_size, tangent_chunk=tangent_chunk)
    for p in (0, 7, H * W - 1):
        cols = []
        for a in range(D):
            t = torch.zeros_like(z).view(4, D, H * W)
            t[:, a, p] = 1.0
            cols.append(torch.func.jvp(lambda x: dec(x).flatten(1), (z,), (t.view_as(z),))[1])
        J = torch.stack(cols, -1)  # (4, n, D)
        torch.testing.assert_close(G[:, p // W, p % W], J.transpose(1, 2) @ J,
                                   rtol=1e-12, atol=1e-14)


def test_a_linear_decoder_gives_its_own_columns_and_exact_lengths():
    torch.manual_seed(1)
    A = torch.randn(50, D * H * W, dtype=torch.float64)
    b = torch.randn(50, dtype=torch.float64)
    dec = lambda x: x.double().flatten(1) @ A.T + b  # noqa: E731
    z = torch.randn(2, D, H, W, dtype=torch.float64)
    G = pm.position_metrics(dec, z).double().numpy()
    cols = np.arange(D * H * W).reshape(D, H, W)
    for h, w in [(0, 0), (2, 3), (4, 4)]:
        Ap = A[:, cols[:, h, w]].numpy()
        np.testing.assert_allclose(G[1, h, w], Ap.T @ Ap, rtol=1e-5)
        # the length of moving position (h, w) from x to y is ||A_p (y - x)||, exactly
        x, y = np.random.default_rng(h).normal(size=(2, D))
        X, Gs = np.stack([x, y]), np.stack([G[0, h, w], G[1, h, w]])
        got = pm.metric_edge_lengths(X, Gs, [0], [1])[0]
        assert got == pytest.approx(np.linalg.norm(Ap @ (y - x)), rel=1e-5)


def test_the_trapezoid_length_approaches_the_decoded_chord_for_short_steps():
    """sqrt(Delta^T G Delta) is the speed of the decoded image as position p moves: the chord
    ||f(z + t Delta_p) - f(z)|| / t tends to it as t -> 0."""
    dec = local_decoder(2)
    z = torch.randn(1, D, H, W, dtype=torch.float64)
    G = pm.position_metrics(dec, z).double().numpy()[0]
    delta = np.array([0.3, -1.0, 0.7])
    for h, w in [(1, 1), (0, 4)]:
        speed = np.sqrt(delta @ G[h, w] @ delta)
        step = torch.zeros_like(z)
        step[0, :, h, w] = torch.as_tensor(delta)
        with torch.no_grad():
            errors = [abs(float((dec(z + t * step) - dec(z)).norm()) / t - speed) for t in (1e-2, 1e-4)]
        assert errors[1] < errors[0] and errors[1] < 1e-3 * speed


def test_grouped_positions_give_the_same_tensors_as_one_at_a_time():
    dec = local_decoder(3)
    supports = pm.output_supports(dec, (D, H, W), probes=3, dtype=torch.float64)
    # the structural support: position (h, w) reaches the 4x4 blocks of (h', w') with
    # max(|h - h'|, |w - w'|) <= 1
    blocks = np.zeros((H * W, 4 * H, 4 * W), dtype=bool)
    for p in range(H * W):
        h, w = divmod(p, W)
        blocks[p, max(0, 4 * (h - 1)):4 * (h + 2), max(0, 4 * (w - 1)):4 * (w + 2)] = True
    assert np.array_equal(supports, blocks.reshape(H * W, -1))
    groups = pm.support_groups(supports)
    assert sorted(p for g in groups for p in g) == list(range(H * W))
    assert len(groups) == 9  # a 3x3 stencil: positions 3 apart in each direction share a JVP
    for g in groups:
        assert not any((supports[a] & supports[b]).any() for a in g for b in g if a < b)
    z = torch.randn(3, D, H, W, dtype=torch.float64)
    one = pm.position_metrics(dec, z)
    grouped = pm.position_metrics(dec, z, groups=groups, supports=supports)
    np.testing.assert_allclose(grouped.numpy(), one.numpy(), rtol=1e-6, atol=1e-12)


def test_the_repository_conv_decoder_has_no_two_disjoint_positions():
    """docs/protocol.md: grouping saves nothing with the conv VAE's decoder (supports are
    estimated from below, so overlapping estimates mean overlapping supports)."""
    from models.conv_vae import ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE().eval()
    shape = vae.latent_shape
    supports = pm.output_supports(lambda z: torch.sigmoid(vae.decode(z)), shape, probes=1)
    assert len(pm.support_groups(supports)) == shape[1] * shape[2]


def test_pack_unpack_round_trip_and_bad_width():
    G = np.random.default_rng(0).normal(size=(6, 4, 4))
    G = G + G.transpose(0, 2, 1)
    assert pm.pack(G).shape == (6, 10)
    np.testing.assert_array_equal(pm.unpack(pm.pack(G), 4), G)
    with pytest.raises(ValueError, match="10 values"):
        pm.unpack(np.zeros((2, 9)), 4)


def test_reweighted_graph_is_symmetric_with_the_trapezoid_lengths():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    M = rng.normal(size=(30, 3, 3))
    G = M @ M.transpose(0, 2, 1)
    graph = sp.random(30, 30, density=0.2, random_state=0, format="csr")
    graph = (graph + graph.T).tolil()
    graph.setdiag(0)  # a k-NN graph has no self-loops
    graph = graph.tocsr()
    graph.eliminate_zeros()
    out = pm.reweight_graph_by_metric(graph, X, G)
    assert (out != out.T).nnz == 0 and set(zip(*out.nonzero())) == set(zip(*graph.nonzero()))
    for i, j in list(zip(*sp.triu(graph, k=1).nonzero()))[:20]:
        d = X[j] - X[i]
        assert out[i, j] == pytest.approx(np.sqrt(d @ (0.5 * (G[i] + G[j])) @ d), rel=1e-6)


def test_groups_must_cover_every_position_once():
    dec = local_decoder()
    z = torch.randn(1, D, H, W, dtype=torch.float64)
    with pytest.raises(ValueError, match="exactly once"):
        pm.position_metrics(dec, z, groups=[[0, 1]])
    with pytest.raises(ValueError, match="supports"):
        pm.position_metrics(dec, z, groups=[list(range(H * W))])
