"""Tests of models/quantizer.py and models/vqvae.py against independent
references (numpy, autograd, analytic values, brute force)."""

import io
import math
from dataclasses import asdict, fields

import numpy as np
import pytest
import torch

from models.quantizer import (
    VectorQuantizer,
    VQConfig,
    kmeans,
    laplace_smoothing,
    nearest_code,
    perplexity,
    rotation_trick,
    straight_through,
)
from models.vqvae import VQVAE, VQVAEConfig


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
        if vq.config.ema:
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


def rotation_matrix(e: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The (D, D) matrix lambda R of Fifty et al. (2024), eq. (6), formed explicitly:
    R = I - 2 r r^T + 2 q^ e^T with r = (e^ + q^) / ||e^ + q^||, lambda = ||q|| / ||e||."""
    e_hat, q_hat = e / np.linalg.norm(e), q / np.linalg.norm(q)
    r = (e_hat + q_hat) / np.linalg.norm(e_hat + q_hat)
    rotation = np.eye(len(e)) - 2 * np.outer(r, r) + 2 * np.outer(q_hat, e_hat)
    return np.linalg.norm(q) / np.linalg.norm(e) * rotation


def test_rotation_matrix_reference_is_a_rotation_in_the_plane_of_e_and_q():
    rng = np.random.default_rng(4)
    e, q = rng.normal(size=5), rng.normal(size=5)
    rotation = rotation_matrix(e, q) * np.linalg.norm(e) / np.linalg.norm(q)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(5), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation @ (e / np.linalg.norm(e)), q / np.linalg.norm(q), atol=1e-12)
    # Vectors orthogonal to both e and q are left alone.
    basis = np.linalg.qr(np.stack([e, q], 1), mode="complete")[0][:, 2:]
    np.testing.assert_allclose(rotation @ basis, basis, atol=1e-12)


def test_rotation_trick_value_is_z_q_and_gradient_is_lambda_r_transposed():
    z_e = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    z_q = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 4, dtype=torch.float64)
    out = rotation_trick(z_e, z_q)
    torch.testing.assert_close(out, z_q, rtol=0, atol=0)
    (weights * out).sum().backward()
    assert z_q.grad is None or torch.all(z_q.grad == 0)
    e, q, g = z_e.detach().numpy(), z_q.detach().numpy(), weights.numpy()
    expected = np.stack([rotation_matrix(e[i], q[i]).T @ g[i] for i in range(6)])
    np.testing.assert_allclose(z_e.grad.numpy(), expected, rtol=1e-6, atol=1e-9)
    # Unlike straight-through, the gradient is rescaled by ||q|| / ||e||.
    np.testing.assert_allclose(np.linalg.norm(z_e.grad.numpy(), axis=1),
                               np.linalg.norm(g, axis=1) * np.linalg.norm(q, axis=1)
                               / np.linalg.norm(e, axis=1), rtol=1e-6)


def test_rotation_trick_is_finite_for_zero_and_antipodal_inputs():
    q = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    z_e = torch.stack([torch.zeros(2), -3 * q[1]]).requires_grad_(True)
    out = rotation_trick(z_e, q)
    torch.testing.assert_close(out, q, rtol=0, atol=0)
    out.pow(2).sum().backward()
    assert torch.isfinite(z_e.grad).all()


def test_quantizer_with_rotation_trick_passes_the_rotated_gradient():
    vq = VectorQuantizer(6, 3, rotation_trick=True, restart_dead=False).double()
    z_e = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(10, 3, dtype=torch.float64)
    codebook_before = vq.codebook.clone()
    out = vq(z_e)
    (grad_z_e,) = torch.autograd.grad((weights * out.z_q).sum(), z_e)
    q = codebook_before[out.indices].numpy()
    torch.testing.assert_close(out.z_q.detach().numpy(), q, rtol=0, atol=0)
    e = z_e.detach().numpy()
    expected = np.stack([rotation_matrix(e[i], q[i]).T @ weights[i].numpy() for i in range(10)])
    np.testing.assert_allclose(grad_z_e.numpy(), expected, rtol=1e-6, atol=1e-9)


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
        out.losses.commit, [z_e, vq.codebook], retain_graph=True, allow_unused=True)
    assert grad_codebook is None or torch.all(grad_codebook == 0)
    # The raw commitment term, without beta: d/dz mean((z - e)^2) = 2 (z - e) / (N D).
    expected_z = 2 * (z_np - e_np[assign]) / z_np.size
    np.testing.assert_allclose(grad_z_e.numpy(), expected_z, rtol=1e-5, atol=1e-6)
    squared_error = ((z_np - e_np[assign]) ** 2).mean()
    assert out.losses.commit.item() == pytest.approx(squared_error, rel=1e-5)
    assert out.losses.codebook.item() == pytest.approx(squared_error, rel=1e-5)
    assert out.loss.item() == pytest.approx(0.25 * squared_error + squared_error, rel=1e-5)


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


FAR_CODEBOOK = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])


def _far_code_setup(ema=True, restart_dead=True, **options):
    """4 codes in 2-D; code 3 is far from every input of :func:`_near_batch`."""
    vq = VectorQuantizer(4, 2, ema=ema, restart_dead=restart_dead, **options)
    set_codebook(vq, FAR_CODEBOOK)
    return vq.train()


def _near_batch(n=15, noise=0.01):
    """n points, a third near each of codes 0, 1, 2 (so each gets 1/3 of them)."""
    return FAR_CODEBOOK[torch.arange(n) % 3] + noise * torch.randn(n, 2)


def _is_far(vq):
    return vq.codebook[3].abs().min().item() > 50


@pytest.mark.parametrize("ema", [True, False])
def test_window_rule_restarts_a_dead_code_on_a_batch_encoder_output(ema):
    vq = _far_code_setup(ema, dead_rule="window", dead_window=3, restart_from="random")
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


def test_usage_ema_update_equals_hand_computation():
    decay = 0.7
    vq = _far_code_setup(dead_decay=decay, restart_dead=False)
    batch = torch.tensor([[0.0, 0.1], [0.1, 0.0], [0.9, 0.1], [0.1, 0.8], [0.0, 0.9]])
    vq(batch)
    counts = np.array([2, 1, 2, 0])
    expected = decay * 0.25 + (1 - decay) * counts / 5
    np.testing.assert_allclose(vq.usage_ema.numpy(), expected, rtol=1e-6)
    vq(batch)
    np.testing.assert_allclose(vq.usage_ema.numpy(), decay * expected + (1 - decay) * counts / 5,
                               rtol=1e-6)


@pytest.mark.parametrize("threshold, decay", [(0.5, 0.9), (0.1, 0.8), (0.9, 0.5)])
@pytest.mark.parametrize("batch_size", [6, 60])
def test_ema_rule_restarts_after_log_threshold_over_log_decay_batches(threshold, decay, batch_size):
    # From the fair share 1/K an unused code's usage EMA is d^t / K, below
    # threshold / K from t = floor(log(threshold) / log(d)) + 1 on, whatever
    # the batch size (so whatever the number of batches in an epoch).
    vq = _far_code_setup(dead_threshold=threshold, dead_decay=decay)
    expected_step = math.floor(math.log(threshold) / math.log(decay)) + 1
    for step in range(1, expected_step + 1):
        batch = _near_batch(batch_size)
        assert (vq(batch).indices != 3).all()
        if step < expected_step:
            assert _is_far(vq), f"restarted at step {step}, expected {expected_step}"
    assert not _is_far(vq)
    # The restarted code sits on a point of the batch, on probation at the threshold.
    assert (batch - vq.codebook[3]).pow(2).sum(1).min().item() == 0.0
    assert vq.usage_ema[3].item() == pytest.approx(threshold / 4)
    assert vq.cluster_size[3].item() == 1.0
    # ... and no other code, each with 1/3 of the inputs, was touched.
    torch.testing.assert_close(vq.codebook[:3], FAR_CODEBOOK[:3], atol=0.02, rtol=0)


def test_a_restarted_code_without_inputs_in_its_next_batch_is_restarted_again():
    vq = _far_code_setup(dead_threshold=0.9, dead_decay=0.5)
    first = _near_batch()
    first[0] = torch.tensor([4.0, 4.0])
    vq(first)
    torch.testing.assert_close(vq.codebook[3], first[0], rtol=0, atol=0)
    # The next batch has nothing near (4, 4): on probation, code 3 moves on at once,
    # onto the worst-quantized input of that batch.
    second = _near_batch()
    second[5] = torch.tensor([-3.0, 2.0])
    assert (vq(second).indices != 3).all()
    torch.testing.assert_close(vq.codebook[3], second[5], rtol=0, atol=0)


def test_a_restarted_code_that_wins_its_share_stays():
    vq = _far_code_setup(dead_threshold=0.9, dead_decay=0.5)
    first = _near_batch()
    first[0] = torch.tensor([4.0, 4.0])
    vq(first)
    second = _near_batch(16)
    second[[0, 5, 9, 13]] = torch.tensor([4.0, 4.0]) + 0.01 * torch.randn(4, 2)
    assert (vq(second).indices == 3).sum() == 4  # 1/4 of the batch >= 0.9 / K
    assert (vq.codebook[3] - torch.tensor([4.0, 4.0])).abs().max() < 0.1


def test_error_rule_restarts_onto_the_worst_quantized_input():
    vq = _far_code_setup(dead_threshold=0.9, dead_decay=0.5, restart_from="error")
    batch = _near_batch(15)
    batch[4] = torch.tensor([3.0, 2.5])  # the input farthest from its nearest code
    codebook_before = vq.codebook.clone()
    vq(batch)
    distances = ((batch[:, None, :] - codebook_before[None]) ** 2).sum(-1).min(1).values
    assert distances.argmax().item() == 4
    torch.testing.assert_close(vq.codebook[3], batch[4], rtol=0, atol=0)


def test_several_dead_codes_restart_onto_distinct_worst_inputs():
    vq = VectorQuantizer(6, 2, dead_threshold=0.9, dead_decay=0.5, restart_from="error").train()
    set_codebook(vq, torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]] + [[100.0, 100.0]] * 3))
    batch = _near_batch(30)
    batch[[2, 7, 11]] = torch.tensor([[5.0, 5.0], [-4.0, 3.0], [3.0, -6.0]])
    vq(batch)
    restarted = {tuple(row) for row in vq.codebook[3:].tolist()}
    assert restarted == {tuple(row) for row in batch[[2, 7, 11]].tolist()}


@pytest.mark.parametrize("restart_from", ["error", "random"])
def test_no_more_codes_restart_than_the_batch_has_outputs(restart_from):
    vq = VectorQuantizer(8, 2, dead_threshold=0.9, dead_decay=0.5, restart_from=restart_from)
    set_codebook(vq, torch.cat([FAR_CODEBOOK[:3], torch.full((5, 2), 100.0)]))
    with torch.no_grad():  # the dead codes 3..7, most neglected first: 6, 4, 7, 3, 5
        vq.usage_ema[3:] = torch.tensor([0.04, 0.02, 0.05, 0.01, 0.03])
    batch = torch.tensor([[0.0, 0.1], [1.1, 0.0], [0.0, 2.0]])
    vq.train()(batch)
    restarted = [k for k in range(3, 8) if vq.codebook[k].abs().max() < 50]
    assert restarted == [4, 6, 7]
    assert {tuple(vq.codebook[k].tolist()) for k in restarted} == {tuple(r) for r in batch.tolist()}


def test_dead_code_restart_is_reproducible_under_seed():
    def restarted_code(seed):
        torch.manual_seed(seed)
        vq = _far_code_setup(dead_rule="window", dead_window=2, restart_from="random")
        batch = torch.rand(32, 2)
        vq(batch)
        assert _is_far(vq)
        vq(batch)
        assert not _is_far(vq), "no restart after dead_window unused batches"
        assert (batch - vq.codebook[3]).pow(2).sum(1).min().item() == 0.0
        return vq.codebook[3].clone()

    torch.testing.assert_close(restarted_code(5), restarted_code(5), rtol=0, atol=0)
    # The choice comes from torch's RNG: other seeds land on other points.
    assert len({tuple(restarted_code(seed).tolist()) for seed in range(5)}) > 1


@pytest.mark.parametrize("rule", ["window", "ema"])
def test_dead_code_statistics_and_kmeans_flag_survive_a_state_dict_round_trip(rule):
    options = dict(dead_rule=rule, dead_window=3, dead_threshold=0.5, dead_decay=0.8)
    vq = _far_code_setup(**options)
    n_unused = 3 if rule == "window" else math.floor(math.log(0.5) / math.log(0.8)) + 1
    for _ in range(n_unused - 1):
        vq(_near_batch())
    assert _is_far(vq)
    resumed = VectorQuantizer(4, 2, kmeans_init=True, **options)
    resumed.load_state_dict(vq.state_dict(), strict=True)
    batch = _near_batch()
    resumed.train()(batch)
    # The last unused batch: restarted, and no k-means re-initialisation moved code 3 first.
    assert (batch - resumed.codebook[3]).pow(2).sum(1).min().item() == 0.0


@pytest.mark.parametrize("rule", ["window", "ema"])
def test_dead_code_restart_can_be_switched_off(rule):
    vq = _far_code_setup(restart_dead=False, dead_rule=rule, dead_window=3)
    for _ in range(30):
        vq(_near_batch())
    torch.testing.assert_close(vq.codebook[3], torch.tensor([100.0, 100.0]), atol=1e-2, rtol=0)
    assert vq.usage_ema[3].item() < 0.5 / 4  # dead by the rule, but left alone


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


def test_vqvae_config_holds_every_quantizer_option_once():
    vq_fields = {f.name for f in fields(VQConfig)}
    assert vq_fields <= {f.name for f in fields(VQVAEConfig)}
    model = VQVAE("global", 16, 4, hidden=8, beta=0.5, dead_threshold=0.3, restart_from="random",
                  rotation_trick=True, kmeans_init=True)
    assert model.quantizer.config == model.config.vq_config
    assert asdict(model.quantizer.config) == {k: v for k, v in model.model_args.items()
                                              if k in vq_fields}
    assert model.quantizer.config.beta == 0.5 and model.quantizer.config.dead_threshold == 0.3


def test_model_args_are_asdict_of_the_config_with_defaults_resolved():
    model = VQVAE("conv", 32, 8)
    assert model.model_args == asdict(model.config)
    assert model.config == VQVAEConfig(32, 8, arch="conv", hidden=64, res_hidden=64)
    assert model.model_args["hidden"] == 64 and model.model_args["res_hidden"] == 64
    assert VQVAE(**model.model_args).config == model.config


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
    # commit_loss is the raw term (no beta); loss weights it by beta = 0.5.
    assert out.commit_loss.item() == pytest.approx(squared_error, rel=1e-5)
    assert out.codebook_loss.item() == pytest.approx(squared_error, rel=1e-5)

    p = torch.sigmoid(out.recon_logits).detach().double().numpy()
    xn = x.double().numpy()
    bce = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum() / 5
    assert out.recon_loss.item() == pytest.approx(bce, rel=1e-4)
    assert out.loss.item() == pytest.approx(bce + 0.5 * squared_error + squared_error, rel=1e-4)


@pytest.mark.parametrize("arch", ["conv", "global"])
def test_rebuild_from_model_args_gives_identical_outputs(arch):
    model = VQVAE(arch, n_codes=16, code_dim=4, dead_threshold=1.0, kmeans_init=True,
                  rotation_trick=True, **SMALL[arch])
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
    model = VQVAE(arch, n_codes=8, code_dim=4, hidden=hidden, n_res_blocks=1)
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
        (dict(dead_threshold=0.0), "dead_threshold"),
        (dict(dead_threshold=1.5), "dead_threshold"),
        (dict(dead_decay=1.0), "dead_decay"),
        (dict(dead_rule="never"), "dead_rule"),
        (dict(restart_from="anywhere"), "restart_from"),
        (dict(beta="0.25"), "beta"),
    ],
)
def test_invalid_constructor_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VQVAE(**kwargs)


def test_wrong_image_shape_raises():
    model = VQVAE("global", 8, 4, hidden=8)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(2, 784))


def test_initialise_on_more_vectors_than_a_batch_gives_k_distinct_codes():
    """k-means on the first batch cannot give K codes when the batch holds fewer
    vectors; ``initialise`` on more gives K distinct codes at a Lloyd fixed point,
    with the EMA state consistent with them, and the first batch leaves it alone."""
    torch.manual_seed(0)
    centers = torch.randn(8, 4) * 10
    data = (centers.repeat_interleave(32, 0) + torch.randn(256, 4)).contiguous()
    first_batch = VectorQuantizer(8, 4, kmeans_init=True, restart_dead=False)
    first_batch.initialise(data[torch.randperm(256)[:4]])  # what a training batch of 4 does
    assert len(torch.unique(first_batch.codebook, dim=0)) <= 4

    vq = VectorQuantizer(8, 4, kmeans_init=True, restart_dead=False, kmeans_iters=50).train()
    vq.initialise(data, torch.Generator().manual_seed(3))
    assert bool(vq.initialized)
    codes = vq.codebook.clone()
    assert len(torch.unique(codes, dim=0)) == 8
    assignment = brute_force_nearest(data.numpy(), codes.numpy())
    sizes = np.bincount(assignment, minlength=8)
    for k in range(8):
        np.testing.assert_allclose(codes[k].numpy(), data[assignment == k].mean(0).numpy(),
                                   rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(vq.cluster_size.numpy(), np.maximum(sizes, 1))
    torch.testing.assert_close(vq.code_sum, codes * vq.cluster_size.unsqueeze(1))
    again = VectorQuantizer(8, 4, kmeans_init=True, restart_dead=False, kmeans_iters=50)
    again.initialise(data, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again.codebook, codes, rtol=0, atol=0)
    # No second initialisation: with EMA off the codebook is only moved by an optimizer.
    frozen = VectorQuantizer(8, 4, ema=False, kmeans_init=True, restart_dead=False).train()
    frozen.initialise(data)
    before = frozen.codebook.detach().clone()
    frozen(data[:4] * 5)
    torch.testing.assert_close(frozen.codebook.detach(), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        vq.initialise(data[:, :3])


@pytest.mark.parametrize("arch,positions", [("global", 1), ("conv", 49)])
def test_vqvae_initialise_codebook_runs_kmeans_on_the_encoder_outputs(arch, positions):
    torch.manual_seed(0)
    model = VQVAE(arch, n_codes=6, code_dim=4, kmeans_init=True, kmeans_iters=50).train()
    x = torch.rand(12, 1, 28, 28)
    assert model.initialise_codebook(x, generator=torch.Generator().manual_seed(0),
                                     batch_size=5) == 12 * positions
    assert model.training and bool(model.quantizer.initialized)
    with torch.no_grad():
        z = model._continuous_codes(x).reshape(-1, 4).numpy()
    codes = model.quantizer.codebook.numpy()
    assignment = brute_force_nearest(z, codes)
    for k in np.unique(assignment):
        np.testing.assert_allclose(codes[k], z[assignment == k].mean(0), rtol=1e-4, atol=1e-5)
    if positions > 1:
        assert model.initialise_codebook(x, max_vectors=100) == 100
