"""comparison.csv and summary.csv: the results files of the comparison runner.

One row per (dataset, setting, method, K, seed, configuration). Rows are
appended as each finishes and flushed at once, so an interrupted run loses
nothing; a torn last row (the process died mid-write) is detected on the next
read, dropped with a warning and redone. ``summary.csv`` holds the mean and
standard deviation over seeds of every metric for each *configuration*
(``config_id``, a hash of everything but the seed), never merging runs made
with different settings.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from utils import metrics
from utils.errors import UserError
from utils import methods as vocab
from utils.methods import VARIANT_COLUMNS

KEY = ["dataset", "setting", "method", "K", "seed", "config_hash"]
METRICS = metrics.CODE_METRICS
COLUMNS = KEY + ["config_id", *VARIANT_COLUMNS, "dataset_used"] + METRICS + [
    "epochs", "n_neighbors", "n_train", "n_test", "fit_seconds", "eval_seconds", "wall_seconds"]
TEXT_COLUMNS = {"dataset", "setting", "method", "config_hash", "config_id", "dataset_used",
                *VARIANT_COLUMNS}
GROUP = ["dataset", "dataset_used", "setting", "method", *VARIANT_COLUMNS, "K", "config_id"]


def config_hash(config: dict) -> str:
    """Short stable hash of a config of plain values."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def _is_number(text: str) -> bool:
    if text == "":
        return True  # NaN is written as an empty field
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bad_fields(row: list[str], header: list[str]) -> str | None:
    """Why ``row`` is not a complete row of ``header`` (None when it is)."""
    if len(row) != len(header):
        return f"{len(row)} fields instead of {len(header)}"
    bad = [c for c, v in zip(header, row) if c not in TEXT_COLUMNS and not _is_number(v)]
    return f"non-numeric {bad}" if bad else None


def read_results(path: Path) -> pd.DataFrame:
    """comparison.csv as a DataFrame, every row validated.

    A last row that is incomplete (no final newline, too few fields or a cut
    number) is a torn write: it is dropped from the file with a warning, so
    that the runner redoes it. A malformed row elsewhere is a UserError that
    names the file and line. A missing file gives an empty frame.
    """
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text CSV file; move it away and rerun") from None
    lines = text.splitlines(keepends=True)
    if not lines:
        return pd.DataFrame(columns=COLUMNS)
    header = next(csv.reader([lines[0]]))
    missing = [c for c in KEY if c not in header]
    if missing:
        raise UserError(f"{path} lacks the columns {missing}; is it a comparison.csv?")
    rows = list(csv.reader(io.StringIO("".join(lines[1:]))))
    keep = len(lines)
    for i, row in enumerate(rows):
        why = _bad_fields(row, header)
        last = i == len(rows) - 1
        if last and (why or not lines[-1].endswith("\n")):
            warnings.warn(f"{path}: dropped a torn last row (line {i + 2}: "
                          f"{why or 'no final newline'}); it will be redone", stacklevel=2)
            keep = len(lines) - 1
            rows = rows[:-1]
        elif why:
            raise UserError(f"{path} line {i + 2} is malformed ({why}); fix or delete that line")
    if keep < len(lines):
        write_atomic(path, "".join(lines[:keep]))
    frame = pd.DataFrame(rows, columns=header)
    if "config_id" not in frame:  # files written before config_id existed: one configuration
        frame["config_id"] = ""
    for col in VARIANT_COLUMNS:  # ... and before the ablation: the default cell
        if col not in frame:
            frame[col] = ""
    for col in frame.columns:
        if col in ("K", "seed"):  # keys: integers, so that finished rows are recognised
            frame[col] = frame[col].astype(float).astype("int64")
        elif col not in TEXT_COLUMNS:
            frame[col] = frame[col].replace("", "nan").astype(float)
    return frame


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finished_keys(path: Path) -> set[tuple]:
    """Keys (as strings) of the rows already in comparison.csv."""
    df = read_results(path)
    return {tuple(str(v) for v in r) for r in df[KEY].astype(str).itertuples(index=False)} \
        if len(df) else set()


def row_key(row: dict) -> tuple:
    """The key of a row as :func:`finished_keys` spells it."""
    return tuple(str(row[k]) for k in KEY)


def append_row(path: Path, row: dict) -> None:
    """Append one row (header first when the file is new), flushed and fsynced at once."""
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    if not new:
        header = path.open(newline="").readline().strip().split(",")
        if header != COLUMNS:
            raise UserError(f"{path} has other columns than this version writes; move it away "
                            f"(or use another --results-dir) and rerun")
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and not math.isnan(v)
                             else "" if isinstance(v, float) else v) for k, v in row.items()})
        f.flush()
        os.fsync(f.fileno())


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every metric, per configuration (:data:`GROUP`)."""
    if results.empty:
        return pd.DataFrame(columns=GROUP + ["n_seeds"])
    df = results.copy()
    for col in ("config_id", *VARIANT_COLUMNS):
        df[col] = df[col].fillna("")
    grouped = df.groupby(GROUP, sort=False, dropna=False)
    agg = grouped[METRICS + ["fit_seconds", "epochs"]].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg.insert(0, "n_seeds", grouped["seed"].nunique())
    return agg.reset_index()


def write_summary(results: Path, out: Path) -> pd.DataFrame:
    """summary.csv from comparison.csv (:func:`summarize`), written atomically."""
    agg = summarize(read_results(results))
    write_atomic(Path(out), agg.to_csv(index=False, float_format="%.6g"))
    return agg


def upgrade(path: Path) -> bool:
    """Rewrite a comparison.csv of an older version (without config_id or the
    variant columns) in today's columns, atomically; the missing values are the
    cells those rows were: one configuration, latent edges, medoid/centroid
    codes, frozen decoder. Returns True when the file was rewritten."""
    path = Path(path)
    if not path.is_file():
        return False
    header = path.open(newline="").readline().strip().split(",")
    if header == COLUMNS:
        return False
    df = read_results(path)
    a_posteriori = df["method"].isin(vocab.names(family=vocab.A_POSTERIORI))
    geodesic = df["method"].isin([m.name for m in vocab.methods(family=vocab.A_POSTERIORI)
                                  if m.options.get("quantizer") == "geodesic"])
    df.loc[geodesic & (df["edge_length"] == ""), "edge_length"] = "latent"
    df.loc[geodesic & (df["code_vectors"] == ""), "code_vectors"] = "medoid"
    df.loc[a_posteriori & ~geodesic & (df["code_vectors"] == ""), "code_vectors"] = "centroid"
    df.loc[a_posteriori & (df["decoder"] == ""), "decoder"] = "frozen"
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise UserError(f"{path} has columns this version does not know: {unknown}")
    write_atomic(path, df[COLUMNS].to_csv(index=False, float_format="%.6g"))
    return True

