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
from utils import metric_registry as R
from utils.errors import UserError
from utils.methods import VARIANT_COLUMNS
from utils.runlock import waiting_lock
from utils.runtime import atomic_file

KEY = ["dataset", "setting", "method", "K", "seed", "config_hash"]
METRICS = R.columns(table=R.COMPARISON, protocol=R.FIXED)  # a fixed sweep's file's
# ... and those only the tuned protocol's rows carry (AMI, dead codes)
TUNED_METRICS = [c for c in R.columns(table=R.COMPARISON, protocol=R.TUNED) if c not in METRICS]
COLUMNS = KEY + ["config_id", *VARIANT_COLUMNS, "dataset_used"] + METRICS + [
    "epochs", "n_neighbors", "n_train", "n_test", "fit_seconds", "eval_seconds", "wall_seconds"]
# Rows of the tuned protocol (docs/protocol.md) say so and how their models trained: the
# epochs run, the epoch whose weights count (early stopping), a fine-tuned decoder's, and the
# settings chosen on validation (kl_weight of the VAE, beta / lr / batch_size of the model).
PROTOCOLS = R.PROTOCOLS
PROTOCOL_COLUMNS = ["protocol", "epochs_trained", "best_epoch", "decoder_epochs_trained",
                    "decoder_best_epoch", "kl_weight", "beta", "lr", "batch_size"]
TUNED_COLUMNS = COLUMNS + TUNED_METRICS + PROTOCOL_COLUMNS
TEXT_COLUMNS = {"dataset", "setting", "method", "config_hash", "config_id", "dataset_used",
                "protocol", *VARIANT_COLUMNS}
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
    if "protocol" not in frame:  # a file of the fixed-budget sweeps
        frame["protocol"] = "fixed"
    return typed(frame, TEXT_COLUMNS)


def typed(frame: pd.DataFrame, text_columns) -> pd.DataFrame:
    """The columns of a validated results frame as their types: K and seed integers
    (so that finished rows are recognised), text columns as read, the rest floats."""
    for col in frame.columns:
        if col in ("K", "seed"):
            frame[col] = frame[col].astype(float).astype("int64")
        elif col not in text_columns:
            frame[col] = frame[col].replace("", "nan").astype(float)
    return frame


def keys_of(df: pd.DataFrame) -> set[tuple]:
    """The :data:`KEY` of every row, as strings (:func:`row_key`)."""
    return {tuple(str(v) for v in r) for r in df[KEY].astype(str).itertuples(index=False)} \
        if len(df) else set()


def finished_keys(path: Path) -> set[tuple]:
    """Keys (as strings) of the rows already in comparison.csv."""
    return keys_of(read_results(path))


def row_key(row: dict) -> tuple:
    """The key of a row as :func:`finished_keys` spells it."""
    return tuple(str(row[k]) for k in KEY)


def append_row(path: Path, row: dict) -> None:
    """Append one row, on disk at once (a torn tail is cut first): of :data:`TUNED_COLUMNS`
    when it carries a ``protocol`` (a tuned sweep's file), else of :data:`COLUMNS`."""
    csvlog.append_row(path, TUNED_COLUMNS if row.get("protocol") else COLUMNS, row)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every metric, per configuration (:data:`GROUP`)."""
    if results.empty:
        return pd.DataFrame(columns=GROUP + ["n_seeds"])
    df = results.copy()
    for col in ("config_id", *VARIANT_COLUMNS):
        df[col] = df[col].fillna("")
    extra = [c for c in TUNED_METRICS if c in df]
    return mean_std(df, GROUP, METRICS + extra + ["fit_seconds", "epochs"])


def mean_std(df: pd.DataFrame, group: list[str], metrics: list[str]) -> pd.DataFrame:
    """<metric>_mean and <metric>_std (ddof 1) over the seeds of every ``group``, with n_seeds."""
    grouped = df.groupby(group, sort=False, dropna=False)
    agg = grouped[metrics].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg.insert(0, "n_seeds", grouped["seed"].nunique())
    return agg.reset_index()


def write_frame(agg: pd.DataFrame, out: Path) -> pd.DataFrame:
    """``agg`` as a CSV at ``out``, written atomically; returns it."""
    with atomic_file(out, "w") as f:
        f.write(agg.to_csv(index=False, float_format="%.6g"))
    return agg


def write_summary(results: Path, out: Path) -> pd.DataFrame:
    """summary.csv from comparison.csv (:func:`summarize`), written atomically."""
    return write_frame(summarize(read_results(results)), out)


def record_row(results: Path, summary: Path, row: dict) -> bool:
    """Append ``row`` to comparison.csv unless a row of its key is there already, then
    rewrite summary.csv from the rows, both under one lock that waits
    (``<results>.rows.lock``). So a cell run twice (by a sweep, or by cluster jobs side
    by side) writes one row, and a run stopped between any two rows leaves a summary
    that agrees with them. Returns True when the row was written."""
    return _record(results, summary, row, read_results, append_row, summarize)


def _record(results: Path, summary: Path, row: dict, read, append, summarize_rows) -> bool:
    """:func:`record_row` for either results file, given its reader, appender and summary."""
    with waiting_lock(results.with_name(results.name + ".rows")):
        rows = read(results)
        new = row_key(row) not in keys_of(rows)
        if new:
            append(results, row)
            rows = read(results)  # as the file holds it, typed by the reader
        write_frame(summarize_rows(rows), summary)
    return new


# --- generation.csv: the prior over each method's codes, its samples ---------------------------

GENERATION_METRICS = R.columns(table=R.GENERATION, protocol=R.FIXED)
GENERATION_COLUMNS = KEY + ["config_id", "dataset_used", "prior", R.BITS.column] + GENERATION_METRICS + [
    "test_class_entropy", "prior_epochs", "temperature", "n_fid", "n_train", "n_test"]
# Rows of the tuned protocol's generation stage say so, which cell's codes the prior learned
# (the chosen one, decoded by its fine-tuned decoder), the prior's chosen size and how it
# trained (early stopping), and what only they measure (the likelihood bound in bits/dim).
GENERATION_PROTOCOL_COLUMNS = ["protocol", *VARIANT_COLUMNS, "prior_channels", "prior_layers",
                               "prior_epochs_trained", "prior_best_epoch"]
TUNED_GENERATION_METRICS = [c for c in R.columns(table=R.GENERATION, protocol=R.TUNED)
                            if c not in GENERATION_METRICS]
TUNED_GENERATION_COLUMNS = GENERATION_COLUMNS + GENERATION_PROTOCOL_COLUMNS + TUNED_GENERATION_METRICS
GENERATION_TEXT = {"dataset", "setting", "method", "config_hash", "config_id", "dataset_used", "prior",
                   "protocol", *VARIANT_COLUMNS}
GENERATION_GROUP = ["dataset", "dataset_used", "setting", "method", "prior", "K", "config_id"]


def read_generation(path: Path) -> pd.DataFrame:
    """generation.csv as a DataFrame, validated like :func:`read_results` (a
    torn last row is dropped with a warning and redone; a missing file is empty):
    a tuned protocol's file (:data:`TUNED_GENERATION_COLUMNS`) or a fixed sweep's
    (:data:`GENERATION_COLUMNS`, read with ``protocol`` = "fixed")."""
    path = Path(path)
    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame(columns=GENERATION_COLUMNS)
    tuned = csvlog.read_header(path) == TUNED_GENERATION_COLUMNS
    columns = TUNED_GENERATION_COLUMNS if tuned else GENERATION_COLUMNS
    frame = pd.DataFrame(csvlog.read_rows(path, columns, text=sorted(GENERATION_TEXT)),
                         columns=columns)
    if not tuned:  # a file of the fixed-budget sweeps
        frame["protocol"] = "fixed"
    return typed(frame, GENERATION_TEXT)


def finished_generation_keys(path: Path) -> set[tuple]:
    """Keys (as strings, :func:`row_key`) of the rows already in generation.csv."""
    return keys_of(read_generation(path))


def append_generation_row(path: Path, row: dict) -> None:
    """Append one row, on disk at once: of :data:`TUNED_GENERATION_COLUMNS` when it
    carries a ``protocol`` (the tuned protocol's file), else of :data:`GENERATION_COLUMNS`."""
    columns = TUNED_GENERATION_COLUMNS if row.get("protocol") else GENERATION_COLUMNS
    csvlog.append_row(path, columns, row)


def summarize_generation(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every generation metric the rows have, per
    configuration (and per cell, in a tuned protocol's file)."""
    if results.empty:
        return pd.DataFrame(columns=GENERATION_GROUP + ["n_seeds"])
    group = GENERATION_GROUP + [c for c in VARIANT_COLUMNS if c in results]
    metrics = [c for c in R.columns(table=R.GENERATION) if c in results]
    return mean_std(results, group, metrics + [R.BITS.column])


def write_generation_summary(results: Path, out: Path) -> pd.DataFrame:
    """generation_summary.csv from generation.csv, written atomically."""
    return write_frame(summarize_generation(read_generation(results)), out)


def record_generation_row(generation: Path, summary: Path, row: dict) -> bool:
    """:func:`record_row` for generation.csv and generation_summary.csv."""
    return _record(generation, summary, row, read_generation, append_generation_row,
                   summarize_generation)


# --- a generation row's model against its comparison row ------------------------------------

# Both files round their columns to 6 significant figures (a few 1e-3 bits per image here);
# a model retrained on another machine's floating point moves its test NLL by tenths of a bit.
RECON_DRIFT_BITS = 0.01
DRIFT_KEY = ["dataset", "setting", "method", "K", "seed", *VARIANT_COLUMNS]


def recon_drift(generation: pd.DataFrame, comparison: pd.DataFrame,
                tol: float = RECON_DRIFT_BITS) -> pd.DataFrame:
    """The generation rows whose model is not the one their comparison row measured.

    A generation row's decoder NLL on the test split, ``recon_nll_bits`` (bits per image,
    -log2 p(x | codes)), is the comparison row's ``test_bce`` (nats per image) over ln 2
    when both describe one trained model and decoder (the same dataset, setting, method,
    K, seed and cell: ``DRIFT_KEY``). Where the generation stage retrained a model that
    was gone and the retrained one did not reproduce the published one (another machine's
    floating point), the two differ. Returns one row per generation row that has a
    comparison row of its key and differs from every such row by more than ``tol`` bits:
    ``DRIFT_KEY``, ``recon_nll_bits``, ``comparison_bits`` (the nearest comparison row's)
    and ``drift_bits`` (generation minus comparison). Rows without a comparison row are
    not judged.
    """
    cols = [*DRIFT_KEY, "recon_nll_bits", "comparison_bits", "drift_bits"]
    if generation.empty or comparison.empty or "recon_nll_bits" not in generation:
        return pd.DataFrame(columns=cols)

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for c in VARIANT_COLUMNS:
            frame[c] = frame[c].fillna("").astype(str) if c in frame else ""
        return frame

    gen = keyed(generation)[[*DRIFT_KEY, "recon_nll_bits"]].dropna(subset=["recon_nll_bits"])
    comp = keyed(comparison)[[*DRIFT_KEY, "test_bce"]].dropna(subset=["test_bce"])
    comp = comp.assign(comparison_bits=metrics.nats_to_bits(comp["test_bce"]))
    both = gen.reset_index().merge(comp, on=DRIFT_KEY)
    both["drift_bits"] = both["recon_nll_bits"] - both["comparison_bits"]
    nearest = both.loc[both["drift_bits"].abs().groupby(both["index"]).idxmin()]
    return nearest.loc[nearest["drift_bits"].abs() > tol, cols].reset_index(drop=True)
