"""train/train_geodesic.py end to end on a tiny VAE (CPU)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from models.geodesic_vq import GeodesicQuantizer
from train import train_geodesic, train_vae
from utils.checkpoint import load_checkpoint
from utils.cli import run_main


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    train_vae.main(train_vae.parse_args(["--dataset", "mnist-5k", "--limit", "400", "--epochs", "2",
                                         "--out-dir", str(out), "--device", "cpu", "--no-plots"]))
    return out / "checkpoints" / "vae_mnist-5k.pt"


@pytest.fixture(scope="module")
def geo_run(vae_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("geo")
    train_geodesic.main(train_geodesic.parse_args(
        ["--vae-checkpoint", str(vae_ckpt), "--codebook-size", "8", "16", "--n-neighbors", "8",
         "--out-dir", str(out), "--device", "cpu"]))
    return out


def test_log_has_one_row_per_method_and_k(geo_run):
    df = pd.read_csv(geo_run / "logs" / "geodesic_mnist-5k_log.csv")
    assert list(df.columns) == train_geodesic.COLUMNS
    assert sorted(zip(df.method, df.K)) == [("euclidean", 8), ("euclidean", 16),
                                           ("geodesic", 8), ("geodesic", 16)]
    metric_cols = [c for c in df.columns if c not in ("edge_length", "code_vectors", "decoder")]
    assert df[metric_cols].notna().all().all() and (df.dataset == "mnist-5k").all()
    assert set(df.decoder) == {"frozen"} and set(df.code_vectors) == {"medoid", "centroid"}
    assert ((df.usage > 0) & (df.usage <= 1)).all()
    # more codes, less distortion, for both methods
    for _, g in df.groupby("method"):
        g = g.sort_values("K")
        assert g.geodesic_distortion.iloc[1] < g.geodesic_distortion.iloc[0]


def test_saved_quantizer_reloads_and_quantizes_like_the_log(geo_run, vae_ckpt):
    ckpt = load_checkpoint(geo_run / "checkpoints" / "geodesic_vq_mnist-5k_K16.pt")
    q = GeodesicQuantizer.from_state_dict(ckpt["quantizer"])
    assert ckpt["dataset"] == "mnist-5k" and q.codebook.shape == (16, 20)
    vae, _, _, test = train_geodesic.load_vae_and_data(vae_ckpt, "cpu", "data")
    out = q.quantize(vae.latent_means(test.images).numpy())
    usage = len(torch.unique(out.indices)) / 16
    assert usage == pytest.approx(ckpt["metrics"]["usage"])


def test_plots_are_written(geo_run):
    names = {p.name for p in (geo_run / "plots").iterdir()}
    for stem in ("geodesic_codebook_mnist-5k_K16", "euclidean_codebook_mnist-5k_K8",
                 "latent_graph_mnist-5k_K16", "quantized_reconstructions_mnist-5k_K16"):
        assert {stem + ".png", stem + ".pdf"} <= names


def test_missing_checkpoint_and_too_large_k_are_one_line_errors(vae_ckpt, tmp_path, capsys):
    args = train_geodesic.parse_args(["--vae-checkpoint", str(tmp_path / "none.pt")])
    assert run_main(train_geodesic.main, args) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    args = train_geodesic.parse_args(["--vae-checkpoint", str(vae_ckpt), "--codebook-size", "361",
                                      "--out-dir", str(tmp_path), "--no-plots"])
    assert run_main(train_geodesic.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # --limit 400 keeps 400 training images, 40 of which are the validation part
    assert err[-1] == ("error: --codebook-size 361 is larger than the number of training latents "
                       "N=360; use K <= N")


def test_regression_a_second_run_keeps_the_first_runs_rows(vae_ckpt, geo_run):
    """Bug: each run rewrote geodesic_log.csv, so K=64 then K=128 kept only K=128."""
    log = geo_run / "logs" / "geodesic_mnist-5k_log.csv"
    before = pd.read_csv(log)
    train_geodesic.main(train_geodesic.parse_args(
        ["--vae-checkpoint", str(vae_ckpt), "--codebook-size", "4", "8", "--n-neighbors", "8",
         "--method", "geodesic", "--out-dir", str(geo_run), "--device", "cpu", "--no-plots"]))
    after = pd.read_csv(log)
    assert len(after) == len(before) + 1  # K=4 added, K=8 replaced (same configuration)
    assert sorted(zip(after.method, after.K)) == sorted(
        list(zip(before.method, before.K)) + [("geodesic", 4)])
    again = after[(after.method == "geodesic") & (after.K == 8)]
    first = before[(before.method == "geodesic") & (before.K == 8)]
    assert len(again) == 1 and again.test_mse.iloc[0] == pytest.approx(first.test_mse.iloc[0])


def test_decoder_edges_and_finetuned_decoder_are_logged_as_their_cell(vae_ckpt, tmp_path):
    train_geodesic.main(train_geodesic.parse_args(
        ["--vae-checkpoint", str(vae_ckpt), "--codebook-size", "8", "--n-neighbors", "8",
         "--method", "geodesic", "--edge-length", "decoder", "--finetune-decoder", "1",
         "--out-dir", str(tmp_path), "--device", "cpu", "--no-plots"]))
    df = pd.read_csv(tmp_path / "logs" / "geodesic_mnist-5k_log.csv")
    assert (df.edge_length.tolist(), df.decoder.tolist()) == (["decoder"], ["finetuned"])
    ckpt = load_checkpoint(tmp_path / "checkpoints" /
                           "geodesic_vq_mnist-5k_K8_decoder_medoid_finetuned.pt")
    assert ckpt["quantizer"]["config"]["edge_length"] == "decoder"
