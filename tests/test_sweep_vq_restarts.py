"""The codebook-rule sweep: its grid starts at train_vqvae's defaults, it chooses on
validation only, resumes without rerunning, and its usage ceiling is what brute force
over all code assignments gives."""
from __future__ import annotations

import csv
import itertools
import math
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO_ROOT
from train.train_vqvae import parse_args as train_args

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_vq_usage  # noqa: E402
import sweep_vq_restarts as sweep  # noqa: E402


def test_grid_is_the_full_product_and_starts_at_the_global_defaults():
    combos = sweep.combinations()
    assert len(combos) == math.prod(len(v) for v in sweep.GRID.values())
    assert len({tuple(c.items()) for c in combos}) == len(combos)
    defaults = vars(train_args(["--arch", "global"]))
    for flag, value in combos[0].items():
        assert str(defaults[sweep.FIELDS[flag]]) == value, flag


def _rows(seed=0):
    """Selection rows with random validation numbers, plus test numbers that would choose
    otherwise (the test split must not matter)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, batch in itertools.product((256, 512), (16, 128)):
        for combo in sweep.combinations():
            for s in (0, 1):
                rows.append({"K": str(k), "batch_size": str(batch), "role": "select",
                             "seed": str(s), **{sweep.FIELDS[f]: v for f, v in combo.items()},
                             "val_usage": str(rng.integers(0, 5) / 4),  # many ties
                             "val_recon_bce": str(rng.normal(200, 5)),
                             "test_usage": str(rng.random())})
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_is_the_best_mean_validation_usage_then_bce(seed):
    rows = _rows(seed)
    table = pd.DataFrame(rows)
    fields = list(sweep.FIELDS.values())
    for (k, batch), part in table.groupby(["K", "batch_size"]):
        means = part.astype({"val_usage": float, "val_recon_bce": float}).groupby(fields)[
            ["val_usage", "val_recon_bce"]].mean().reset_index()
        best = means.sort_values(["val_usage", "val_recon_bce"],
                                 ascending=[False, True]).iloc[0]
        chosen = sweep.choose(rows, int(k), int(batch))
        assert {sweep.FIELDS[f]: v for f, v in chosen.items()} == {f: best[f] for f in fields}


def test_choose_without_rows_is_an_error():
    with pytest.raises(ValueError, match="no selection rows"):
        sweep.choose(_rows(), 64, 128)


def test_usage_ceiling_is_the_brute_force_expectation():
    """Average fraction of codes hit over all K^N equally likely assignments."""
    for k, n in [(1, 3), (2, 1), (3, 2), (3, 4), (4, 3), (5, 5)]:
        hit = [len(set(a)) / k for a in itertools.product(range(k), repeat=n)]
        assert bench_vq_usage.usage_ceiling(k, n) == pytest.approx(np.mean(hit), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_no_code_masses_beat_the_ceiling(seed):
    """Why the ceiling bounds every codebook: with code masses p, the expected fraction
    hit by N independent vectors, enumerated exactly, is at most the equal-mass one."""
    rng = np.random.default_rng(seed)
    k, n = 4, 5
    p = rng.dirichlet(np.ones(k) * rng.uniform(0.3, 3))
    expected = sum(np.prod(p[list(a)]) * len(set(a)) / k
                   for a in itertools.product(range(k), repeat=n))
    assert expected <= bench_vq_usage.usage_ceiling(k, n) + 1e-12


def test_main_confirms_the_chosen_and_the_defaults_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_train(dataset, arch, k, flags, seed, data_root, test_images):
        calls.append((k, tuple(flags), seed))
        opts = dict(zip(flags[::2], flags[1::2]))
        val = 0.5 + 0.1 * (opts["--decay"] == "0.9") + 0.05 * (opts["--restart-from"] == "random")
        return ({"val_usage": val, "val_recon_bce": 200.0, "seconds": 1.0},
                {"usage": 1.0 - val, "recon_mse": 0.05})  # test would choose the opposite

    monkeypatch.setattr(sweep, "train_and_test", fake_train)
    monkeypatch.setattr(sweep, "load_dataset", lambda name, part, root: SimpleNamespace(
        images=torch.zeros({"val": 40, "test": 100}[part], 1, 28, 28)))
    out = tmp_path / "sweep.csv"
    argv = ["--ks", "64", "--batch-sizes", "128", "--seeds", "0", "1",
            "--confirm-seeds", "0", "1", "2", "--out", str(out)]
    sweep.main(sweep.parse_args(argv))
    n_combos = len(sweep.combinations())
    assert len(calls) == 2 * n_combos + 2 * 3  # confirm reruns are new runs of the same seeds
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = {tuple(r[c] for c in sweep.FIELDS.values()) for r in rows if r["chosen"] == "1"}
    assert chosen == {("0.9", "0.5", "0.65", "random", "0")}
    confirm = [r for r in rows if r["role"] == "confirm"]
    assert sorted((r["chosen"], r["default"], r["seed"]) for r in confirm) == sorted(
        [("1", "0", s) for s in "012"] + [("0", "1", s) for s in "012"])
    assert {float(r["usage_ceiling"]) for r in rows} == {round(1 - (63 / 64) ** 100, 4)}
    assert {float(r["val_ceiling"]) for r in rows} == {round(1 - (63 / 64) ** 40, 4)}

    calls.clear()
    sweep.main(sweep.parse_args(argv + ["--append"]))
    assert calls == []
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
