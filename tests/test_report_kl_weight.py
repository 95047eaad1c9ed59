"""report/kl_weight.py on hand-made result folders: the beta of each folder comes
from its run record, the table's cells are pandas' mean and std over seeds, and
each beta's verdict follows the report's one verdict path (beyond the seed spread)."""
from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest

from report import kl_weight as KW
from report.tables import mean_std_rows
from utils import metric_registry as R
from utils.errors import UserError
from utils.paths import ResultPaths
from utils.results import COLUMNS, append_row, read_results


def row(method, K, seed, mse, config="c"):
    return dict.fromkeys(COLUMNS, 0.0) | {
        "dataset": "fashion-mnist", "setting": "full", "method": method, "K": K, "seed": seed,
        "config_hash": f"{config}{seed}", "config_id": config, "edge_length": "", "code_vectors": "",
        "decoder": "", "dataset_used": "fashion-mnist", "test_mse": mse}


def beta_folder(root, beta, mses: dict):
    """root/kl_weight/beta-<beta>/ with comparison.csv and a run record of --vae-kl-weight beta."""
    sub = root / KW.FOLDER / f"beta-{beta}"
    sub.mkdir(parents=True)
    for (method, K), values in mses.items():
        for seed, mse in enumerate(values):
            append_row(sub / "comparison.csv", row(method, K, seed, mse, config=f"b{beta}"))
    (sub / "comparison_fashion-mnist_full_run.json").write_text(
        json.dumps({"config": {"vae_kl_weight": beta}}))
    return sub


@pytest.fixture
def results(tmp_path):
    main = [row("vqvae-conv", K, s, m) for K, ms in ((64, [0.0070, 0.0072, 0.0074]),
                                                      (512, [0.0054, 0.0055, 0.0056]))
            for s, m in enumerate(ms)]
    main += [row("geodesic-conv", K, s, m) for K in (64, 512) for s, m in enumerate([0.014, 0.015, 0.016])]
    beta_folder(tmp_path, 0.1, {("geodesic-conv", 64): [0.0060, 0.0061, 0.0062],   # beats 0.0072
                                ("geodesic-conv", 512): [0.0050, 0.0056, 0.0062],  # inside the spread
                                ("kmeans-conv", 64): [0.0070, 0.0071, 0.0072],
                                ("kmeans-conv", 512): [0.0050, 0.0056, 0.0062],
                                ("vae-conv", 0): [0.0040, 0.0042, 0.0044]})
    return types.SimpleNamespace(comparison=pd.DataFrame(main), root=tmp_path)


def test_the_folder_is_read_with_the_beta_of_its_run_record(results):
    frame = KW.read_kl_rows(KW.folder_of(ResultPaths(results.root)))
    assert set(frame["kl_weight"]) == {0.1} and len(frame) == 15
    assert KW.read_kl_rows(results.root / "absent").empty


def test_a_folder_with_two_betas_is_refused(results):
    sub = results.root / KW.FOLDER / "beta-0.1"
    (sub / "comparison_mnist_full_run.json").write_text(json.dumps({"config": {"vae_kl_weight": 0.5}}))
    with pytest.raises(UserError, match="several KL weights"):
        KW.read_kl_rows(results.root / KW.FOLDER)


def test_cells_are_mean_and_std_over_seeds(results):
    frame = KW.read_kl_rows(results.root / KW.FOLDER)
    ks, table = KW.kl_table_rows(results, frame)
    assert ks == [64, 512]
    raw = read_results(results.root / KW.FOLDER / "beta-0.1" / "comparison.csv")
    for (method, K), g in raw.groupby(["method", "K"]):
        c = table[("fashion-mnist", method, 0.1)][K]
        assert c.mean == pytest.approx(np.mean(g["test_mse"]))
        assert c.std == pytest.approx(np.std(g["test_mse"], ddof=1)) and c.n == 3
    # beta = 1 comes from the main comparison, vqvae-conv as trained end to end (beta None)
    assert table[("fashion-mnist", "geodesic-conv", 1.0)][64].mean == pytest.approx(0.015)
    assert table[("fashion-mnist", "vqvae-conv", None)][512].mean == pytest.approx(0.0055)
    assert ("fashion-mnist", "vae-conv", 1.0) not in table  # the main rows have no bound here


def test_each_beta_is_decided_by_the_shared_verdict_path(results):
    frame = KW.read_kl_rows(results.root / KW.FOLDER)
    verdicts = KW.beta_verdicts(results, frame, "fashion-mnist")
    assert list(verdicts) == [1.0, 0.1]  # the main comparison's beta first, then the folders'

    def winners(v, opponent):
        t = v.against[opponent].tables["test_mse"]
        return dict(zip(t["K"], t["winner"]))

    # beta 1 (the main rows): worse beyond the spread at both K; no k-means rows there
    assert winners(verdicts[1.0], "vqvae-conv") == {64: "vqvae-conv", 512: "vqvae-conv"}
    assert verdicts[1.0].answer == "no" and "kmeans-conv" not in verdicts[1.0].against
    # beta 0.1: 0.0061 ± 0.0001 beats 0.0072 ± 0.0002 at K = 64; 0.0056 ± 0.0006 against
    # 0.0055 ± 0.0001 is inside the spread at K = 512
    assert winners(verdicts[0.1], "vqvae-conv") == {64: "geodesic-conv", 512: "none"}
    assert verdicts[0.1].against["vqvae-conv"].by_k == {64: "yes", 512: "no clear difference"}
    assert verdicts[0.1].answer == "yes"
    assert winners(verdicts[0.1], "kmeans-conv") == {64: "geodesic-conv", 512: "none"}
    # the bound is no opponent: it bounds the a-posteriori methods
    assert list(verdicts[0.1].against) == ["kmeans-conv", "vqvae-conv"]


def test_the_sentences_carry_the_means_the_verdicts_rest_on(results):
    frame = KW.read_kl_rows(results.root / KW.FOLDER)
    (item,) = KW.answer(results, frame)
    # the brief item: each β's verdict, the bound and both means at the largest K
    assert "β = 1: **no** (K = 512: 0.015 vs 0.0055)" in item
    assert ("β = 0.1: **yes** at K = 64; no clear difference at K = 512 (bound 0.0042; "
            "K = 512: 0.0056 vs 0.0055)") in item
    long = KW.answer_item(results, frame, "fashion-mnist")
    assert "geodesic-conv vs vqvae-conv: K = 64 0.0061 vs 0.0072 (better)" in long
    assert "K = 512 0.0056 vs 0.0055 (within the spread)" in long
    assert "β = 0.1: geodesic better than k-means at K = 64, worse at no K" in long
    assert "β = 1: k-means not run" in long


def test_beats_is_the_sum_of_stds_rule(results):
    """|mean_a - mean_b| > std_a + std_b: 0.0061 ± 0.0001 against 0.0072 ± 0.0002 is
    beyond it; the proposal's mean moved to 0.0070 (a difference of 0.0002, below the
    sum) leaves no winner."""
    frame = KW.read_kl_rows(results.root / KW.FOLDER)

    def at_64(frame):
        v = KW.beta_verdicts(results, frame, "fashion-mnist")[0.1]
        return v.against["vqvae-conv"].tables["test_mse"].set_index("K").loc[64]

    assert at_64(frame)["winner"] == "geodesic-conv"
    moved = (frame["method"] == "geodesic-conv") & (frame["K"] == 64)
    close = at_64(frame.assign(test_mse=frame["test_mse"].where(~moved, frame["test_mse"] + 0.0009)))
    assert close["mean_a"] == pytest.approx(0.0070) and close["winner"] == "none"


def gen_row(method, K, seed, fid, config="g"):
    from utils.results import GENERATION_COLUMNS

    return dict.fromkeys(GENERATION_COLUMNS, 0.0) | {
        "dataset": "fashion-mnist", "setting": "full", "method": method, "K": K, "seed": seed,
        "config_hash": f"{config}{seed}", "config_id": config, "dataset_used": "fashion-mnist",
        "prior": "pixelcnn", "fid_samples": fid}


def test_generation_rows_put_the_beta_priors_next_to_the_main_ones(results):
    from utils.results import append_generation_row

    sub = results.root / KW.FOLDER / "beta-0.1"
    for s in range(2):
        append_generation_row(sub / "generation.csv", gen_row("geodesic-conv", 512, s, 50.0 + s, "b"))
        for method in ("geodesic-conv", "vqvae-conv", "kmeans-vae"):
            append_generation_row(results.root / "generation.csv", gen_row(method, 512, s, 100.0 + s))
        append_generation_row(results.root / "generation.csv", gen_row("geodesic-conv", 64, s, 9.0))
    rows = KW.generation_rows(results)
    got = {(m, "nan" if np.isnan(b) else b, K): list(g["fid_samples"])
           for (m, b, K), g in rows.groupby(["method", "kl_weight", "K"], dropna=False)}
    assert got == {("geodesic-conv", 0.1, 512): [50.0, 51.0], ("geodesic-conv", 1.0, 512): [100.0, 101.0],
                   ("vqvae-conv", "nan", 512): [100.0, 101.0]}


def test_generation_table_keeps_the_end_to_end_rows_apart():
    rows = pd.DataFrame({"method": ["vqvae-conv"] * 2 + ["geodesic-conv"] * 2,
                         "kl_weight": [np.nan, np.nan, 0.1, 0.1], "K": [64] * 4, "seed": [0, 1] * 2,
                         "fid_samples": [9.0, 9.2, 5.0, 5.2]})
    data = mean_std_rows(rows, KW.GEN_KEYS, [(R.FID_SAMPLES.column, "sample FID")])
    assert data == [["method", "VAE", "K", "seeds", "sample FID"],
                    ["vqvae-conv", "end to end", "64", "2", "9.10 ± 0.14"],
                    ["geodesic-conv", "β = 0.1", "64", "2", "5.10 ± 0.14"]]
