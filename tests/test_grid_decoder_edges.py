"""Decoder edges at the grid rate, wired into the runner (issue #31): the "decoder" cell of
geodesic-conv is a GeodesicQuantizer with per-position metric edges; the runner's metrics
equal a reverse-mode Jacobian computed image by image, in grid_vectors' row order; the
runner's codes equal the quantizer's own with those metrics; the protocol offers the cell
only where the metrics fit the budget."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.conv_net import grid_vectors
from models.conv_vae import ConvVAE
from models.geodesic_vq import GeodesicQuantizer, make_quantizer
from train import comparison_methods as cm
from utils import methods as M
from utils import protocol as P


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return ConvVAE(latent_dim=2, hidden=8, n_res_blocks=1).eval()


@pytest.fixture(scope="module")
def grids():
    return np.random.default_rng(0).normal(size=(12, 2, 7, 7)).astype(np.float32)


def jacobian_metrics(vae, grids: np.ndarray) -> np.ndarray:
    """Reference: J of sigmoid(decode) by reverse mode, one image at a time; G of each
    position from its D columns; rows image-major, then raster order."""
    out = []
    for z in torch.from_numpy(grids):
        J = torch.autograd.functional.jacobian(lambda x: torch.sigmoid(vae.decode(x[None])).flatten(),
                                               z)  # (n, D, 7, 7)
        J = J.permute(2, 3, 0, 1).reshape(49, -1, z.shape[0])  # (positions, n, D)
        out.append(J.transpose(1, 2) @ J)
    return torch.cat(out).numpy()


def test_the_grid_decoder_cell_is_a_metric_quantizer():
    cells = M.variants("geodesic-conv", edge_lengths=M.EDGE_LENGTHS, code_vectors=("medoid", "refined"),
                       decoders=("finetuned",))
    assert [c["edge_length"] for c in cells] == ["latent", "decoder"]
    assert {c["code_vectors"] for c in cells} == {"medoid"}  # refined is not defined on a grid
    q = make_quantizer("geodesic-conv", 4, seed=0, variant={"edge_length": "decoder"})
    assert q.edge_length == "metric"
    # at one code per image "decoder" stays the decoder's own pull-back
    assert make_quantizer("geodesic-vae", 4, seed=0, variant={"edge_length": "decoder"}).edge_length == "decoder"


def test_grid_metrics_match_the_jacobian_row_by_row(vae, grids):
    G = cm.grid_metrics(vae.decode, grids)
    assert G.shape == (12 * 49, 2, 2)
    np.testing.assert_allclose(G, jacobian_metrics(vae, grids), rtol=1e-4, atol=1e-7)
    assert cm.grid_metrics(vae.decode, grids) is G  # computed once per (VAE, latents)
    assert cm.grid_metrics(vae.decode, grids[:3]) is not G


def test_grid_metrics_are_read_back_from_disk_by_a_later_process(vae, grids, tmp_path, monkeypatch):
    """With METRICS_DIR set (SeedRun: <--work-dir>/grid_metrics), a process that has not
    computed a VAE's metrics reads those an earlier one wrote; other weights or other grids
    are computed afresh; a file of the wrong shape is recomputed with a warning."""
    import copy

    from geodesic import position_metric

    monkeypatch.setattr(cm, "METRICS_DIR", tmp_path)
    monkeypatch.setattr(cm, "_METRICS", {})
    ref = jacobian_metrics(vae, grids)
    first = cm.grid_metrics(vae.decode, grids)
    [file] = tmp_path.glob("*.npy")
    np.testing.assert_allclose(np.load(file), ref, rtol=1e-4, atol=1e-7)

    # a "new process": nothing in memory, and computing would fail
    cm._METRICS.clear()
    real = position_metric.row_metrics
    monkeypatch.setattr(position_metric, "row_metrics", lambda *a, **k: 1 / 0)
    same = copy.deepcopy(vae)  # the same weights in another object
    np.testing.assert_array_equal(cm.grid_metrics(same.decode, grids), first)
    with pytest.raises(ZeroDivisionError):  # other grids are not in the file
        cm.grid_metrics(vae.decode, grids[:3])
    other = copy.deepcopy(vae)
    with torch.no_grad():
        next(other.parameters()).add_(0.1)
    with pytest.raises(ZeroDivisionError):  # other weights are not either
        cm.grid_metrics(other.decode, grids)
    assert cm.weights_digest(same) == cm.weights_digest(vae) != cm.weights_digest(other)

    monkeypatch.setattr(position_metric, "row_metrics", real)
    cm._METRICS.clear()
    np.save(file, np.zeros((3, 2, 2), np.float32))
    with pytest.warns(UserWarning, match="recomputed"):
        again = cm.grid_metrics(vae.decode, grids)
    np.testing.assert_allclose(again, ref, rtol=1e-4, atol=1e-7)
    assert np.load(file).shape == ref.shape  # rewritten


def test_a_stopped_metric_run_resumes_at_the_chunk_it_was_in(vae, grids, tmp_path, monkeypatch):
    """12 grids in chunks of 5: three files; with the middle one gone, a new process
    computes only its 5 grids, and the whole equals the reference."""
    from geodesic import position_metric

    monkeypatch.setattr(cm, "METRICS_DIR", tmp_path)
    monkeypatch.setattr(cm, "METRICS_CHUNK", 5)
    monkeypatch.setattr(cm, "_METRICS", {})
    cm.grid_metrics(vae.decode, grids)
    files = sorted(tmp_path.glob("*.npy"), key=lambda f: f.stat().st_mtime_ns)
    assert sorted(len(np.load(f)) for f in files) == [2 * 49, 5 * 49, 5 * 49]
    middle = [f for f in files if np.array_equal(
        np.load(f), cm.grid_metrics(vae.decode, grids)[5 * 49:10 * 49])]
    assert len(middle) == 1
    middle[0].unlink()
    cm._METRICS.clear()
    seen, real = [], position_metric.row_metrics
    monkeypatch.setattr(position_metric, "row_metrics",
                        lambda mean, z, **k: seen.append(len(z)) or real(mean, z, **k))
    G = cm.grid_metrics(vae.decode, grids)
    assert seen == [5]
    np.testing.assert_allclose(G, jacobian_metrics(vae, grids), rtol=1e-4, atol=1e-7)
    assert cm.grid_metrics(vae.decode, grids[:0]).shape == (0, 2, 2)  # no grid, no chunk


def test_a_seed_run_keeps_grid_metrics_under_its_work_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(cm, "METRICS_DIR", None)
    cm.SeedRun(SimpleNamespace(work_dir=tmp_path), 0, None, None, torch.device("cpu"))
    assert cm.METRICS_DIR == tmp_path / "grid_metrics"


def test_the_runner_quantizes_each_vector_with_its_own_metric(vae, grids):
    X = grid_vectors(torch.from_numpy(grids)).numpy()
    G = jacobian_metrics(vae, grids)
    q = make_quantizer("geodesic-conv", 6, seed=0, n_neighbors=5, decoder=vae.decode,
                       variant={"edge_length": "decoder"})
    q.fit(X, **cm.metrics_of(q, lambda: cm.grid_metrics(vae.decode, grids)))
    ref = GeodesicQuantizer(6, 5, 0, edge_length="metric").fit(X, metrics=G)
    np.testing.assert_array_equal(q.medoids_, ref.medoids_)
    new = grids[:4] + 0.05
    indices, codes = cm.quantized_latents(q, new)
    want = ref.quantize(grid_vectors(torch.from_numpy(new)).numpy(), metrics=jacobian_metrics(vae, new))
    np.testing.assert_array_equal(indices.reshape(-1), want.indices.numpy())
    assert codes.shape == new.shape
    # a latent-edge quantizer gets no metrics
    assert cm.metrics_of(make_quantizer("geodesic-conv", 6, seed=0), lambda: 1 / 0) == {}


def test_the_seed_run_fits_the_decoder_cell_on_the_training_metrics(vae, grids, monkeypatch):
    args = SimpleNamespace(grid_fit_images=None, n_neighbors=5)
    run = cm.SeedRun(args, 0, None, None, "cpu")
    monkeypatch.setattr(run, "vae_for", lambda arch="mlp": vae)
    monkeypatch.setattr(run, "latents", lambda arch="mlp": (grids, grids[:2]))
    graph = run.graph_for("metric", "conv")
    ref = GeodesicQuantizer(6, 5, 0, edge_length="metric").graph_for(
        grid_vectors(torch.from_numpy(grids)).numpy(), metrics=jacobian_metrics(vae, grids))
    np.testing.assert_allclose(graph.graph.toarray(), ref.graph.toarray(), rtol=1e-4)


def test_the_protocol_offers_grid_decoder_edges_within_the_budget():
    small = P.cell_options(M.GRID_RATE, 4_500)
    assert small["edge_lengths"] == ("latent", "decoder")
    # both datasets' training splits (mnist-5k 4,500, Fashion-MNIST 54,000) by default
    assert P.cell_options(M.GRID_RATE, 54_000)["edge_lengths"] == ("latent", "decoder")
    assert P.cell_options(M.GRID_RATE, 54_000, 10_000)["edge_lengths"] == ("latent",)
    assert P.cell_options(M.GRID_RATE, 60_001)["edge_lengths"] == ("latent",)
    assert P.cell_options(M.IMAGE_RATE, 10 ** 6)["edge_lengths"] == ("latent", "decoder")


def test_a_quick_grid_selection_scores_the_decoder_cell_and_the_rows_run_the_chosen_one(tmp_path):
    import pandas as pd

    from train import run_tuned as rt

    argv = ["--dataset", "mnist", "--rate", "grid", "--quick", "--limit", "80", "--codebook-sizes",
            "4", "--seeds", "0", "--device", "cpu", "--work-dir", str(tmp_path / "work"),
            "--results-dir", str(tmp_path / "res")]
    for stage in ("select", "rows"):
        rt.main(rt.parse_args(argv + ["--stage", stage]))
    table = pd.read_csv(tmp_path / "res" / "selection_mnist.csv", keep_default_na=False)
    cells = table[table["family"] == "cell:geodesic-conv"]
    assert sorted(cells["edge_length"]) == ["decoder", "latent"]
    assert cells["val_score"].astype(float).gt(0).all() and cells["config_hash"].nunique() == 2
    chosen = cells[cells["chosen"].astype(str) == "True"]
    assert len(chosen) == 1
    assert chosen["edge_length"].iloc[0] == cells.loc[cells["val_score"].astype(float).idxmin(), "edge_length"]
    rows = pd.read_csv(tmp_path / "res" / "comparison.csv", keep_default_na=False)
    geo = rows[rows["method"] == "geodesic-conv"]
    assert set(geo["edge_length"]) == {chosen["edge_length"].iloc[0]}
    assert set(geo["decoder"]) == {"frozen", "finetuned"}
