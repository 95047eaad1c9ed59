"""Tests of models/library_quantizers.py (vector-quantize-pytorch behind our
quantizer's interface) against independent references: a brute-force FSQ grid
in numpy, brute-force nearest codes, the EMA update and rotation trick of our own
quantizer, the project's metric code, and checkpoints loaded with weights_only."""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from models.library_quantizers import (FSQ_LEVELS, QUANTIZERS, FSQQuantizer,
                                       LibraryVectorQuantizer, fsq_levels, make_vq_layer)
from models.quantizer import VectorQuantizer, VQConfig
from models.vqvae import VQVAE, VQVAEConfig
from utils import metrics
from utils.checkpoint import CheckpointError, load_checkpoint, rebuild, save_checkpoint

LIBRARY = ("library-vq", "fsq")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------
# FSQ against a brute-force grid
# ----------------------------------------------------------------------------
def fsq_grid(levels) -> np.ndarray:
    """Every FSQ code (K, len(levels)) in index order: index = sum_i digit_i *
    prod_{j<i} L_j (the first dimension varies fastest), value of digit k in a
    dimension of L levels = (k - L // 2) / (L // 2) (Mentzer et al. 2024, appendix A.1)."""
    digits = itertools.product(*[range(L) for L in reversed(levels)])
    rows = [tuple(reversed(d)) for d in digits]  # last dimension slowest
    return np.array([[(k - L // 2) / (L // 2) for k, L in zip(row, levels)] for row in rows])


def fsq_bound(z: np.ndarray, levels) -> np.ndarray:
    """The FSQ bound before rounding, scaled to the grid's units:
    (tanh(z + shift) * half_l - offset) / (L // 2) with half_l = (L - 1)(1 + 1e-3) / 2,
    offset = 0.5 for even L, shift = atanh(offset / half_l) so that z = 0 maps to 0."""
    L = np.asarray(levels, dtype=np.float64)
    half_l = (L - 1) * (1 + 1e-3) / 2
    offset = np.where(L % 2 == 0, 0.5, 0.0)
    shift = np.arctanh(offset / half_l)
    return (np.tanh(z + shift) * half_l - offset) / (L // 2)


def nearest_grid_index(bounded: np.ndarray, levels) -> np.ndarray:
    """Index (N,) of the grid point nearest each bounded value (N, len(levels)), by brute
    force over the K codes of :func:`fsq_grid`."""
    return ((bounded[:, None, :] - fsq_grid(levels)[None]) ** 2).sum(-1).argmin(1)


@pytest.mark.parametrize("levels", [(8,), (4, 4), (8, 4), (8, 4, 4), (8, 8, 8)])
def test_fsq_rounds_to_the_nearest_grid_point_and_packs_its_index(levels):
    K = math.prod(levels)
    fsq = FSQQuantizer(K, len(levels))  # D = len(levels): no projections around the grid
    assert fsq.levels == tuple(levels) and not fsq.fsq.has_projections
    z = torch.randn(300, len(levels), dtype=torch.float64).float() * 2
    out = fsq(z)
    grid = fsq_grid(levels)
    bounded = fsq_bound(z.double().numpy(), levels)
    want = nearest_grid_index(bounded, levels)
    np.testing.assert_array_equal(out.indices.numpy(), want)
    np.testing.assert_allclose(out.z_q.detach().numpy(), grid[want], atol=1e-6)
    assert out.indices.dtype == torch.int64 and fsq.assign(z).equal(out.indices)


@pytest.mark.parametrize("K", sorted(FSQ_LEVELS))
def test_fsq_index_packing_is_a_bijection_onto_the_grid(K):
    levels = fsq_levels(K)
    fsq = FSQQuantizer(K, len(levels))
    table = fsq.lookup(torch.arange(K)).double().numpy()
    np.testing.assert_allclose(table, fsq_grid(levels), atol=1e-7)
    assert len({tuple(r) for r in table}) == K
    # and the grid point of each index quantizes back to it
    inverse = fsq.fsq.codes_to_indices(torch.from_numpy(table).float())
    np.testing.assert_array_equal(inverse.numpy(), np.arange(K))


def test_fsq_extreme_inputs_take_the_extreme_levels():
    fsq = FSQQuantizer(32, 2)  # levels (8, 4)
    idx = fsq.assign(torch.tensor([[50.0, 50.0], [-50.0, -50.0], [0.0, 0.0]]))
    # digits (7, 3) -> 7 + 8 * 3; (0, 0) -> 0; z = 0 -> the middle digits (4, 2) -> 4 + 8 * 2
    assert idx.tolist() == [31, 0, 20]


def test_fsq_indices_stay_in_range_under_bfloat16():
    """Users of the library reported FSQ indices out of range under bf16: the
    rounding must run in float32 (the library's force_quantization_f32)."""
    fsq = FSQQuantizer(512, 3)
    z = torch.randn(2000, 3) * 3
    idx = fsq(z.bfloat16()).indices
    assert int(idx.min()) >= 0 and int(idx.max()) < 512
    assert idx.equal(fsq(z.bfloat16().float()).indices)


def test_fsq_levels_table():
    for K, levels in FSQ_LEVELS.items():
        assert math.prod(levels) == K and 2 not in levels  # 2 would need preserve_symmetry
    assert fsq_levels(16) == (4, 4) and fsq_levels(64) == (8, 8) and fsq_levels(512) == (8, 8, 8)
    with pytest.raises(ValueError, match="FSQ has no levels for K = 48"):
        FSQQuantizer(48, 8)


def test_fsq_with_projection_round_trips_indices_and_passes_gradients():
    fsq = FSQQuantizer(64, 16)  # 16 -> 2 -> 16
    assert fsq.fsq.has_projections and fsq.codebook.shape == (64, 16)
    z = torch.randn(5, 7, 16, requires_grad=True)
    out = fsq(z)
    assert out.z_q.shape == (5, 7, 16) and out.indices.shape == (5, 7)
    torch.testing.assert_close(fsq.lookup(out.indices), out.z_q)
    out.z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight through the rounding
    assert out.loss.item() == 0.0 and fsq.dead_codes().numel() == 0


def test_fsq_batch_norm_standardises_the_projected_values_before_the_bound():
    """norm="batch": the projected values are centred and scaled per dimension (the
    batch's statistics in training, running ones in eval), then bounded and rounded as
    the brute-force grid says; without it, inputs whose projections sit far out on the
    tanh all take one code (the collapse of one code per image), with it they spread."""
    levels = (8, 8)
    for norm in ("none", "batch"):
        fsq = FSQQuantizer(64, 16, norm=norm)
        project = fsq.fsq.project_in[0] if norm == "batch" else fsq.fsq.project_in
        with torch.no_grad():
            project.bias.fill_(40.0)  # far out on the flat part of tanh
        z = torch.randn(256, 16)
        idx = fsq.train()(z).indices
        if norm == "none":
            assert idx.unique().numel() == 1  # every input at the top corner
            continue
        y = project(z).detach().double().numpy()
        y = (y - y.mean(0)) / np.sqrt(y.var(0) + 1e-5)  # batch statistics, biased variance
        want = nearest_grid_index(fsq_bound(y, levels), levels)
        np.testing.assert_array_equal(idx.numpy(), want)
        assert len(set(want.tolist())) > 20
        # eval mode: the running statistics (one update of momentum 0.1 from 0 and 1)
        bn = fsq.fsq.project_in[1].bn
        y = project(z).detach().double().numpy()
        mean = 0.1 * y.mean(0)
        var = 0.9 + 0.1 * y.var(0, ddof=1)
        np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-4)
        want = nearest_grid_index(fsq_bound((y - mean) / np.sqrt(var + 1e-5), levels), levels)
        np.testing.assert_array_equal(fsq.eval().assign(z).numpy(), want)
    with pytest.raises(ValueError, match="norm must be one of"):
        FSQQuantizer(64, 16, norm="layer")
    with pytest.raises(ValueError, match="option of quantizer 'fsq'"):
        make_vq_layer("ours", VQConfig(16, 8), fsq_norm="batch")
    with pytest.raises(ValueError, match="needs quantizer 'fsq'"):
        VQVAE("global", 16, 8, fsq_norm="batch")


# ----------------------------------------------------------------------------
# The library's VectorQuantize against brute force and against ours
# ----------------------------------------------------------------------------
def brute_force_nearest(z: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    return ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1).argmin(1)


def library_vq(K=6, D=3, **options) -> LibraryVectorQuantizer:
    vq = LibraryVectorQuantizer(K, D, **options)
    codebook = torch.randn(K, D)
    with torch.no_grad():
        vq.vq.codebook = codebook
        vq.vq._codebook.embed_avg.copy_(codebook.unsqueeze(0))  # EMA state consistent with it
        vq.vq._codebook.cluster_size.fill_(1.0)
    return vq


@pytest.mark.parametrize("training", [False, True])
def test_library_vq_chooses_the_nearest_code(training):
    vq = library_vq(restart_dead=False).train(training)
    z = torch.randn(4, 10, 3)
    codebook = vq.codebook.clone()  # the outputs use the codebook before the batch's update
    out = vq(z)
    want = brute_force_nearest(z.reshape(-1, 3).numpy(), codebook.numpy()).reshape(4, 10)
    np.testing.assert_array_equal(out.indices.numpy(), want)
    torch.testing.assert_close(out.z_q.detach(), codebook[torch.from_numpy(want)])
    np.testing.assert_array_equal(vq.assign(z).numpy(), want if not training else
                                  brute_force_nearest(z.reshape(-1, 3).numpy(),
                                                      vq.codebook.numpy()).reshape(4, 10))


@pytest.mark.parametrize("training", [False, True])
def test_library_vq_commitment_is_the_mean_squared_error(training):
    vq = library_vq(beta=0.4, restart_dead=False).train(training)
    z = torch.randn(20, 3)
    codebook = vq.codebook.clone()
    out = vq(z)
    err = ((z - codebook[out.indices]) ** 2).mean()
    torch.testing.assert_close(out.losses.commit.detach(), err)
    torch.testing.assert_close(out.loss.detach(), 0.4 * err)
    assert out.losses.codebook.item() == 0.0


def test_library_ema_update_equals_ours():
    """One training batch moves the library's codebook exactly as appendix A.1 moves ours."""
    ours = VectorQuantizer(6, 3, decay=0.9, restart_dead=False)
    lib = library_vq(decay=0.9, restart_dead=False)
    with torch.no_grad():
        ours.codebook.copy_(lib.codebook)
        ours.code_sum.copy_(lib.codebook)
    z = torch.randn(50, 3)
    a, b = ours(z), lib(z)
    assert a.indices.equal(b.indices)
    torch.testing.assert_close(lib.codebook, ours.codebook, rtol=1e-5, atol=1e-6)


def test_library_rotation_trick_gradient_equals_ours():
    ours = VectorQuantizer(6, 3, rotation_trick=True, restart_dead=False)
    lib = library_vq(rotation_trick=True, restart_dead=False)
    with torch.no_grad():
        ours.codebook.copy_(lib.codebook)
        ours.code_sum.copy_(lib.codebook)
    z = torch.randn(30, 3)
    weights = torch.randn(30, 3)
    grads = []
    for vq in (ours, lib):
        z_e = z.clone().requires_grad_(True)
        (weights * vq(z_e).z_q).sum().backward()
        grads.append(z_e.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)
    # and it is not the straight-through gradient
    assert not torch.allclose(grads[0], weights)


def test_library_dead_codes_are_replaced_by_batch_vectors():
    vq = library_vq(K=4, D=2)
    far = torch.tensor([[100.0, 100.0]])
    with torch.no_grad():
        vq.vq.codebook = torch.cat([torch.zeros(3, 2), far])
        vq.vq._codebook.embed_avg.copy_(vq.codebook.unsqueeze(0))
    batch = torch.randn(40, 2) * 0.1
    vq(batch)  # code 3 gets nothing: EMA size 0.99 < 2 -> replaced by a batch vector
    assert (batch - vq.codebook[3]).pow(2).sum(1).min().item() == 0.0
    assert set(vq.dead_codes().tolist()) <= {0, 1, 2, 3}


def test_library_vq_needs_the_ema_codebook():
    with pytest.raises(ValueError, match="EMA codebook only"):
        LibraryVectorQuantizer(8, 3, ema=False)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        make_vq_layer("lfq", VQConfig(8, 3))
    with pytest.raises(ValueError, match="quantizer must be one of"):
        VQVAEConfig(quantizer="lfq")


def test_library_kmeans_initialisation_and_no_update_in_eval():
    vq = LibraryVectorQuantizer(4, 2, kmeans_init=True)
    assert not bool(vq.initialized)
    z = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    vq.eval()(z)
    assert not bool(vq.initialized) and vq.codebook.abs().max() == 0  # eval changes nothing
    vq.initialise(z)  # 4 vectors, 4 codes: k-means starts and stays on them
    assert bool(vq.initialized)
    assert {tuple(r) for r in vq.codebook.tolist()} == {tuple(r) for r in z.tolist()}


# ----------------------------------------------------------------------------
# In the VQ-VAE: round trips, metrics, checkpoints
# ----------------------------------------------------------------------------
def tiny(arch: str, quantizer: str, K: int = 16, **options) -> VQVAE:
    return VQVAE(arch, K, 8, hidden=8, quantizer=quantizer, **options)


@pytest.mark.parametrize("arch", ["conv", "global"])
@pytest.mark.parametrize("quantizer", LIBRARY)
def test_indices_to_codes_to_decoder_round_trip(arch, quantizer):
    model = tiny(arch, quantizer)
    x = torch.rand(6, 1, 28, 28)
    model.train()(x)  # one training pass (the library's k-means/EMA state moves)
    model.eval()
    with torch.no_grad():
        out = model(x)
        idx = model.encode(x)
        assert idx.equal(out.indices) and idx.shape == ((6, 7, 7) if arch == "conv" else (6,))
        torch.testing.assert_close(model.decode_indices(idx), torch.sigmoid(out.recon_logits))
        codes = model.quantizer.lookup(idx)
        torch.testing.assert_close(codes, model.quantizer(model._continuous_codes(x)).z_q)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        model.decode_indices(torch.full(idx.shape, 16))


@pytest.mark.parametrize("quantizer", LIBRARY)
def test_usage_and_perplexity_through_the_projects_metric_code(quantizer):
    from train.train_vqvae import evaluate_vqvae

    model = tiny("conv", quantizer).eval()
    images = torch.rand(30, 1, 28, 28)
    got = evaluate_vqvae(model, images, batch_size=7)
    idx = model.encode(images).numpy().ravel()
    counts = np.array([(idx == k).sum() for k in range(16)])  # brute-force counts
    p = counts[counts > 0] / counts.sum()
    assert got["usage"] == pytest.approx((counts > 0).mean())
    assert got["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert got["usage"] == metrics.usage(metrics.code_counts(idx, 16))


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_checkpoints_reload_with_weights_only_and_rebuild(tmp_path, quantizer):
    model = tiny("conv", quantizer, kmeans_init=quantizer == "library-vq")
    x = torch.rand(4, 1, 28, 28)
    model.train()(x)
    path = save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict(),
                                               "model_args": model.model_args,
                                               "model_class": "VQVAE"})
    raw = torch.load(path, weights_only=True)
    assert raw["model_args"]["quantizer"] == quantizer
    again = rebuild(load_checkpoint(path), VQVAE).eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x).recon_logits, model(x).recon_logits)
        assert again.encode(x).equal(model.encode(x))
    assert type(again.quantizer) is type(model.quantizer)


def test_fsq_norm_train_flag_reaches_a_checkpoint_that_reloads_with_its_statistics(tmp_path):
    from train.train_vqvae import main, parse_args, run_paths

    argv = ["--dataset", "mnist-5k", "--arch", "global", "--limit", "128", "--epochs", "1",
            "--batch-size", "64", "--codebook-size", "16", "--out-dir", str(tmp_path),
            "--device", "cpu", "--no-plots", "--quantizer", "fsq", "--fsq-norm", "batch"]
    main(parse_args(argv))
    ckpt = torch.load(run_paths(tmp_path, "global", "mnist-5k")["checkpoint"], weights_only=True)
    assert ckpt["model_args"]["fsq_norm"] == "batch" and ckpt["config"]["fsq_norm"] == "batch"
    model = rebuild(ckpt, VQVAE).eval()
    bn = model.quantizer.fsq.project_in[1].bn
    assert int(bn.num_batches_tracked) == 2  # 128 images minus validation, batch 64
    assert torch.equal(bn.running_mean, ckpt["model"]["quantizer.fsq.project_in.1.bn.running_mean"])
    with pytest.raises(SystemExit):
        parse_args([a if a != "fsq" else "ours" for a in argv])  # --fsq-norm needs fsq


def test_a_checkpoint_from_before_the_quantizer_field_rebuilds_ours():
    model = tiny("global", "ours")
    args = model.model_args
    del args["quantizer"]
    again = rebuild({"model": model.state_dict(), "model_args": args}, VQVAE)
    assert isinstance(again.quantizer, VectorQuantizer) and again.config.quantizer == "ours"
    assert asdict(again.config) == model.model_args


# ----------------------------------------------------------------------------
# The training script and the comparison's registry
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("quantizer, arch", [("fsq", "global"), ("library-vq", "global"),
                                             ("fsq", "conv")])
def test_train_vqvae_trains_and_resumes_with_a_library_quantizer(tmp_path, quantizer, arch):
    from train.train_vqvae import main, parse_args, run_paths

    argv = ["--dataset", "mnist-5k", "--arch", arch, "--limit", "128", "--epochs", "1",
            "--batch-size", "64", "--codebook-size", "16", "--out-dir", str(tmp_path),
            "--device", "cpu", "--no-plots", "--quantizer", quantizer]
    main(parse_args(argv))
    path = run_paths(tmp_path, arch, "mnist-5k")["checkpoint"]
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["model_args"]["quantizer"] == quantizer and ckpt["config"]["quantizer"] == quantizer
    assert type(rebuild(ckpt, VQVAE).quantizer).__name__ != "VectorQuantizer"
    with pytest.raises(CheckpointError, match="quantizer"):
        main(parse_args([a if a != quantizer else "ours" for a in argv]
                        + ["--epochs", "2", "--resume"]))


def test_registry_entries_reach_the_training_config_and_keep_old_ids():
    from train import comparison_methods as cm
    from train import run_comparison as rc
    from utils import methods as vocab

    args = rc.parse_args(["--dataset", "fashion-mnist", "--codebook-sizes", "512"])
    for name, fields in (("fsq-conv", {"quantizer": "fsq"}),
                         ("rotvq-conv", {"quantizer": "library-vq", "rotation_trick": True,
                                         "kmeans_init": True}),
                         ("fsq-global", {"quantizer": "fsq", "fsq_norm": "batch"})):
        m = vocab.get(name)
        assert m.family == vocab.END_TO_END and m.build == "vqvae"
        cfg = cm.vqvae_train_config(args, m.options["arch"], 512, 0, m.options)
        assert {k: getattr(cfg, k) for k in fields} == fields
        config = cm.method_config(args, name, 512, 0, {})
        assert config["quantizer"] == m.options["quantizer"]
    # the methods built before keep their configs, hence their config ids
    for name in ("vqvae-conv", "vqvae-global"):
        m = vocab.get(name)
        assert (cm.vqvae_train_config(args, m.options["arch"], 512, 0, m.options)
                == cm.vqvae_train_config(args, m.options["arch"], 512, 0))
        assert "quantizer" not in cm.method_config(args, name, 512, 0, {})
    assert vocab.get("fsq-conv").bits(512) == vocab.get("vqvae-conv").bits(512) == 49 * 9
