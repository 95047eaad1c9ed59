"""The library cross-check benchmark on a tiny setting: one row per run with every
column, the same settings but the quantizer (and the rotation trick), resumes
without rerunning."""
from __future__ import annotations

import sys

import pytest

from conftest import REPO_ROOT
from train.train_vqvae import parse_args as train_args
from utils.csvlog import read_rows

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_vq_library as bench  # noqa: E402


def test_settings_differ_only_in_the_quantizer_and_the_rotation_trick():
    base = vars(train_args(["--arch", "conv"]))
    for name, fields in bench.SETTINGS.items():
        flags = bench.flags_of(fields)  # what the CSV's flags column says, parsed back
        got = vars(train_args(["--arch", "conv", *flags]))
        changed = {k for k in base if got[k] != base[k]}
        assert changed <= {"quantizer", "rotation_trick"}, name
        assert got["rotation_trick"] == name.endswith("rotation")
        assert {k: got[k] for k in fields} == fields
    assert bench.SETTINGS["library"]["quantizer"] == "library-vq"


def test_tiny_run_writes_every_column_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "vq_library.csv"
    argv = ["--dataset", "mnist-5k", "--ks", "8", "--seeds", "0", "--epochs", "1",
            "--limit", "96", "--settings", "ours", "library", "fsq", "--out", str(out)]
    rows = bench.main(bench.parse_args(argv))
    assert [r["setting"] for r in rows] == ["ours", "library", "fsq"]
    stored = read_rows(out, bench.COLUMNS, text=bench.TEXT)
    assert len(stored) == 3 and all(r[c] != "" for r in stored for c in bench.COLUMNS)
    for r in stored:
        usage = float(r["test_usage"])
        assert 0 < usage <= 1 and 1 <= float(r["test_perplexity"]) <= 8
        assert int(r["test_unused_codes"]) == round(8 * (1 - usage))
    assert next(r for r in stored if r["setting"] == "fsq")["dead_codes"] == "0"

    monkeypatch.setattr(bench, "train_and_test", lambda *a, **k: pytest.fail("reran a run"))
    again = bench.main(bench.parse_args(argv + ["--append"]))
    assert len(again) == 3 and out.read_text().count("\n") == 4
