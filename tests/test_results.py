"""utils/results.py: comparison.csv rows survive crashes; summaries never merge configurations."""
import math

import pandas as pd
import pytest

from train import run_comparison as rc
from utils import results
from utils.errors import UserError


def row(method="geodesic-vae", K=16, seed=0, config_id="abc", mse=0.05, epochs=10):
    r = {c: math.nan for c in results.COLUMNS}
    r.update(dataset="mnist", setting="full", method=method, K=K, seed=seed,
             config_hash=f"{config_id}{seed}", config_id=config_id, dataset_used="mnist-5k",
             test_mse=mse, bits_per_image=math.log2(K), epochs=epochs, fit_seconds=1.0)
    return r


def test_rows_round_trip_with_nan(tmp_path):
    path = tmp_path / "comparison.csv"
    for seed in range(3):
        results.append_row(path, row(seed=seed, mse=0.01 * (seed + 1)))
    df = results.read_results(path)
    # a file of the fixed sweeps reads with its protocol
    assert list(df.columns) == results.COLUMNS + ["protocol"] and len(df) == 3
    assert (df.protocol == "fixed").all()
    assert df.test_mse.tolist() == pytest.approx([0.01, 0.02, 0.03])
    assert df.nmi.isna().all()
    assert results.finished_keys(path) == {results.row_key(row(seed=s)) for s in range(3)}


def test_regression_torn_last_row_is_dropped_with_a_warning_and_redone(tmp_path):
    """A crash mid-write left '...,0.0' of '...,0.0512': the row must not count as finished."""
    path = tmp_path / "comparison.csv"
    results.append_row(path, row(seed=0))
    results.append_row(path, row(seed=1))
    text = path.read_text()
    path.write_text(text[: text.rindex(",", 0, len(text) - 40)])  # cut the last row short
    with pytest.warns(UserWarning, match="torn last line"):
        keys = results.finished_keys(path)
    assert keys == {results.row_key(row(seed=0))}
    with pytest.warns(UserWarning, match="torn last line"):
        results.append_row(path, row(seed=1))  # the redo cuts the torn tail, appends a clean row
    assert path.read_text() == text
    assert len(results.read_results(path)) == 2


def test_last_row_without_newline_is_torn_even_when_its_fields_parse(tmp_path):
    path = tmp_path / "comparison.csv"
    results.append_row(path, row(seed=0, mse=0.0512))
    results.append_row(path, row(seed=1, mse=0.0512))
    text = path.read_text()
    cut = text.rstrip("\n")
    cut = cut[: cut.rindex("1")]  # a number cut mid-way still parses; the missing newline tells
    path.write_text(cut)
    with pytest.warns(UserWarning, match="torn"):
        assert len(results.read_results(path)) == 1
    with pytest.warns(UserWarning, match="torn"):
        results.append_row(path, row(seed=1, mse=0.0512))
    assert path.read_text() == text


def test_malformed_row_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "comparison.csv"
    for seed in range(3):
        results.append_row(path, row(seed=seed))
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("mnist-5k", "mnist-5k,extra")
    path.write_text("".join(lines))
    with pytest.raises(UserError, match=r"comparison.csv, line 3: .* fields"):
        results.read_results(path)


def test_binary_file_is_a_user_error(tmp_path):
    path = tmp_path / "comparison.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(UserError, match="not a CSV file"):
        results.read_results(path)


def test_regression_summary_never_merges_two_configurations(tmp_path):
    """Bug: a rerun with other --epochs merged both settings into one 'mean ± std over seeds'."""
    path = tmp_path / "comparison.csv"
    for seed in range(3):
        results.append_row(path, row(seed=seed, config_id="e10", mse=0.05, epochs=10))
        results.append_row(path, row(seed=seed, config_id="e2", mse=0.5, epochs=2))
    summary = results.write_summary(path, tmp_path / "summary.csv")
    assert len(summary) == 2
    by_id = summary.set_index("config_id")
    assert by_id.loc["e10", "test_mse_mean"] == pytest.approx(0.05)
    assert by_id.loc["e2", "test_mse_mean"] == pytest.approx(0.5)
    assert by_id.loc["e10", "test_mse_std"] == pytest.approx(0.0)
    assert (by_id["n_seeds"] == 3).all()
    assert pd.read_csv(tmp_path / "summary.csv").shape[0] == 2


def test_runner_config_id_separates_epochs_and_is_shared_by_seeds():
    base = ["--dataset", "mnist-5k", "--codebook-sizes", "8", "--seeds", "0", "1"]
    a = rc.parse_args(base + ["--epochs", "3"])
    b = rc.parse_args(base + ["--epochs", "4"])
    for method in ("geodesic-vae", "vqvae-global", "vae-continuous"):
        K = 0 if method == "vae-continuous" else 8
        ids = {rc.row_identity(a, method, K, s)["config_id"] for s in (0, 1)}
        hashes = {rc.row_identity(a, method, K, s)["config_hash"] for s in (0, 1)}
        assert len(ids) == 1 and len(hashes) == 2, method
        assert rc.row_identity(b, method, K, 0)["config_id"] not in ids, method


def test_runner_cache_key_follows_the_training_scripts_defaults(monkeypatch):
    """Bug: the runner's cache key copied train_vae's --latent-dim default (20), so a
    changed default would silently reuse stale VAEs."""
    from train import comparison_methods as cm
    from train import train_vae

    args = rc.parse_args(["--dataset", "mnist-5k", "--codebook-sizes", "8", "--seeds", "0"])
    before = cm.vae_config(args, 0)
    assert before["latent_dim"] == train_vae.parse_args([]).latent_dim
    monkeypatch.setitem(train_vae.DEFAULT_LATENT_DIM, "mlp", 7)
    assert train_vae.parse_args([]).latent_dim == 7
    assert cm.vae_config(args, 0)["latent_dim"] == 7
    assert results.config_hash(cm.vae_config(args, 0)) != results.config_hash(before)


def generation_row(seed=0, **extra):
    r = {c: math.nan for c in results.TUNED_GENERATION_COLUMNS}
    r.update(dataset="mnist", setting="full", method="kmeans-conv", K=64, seed=seed,
             config_hash=f"h{seed}", config_id="h0", dataset_used="mnist-5k", prior="pixelcnn",
             bits_per_image=294.0, prior_nll_bits=200.0 + seed, edge_length="",
             code_vectors="centroid", decoder="finetuned", **extra)
    return r


def test_generation_files_of_both_protocols_read_and_the_fixed_header_is_unchanged(tmp_path):
    """A fixed sweep's generation.csv keeps its header and reads as protocol "fixed"; a
    tuned one has the protocol, the cell and the tuned-only metrics (bits/dim)."""
    fixed, tuned = tmp_path / "fixed.csv", tmp_path / "tuned.csv"
    for seed in (0, 1):
        row = generation_row(seed)
        results.append_generation_row(fixed, {c: row[c] for c in results.GENERATION_COLUMNS})
        results.append_generation_row(tuned, generation_row(seed, protocol="tuned",
                                                            bits_per_dim=0.5 + seed))
    assert fixed.read_text().splitlines()[0].split(",") == results.GENERATION_COLUMNS
    assert "bits_per_dim" not in results.GENERATION_COLUMNS
    old, new = results.read_generation(fixed), results.read_generation(tuned)
    assert (old.protocol == "fixed").all() and (new.protocol == "tuned").all()
    assert new.bits_per_dim.tolist() == [0.5, 1.5] and (new.decoder == "finetuned").all()
    assert results.finished_generation_keys(tuned) == {results.row_key(generation_row(s))
                                                        for s in (0, 1)}
    summary = results.summarize_generation(new)
    assert summary.bits_per_dim_mean.tolist() == [1.0] and summary.n_seeds.tolist() == [2]
    assert "bits_per_dim_mean" not in results.summarize_generation(old)
    # a tuned row does not go into a fixed file, nor the other way round
    with pytest.raises(UserError, match="move it away"):
        results.append_generation_row(fixed, generation_row(2, protocol="tuned"))


def test_record_row_keeps_the_summary_in_step_with_the_rows_and_writes_a_key_once(tmp_path):
    """A runner stopped between any two rows leaves a summary.csv that agrees with
    comparison.csv (the mean is checked against numpy's), and a row recorded twice (a
    requeued job) is written once."""
    import numpy as np

    path, summary = tmp_path / "comparison.csv", tmp_path / "summary.csv"
    mses = [0.01, 0.04, 0.025]
    for seed, mse in enumerate(mses):
        assert results.record_row(path, summary, row(seed=seed, mse=mse)) is True
        got = pd.read_csv(summary)  # as a stopped run leaves it, after this row
        assert got.n_seeds.tolist() == [seed + 1]
        assert got.test_mse_mean.iloc[0] == pytest.approx(np.mean(mses[: seed + 1]), rel=1e-5)
    text = path.read_text()
    assert results.record_row(path, summary, row(seed=1, mse=0.9)) is False
    assert path.read_text() == text and pd.read_csv(summary).n_seeds.tolist() == [3]


def test_record_generation_row_keeps_generation_summary_in_step(tmp_path):
    path, summary = tmp_path / "generation.csv", tmp_path / "generation_summary.csv"
    for seed in (0, 1):
        assert results.record_generation_row(path, summary, generation_row(seed, protocol="tuned"))
        got = pd.read_csv(summary)
        assert got.n_seeds.tolist() == [seed + 1]
        assert got.prior_nll_bits_mean.iloc[0] == pytest.approx(200.0 + seed / 2)
    assert results.record_generation_row(path, summary, generation_row(0, protocol="tuned")) is False
    assert len(results.read_generation(path)) == 2


# --- a generation row's model against its comparison row (utils.results.recon_drift) ---------

def _comparison(method, K, seed, bce_nats, decoder="finetuned", edge=None):
    return {"dataset": "fashion-mnist", "setting": "full", "method": method, "K": K, "seed": seed,
            "edge_length": edge, "code_vectors": None, "decoder": decoder, "test_bce": bce_nats}


def _generation(method, K, seed, bits, decoder="finetuned", edge=None):
    return {"dataset": "fashion-mnist", "setting": "full", "method": method, "K": K, "seed": seed,
            "edge_length": edge, "code_vectors": None, "decoder": decoder, "recon_nll_bits": bits}


def test_recon_drift_flags_only_a_generation_row_whose_model_is_not_its_comparison_rows():
    """test_bce in nats is recon_nll_bits * ln 2 for one model. Row a agrees to 1e-4 bits;
    row b is 0.5 bits off its own (finetuned) row, though its own-decoder row (decoder empty)
    is 0.5 bits away the other way and must not be matched; row c is 0.005 bits off (within
    tolerance); row d has no comparison row and is not judged."""
    ln2 = math.log(2)
    comparison = pd.DataFrame([
        _comparison("kmeans-conv", 64, 0, 290.0 * ln2, edge=""),
        _comparison("vqvae-conv", 64, 2, 291.7 * ln2),
        _comparison("vqvae-conv", 64, 2, 292.7 * ln2, decoder=None),
        _comparison("vqvae-conv", 512, 2, 286.2 * ln2)])
    generation = pd.DataFrame([
        _generation("kmeans-conv", 64, 0, 290.0001),
        _generation("vqvae-conv", 64, 2, 292.2),
        _generation("vqvae-conv", 512, 2, 286.205),
        _generation("geodesic-conv", 64, 2, 300.0)])
    drift = results.recon_drift(generation, comparison)
    assert list(zip(drift["method"], drift["K"], drift["seed"])) == [("vqvae-conv", 64, 2)]
    assert drift["comparison_bits"].iloc[0] == pytest.approx(291.7)
    assert drift["drift_bits"].iloc[0] == pytest.approx(0.5)
    assert results.recon_drift(generation, comparison, tol=1.0).empty


def test_recon_drift_judges_against_the_nearest_of_several_comparison_configurations():
    """Two configurations' rows of one key (an old and a new): the generation row agrees
    with one of them, so it is not flagged; off both, it is flagged against the nearer."""
    ln2 = math.log(2)
    comparison = pd.DataFrame([_comparison("vqvae-conv", 64, 1, 280.0 * ln2),
                               _comparison("vqvae-conv", 64, 1, 291.0 * ln2)])
    agrees, off = (pd.DataFrame([_generation("vqvae-conv", 64, 1, b)]) for b in (291.0, 290.0))
    assert results.recon_drift(agrees, comparison).empty
    drift = results.recon_drift(off, comparison)
    assert drift["drift_bits"].tolist() == pytest.approx([-1.0])


def test_the_generation_stage_warns_when_a_retrained_model_did_not_reproduce(tmp_path, monkeypatch):
    """train/run_tuned.py's warn_drift: silent on a row that agrees with its comparison row
    and without a comparison file; a one-line warning naming the row otherwise."""
    from train import run_tuned
    path = tmp_path / "comparison.csv"
    row = _generation("vqvae-conv", 64, 2, 292.6)
    run_tuned.warn_drift(row, path)  # no file: nothing to compare, no warning
    path.write_text("")
    monkeypatch.setattr(run_tuned, "read_results",
                        lambda p: pd.DataFrame([_comparison("vqvae-conv", 64, 2, 291.7 * math.log(2))]))
    with pytest.warns(UserWarning, match=r"vqvae-conv K=64 seed 2: .* 292.60 .* 291.70: the model "
                                         r"was retrained here and did not reproduce"):
        run_tuned.warn_drift(row, path)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_tuned.warn_drift(dict(row, recon_nll_bits=291.7), path)
