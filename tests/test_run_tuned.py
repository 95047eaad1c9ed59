"""train/run_tuned.py: the tuned protocol. Selection never reads the test split, picks the
lowest mean validation score (brute force over the table), and the rows run exactly the chosen
settings and cells, with both decoders, and say so; a rerun adds nothing."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from train import run_tuned as rt
from utils import datasets
from utils import methods as vocab
from utils import protocol as P
from utils.results import read_results


def test_each_side_has_the_same_number_of_candidates():
    for dataset in ("mnist", "fashion-mnist"):
        counts = {side: len(P.candidates(side, dataset)) for side in P.SIDES}
        assert len(set(counts.values())) == 1 and min(counts.values()) >= 4, counts
    # the small data crosses every candidate with its batch sizes, on each side's own flag
    mnist = P.candidates(P.END_TO_END_SIDE, "mnist")
    assert {c["vqvae_batch_size"] for c in mnist} == set(P.SMALL_DATA_BATCH_SIZES["mnist"])
    # the published settings are candidates: beta = 1 VAE, the paper's 0.25 and 1e-3
    assert {"vae_kl_weight": 1.0} in P.candidates(P.A_POSTERIORI_SIDE, "fashion-mnist")
    assert {"vqvae_beta": 0.25, "vqvae_lr": 1e-3} in P.candidates(P.END_TO_END_SIDE, "fashion-mnist")


def test_mark_chosen_is_the_argmin_of_the_mean_over_seeds():
    rows = []
    scores = {("a", 0): 3.0, ("a", 1): 1.0, ("b", 0): 2.1, ("b", 1): 2.1, ("c", 0): 1.5, ("c", 1): 2.9}
    for K in (4, 8):
        for (cand, seed), v in scores.items():
            rows.append({"dataset": "d", "rate": "image", "family": "f", "K": K, "candidate": cand,
                         "method": "m", "edge_length": "", "code_vectors": "", "decoder": "",
                         "seed": seed, "val_score": v + (K == 8) * (cand == "b") * -1})
    marked = pd.DataFrame(rt.mark_chosen(rows))
    picked = marked[marked["chosen"]].drop_duplicates(["K", "candidate"])
    frame = pd.DataFrame(rows)
    brute = frame.groupby(["K", "candidate"])["val_score"].mean().groupby("K").idxmin()
    assert sorted(zip(picked["K"], picked["candidate"])) == sorted(brute.tolist())
    assert dict(zip(picked["K"], picked["candidate"])) == {4: "a", 8: "b"}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One quick tuned run (selection, then rows), recording which splits were loaded
    while selecting."""
    root = tmp_path_factory.mktemp("tuned")
    loaded, stage = [], {"now": "select"}
    real = datasets.load_dataset

    def recording(name, split, *a, **k):
        loaded.append((stage["now"], split))
        return real(name, split, *a, **k)

    argv = ["--dataset", "mnist", "--quick", "--limit", "300", "--codebook-sizes", "4", "8",
            "--seeds", "0", "1", "--work-dir", str(root / "work"), "--results-dir", str(root / "res")]
    mp = pytest.MonkeyPatch()
    mp.setattr(rt, "load_dataset", recording)
    try:
        rt.main(rt.parse_args(argv + ["--stage", "select"]))
        stage["now"] = "rows"
        rt.main(rt.parse_args(argv + ["--stage", "rows"]))
    finally:
        mp.undo()
    return root, argv, loaded


def test_selection_never_reads_the_test_split(tuned):
    _, _, loaded = tuned
    assert {split for stage, split in loaded if stage == "select"} == {"train", "val"}
    assert "test" in {split for stage, split in loaded if stage == "rows"}


def test_the_table_chooses_the_lowest_validation_score(tuned):
    root, _, _ = tuned
    table = pd.read_csv(root / "res" / "selection_mnist.csv")
    assert set(table["side"]) == set(P.SIDES) and (table["criterion"] == P.CRITERION).all()
    for _, group in table.groupby(["rate", "family", "K"]):
        assert group["chosen"].sum() == 1
        assert group.loc[group["chosen"], "val_score"].iloc[0] == group["val_score"].min()
    # the same number of candidates a side, at every K
    per_side = table[~table["family"].str.startswith("cell:")].groupby(["side", "K"]).size()
    assert per_side.nunique() == 1


def test_rows_run_the_chosen_settings_and_cells_with_both_decoders(tuned):
    root, _, _ = tuned
    table = pd.read_csv(root / "res" / "selection_mnist.csv", keep_default_na=False)
    rows = read_results(root / "res" / "comparison.csv")
    assert (rows["protocol"] == "tuned").all() and (rows["epochs_trained"] >= rows["best_epoch"]).all()
    assert sorted(rows["seed"].unique()) == [0, 1]
    for K in (4, 8):
        vq = json.loads(table[(table["family"] == "vqvae-global") & (table["K"] == K)
                              & (table["chosen"].astype(str) == "True")]["candidate"].iloc[0])
        mine = rows[(rows["method"] == "vqvae-global") & (rows["K"] == K)]
        assert set(mine["decoder"]) == {"", "finetuned"}
        assert (mine["beta"] == vq["vqvae_beta"]).all() and (mine["lr"] == vq["vqvae_lr"]).all()
        assert (mine["batch_size"] == vq["vqvae_batch_size"]).all()
        vae = json.loads(table[(table["family"] == "vae-mlp") & (table["K"] == K)
                               & (table["chosen"].astype(str) == "True")]["candidate"].iloc[0])
        for method in vocab.names(family=vocab.A_POSTERIORI, rate=vocab.IMAGE_RATE):
            if vocab.get(method).from_library:
                continue
            cell = table[(table["family"] == f"cell:{method}") & (table["K"] == K)
                         & (table["chosen"].astype(str) == "True")].iloc[0]
            mine = rows[(rows["method"] == method) & (rows["K"] == K)]
            assert set(mine["decoder"]) == {"frozen", "finetuned"}
            assert (mine["code_vectors"] == cell["code_vectors"]).all()
            assert (mine["edge_length"] == cell["edge_length"]).all()
            assert (mine["kl_weight"] == vae["vae_kl_weight"]).all()
            tuned_rows = mine[mine["decoder"] == "finetuned"]
            assert (tuned_rows["decoder_epochs_trained"] >= tuned_rows["decoder_best_epoch"]).all()


def test_a_rerun_adds_nothing(tuned):
    root, argv, _ = tuned
    before = {p.name: p.read_text() for p in (root / "res").glob("*.csv")}
    for stage in ("select", "rows"):  # "all" adds generation: tests/test_tuned_generation.py
        rt.main(rt.parse_args(argv + ["--stage", stage]))
    after = {p.name: p.read_text() for p in (root / "res").glob("*.csv")}
    assert before == after


@pytest.mark.parametrize("below", [1, 0])
def test_decoder_edge_cells_are_capped_by_the_training_images(below):
    """At the grid rate the decoder-edge cell is a candidate only when the training split
    has at most --grid-metric-max-images images: counted in images, not in the fields of
    the Data tuple (a bug once scored the cell on Fashion-MNIST's 54,000)."""
    train = datasets.load_dataset("mnist", "train", "data", limit=300)
    n = train.images.shape[0]  # the training part of the first 300 (the rest validates)
    assert n > len(train)
    args = rt.parse_args(["--dataset", "mnist", "--rate", "grid",
                          "--grid-metric-max-images", str(n - below)])
    edges = rt.cell_options(args, train)["edge_lengths"]
    assert edges == (("latent",) if below else ("latent", "decoder"))
    image = rt.parse_args(["--dataset", "mnist", "--rate", "image", "--grid-metric-max-images", "1"])
    assert rt.cell_options(image, train)["edge_lengths"] == ("latent", "decoder")


def test_a_later_seed_chunk_keeps_the_selection_seed(tuned):
    """``--seeds 1`` alone (a per-seed chunk on a new machine) selects on the seed the table
    holds, so it re-trains and re-scores nothing; --selection-seed still overrides."""
    root, argv, _ = tuned
    chunk = [a for a in argv if a not in ("0", "1")]  # argv without its seed list
    assert chunk.index("--seeds") == argv.index("--seeds")
    chunk.insert(chunk.index("--seeds") + 1, "1")
    table = root / "res" / "selection_mnist.csv"
    before = table.read_text()
    args = rt.parse_args(chunk + ["--stage", "select"])
    rt.main(args)
    assert args.selection_seed == 0 and table.read_text() == before
    assert rt.resolve_selection_seed(rt.parse_args(chunk + ["--selection-seed", "7"])) == 7
    fresh = [a if a != str(root / "res") else str(root / "none") for a in chunk]
    assert rt.resolve_selection_seed(rt.parse_args(fresh)) == 1


def test_the_figures_stage_draws_from_the_chosen_vae_and_trains_nothing(tuned, monkeypatch):
    """One code per image: the interpolation of the VAE validation chose at the largest K,
    first seed, from the cache."""
    from train import comparison_figures as CF

    root, argv, _ = tuned
    seen = {}
    real = CF.draw_interpolations
    monkeypatch.setattr(CF, "draw_interpolations",
                        lambda run, out, **k: seen.update(run=run) or real(run, out, **k))
    rt.main(rt.parse_args(argv + ["--stage", "figures", "--cached-only"]))  # a miss is an error
    table = pd.read_csv(root / "res" / "selection_mnist.csv", keep_default_na=False)
    chosen = table[table["chosen"] & (table["family"] == "vae-mlp") & (table["K"] == 8)]
    assert seen["run"].seed == 0
    assert seen["run"].args.vae_kl_weight == json.loads(chosen["candidate"].iloc[0])["vae_kl_weight"]
    assert (root / "res" / "figures" / "interpolation_mnist_full.png").is_file()


def test_only_runs_a_part_that_the_rest_completes(tuned, tmp_path):
    """``--only`` (a part of a seed that fits a session): seed 2's rows of one method, then
    the rest; seed 2 then has the same methods and cells as seed 0."""
    import shutil

    root, argv, _ = tuned
    res = tmp_path / "res"
    shutil.copytree(root / "res", res)
    chunk = [str(res) if a == str(root / "res") else a for a in argv if a not in ("0", "1")]
    chunk.insert(chunk.index("--seeds") + 1, "2")
    rt.main(rt.parse_args(chunk + ["--stage", "rows", "--only", "vqvae-global"]))
    rows = read_results(res / "comparison.csv")
    assert set(rows.loc[rows["seed"] == 2, "method"]) == {"vqvae-global"}
    rt.main(rt.parse_args(chunk + ["--stage", "rows"]))
    rows = read_results(res / "comparison.csv")
    cell = ["method", "K", "decoder", "edge_length", "code_vectors"]
    seed0, seed2 = (sorted(map(tuple, rows.loc[rows["seed"] == s, cell].astype(str).values))
                    for s in (0, 2))
    assert seed2 == seed0


def test_only_a_method_of_another_rate_is_a_one_line_error(tmp_path, capsys):
    from utils.cli import run_main

    args = rt.parse_args(["--quick", "--stage", "rows", "--only", "vqvae-conv",
                          "--work-dir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r")])
    assert run_main(rt.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --only vqvae-conv") and "vqvae-global" in err[-1]


@pytest.mark.parametrize("stage", ["select", "figures", "models"])
def test_only_with_a_stage_that_runs_every_method_warns(stage):
    args = rt.parse_args(["--quick", "--stage", stage, "--only", "vqvae-global"])
    with pytest.warns(UserWarning, match="--only applies to the rows and generation stages"):
        rt.check_only(args)
    args.stage = "rows"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rt.check_only(args)


def test_rows_before_selection_is_a_one_line_error(tmp_path, capsys):
    from utils.cli import run_main

    args = rt.parse_args(["--quick", "--limit", "300", "--codebook-sizes", "4", "--stage", "rows",
                          "--work-dir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r")])
    assert run_main(rt.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "--stage select" in err[-1]


def test_library_methods_get_as_many_candidates_chosen_at_one_k():
    classical = len(P.candidates(P.END_TO_END_SIDE, "fashion-mnist"))
    for name in vocab.names(family=vocab.END_TO_END):
        lib = rt.library_of(name)
        if lib is None:
            continue
        assert len(P.candidates(P.END_TO_END_SIDE, "fashion-mnist", library=lib)) == classical
        # on the small data crossed with the same batch sizes as the classical VQ-VAE's
        assert len(P.candidates(P.END_TO_END_SIDE, "mnist", library=lib)) == \
            len(P.candidates(P.END_TO_END_SIDE, "mnist"))
        args = rt.parse_args(["--codebook-sizes", "16", "64", "512", "--library"])
        assert rt.selection_ks(args, name) == [P.LIBRARY_SELECTION_K]
        args = rt.parse_args(["--codebook-sizes", "16", "32", "512"])
        assert rt.selection_ks(args, name) == [32]
    assert rt.selection_ks(rt.parse_args(["--codebook-sizes", "16", "512"]), "vqvae-conv") == [16, 512]
    assert rt.rate_methods(vocab.GRID_RATE, vocab.END_TO_END) == ["vqvae-conv"]
    assert set(rt.rate_methods(vocab.GRID_RATE, vocab.END_TO_END, library=True)) == \
        {"vqvae-conv", "fsq-conv", "rotvq-conv"}


def test_the_models_stage_trains_exactly_the_selections_models(tuned, tmp_path):
    """--stage models (for a GPU machine beside a CPU selection) caches the same VAE and
    VQ-VAE folders, by cache key, as the selection stage trained on the selection seed, and
    fits no quantizer; so a selection after it trains no model."""
    root, argv, _ = tuned
    work = tmp_path / "work"
    at = argv.index("--work-dir")
    args = rt.parse_args(argv[:at] + argv[at + 2:] + ["--work-dir", str(work), "--stage", "models"])
    rt.main(args)

    def models(folder):
        return {p.name for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()
                # a seed at its declared default (0) is left out of the cache key
                and json.loads((p / "config.json").read_text()).get("seed", 0) == args.selection_seed
                and p.name.split("-")[0].split("_")[0] in ("vae", "vqvae")}

    made = {p.name for p in work.iterdir()}
    assert models(work) == made and made  # models only: no quantizer, no decoder
    assert made == models(root / "work")
    # two shards into another folder: disjoint, and together the same models
    shards = []
    for i in (0, 1):
        rt.main(rt.parse_args(argv[:at] + argv[at + 2:] + ["--work-dir", str(tmp_path / f"s{i}"),
                                                           "--stage", "models", "--shard", f"{i}/2"]))
        shards.append({p.name for p in (tmp_path / f"s{i}").iterdir()})
    assert not shards[0] & shards[1] and shards[0] | shards[1] == made


@pytest.mark.parametrize("bad", ["2/2", "1", "a/b", "-1/3"])
def test_a_bad_shard_is_a_one_line_error(bad, capsys):
    with pytest.raises(SystemExit) as stop:
        rt.parse_args(["--stage", "models", "--shard", bad])
    assert stop.value.code == 2 and "--shard" in capsys.readouterr().err
