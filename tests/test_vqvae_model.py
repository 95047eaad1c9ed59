"""Tests of models/vqvae.py against independent references (numpy, autograd,
analytic values, brute force)."""

import io
import math

import numpy as np
import pytest
import torch

from models.vqvae import (
    VQVAE,
    VectorQuantizer,
    kmeans,
    laplace_smoothing,
    nearest_code,
    perplexity,
    straight_through,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def brute_force_nearest(z: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Nearest code by explicit (N, K, D) differences, the reference for nearest_code."""
    return ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1).argmin(1)


def set_codebook(vq: VectorQuantizer, codebook: torch.Tensor) -> None:
    """Put a chosen codebook into a quantizer, keeping its EMA state consistent."""
    with torch.no_grad():
        vq.codebook.copy_(codebook)
        if vq.ema:
            vq.cluster_size.fill_(1.0)
            vq.code_sum.copy_(codebook)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def test_straight_through_value_and_gradient():
    z_e = torch.randn(5, 3, requires_grad=True)
    z_q = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    out = straight_through(z_e, z_q)
    torch.testing.assert_close(out, z_q)
    (weights * out.pow(2)).sum().backward()
    # d/dy sum(w y^2) = 2 w y, evaluated at the quantized value.
    torch.testing.assert_close(z_e.grad, 2 * weights * z_q.detach())
    assert z_q.grad is None or torch.all(z_q.grad == 0)


@pytest.mark.parametrize("ema", [True, False])
def test_quantizer_gradient_reaching_encoder_equals_gradient_at_z_q(ema):
    vq = VectorQuantizer(6, 3, ema=ema, restart_dead=False)
    z_e = torch.randn(2, 4, 3, requires_grad=True)
    weights = torch.randn(2, 4, 3)
    codebook_before = vq.codebook.detach().clone()  # EMA updates it after quantizing
    out = vq(z_e)
    toy_loss = (weights * out.z_q.pow(2)).sum()
    (grad_z_e,) = torch.autograd.grad(toy_loss, z_e)
    z_q_value = codebook_before[out.indices]
    torch.testing.assert_close(out.z_q.detach(), z_q_value)
    torch.testing.assert_close(grad_z_e, 2 * weights * z_q_value)


def test_nearest_code_matches_brute_force_float64():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 5))
    codebook = rng.normal(size=(37, 5))
    got = nearest_code(torch.from_numpy(z), torch.from_numpy(codebook)).numpy()
    np.testing.assert_array_equal(got, brute_force_nearest(z, codebook))
    cdist_ref = torch.cdist(torch.from_numpy(z), torch.from_numpy(codebook)).argmin(1).numpy()
    np.testing.assert_array_equal(got, cdist_ref)


def test_nearest_code_float32_picks_a_minimal_distance():
    z = torch.randn(500, 16)
    codebook = torch.randn(64, 16)
    got = nearest_code(z, codebook)
    assert got.dtype == torch.long and got.shape == (500,)
    distances = ((z[:, None, :] - codebook[None]) ** 2).sum(-1)
    chosen = distances.gather(1, got[:, None]).squeeze(1)
    # float32 cancellation in ||z||^2 - 2 z.e + ||e||^2 may flip exact near-ties only.
    torch.testing.assert_close(chosen, distances.min(1).values, rtol=1e-4, atol=1e-4)


def test_perplexity_known_values():
    k = 8
    assert perplexity(torch.full((k,), 5.0)).item() == pytest.approx(k)
    collapsed = torch.zeros(k)
    collapsed[3] = 100.0
    assert perplexity(collapsed).item() == pytest.approx(1.0)
    # p = (1/4, 1/4, 1/2, 0): H = 1.5 ln 2, exp(H) = 2 ** 1.5.
    assert perplexity(torch.tensor([1.0, 1.0, 2.0, 0.0])).item() == pytest.approx(2 ** 1.5)
    assert perplexity(torch.tensor([0.25, 0.25, 0.5, 0.0])).item() == pytest.approx(2 ** 1.5)


def test_quantizer_stats_uniform_and_collapsed():
    k, d = 8, 3
    vq = VectorQuantizer(k, d, restart_dead=False).eval()
    codebook = torch.randn(k, d) * 5
    set_codebook(vq, codebook)
    uniform = vq(codebook.repeat(3, 1))
    assert uniform.stats.perplexity.item() == pytest.approx(k)
    assert uniform.stats.usage.item() == pytest.approx(1.0)
    collapsed = vq(codebook[2].expand(20, d))
    assert collapsed.stats.perplexity.item() == pytest.approx(1.0)
    assert collapsed.stats.usage.item() == pytest.approx(1 / k)
    assert not uniform.stats.perplexity.requires_grad


def test_laplace_smoothing_formula():
    counts = torch.tensor([3.0, 0.0, 1.0])
    eps = 0.5
    expected = np.array([3.5, 0.5, 1.5]) / (4 + 3 * 0.5)
    np.testing.assert_allclose(laplace_smoothing(counts, 3, eps).numpy(), expected, rtol=1e-6)


def test_kmeans_returns_a_lloyd_fixed_point():
    rng = np.random.default_rng(2)
    centers_true = rng.normal(scale=10, size=(4, 2))
    samples = np.concatenate([c + rng.normal(size=(50, 2)) for c in centers_true]).astype(np.float32)
    result = kmeans(torch.from_numpy(samples), 4, n_iters=30)
    centers = result.centers.numpy()
    assignment = brute_force_nearest(samples, centers)
    np.testing.assert_array_equal(result.cluster_sizes.numpy(), np.bincount(assignment, minlength=4))
    for k in range(4):
        np.testing.assert_allclose(centers[k], samples[assignment == k].mean(0), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# Vector quantizer
# ----------------------------------------------------------------------------
def test_codebook_and_commitment_losses_move_the_right_side():
    vq = VectorQuantizer(5, 3, ema=False, restart_dead=False)
    assert isinstance(vq.codebook, torch.nn.Parameter)
    z_e = torch.randn(12, 3, requires_grad=True)
    out = vq(z_e)

    grad_z_e, grad_codebook = torch.autograd.grad(
        out.losses.codebook, [z_e, vq.codebook], retain_graph=True, allow_unused=True)
    assert grad_z_e is None or torch.all(grad_z_e == 0)
    assert grad_codebook.abs().sum() > 0
    # d/de_k mean((e - z)^2) = 2 / (N D) * sum_{j -> k} (e_k - z_j), in numpy.
    z_np, e_np = z_e.detach().numpy(), vq.codebook.detach().numpy()
    assign = brute_force_nearest(z_np, e_np)
    expected = np.zeros_like(e_np)
    for j, k in enumerate(assign):
        expected[k] += 2 * (e_np[k] - z_np[j]) / z_np.size
    np.testing.assert_allclose(grad_codebook.numpy(), expected, rtol=1e-5, atol=1e-6)

    grad_z_e, grad_codebook = torch.autograd.grad(
        out.losses.commit, [z_e, vq.codebook], allow_unused=True)
    assert grad_codebook is None or torch.all(grad_codebook == 0)
    expected_z = 0.25 * 2 * (z_np - e_np[assign]) / z_np.size
    np.testing.assert_allclose(grad_z_e.numpy(), expected_z, rtol=1e-5, atol=1e-6)


def test_ema_codebook_is_a_buffer_and_codebook_loss_is_zero():
    vq = VectorQuantizer(5, 3, ema=True)
    assert "codebook" not in dict(vq.named_parameters())
    assert "codebook" in dict(vq.named_buffers())
    z_e = torch.randn(12, 3, requires_grad=True)
    out = vq(z_e)
    assert out.losses.codebook.item() == 0.0
    assert not out.losses.codebook.requires_grad


def test_one_ema_step_equals_hand_computation():
    k, d, n = 4, 3, 10
    decay, eps = 0.9, 1e-3
    vq = VectorQuantizer(k, d, ema=True, decay=decay, eps=eps, restart_dead=False)
    rng = np.random.default_rng(3)
    codebook0 = rng.normal(size=(k, d)).astype(np.float32)
    cluster_size0 = np.array([3.0, 0.5, 2.0, 1.0], dtype=np.float32)
    code_sum0 = rng.normal(size=(k, d)).astype(np.float32)
    z = rng.normal(size=(n, d)).astype(np.float32)
    with torch.no_grad():
        vq.codebook.copy_(torch.from_numpy(codebook0))
        vq.cluster_size.copy_(torch.from_numpy(cluster_size0))
        vq.code_sum.copy_(torch.from_numpy(code_sum0))

    out = vq.train()(torch.from_numpy(z))

    assign = brute_force_nearest(z, codebook0)
    counts = np.bincount(assign, minlength=k)
    sums = np.zeros((k, d))
    for j, c in enumerate(assign):
        sums[c] += z[j]
    cluster_size = decay * cluster_size0 + (1 - decay) * counts
    code_sum = decay * code_sum0 + (1 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + k * eps) * total
    expected_codebook = code_sum / smoothed[:, None]

    np.testing.assert_array_equal(out.indices.numpy(), assign)
    np.testing.assert_allclose(out.z_q.detach().numpy(), codebook0[assign], rtol=1e-6)
    np.testing.assert_allclose(vq.cluster_size.numpy(), cluster_size, rtol=1e-5)
    np.testing.assert_allclose(vq.code_sum.numpy(), code_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vq.codebook.numpy(), expected_codebook, rtol=1e-5, atol=1e-6)


def _far_code_setup(ema, restart_dead, dead_window=3):
    vq = VectorQuantizer(4, 2, ema=ema, restart_dead=restart_dead, dead_window=dead_window)
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    set_codebook(vq, codebook)
    return vq


@pytest.mark.parametrize("ema", [True, False])
def test_dead_code_is_restarted_on_a_batch_encoder_output(ema):
    vq = _far_code_setup(ema, restart_dead=True, dead_window=3).train()
    batches = [torch.rand(16, 2) for _ in range(3)]
    for batch in batches[:2]:
        assert (vq(batch).indices != 3).all()
        torch.testing.assert_close(vq.codebook[3], torch.tensor([100.0, 100.0]), atol=1e-2, rtol=0)
    assert (vq(batches[2]).indices != 3).all()
    # After dead_window unused batches the code sits exactly on a point of the last batch.
    distance_to_batch = (batches[2] - vq.codebook[3]).pow(2).sum(1)
    assert distance_to_batch.min().item() == 0.0
    assert vq.steps_unused[3].item() == 0
    if ema:
        assert vq.cluster_size[3].item() == 1.0
        torch.testing.assert_close(vq.code_sum[3], vq.codebook[3])


def test_dead_code_restart_is_reproducible_under_seed():
    restarted = []
    for _ in range(2):
        torch.manual_seed(5)
        vq = _far_code_setup(ema=True, restart_dead=True, dead_window=2).train()
        batch = torch.rand(32, 2)
        vq(batch)
        vq(batch)
        restarted.append(vq.codebook[3].clone())
    torch.testing.assert_close(restarted[0], restarted[1])


def test_dead_code_count_and_kmeans_flag_survive_a_state_dict_round_trip():
    vq = _far_code_setup(ema=True, restart_dead=True, dead_window=3).train()
    vq(torch.rand(16, 2))
    vq(torch.rand(16, 2))
    resumed = VectorQuantizer(4, 2, ema=True, dead_window=3, kmeans_init=True)
    resumed.load_state_dict(vq.state_dict(), strict=True)
    batch = torch.rand(16, 2)
    resumed.train()(batch)
    # Third unused batch in a row: restarted, and no k-means re-initialisation moved code 3 first.
    assert (batch - resumed.codebook[3]).pow(2).sum(1).min().item() == 0.0


def test_dead_code_restart_can_be_switched_off():
    vq = _far_code_setup(ema=True, restart_dead=False, dead_window=3).train()
    for _ in range(10):
        vq(torch.rand(16, 2))
    torch.testing.assert_close(vq.codebook[3], torch.tensor([100.0, 100.0]), atol=1e-2, rtol=0)


def test_kmeans_init_brings_codes_closer_to_the_data():
    centers = torch.randn(8, 4) * 10
    data = (centers.repeat_interleave(32, 0) + torch.randn(256, 4)).contiguous()
    losses = {}
    for kmeans_init in (False, True):
        torch.manual_seed(1)
        vq = VectorQuantizer(8, 4, ema=False, restart_dead=False, kmeans_init=kmeans_init).train()
        losses[kmeans_init] = vq(data).losses.commit.item()
        if kmeans_init:
            assert bool(vq.initialized)
            # Initialisation happens once: a second training batch leaves the codebook alone.
            before = vq.codebook.detach().clone()
            vq(torch.randn(256, 4) * 10)
            torch.testing.assert_close(vq.codebook.detach(), before)
    assert losses[True] < 0.5 * losses[False]


@pytest.mark.parametrize("ema", [True, False])
def test_eval_mode_and_encode_do_not_change_the_codebook(ema):
    vq = VectorQuantizer(6, 3, ema=ema, dead_window=1, kmeans_init=True).eval()
    state = {name: value.clone() for name, value in vq.state_dict().items()}
    for _ in range(3):
        vq(torch.randn(8, 3) * 3)
    vq.train().assign(torch.randn(8, 3))
    for name, value in vq.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_quantizer_rejects_wrong_code_dimension():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        VectorQuantizer(4, 3)(torch.randn(5, 4))


# ----------------------------------------------------------------------------
# VQ-VAE
# ----------------------------------------------------------------------------
SMALL = {"conv": dict(hidden=8, n_res_blocks=1), "global": dict(hidden=32)}


def test_bits_per_image():
    assert VQVAE("conv", 512, 4, hidden=4).bits_per_image == 441.0
    assert VQVAE("global", 512, 4, hidden=4).bits_per_image == 9.0
    assert VQVAE("conv", 10, 4, hidden=4).bits_per_image == pytest.approx(49 * np.log2(10))
    assert VQVAE("global", 10, 4, hidden=4).bits_per_image == pytest.approx(np.log2(10))


def test_default_widths():
    assert VQVAE("conv").model_args["hidden"] == 64
    body = VQVAE("global").encoder
    assert [m.out_features for m in body if isinstance(m, torch.nn.Linear)] == [400, 64]


@pytest.mark.parametrize("arch, index_shape", [("conv", (3, 7, 7)), ("global", (3,))])
def test_shapes_and_encode_decode_round_trip(arch, index_shape):
    model = VQVAE(arch, n_codes=16, code_dim=4, **SMALL[arch]).eval()
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out.recon_logits.shape == (3, 1, 28, 28)
    assert out.indices.shape == index_shape
    for scalar in (out.loss, out.recon_loss, out.commit_loss, out.codebook_loss, out.perplexity, out.usage):
        assert scalar.shape == ()
    indices = model.encode(x)
    assert indices.shape == index_shape and indices.dtype == torch.long
    assert 0 <= indices.min() and indices.max() < 16
    torch.testing.assert_close(indices, out.indices)
    images = model.decode_indices(indices)
    assert images.shape == (3, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, torch.sigmoid(out.recon_logits))


@pytest.mark.parametrize("arch, positions", [("conv", 49), ("global", 1)])
def test_losses_are_per_image_sums(arch, positions):
    model = VQVAE(arch, n_codes=16, code_dim=4, beta=0.5, ema=False, **SMALL[arch]).eval()
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    z_e = model.encoder(x).detach()
    if arch == "conv":
        z_e = z_e.permute(0, 2, 3, 1)
    z_e = z_e.reshape(5, positions, 4).numpy()
    codebook = model.quantizer.codebook.detach().numpy()
    assign = brute_force_nearest(z_e.reshape(-1, 4), codebook)
    squared_error = ((z_e.reshape(-1, 4) - codebook[assign]) ** 2).sum() / 5
    assert out.commit_loss.item() == pytest.approx(0.5 * squared_error, rel=1e-5)
    assert out.codebook_loss.item() == pytest.approx(squared_error, rel=1e-5)

    p = torch.sigmoid(out.recon_logits).detach().double().numpy()
    xn = x.double().numpy()
    bce = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum() / 5
    assert out.recon_loss.item() == pytest.approx(bce, rel=1e-4)
    assert out.loss.item() == pytest.approx(bce + 1.5 * squared_error, rel=1e-4)


@pytest.mark.parametrize("arch", ["conv", "global"])
def test_rebuild_from_model_args_gives_identical_outputs(arch):
    model = VQVAE(arch, n_codes=16, code_dim=4, dead_window=1, **SMALL[arch])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # change weights and quantizer buffers away from their init
        out = model(torch.rand(4, 1, 28, 28))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"model_args": model.model_args, "model": model.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert all(isinstance(v, (str, int, float, bool)) for v in checkpoint["model_args"].values())

    rebuilt = VQVAE(**checkpoint["model_args"])
    rebuilt.load_state_dict(checkpoint["model"], strict=True)
    model.eval(), rebuilt.eval()
    x = torch.rand(6, 1, 28, 28)
    for a, b in zip(model(x), rebuilt(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _synthetic_images(n=64, n_prototypes=4):
    prototypes = (torch.rand(n_prototypes, 1, 28, 28) < 0.3).float()
    images = prototypes.repeat(n // n_prototypes, 1, 1, 1)
    flip = torch.rand_like(images) < 0.02
    return torch.where(flip, 1 - images, images)


@pytest.mark.parametrize("arch, hidden, steps", [("conv", 16, 400), ("global", 32, 300)])
def test_training_lowers_reconstruction_loss(arch, hidden, steps):
    data = _synthetic_images()
    model = VQVAE(arch, n_codes=8, code_dim=4, hidden=hidden, n_res_blocks=1, dead_window=20)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def eval_recon():
        model.eval()
        with torch.no_grad():
            value = model(data).recon_loss.item()
        model.train()
        return value

    before = eval_recon()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (16,))]
        out = model(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    after = eval_recon()
    # Reference: summed BCE of the best image-independent prediction, the pixel means.
    pixels = data.double().numpy().reshape(len(data), -1)
    mean = pixels.mean(0).clip(1e-6, 1 - 1e-6)
    mean_image_bce = -(pixels * np.log(mean) + (1 - pixels) * np.log(1 - mean)).sum(1).mean()
    assert math.isfinite(after)
    assert after < 0.5 * before
    assert after < 0.7 * mean_image_bce


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_codes=0), "n_codes"),
        (dict(code_dim=0), "code_dim"),
        (dict(arch="resnet"), "arch"),
        (dict(beta=-0.1), "beta"),
        (dict(decay=0.0), "decay"),
        (dict(decay=1.0), "decay"),
        (dict(decay=1.5), "decay"),
        (dict(hidden=0), "hidden"),
        (dict(n_res_blocks=-1), "n_res_blocks"),
        (dict(dead_window=0), "dead_window"),
        (dict(n_codes=2.5), "n_codes"),
    ],
)
def test_invalid_constructor_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VQVAE(**kwargs)


def test_wrong_image_shape_raises():
    model = VQVAE("global", 8, 4, hidden=8)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(2, 784))
