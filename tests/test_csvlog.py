"""Tests of utils/csvlog.py: header and column order, formatting, resuming."""
from __future__ import annotations

import csv

import pytest

from utils.csvlog import CSVLogger

COLS = ["epoch", "loss", "name"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_header_and_column_order(tmp_path):
    path = tmp_path / "logs" / "run.csv"  # the folder is created
    log = CSVLogger(path, COLS)
    assert read(path) == [COLS]
    log.log({"name": "a", "loss": 2, "epoch": 1})  # dict order does not matter
    log.log({"loss": 1, "epoch": 2, "name": "b", "extra": "ignored"})
    assert read(path) == [COLS, ["1", "2", "a"], ["2", "1", "b"]]


def test_rows_are_on_disk_as_soon_as_logged(tmp_path):
    log = CSVLogger(tmp_path / "run.csv", COLS)
    log.log({"epoch": 1, "loss": 3, "name": "x"})
    assert len(read(tmp_path / "run.csv")) == 2


def test_floats_have_six_significant_digits(tmp_path):
    log = CSVLogger(tmp_path / "run.csv", COLS)
    log.log({"epoch": 1, "loss": 1 / 3, "name": "x"})
    log.log({"epoch": 2, "loss": 123456.789, "name": "x"})
    log.log({"epoch": 3, "loss": 1.5e-9, "name": "x"})
    assert [r[1] for r in read(tmp_path / "run.csv")[1:]] == ["0.333333", "123457", "1.5e-09"]


def test_a_missing_column_is_an_error(tmp_path):
    log = CSVLogger(tmp_path / "run.csv", COLS)
    with pytest.raises(KeyError, match="name"):
        log.log({"epoch": 1, "loss": 1.0})
    assert len(read(tmp_path / "run.csv")) == 1  # nothing half-written


def _three_epochs(path):
    log = CSVLogger(path, COLS)
    for e in (1, 2, 3):
        log.log({"epoch": e, "loss": float(10 - e), "name": f"e{e}"})


def test_resume_after_keeps_earlier_epochs_and_drops_later_ones(tmp_path):
    path = tmp_path / "run.csv"
    _three_epochs(path)
    log = CSVLogger(path, COLS, resume_after=2)
    assert read(path) == [COLS, ["1", "9", "e1"], ["2", "8", "e2"]]
    log.log({"epoch": 3, "loss": 5.5, "name": "again"})
    assert read(path)[1:] == [["1", "9", "e1"], ["2", "8", "e2"], ["3", "5.5", "again"]]


def test_resume_after_zero_keeps_nothing(tmp_path):
    path = tmp_path / "run.csv"
    _three_epochs(path)
    CSVLogger(path, COLS, resume_after=0)
    assert read(path) == [COLS]


def test_without_resume_the_file_starts_anew(tmp_path):
    path = tmp_path / "run.csv"
    _three_epochs(path)
    CSVLogger(path, COLS)
    assert read(path) == [COLS]


def test_resume_after_without_a_file(tmp_path):
    CSVLogger(tmp_path / "new.csv", COLS, resume_after=4)
    assert read(tmp_path / "new.csv") == [COLS]
