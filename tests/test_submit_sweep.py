"""Sweep cells as submitit jobs (train/submit_sweep.py), run here by submitit's
debug executor: one row per cell, a done cell is neither submitted nor written twice."""
import pandas as pd

from train import comparison_methods as cm
from train import run_comparison as rc
from train import submit_sweep as ss
from utils.results import read_results, record_row

SWEEP = ["--dataset", "mnist-5k", "--limit", "120", "--codebook-sizes", "4", "--seeds", "0",
         "--epochs", "1", "--methods", "kmeans-vae", "vqvae-global"]


def test_cells_become_jobs_and_rows_once(tmp_path):
    where = ["--work-dir", str(tmp_path / "work"), "--results-dir", str(tmp_path / "res")]
    args = ss.parse_args(SWEEP + where + ["--executor", "debug"])
    assert [(m, K, s) for m, K, s, _ in ss.pending_cells(args)] == [("kmeans-vae", 4, 0),
                                                                   ("vqvae-global", 4, 0)]
    jobs = ss.main(args)
    assert len(jobs) == 2 and [j.result() for j in jobs] == [True, True]
    results = tmp_path / "res" / "comparison.csv"
    df = read_results(results)
    assert sorted(df.method) == ["kmeans-vae", "vqvae-global"] and (tmp_path / "res" / "summary.csv").is_file()
    # the rows are the runner's: same keys, so the one-process runner finds them finished
    want = {rc.row_identity(args, m, 4, 0)["config_hash"] for m in ("kmeans-vae", "vqvae-global")}
    assert set(df.config_hash) == want
    before = results.read_text()
    # resubmitting: nothing pending, nothing submitted
    assert ss.pending_cells(args) == [] and ss.main(args) == []
    # a job that runs again (a requeue) writes nothing
    assert rc.run_cell(args, "kmeans-vae", 4, 0, cm.variants(args, "kmeans-vae")[0]) is False
    # ... nor one that computed its row while another job wrote it (both passed the first check)
    row = pd.read_csv(results, keep_default_na=False, dtype=str).iloc[0].to_dict()
    assert record_row(results, tmp_path / "res" / "summary.csv", row) is False
    assert results.read_text() == before
    # the runner over the same flags trains nothing (--cached-only) and adds no row
    rc.main(rc.parse_args(SWEEP + where + ["--cached-only", "--no-figures"]))
    assert results.read_text() == before
    index = pd.read_csv(tmp_path / "work" / "index.csv")
    assert set(index.method) == {"kmeans-vae", "vqvae-global"}


def test_help_names_the_executors(capsys):
    import pytest

    with pytest.raises(SystemExit):
        ss.parse_args(["--help"])
    assert "{slurm,local,debug}" in capsys.readouterr().out


def test_local_jobs_side_by_side_share_one_vae(tmp_path, monkeypatch):
    """Two processes (submitit's local executor) whose cells need the same VAE: it is
    trained once, the second job waiting on the first (without that lock, the second
    would fail on the training run's own lock), and each writes its row."""
    from conftest import REPO_ROOT

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the jobs import this checkout
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ss.parse_args(SWEEP[:-2] + ["kmeans-vae", "geodesic-vae", "--executor", "local",
                                       "--cpus-per-task", "1", "--work-dir", str(tmp_path / "work"),
                                       "--results-dir", str(tmp_path / "res"), "--wait"])
    jobs = ss.main(args)
    assert sorted(j.result() for j in jobs) == [True, True]
    assert sorted(read_results(tmp_path / "res" / "comparison.csv").method) == ["geodesic-vae",
                                                                                "kmeans-vae"]
    assert len(list((tmp_path / "work").glob("vae-*/checkpoints/*.pt"))) == 1
