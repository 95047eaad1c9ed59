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

import hashlib
import json
from pathlib import Path

import pandas as pd

from utils import csvlog, metrics
from utils.errors import UserError
from utils import methods as vocab
from utils.methods import VARIANT_COLUMNS
from utils.runtime import atomic_file

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


def read_results(path: Path) -> pd.DataFrame:
    """comparison.csv as a DataFrame, every row validated by
    :func:`utils.csvlog.read_rows`: a torn last line (a run that died
    mid-write) is dropped with a warning, so the runner redoes that row; a
    malformed row elsewhere is a one-line error naming the file and line. A
    missing file gives an empty frame."""
    path = Path(path)
    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame(columns=COLUMNS)
    rows = csvlog.read_rows(path, text=sorted(TEXT_COLUMNS))
    header = csvlog.read_header(path)
    missing = [c for c in KEY if c not in header]
    if missing:
        raise UserError(f"{path} lacks the columns {missing}; is it a comparison.csv?")
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


def finished_keys(path: Path) -> set[tuple]:
    """Keys (as strings) of the rows already in comparison.csv."""
    df = read_results(path)
    return {tuple(str(v) for v in r) for r in df[KEY].astype(str).itertuples(index=False)} \
        if len(df) else set()


def row_key(row: dict) -> tuple:
    """The key of a row as :func:`finished_keys` spells it."""
    return tuple(str(row[k]) for k in KEY)


def append_row(path: Path, row: dict) -> None:
    """Append one row of :data:`COLUMNS`, on disk at once (a torn tail is cut first)."""
    csvlog.append_row(path, COLUMNS, row)


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
    with atomic_file(out, "w") as f:
        f.write(agg.to_csv(index=False, float_format="%.6g"))
    return agg


def upgrade(path: Path) -> bool:
    """Rewrite a comparison.csv of an older version (without config_id or the
    variant columns) in today's columns, atomically; the missing values are the
    cells those rows were: one configuration, latent edges, medoid/centroid
    codes, frozen decoder. Returns True when the file was rewritten."""
    path = Path(path)
    if not path.is_file():
        return False
    if csvlog.read_header(path) == COLUMNS:
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
    with atomic_file(path, "w") as f:
        f.write(df[COLUMNS].to_csv(index=False, float_format="%.6g"))
    return True

