"""The grid rate's interpolation figure (issue #31, item 4): whole 7x7xD latent grids as
points of a k-NN graph whose decoder edges are measured through the conv decoder."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from geodesic.decoder_metric import segment_lengths
from models.conv_vae import ConvVAE, ConvVAEConfig
from train import comparison_figures as CF


@pytest.fixture(scope="module")
def conv():
    torch.manual_seed(0)
    return ConvVAE(**vars(ConvVAEConfig(latent_dim=2))).eval()


def jacobian_speed(conv, z, delta):
    """||J(z) delta|| with J the full (784, 7*7*D) Jacobian of the decoded mean, built
    column by column by autograd (the brute-force reference)."""
    f = lambda v: torch.sigmoid(conv.decode(v.reshape(1, *conv.latent_shape))).flatten()  # noqa: E731
    J = torch.autograd.functional.jacobian(f, torch.as_tensor(z, dtype=torch.float32))
    return float((J @ torch.as_tensor(delta, dtype=torch.float32)).norm())


def test_grid_decoder_decodes_flattened_grids_as_the_conv_decoder_does(conv):
    z = torch.randn(5, *conv.latent_shape)
    with torch.no_grad():
        expected = torch.sigmoid(conv.decode(z))
        got = CF.grid_decoder(conv)(z.reshape(5, -1))
    assert got.shape == (5, 1, 28, 28)
    torch.testing.assert_close(got, expected)


def test_whole_grid_decoder_edges_match_the_brute_force_jacobian_trapezoid(conv):
    rng = np.random.default_rng(0)
    d = int(np.prod(conv.latent_shape))
    a, b = rng.normal(size=(2, 3, d)).astype(np.float32)
    got = segment_lengths(CF.grid_decoder(conv), a, b, n_segments=2)
    for i in range(3):
        delta = b[i] - a[i]
        speeds = [jacobian_speed(conv, a[i] + t * delta, delta) for t in (0.0, 0.5, 1.0)]
        assert got[i] == pytest.approx(0.25 * speeds[0] + 0.5 * speeds[1] + 0.25 * speeds[2],
                                       rel=1e-4)


def fake_run(conv, n_train=60, n_test=12):
    torch.manual_seed(1)
    z_train = torch.randn(n_train, *conv.latent_shape).numpy()
    z_test = torch.randn(n_test, *conv.latent_shape).numpy()
    return SimpleNamespace(vae_for=lambda arch: conv, latents=lambda arch: (z_train, z_test),
                           test=SimpleNamespace(labels=torch.arange(n_test) % 4),
                           train=SimpleNamespace(name="stand-in"), seed=0,
                           args=SimpleNamespace(n_neighbors=5))


def test_the_grid_figure_has_the_straight_line_and_both_geodesics(conv, tmp_path, monkeypatch):
    run = fake_run(conv)
    drawn = {}
    monkeypatch.setattr(CF.plot, "plot_interpolations",
                        lambda blocks, out, title="": drawn.update(blocks=blocks, title=title) or [])
    CF.draw_grid_interpolation(run, tmp_path / "fig", n_images=40, n_frames=6)
    (block,) = drawn["blocks"]
    assert list(block) == ["0->2 straight", "geodesic, latent edges", "geodesic, decoder edges"]
    z_test = run.latents("conv")[1]
    with torch.no_grad():
        ends = torch.sigmoid(conv.decode(torch.as_tensor(z_test[[0, 2]])))
    for frames in block.values():  # every row starts and ends at the two test images
        assert frames.shape == (6, 1, 28, 28)
        torch.testing.assert_close(frames[[0, -1]], ends, atol=1e-5, rtol=1e-5)
    assert "40 training grids" in drawn["title"]


def test_interpolation_ends_pair_each_class_with_the_one_half_way_round():
    labels = np.array([3, 1, 0, 2, 1, 0, 3, 2])
    assert CF.interpolation_ends(labels, 2) == [(2, 3), (1, 0)]  # 0->2, 1->3
    assert len(CF.interpolation_ends(labels, 9)) == 4
