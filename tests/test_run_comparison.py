"""The comparison runner on a tiny setting: every column for every method,
reruns skip finished rows, an interrupted run keeps its rows."""
import json
import math

import pandas as pd
import pytest

from train import comparison_methods as cm
from train import run_comparison as rc
from utils import methods as vocab
from utils import paths

ARGV = ["--dataset", "mnist-5k", "--limit", "240", "--codebook-sizes", "4", "8", "--seeds", "0",
        "--epochs", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    args = rc.parse_args(ARGV + ["--work-dir", str(root / "work"), "--results-dir", str(root / "res"),
                                 "--figure-k", "8"])
    rc.main(args)
    return root, args


def test_every_method_and_k_has_a_full_row(tiny_run):
    root, _ = tiny_run
    df = pd.read_csv(root / "res" / "comparison.csv")
    assert list(df.columns) == rc.COLUMNS
    got = {(m, k) for m, k in zip(df.method, df.K)}
    want = {(m.name, k) for m in vocab.methods() for k in m.codebook_sizes((4, 8))}
    assert got == want and len(df) == len(want)
    assert (df.dataset_used == "mnist-5k").all() and (df.setting == "full").all()
    one_code = df[df.method.isin(vocab.matched())]
    for col in ["test_bce", "test_mse", "psnr", "perplexity", "usage", "nmi", "ari", "purity",
                "code_to_label_accuracy", "wall_seconds"]:
        assert one_code[col].notna().all(), col
    # (a VQ-VAE that used one code has no inter-cluster pairs, so only these are sure to have it)
    a_posteriori = df[df.method.isin(vocab.names(family=vocab.A_POSTERIORI, rate=vocab.IMAGE_RATE))]
    assert a_posteriori.intra_inter_ratio.notna().all()
    assert a_posteriori[["geodesic_distortion", "euclidean_distortion"]].notna().all().all()
    # the grid methods: code-map usage and perplexity over all 49 positions, no one-code label metrics
    grid = df[df.method.isin(vocab.matched(vocab.GRID_RATE))]
    assert set(grid.method) == {"vqvae-conv", "kmeans-conv", "geodesic-conv", "fsq-conv", "rotvq-conv"}
    assert grid.nmi.isna().all() and grid[["test_mse", "usage", "perplexity"]].notna().all().all()
    assert (df[df.method.isin(vocab.names(rate=vocab.GRID_RATE))].epochs == 1).all()
    for _, r in df.iterrows():  # bits per image: codes per image x log2 K, NaN unquantized
        want_bits = vocab.get(r.method).codes_per_image * math.log2(r.K) if r.K else math.nan
        assert r.bits_per_image == pytest.approx(want_bits, nan_ok=True), r.method
    # every seed of a configuration shares its config_id; the row hash includes the seed
    assert df.groupby(["method", "K"]).config_id.nunique().eq(1).all()


def test_summary_and_figures_written(tiny_run):
    root, _ = tiny_run
    summary = pd.read_csv(root / "res" / "summary.csv")
    assert {"test_mse_mean", "test_mse_std", "n_seeds"} <= set(summary.columns)
    assert len(summary) == sum(len(m.codebook_sizes((4, 8))) for m in vocab.methods())
    for name in paths.RUNNER_FIGURES:
        for ext in ("png", "pdf"):
            base = paths.ResultPaths(root / "res").figure(name, "mnist-5k", "full")
            assert base.with_suffix(f".{ext}").stat().st_size > 0


def test_rerun_skips_finished_rows(tiny_run, monkeypatch):
    root, args = tiny_run
    before = (root / "res" / "comparison.csv").read_text()
    calls = []
    monkeypatch.setattr(cm, "vae_for_seed", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(cm, "evaluate", lambda *a, **k: calls.append(a))
    args.no_figures = True
    record = paths.ResultPaths(root / "res").run_record(args.dataset, args.setting)
    first = json.loads(record.read_text())
    rc.main(args)
    assert calls == [] and (root / "res" / "comparison.csv").read_text() == before
    # the rerun's record keeps the first run's, whole, under "earlier"
    second = json.loads(record.read_text())
    assert second["earlier"] == [first] and second["config"]["no_figures"] is True


def test_interrupted_run_keeps_rows_and_resumes(tmp_path, monkeypatch):
    args = rc.parse_args(ARGV + ["--work-dir", str(tmp_path / "work"), "--results-dir",
                                 str(tmp_path / "res"), "--no-figures",
                                 "--methods", "kmeans-vae", "geodesic-vae"])
    real = cm.quantizer_for

    def crash_on_geodesic(run, method, *a, **k):
        if method == "geodesic-vae":
            raise KeyboardInterrupt
        return real(run, method, *a, **k)

    monkeypatch.setattr(cm, "quantizer_for", crash_on_geodesic)
    with pytest.raises(KeyboardInterrupt):
        rc.main(args)
    kept = pd.read_csv(tmp_path / "res" / "comparison.csv", dtype=str)
    assert set(kept.method) == {"kmeans-vae"} and len(kept) == 2
    monkeypatch.setattr(cm, "quantizer_for", real)
    rc.main(args)
    df = pd.read_csv(tmp_path / "res" / "comparison.csv", dtype=str)
    assert len(df) == 4 and set(df.method) == {"kmeans-vae", "geodesic-vae"}
    assert df.iloc[:2].equals(kept)


def test_codebook_larger_than_data_is_refused(tmp_path, capsys):
    from utils.cli import run_main

    args = rc.parse_args(["--dataset", "mnist-5k", "--limit", "50", "--codebook-sizes", "64",
                          "--seeds", "0", "--results-dir", str(tmp_path)])
    assert run_main(rc.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: --codebook-sizes [64] exceed the 45 training images; use K <= N"
    assert not (tmp_path / "comparison.csv").exists()


def test_ablation_cells_fill_their_columns_and_keep_the_clusters(tmp_path):
    """Every (edge length x code vectors x decoder) cell of geodesic-vae and the two
    decoder cells of kmeans-vae get a row; the decoder and the code vectors change how
    codes decode, never which images share a code."""
    args = rc.parse_args(ARGV + ["--codebook-sizes", "4", "--work-dir", str(tmp_path / "work"),
                                 "--results-dir", str(tmp_path / "res"), "--no-figures",
                                 "--methods", "kmeans-vae", "geodesic-vae",
                                 "--edge-lengths", "latent", "decoder",
                                 "--code-vectors", "medoid", "refined",
                                 "--decoders", "frozen", "finetuned", "--finetune-epochs", "1"])
    rc.main(args)
    df = pd.read_csv(tmp_path / "res" / "comparison.csv", keep_default_na=False)
    cells = {(r.method, r.edge_length, r.code_vectors, r.decoder) for r in df.itertuples()}
    want = {("geodesic-vae", e, v, d) for e in ("latent", "decoder") for v in ("medoid", "refined")
            for d in ("frozen", "finetuned")}
    want |= {("kmeans-vae", "", "centroid", d) for d in ("frozen", "finetuned")}
    assert cells == want and len(df) == len(want)
    geo = df[df.method == "geodesic-vae"]
    for _, same_edges in geo.groupby("edge_length"):
        assert same_edges.nmi.astype(float).nunique() == 1  # same clusters in every cell
        assert same_edges.test_mse.astype(float).nunique() > 1  # decoded differently
    assert df.config_id.nunique() == len(want)


def test_grid_latents_are_quantized_vector_by_vector():
    """A (N, D, 7, 7) grid: position (r, c) of image n gets the nearest centroid of
    its own D-vector (brute force), and the decoded map holds those centroids."""
    import numpy as np

    from models.geodesic_vq import EuclideanQuantizer

    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 3, 7, 7)).astype(np.float32)
    q = EuclideanQuantizer(5, seed=0).fit(z.transpose(0, 2, 3, 1).reshape(-1, 3))
    codes, vectors = cm.quantized_latents(q, z)
    assert codes.shape == (6, 7, 7) and tuple(vectors.shape) == (6, 3, 7, 7)
    d = ((z.transpose(0, 2, 3, 1)[..., None, :] - q.codebook_) ** 2).sum(-1)  # (6, 7, 7, K)
    np.testing.assert_array_equal(codes, d.argmin(-1))
    np.testing.assert_allclose(vectors.numpy(), q.codebook_[codes].transpose(0, 3, 1, 2))


def test_a_run_of_grid_methods_only_draws_its_figures(tmp_path):
    """Regression: a grid-only run (no decodable codebook) crashed in the codebook figure
    after writing its rows ("Number of columns must be a positive integer, not 0")."""
    args = rc.parse_args(["--dataset", "mnist-5k", "--limit", "120", "--codebook-sizes", "4",
                          "--seeds", "0", "--epochs", "1", "--methods", "vqvae-conv", "kmeans-conv",
                          "--figure-k", "4", "--work-dir", str(tmp_path / "w"),
                          "--results-dir", str(tmp_path / "r")])
    rc.main(args)
    figures = {p.name for p in (tmp_path / "r" / "figures").glob("*.png")}
    assert "reconstructions_mnist-5k_full.png" in figures and "usage_mnist-5k_full.png" in figures
    assert "codebooks_mnist-5k_full.png" not in figures


def test_quick_setting_leaves_out_the_library_methods_unless_asked():
    """make all's quick sweep trains the classical methods (vector-quantize-pytorch's
    three would add 27 conv models to it); the full setting and --methods are unchanged."""
    from utils import methods as vocab

    full = rc.parse_args(["--dataset", "mnist"]).methods
    quick = rc.parse_args(["--dataset", "mnist", "--quick"]).methods
    assert full == list(vocab.METHOD_NAMES)
    assert quick == [m for m in vocab.METHOD_NAMES if not vocab.get(m).from_library]
    assert {"fsq-conv", "rotvq-conv", "fsq-global"} == set(full) - set(quick)
    asked = rc.parse_args(["--dataset", "mnist", "--quick", "--methods", "fsq-conv"]).methods
    assert asked == ["fsq-conv"]
