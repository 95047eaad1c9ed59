"""The tuned protocol's generation stage (train/run_tuned.py --stage generation) and the
likelihood bound in bits per dimension.

A quick grid-rate run (select, rows, generation) on 300 images: the PixelCNN's size is
chosen once for every method on validation (the test split unread), every chosen cell's
prior decodes with the fine-tuned decoder the comparison cached for it, bits/dim is the
formula of the row's own numbers, and a rerun adds nothing."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.prior import HistogramPrior
from train import comparison_methods as cm
from train import run_tuned as rt
from train import train_prior
from utils import datasets
from utils import methods as vocab
from utils import protocol as P
from utils import training
from utils.checkpoint import CheckpointError
from utils.datasets import Data
from utils.metrics import bits_per_dim
from utils.results import TUNED_GENERATION_COLUMNS, read_generation, read_results

PIXELS = 28 * 28


# --- the bound on a case computed by hand ------------------------------------------------

def hand_maps(test_images: torch.Tensor, logits_of_code: dict, train_codes, test_codes):
    """CodeMaps of one code per image (K=2) whose decoder gives code k the constant
    logit ``logits_of_code[k]`` at every pixel."""
    def split(x):
        return Data(x, torch.zeros(len(x), dtype=torch.long), "mnist-5k", "hand")

    def decode_logits(codes):
        return torch.stack([torch.full((1, 28, 28), logits_of_code[int(c)]) for c in codes])

    splits = train_prior.CodeSplits(split(torch.zeros(len(train_codes), 1, 28, 28)),
                                    split(torch.zeros(1, 1, 28, 28)), split(test_images),
                                    "mnist-5k", None)
    return train_prior.CodeMaps(torch.tensor(train_codes), torch.tensor([0]),
                                torch.tensor(test_codes), 2, decode_logits, splits, "hand")


def test_bits_per_dim_against_a_hand_computation():
    """Training codes 0, 0, 0, 1: the Laplace-smoothed histogram gives p(0) = 4/6 and
    p(1) = 2/6. Test image 0 (code 0) is grey 0.5 everywhere, decoded with logit 0: a
    Bernoulli NLL of ln 2 nats, 1 bit, per pixel. Test image 1 (code 1) is white, decoded
    with logit ln 3 (p = 3/4): log2(4/3) bits per pixel."""
    images = torch.stack([torch.full((1, 28, 28), 0.5), torch.ones(1, 28, 28)])
    maps = hand_maps(images, {0: 0.0, 1: math.log(3)}, [0, 0, 0, 1], [0, 1])
    prior = HistogramPrior(2).fit(maps.train_codes)
    got, _ = train_prior.evaluate_prior(prior, maps, temperature=1.0, n_draw=2, seed=0)
    prior_bits = (math.log2(6 / 4) + math.log2(6 / 2)) / 2
    recon_bits = (PIXELS * 1.0 + PIXELS * math.log2(4 / 3)) / 2
    assert got["prior_nll_bits"] == pytest.approx(prior_bits, rel=1e-6)
    assert got["recon_nll_bits"] == pytest.approx(recon_bits, rel=1e-5)
    assert got["bits_per_dim"] == pytest.approx((prior_bits + recon_bits) / PIXELS, rel=1e-5)
    assert bits_per_dim(prior_bits, recon_bits, PIXELS) == (prior_bits + recon_bits) / 784


# --- a quick tuned run -------------------------------------------------------------------

ARGV = ["--dataset", "mnist", "--rate", "grid", "--quick", "--limit", "300", "--codebook-sizes",
        "4", "8", "--seeds", "0", "1", "--n-fid", "50", "--classifier-epochs", "1",
        "--device", "cpu", "--grid-metric-max-images", "0"]  # decoder edges: test_grid_decoder_edges


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Select, rows, then generation, recording every split loaded (by phase: the
    prior's size is chosen inside the generation stage) and every code source a prior
    was given."""
    root = tmp_path_factory.mktemp("tuned-gen")
    argv = ARGV + ["--work-dir", str(root / "work"), "--results-dir", str(root / "res")]
    loaded, sources, phase = [], [], {"now": "select"}
    real_load, real_maps, real_choose = datasets.load_dataset, train_prior.code_maps, rt.choose_prior

    def load(name, split, *a, **k):
        loaded.append((phase["now"], split))
        return real_load(name, split, *a, **k)

    def maps(checkpoint, **k):
        sources.append({"phase": phase["now"], "codes_from": str(checkpoint),
                        "decoder_from": str(k.get("decoder_from")), "test": k.get("test", True)})
        return real_maps(checkpoint, **k)

    def choose(*a, **k):
        phase["now"] = "prior size"
        try:
            return real_choose(*a, **k)
        finally:
            phase["now"] = "generation"

    mp = pytest.MonkeyPatch()
    for module in (datasets, rt, train_prior, training):  # every reader of a split
        mp.setattr(module, "load_dataset", load)
    mp.setattr(train_prior, "code_maps", maps)
    mp.setattr(rt, "choose_prior", choose)
    try:
        for stage in ("select", "rows", "generation"):
            phase["now"] = stage
            rt.main(rt.parse_args(argv + ["--stage", stage]))
    finally:
        mp.undo()
    return root, argv, loaded, sources


def chosen_prior(root) -> tuple[pd.DataFrame, dict]:
    table = pd.read_csv(root / "res" / "selection_mnist.csv", keep_default_na=False)
    return table[table["family"] == P.PRIOR_FAMILY], table


def test_the_prior_size_is_chosen_once_for_every_method_on_validation(tuned):
    root, argv, loaded, _ = tuned
    prior, _ = chosen_prior(root)
    methods = set(vocab.names(rate=vocab.GRID_RATE, quantized=True)) - {
        m.name for m in vocab.methods(rate=vocab.GRID_RATE) if m.from_library}
    # every candidate scored for every method, at one K (the quick run's first), seed 0
    assert set(prior["K"]) == {4} and set(prior["seed"]) == {0}
    assert set(prior["criterion"]) == {P.PRIOR_CRITERION} and set(prior["decoder"]) == {"finetuned"}
    assert {json.loads(c)["prior_channels"] for c in prior["candidate"]} == {
        c["prior_channels"] for c in P.PRIOR_CANDIDATES}
    for _, group in prior.groupby("candidate"):
        assert set(group["method"]) == methods and group["chosen"].nunique() == 1
    # the chosen candidate is the argmin of the mean over the methods (brute force)
    means = prior.groupby("candidate")["val_score"].mean()
    assert set(prior.loc[prior["chosen"].astype(str) == "True", "candidate"]) == {means.idxmin()}
    size = json.loads(means.idxmin())
    rows = read_generation(root / "res" / "generation.csv")
    assert (rows["prior_channels"] == size["prior_channels"]).all()
    assert (rows["prior_layers"] == size["prior_layers"]).all()
    # early stopping within the protocol's budget (2 epochs in the quick form)
    assert (rows["prior_epochs"] == 2).all()
    assert (rows["prior_epochs_trained"] >= rows["prior_best_epoch"]).all()
    assert (rows["prior_best_epoch"] >= 1).all()


def test_choosing_the_prior_size_never_reads_the_test_split(tuned):
    _, _, loaded, sources = tuned
    assert {split for phase, split in loaded if phase == "prior size"} == {"train", "val"}
    assert not [s for s in sources if s["phase"] == "prior size" and s["test"]]
    assert "test" in {split for phase, split in loaded if phase == "generation"}


def test_rows_decode_with_the_cells_fine_tuned_decoder(tuned):
    """Every row is a chosen cell with its fine-tuned decoder, whose file is the copy the
    comparison cached (tuned_copy's); its reconstruction NLL is that decoder's test BCE of
    comparison.csv (the frozen decoder's differs)."""
    root, argv, _, sources = tuned
    args = rt.parse_args(argv)
    table = rt.Selection(root / "res" / "selection_mnist.csv", "mnist")
    rows = read_generation(root / "res" / "generation.csv")
    assert list(pd.read_csv(root / "res" / "generation.csv").columns) == TUNED_GENERATION_COLUMNS
    assert (rows["protocol"] == "tuned").all() and sorted(rows["seed"].unique()) == [0, 1]
    assert (rows["prior"] == "pixelcnn").all() and (rows["decoder"] == "finetuned").all()
    comparison = read_results(root / "res" / "comparison.csv")
    scored = [s for s in sources if s["phase"] == "generation" and s["test"]]
    for K in (4, 8):
        cells = rt.generation_cells(table, args, K)
        assert {m for _, m, _ in cells} == set(rows.loc[rows["K"] == K, "method"])
        for a, method, variant in cells:
            for seed in (0, 1):
                m = vocab.get(method)
                decoder = (cm.vqvae_decoder_path(a, m, K, seed) if m.build == "vqvae"
                           else cm.decoder_path(a, method, K, seed, variant))
                assert decoder.is_file()
                assert any(s["decoder_from"] == str(decoder) for s in scored), (method, K, seed)
                row = rows[(rows["method"] == method) & (rows["K"] == K) & (rows["seed"] == seed)]
                assert len(row) == 1 and row["code_vectors"].iloc[0] == variant["code_vectors"]
                mine = comparison[(comparison["method"] == method) & (comparison["K"] == K)
                                  & (comparison["seed"] == seed)]
                bce = dict(zip(mine["decoder"], mine["test_bce"]))
                nats = row["recon_nll_bits"].iloc[0] * math.log(2)
                assert nats == pytest.approx(bce["finetuned"], rel=1e-4)
                assert nats != pytest.approx(bce["" if m.build == "vqvae" else "frozen"], rel=1e-4)
    assert all(s["decoder_from"] != "None" for s in sources if s["phase"] in ("prior size",
                                                                                 "generation"))


def test_bits_per_dim_is_the_bound_of_the_rows_own_numbers(tuned):
    root, _, _, _ = tuned
    rows = read_generation(root / "res" / "generation.csv")
    bound = (rows["prior_nll_bits"] + rows["recon_nll_bits"]) / PIXELS
    assert np.allclose(rows["bits_per_dim"], bound, rtol=1e-5)
    assert (rows["recon_nll_bits"] > 0).all() and (rows["bits_per_dim"] > 0).all()
    summary = pd.read_csv(root / "res" / "generation_summary.csv")
    assert {"bits_per_dim_mean", "bits_per_dim_std"} <= set(summary.columns)
    assert (summary["n_seeds"] == 2).all()


def test_a_fine_tuned_copy_of_another_model_is_refused(tuned):
    root, argv, _, _ = tuned
    args = rt.parse_args(argv)
    table = rt.Selection(root / "res" / "selection_mnist.csv", "mnist")
    cells = {m: (a, v) for a, m, v in rt.generation_cells(table, args, 4)}
    a, _ = cells["vqvae-conv"]
    m = vocab.get("vqvae-conv")
    source = cm.vqvae_checkpoint(a, "conv", 4, 0, m.options)
    maps = train_prior.code_maps(source, decoder_from=cm.vqvae_decoder_path(a, m, 4, 0), limit=300)
    from models.vqvae import VQVAE
    from utils.checkpoint import load_checkpoint, rebuild

    path = cm.vqvae_decoder_path(a, m, 4, 0)
    copy = rebuild(load_checkpoint(path), VQVAE, "cpu", path).eval()
    codes = maps.test_codes[:3]
    with torch.no_grad():
        assert torch.allclose(maps.decode(codes), copy.decode_indices(codes), atol=1e-6)
    with pytest.raises(CheckpointError, match="encodes images otherwise"):  # K=8's copy
        train_prior.code_maps(source, decoder_from=cm.vqvae_decoder_path(cells["vqvae-conv"][0],
                                                                         m, 8, 0), limit=300)
    ka, kv = cells["kmeans-conv"]
    with pytest.raises(CheckpointError, match="ConvVAE, not a VQVAE"):
        train_prior.code_maps(source, decoder_from=cm.decoder_path(ka, "kmeans-conv", 4, 0, kv))


def test_a_rerun_adds_nothing(tuned, monkeypatch):
    root, argv, _, _ = tuned
    before = {p.name: p.read_text() for p in (root / "res").glob("*.csv")}
    for name in ("train", "fit_prior"):
        monkeypatch.setattr(train_prior, name, lambda *a, **k: pytest.fail("a prior was redone"))
    rt.main(rt.parse_args(argv))  # --stage all: select, rows, generation and figures
    after = {p.name: p.read_text() for p in (root / "res").glob("*.csv")}
    assert before == after
    # the figures stage drew the grid interpolation from the cached VAE
    assert [p.name for p in (root / "res" / "figures").glob("interpolation*.png")] == [
        "interpolation_grid_mnist_full.png"]


def copied_results(tuned, tmp_path) -> tuple[Path, list[str]]:
    """A copy of the fixture's results folder, and its argv pointed at the copy (the models
    stay shared, so the copy's stages come back from the cache)."""
    import shutil

    root, argv, _, _ = tuned
    res = tmp_path / "res"
    shutil.copytree(root / "res", res)
    return res, [str(res) if a == str(root / "res") else a for a in argv]


def test_only_runs_the_named_methods_generation_rows(tuned, tmp_path):
    """``--only``: a part of the generation stage writes the named method's rows and no
    other's; the rest of the stage then completes the table with the same rows a whole
    run wrote (the priors come back from the cache)."""
    from utils.csvlog import read_header, read_rows, write_rows

    res, args = copied_results(tuned, tmp_path)
    path = res / "generation.csv"
    whole = read_rows(path)
    key = lambda r: (r["method"], r["K"], r["seed"], r["prior_nll_bits"])  # noqa: E731
    first = sorted({r["method"] for r in whole})[0]
    write_rows(path, read_header(path), [])
    rt.main(rt.parse_args(args + ["--stage", "generation", "--only", first]))
    part = read_rows(path)
    assert part and {r["method"] for r in part} == {first}
    rt.main(rt.parse_args(args + ["--stage", "generation"]))
    assert sorted(map(key, read_rows(path))) == sorted(map(key, whole))


def test_a_later_seeds_chunk_keeps_the_published_samples(tuned, tmp_path):
    """A ``--seeds 1`` chunk of the generation stage writes seed 1's rows but leaves the
    published sample grids (the selection seed's, as the report's caption says) alone."""
    from utils.csvlog import read_header, read_rows, write_rows

    res, args = copied_results(tuned, tmp_path)
    i = args.index("--seeds")
    args[i + 1:i + 3] = ["1"]
    path = res / "generation.csv"
    rows = read_rows(path)
    write_rows(path, read_header(path), [r for r in rows if int(r["seed"]) != 1])
    figures = {p: p.read_bytes() for p in (res / "figures").glob("samples_*.png")}
    assert figures
    rt.main(rt.parse_args(args + ["--stage", "generation"]))
    assert len(read_rows(path)) == len(rows)  # seed 1's rows are back
    assert {p: p.read_bytes() for p in figures} == figures


def test_the_generation_k_of_the_protocol():
    assert P.generation_sizes([16, 64, 512]) == [64, 512]
    assert P.generation_sizes([4, 8], quick=True) == [4, 8]
    assert P.prior_k([64, 512]) == 64 and P.prior_k([4, 8]) == 4
    # a part of the sweep that runs one generation K reuses the choice made at K = 64; were
    # it chosen at 512, the prior's size would depend on how the sweep was cut into parts
    assert P.prior_k([512], selected={16, 64, 512}) == 64 and P.prior_k([4, 64]) == 64
    assert P.prior_k([512], selected={512}) == 512  # a run that never selected at K = 64
    # K in the order given (docs/protocol.md: a part runs the K its rows just trained first),
    # and the prior's size still chosen at K = 64, which the selection table holds
    assert P.generation_sizes([512, 16, 64]) == [512, 64] and P.prior_k([512, 64]) == 64
    args = rt.parse_args(["--quick", "--rate", "image", "--codebook-sizes", "4"])
    assert rt.choose_prior(args, None, None, None, "cpu", [4]) == {}  # a histogram: no size
