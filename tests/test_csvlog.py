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


# ----------------------------------------------------------------------------- read_rows

import warnings  # noqa: E402

from utils.csvlog import CSVError, append_row, read_rows, upsert_row, write_rows  # noqa: E402


def write_text(path, text):
    path.write_bytes(text.encode())
    return path


def test_read_rows_returns_the_rows_as_written(tmp_path):
    path = tmp_path / "t.csv"
    log = CSVLogger(path, COLS)
    log.log({"epoch": 1, "loss": 0.5, "name": "a,b"})  # a quoted comma survives
    log.log({"epoch": 2, "loss": 0.25, "name": "c"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = read_rows(path, COLS, numeric=["epoch", "loss"])
    assert rows == [{"epoch": "1", "loss": "0.5", "name": "a,b"},
                    {"epoch": "2", "loss": "0.25", "name": "c"}]
    assert read_rows(path, text=["name"]) == rows


@pytest.mark.parametrize("tail", ["2,0.2", "2,0.25,", "2,0.25,c", "2"])
def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, tail):
    """Whatever the torn line looks like: "2,0.25,c" may be the start of "2,0.25,cat"."""
    path = write_text(tmp_path / "t.csv", "epoch,loss,name\n1,0.5,a\n" + tail)
    with pytest.warns(UserWarning, match=r"t\.csv: dropped the torn last line 3"):
        rows = read_rows(path, COLS, numeric=["epoch", "loss"])
    assert rows == [{"epoch": "1", "loss": "0.5", "name": "a"}]


@pytest.mark.parametrize("body,needle", [
    ("1,0.5,a\n2,0.2\n3,0.1,c\n", "line 3: 2 fields where the header has 3"),
    ("1,0.5,a,x\n2,0.2,b\n", "line 2: 4 fields where the header has 3"),
    ("1,0.5,a\n2,zero,b\n", "line 3: column 'loss' holds 'zero', not a number"),
    ("1,0.5,a\n2,0.2,b\n3,1e,c\n", "line 4: column 'loss' holds '1e', not a number"),
])
def test_a_malformed_row_elsewhere_is_an_error_naming_file_and_line(tmp_path, body, needle):
    path = write_text(tmp_path / "t.csv", "epoch,loss,name\n" + body)
    with pytest.raises(CSVError) as info:
        read_rows(path, COLS, numeric=["epoch", "loss"])
    assert str(info.value).startswith(str(path)) and needle in str(info.value)


@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"), (b" \n", "is empty"), (b"\x00\x01\x02", "binary data"),
    (b"epoch,\xe9t\xe9\n", "is not UTF-8 text"),
    (b"epoch,loss\n1,2\n", "has the columns ['epoch', 'loss'], not ['epoch', 'loss', 'name']"),
])
def test_unreadable_files_name_themselves(tmp_path, content, needle):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(CSVError) as info:
        read_rows(path, COLS)
    assert str(path) in str(info.value) and needle in str(info.value)
    with pytest.raises(CSVError, match="no CSV file at"):
        read_rows(tmp_path / "absent.csv")


def test_empty_numeric_fields_are_missing_values(tmp_path):
    path = write_text(tmp_path / "t.csv", "epoch,loss,name\n1,,a\n2,nan,b\n")
    assert [r["loss"] for r in read_rows(path, COLS, numeric=["loss"])] == ["", "nan"]


def test_logger_resume_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "run.csv"
    _three_epochs(path)
    path.write_text(path.read_text()[:-3])  # epoch 3's row lost its end
    with pytest.warns(UserWarning, match="torn last line 4"):
        CSVLogger(path, COLS, resume_after=5)
    assert read(path) == [COLS, ["1", "9", "e1"], ["2", "8", "e2"]]


def test_logger_starts_from_given_rows(tmp_path):
    path = tmp_path / "run.csv"
    _three_epochs(path)
    log = CSVLogger(path, COLS, rows=[{"epoch": 1, "loss": 0.5, "name": "kept"}])
    log.log({"epoch": 2, "loss": 0.25, "name": "new"})
    assert read(path) == [COLS, ["1", "0.5", "kept"], ["2", "0.25", "new"]]


# ----------------------------------------------------------------------------- append / upsert

def test_append_row_writes_the_header_once(tmp_path):
    path = tmp_path / "sub" / "t.csv"
    append_row(path, COLS, {"epoch": 1, "loss": 1 / 3, "name": "a"})
    append_row(path, COLS, {"epoch": 2, "loss": 2.0, "name": "b", "extra": 1})
    assert read(path) == [COLS, ["1", "0.333333", "a"], ["2", "2", "b"]]


def test_append_row_cuts_a_torn_tail_first(tmp_path):
    """A row appended after a crash must not be glued to the torn line."""
    path = write_text(tmp_path / "t.csv", "epoch,loss,name\n1,0.5,a\n2,0.")
    with pytest.warns(UserWarning, match="torn last line"):
        append_row(path, COLS, {"epoch": 2, "loss": 0.25, "name": "b"})
    assert read(path) == [COLS, ["1", "0.5", "a"], ["2", "0.25", "b"]]


def test_append_row_refuses_another_header(tmp_path):
    path = write_text(tmp_path / "t.csv", "epoch,loss\n1,2\n")
    with pytest.raises(CSVError, match="has the columns"):
        append_row(path, COLS, {"epoch": 2, "loss": 0.25, "name": "b"})
    assert path.read_text() == "epoch,loss\n1,2\n"


def test_upsert_row_replaces_by_key_and_appends_new_keys(tmp_path):
    path = tmp_path / "t.csv"
    cols = ["method", "K", "seed", "score"]
    assert not upsert_row(path, cols, {"method": "geo", "K": 8, "seed": 0, "score": 1.0}, ["method", "K"])
    assert not upsert_row(path, cols, {"method": "geo", "K": 16, "seed": 0, "score": 2.0}, ["method", "K"])
    assert upsert_row(path, cols, {"method": "geo", "K": 8, "seed": 1, "score": 3.5}, ["method", "K"])
    assert read(path) == [cols, ["geo", "8", "1", "3.5"], ["geo", "16", "0", "2"]]
    assert only_files(tmp_path) == ["t.csv"]  # rewritten atomically, no temp file left


def test_upsert_row_drops_duplicates_of_the_key(tmp_path):
    cols = ["method", "K", "score"]
    path = write_text(tmp_path / "t.csv", "method,K,score\ngeo,8,1\ngeo,8,2\nkm,8,3\n")
    assert upsert_row(path, cols, {"method": "geo", "K": 8, "score": 9.0}, ["method", "K"])
    assert read(path) == [cols, ["geo", "8", "9"], ["km", "8", "3"]]


def test_upsert_row_validates_the_table_first(tmp_path):
    cols = ["method", "K", "score"]
    path = write_text(tmp_path / "t.csv", "method,K,score\ngeo,8\nkm,8,3\n")
    with pytest.raises(CSVError, match="line 2"):
        upsert_row(path, cols, {"method": "geo", "K": 8, "score": 9.0}, ["method", "K"])


def test_write_rows_keeps_the_old_file_when_a_row_is_incomplete(tmp_path):
    path = write_text(tmp_path / "t.csv", "epoch,loss,name\n1,0.5,a\n")
    with pytest.raises(KeyError):
        write_rows(path, COLS, [{"epoch": 2, "loss": 1.0}])
    assert path.read_text() == "epoch,loss,name\n1,0.5,a\n"


def only_files(folder):
    return sorted(p.name for p in folder.iterdir())
