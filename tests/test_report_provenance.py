"""report/provenance.py: every published row is credited to the commit of the run that
wrote it, read from the history of its results folder (a hand-made git repository)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest

from report import provenance as PV
from utils import methods as M

P = M.PROPOSAL


def git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def run(root, ks, commit, dirty, mse=0.05, config="c1"):
    """One run of the runner: rows at ``ks`` (two seeds) appended to comparison.csv,
    and its record (the commit it ran at) written beside them."""
    path = root / "comparison.csv"
    rows = pd.DataFrame([{"dataset": "mnist", "setting": "full", "method": P, "K": k, "seed": s,
                          "config_id": config, "dataset_used": "mnist-5k",
                          "test_mse": mse + k / 1000 + s / 100} for k in ks for s in (0, 1)])
    old = pd.read_csv(path) if path.is_file() else None
    pd.concat([old, rows]).to_csv(path, index=False)
    (root / "comparison_mnist_full_run.json").write_text(
        json.dumps({"git": {"commit": commit, "dirty": dirty}}))


@pytest.fixture
def history(tmp_path):
    """Three runs: two committed (the second also re-keys the first's config ids, as a
    migration would), the third not committed yet."""
    root = tmp_path / "results"
    root.mkdir()
    git(root, "init", "-q")
    run(root, [16], "a" * 40, False)
    git(root, "add", ".")
    git(root, "commit", "-qm", "run 1")
    frame = pd.read_csv(root / "comparison.csv").assign(config_id="rekeyed")
    frame.to_csv(root / "comparison.csv", index=False)
    run(root, [64], "b" * 40, True, config="rekeyed")
    git(root, "add", ".")
    git(root, "commit", "-qm", "run 2")
    run(root, [256], "c" * 40, False)
    return root


def test_each_row_is_credited_to_the_run_that_wrote_it(history):
    got = PV.rows_by_commit(history, "comparison.csv", "comparison")
    assert got[["commit", "dirty", "n_rows"]].values.tolist() == [
        ["a" * 10, False, 2], ["b" * 10, True, 2], ["c" * 10, False, 2]]
    assert set(got["dataset_used"]) == {"mnist-5k"}


def test_only_the_published_rows_are_credited(history):
    published = pd.read_csv(history / "comparison.csv").query("K != 64")
    got = PV.rows_by_commit(history, "comparison.csv", "comparison", published)
    assert got["commit"].tolist() == ["a" * 10, "c" * 10]


def test_outside_a_checkout_every_row_is_the_records(history, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(history, copy, ignore=shutil.ignore_patterns(".git"))
    got = PV.rows_by_commit(copy, "comparison.csv", "comparison")
    assert got[["commit", "n_rows"]].values.tolist() == [["c" * 10, 6]]
