"""The runner's files of one results folder, read and checked: the report's input.

comparison.csv is read by the runner's own reader (utils.results.read_results:
a torn last row is dropped with a warning naming its line, any other malformed
row is one error naming the file and the line), summary.csv with pandas; both
must hold the columns of every metric the runner writes
(utils/metric_registry.py). Each (dataset, setting, method, ablation cell, K)
keeps its newest configuration only, and each method's default cell is what
the main verdicts use (report/verdicts.py computes them; nothing here is
statistics but the seed summary of a configuration summary.csv lacks, made by
the runner's own utils.results.summarize).

    >>> results = load_results(Path("experiments/results"))
    >>> results.groups
    [('fashion-mnist', 'full'), ('mnist', 'full')]
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from utils import csvlog
from utils import methods as M
from utils import metric_registry as R
from utils.errors import UserError
from utils.paths import TUNED_DIR, ResultPaths
from utils.results import read_results, summarize

CELL_COLUMNS = list(M.VARIANT_COLUMNS)
# One configuration is kept per key: every ablation cell of a method is its own key.
GROUP_KEYS = ["dataset", "setting", "method", *CELL_COLUMNS, "K"]
CONFIG = "config_id"
# An unquantized reference (K 0) keeps one configuration per KL weight: the tuned protocol
# chooses the VAE's beta per K, so one rate can have two bounds, each that of its own K.
BOUND_KEY = "_bound_kl_weight"


def with_bound_key(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with column :data:`BOUND_KEY`: the KL weight of an unquantized method's
    rows (as text), "" on every other row and wherever the weight is not recorded."""
    weight = frame["kl_weight"] if "kl_weight" in frame else pd.Series(float("nan"), frame.index)
    unquantized = frame["method"].map(lambda m: m in M.METHODS and not M.get(m).quantized)
    key = weight.map(lambda w: "" if pd.isna(w) else f"{float(w):g}").where(unquantized, "")
    return frame.assign(**{BOUND_KEY: key.astype(str)})


class Results(NamedTuple):
    """The runner's files of one results folder, newest configuration only.

    comparison : one row per dataset, setting, method, K and seed, each
        method's default cell only (what the main verdicts use).
    summary : mean and std over seeds, the rows of those configurations.
    records : {(dataset, setting): run record dict, {} when absent}.
    groups : (dataset, setting) pairs, full before quick.
    ignored : rows of older configurations left out: dataset, setting,
        method, cell, K, config_id, n_rows (empty when there were none).
    root : the results folder.
    cells : like ``comparison``, every ablation cell (the default ones included).
    cell_summary : like ``summary``, every ablation cell.
    """

    comparison: pd.DataFrame
    summary: pd.DataFrame
    records: dict
    groups: list
    ignored: pd.DataFrame
    root: Path
    cells: pd.DataFrame
    cell_summary: pd.DataFrame


# The metric columns the report requires: every one the runner writes (utils/metric_registry.py).
REQUIRED_METRICS = R.columns(table=R.COMPARISON, protocol=R.FIXED)


def no_results(path: Path, results_dir: Path, what: str) -> UserError:
    return UserError(f"{path} {what}; run make full (or python train/run_comparison.py "
                     f"--results-dir {results_dir})")


def require_columns(path: Path, have, required) -> None:
    """A UserError naming ``path`` and the ``required`` columns it lacks."""
    missing = [c for c in required if c not in set(have)]
    if missing:
        raise UserError(f"{path} lacks the columns {missing} that the report reads "
                        f"(utils/metric_registry.py); was it written by train/run_comparison.py?")


def read_comparison(path: Path, results_dir: Path) -> pd.DataFrame:
    """comparison.csv read by the runner's own reader (utils.results.read_results:
    a torn last row is dropped with a warning naming its line, a malformed row
    elsewhere is an error naming the file and line), with every metric column of
    :data:`REQUIRED_METRICS`; a missing or empty file is a UserError."""
    if not path.is_file():
        raise no_results(path, results_dir, "missing")
    frame = read_results(path)
    if frame.empty:
        raise no_results(path, results_dir, "has no rows")
    header = csvlog.read_header(path)
    require_columns(path, header, REQUIRED_METRICS)
    if CONFIG not in header:
        warn_one_configuration(path.name)
    return frame


def read_summary(path: Path, results_dir: Path) -> pd.DataFrame:
    """summary.csv with config_id and the cells as text, and the mean and std of
    every metric of :data:`REQUIRED_METRICS`; a missing or empty file is a UserError."""
    if not path.is_file():
        raise no_results(path, results_dir, "missing")
    try:
        frame = pd.read_csv(path, dtype={CONFIG: str, **{c: str for c in CELL_COLUMNS}})
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if frame.empty:
        raise no_results(path, results_dir, "has no rows")
    require_columns(path, frame.columns, R.summary_columns(REQUIRED_METRICS))
    return frame


def warn_one_configuration(name: str) -> None:
    warnings.warn(f"{name} has no {CONFIG} column (written before configurations were "
                  f"recorded); its rows are treated as one configuration", stacklevel=4)


def with_config_id(frame: pd.DataFrame, name: str, *, warn: bool = True) -> pd.DataFrame:
    """``frame`` with a text config_id column; a file written before configurations
    were recorded counts as one configuration (""), with a warning unless ``warn``
    is False (when the same was said of comparison.csv)."""
    frame = frame.copy()
    if CONFIG not in frame:
        if warn:
            warn_one_configuration(name)
        frame[CONFIG] = ""
    frame[CONFIG] = frame[CONFIG].fillna("").astype(str)
    return frame


def default_cell(method: str) -> dict:
    """The cell the main verdicts use: ``utils.methods.variants(method)[0]``
    (latent/medoid/frozen, centroid/frozen; empty for the other families)."""
    return M.variants(method)[0]


def all_cells(method: str) -> list[dict]:
    """Every ablation cell that applies to ``method``, default first."""
    vectors = tuple(dict.fromkeys(v for vs in M.CODE_VECTORS.values() for v in vs))
    return M.variants(method, edge_lengths=M.EDGE_LENGTHS, code_vectors=vectors,
                      decoders=M.DECODERS)


def with_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ablation columns as text; a value left empty (a row
    written before the ablation existed) is that method's default cell."""
    frame = frame.copy()
    for col in CELL_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str) if col in frame else ""
    for method in frame["method"].unique():
        rows = frame["method"] == method
        for col, value in default_cell(method).items():
            frame.loc[rows & (frame[col] == ""), col] = value
    return frame


def is_default(frame: pd.DataFrame) -> pd.Series:
    """True for the rows of each method's default cell."""
    defaults = pd.DataFrame([{"method": m, **default_cell(m)} for m in frame["method"].unique()],
                            columns=["method", *CELL_COLUMNS])
    marked = frame[["method", *CELL_COLUMNS]].merge(defaults, how="left", indicator=True)
    return pd.Series((marked["_merge"] == "both").to_numpy(), index=frame.index)


def newest_configs(comparison: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split comparison rows into the newest configuration of each (dataset,
    setting, method, cell, K) -- that of its last row, since rows are appended
    in time order -- and the rest, so that no mean mixes configurations.

    Returns (kept rows, ignored: one row per left-out configuration with
    dataset, setting, method, cell, K, config_id and n_rows).
    """
    keyed = with_bound_key(comparison)
    keys = GROUP_KEYS + [BOUND_KEY]
    newest = keyed.groupby(keys, sort=False, dropna=False)[CONFIG].last().rename("newest")
    marked = keyed.join(newest, on=keys)
    keep = (marked[CONFIG] == marked["newest"]).to_numpy()
    old = comparison[~keep]
    ignored = (old.groupby(GROUP_KEYS + [CONFIG], sort=False).size().rename("n_rows").reset_index()
               if len(old) else pd.DataFrame(columns=GROUP_KEYS + [CONFIG, "n_rows"]))
    return comparison[keep].reset_index(drop=True), ignored


def matching_summary(summary: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of the configurations in ``kept`` (summary.csv holds one
    row per configuration). A configuration it lacks (the runner writes it at
    the end of a run, so a run in progress leaves it behind) is summarised from
    ``kept`` by the runner's own :func:`utils.results.summarize`, with a warning."""
    on = GROUP_KEYS + [CONFIG]
    keys = kept[on].drop_duplicates()
    out = summary.merge(keys, on=on, how="inner")
    have = out[on].drop_duplicates()
    lacking = keys.merge(have, on=on, how="left", indicator=True)["_merge"] == "left_only"
    if lacking.any():
        names = ResultPaths(Path())
        warnings.warn(f"{names.summary.name} lacks {int(lacking.sum())} configuration(s) of "
                      f"{names.comparison.name} (a run in progress writes it at its end); "
                      f"they are summarised from {names.comparison.name}", stacklevel=3)
        rows = kept.merge(keys[lacking.to_numpy()], on=on, how="inner")
        out = pd.concat([out, with_cells(summarize(rows))], ignore_index=True)
    return out


def known_methods(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows of methods in utils/methods.py; others are left out with a warning."""
    unknown = sorted(set(frame["method"]) - set(M.METHODS))
    if unknown:
        warnings.warn(f"{name} has methods unknown to utils/methods.py, left out: "
                      f"{', '.join(map(str, unknown))}", stacklevel=3)
    return frame[frame["method"].isin(list(M.METHODS))]


def result_groups(comparison: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, setting) pairs present: every full one before every quick one,
    datasets in the order they first appear."""
    pairs = list(dict.fromkeys(zip(comparison["dataset"], comparison["setting"])))
    return sorted(pairs, key=lambda p: p[1] != "full")


def load_run_record(paths: ResultPaths, dataset: str, setting: str) -> dict:
    """The runner's run record of one dataset and setting, or {} when it left none."""
    path = paths.run_record(dataset, setting)
    return json.loads(path.read_text()) if path.is_file() else {}


def load_results(results_dir: Path) -> Results:
    """comparison.csv, summary.csv and the run records of ``results_dir``, reduced
    to the newest configuration of each (dataset, setting, method, cell, K);
    ``comparison`` and ``summary`` hold the default cells, ``cells`` and
    ``cell_summary`` every cell."""
    paths = ResultPaths(Path(results_dir))
    comparison = read_comparison(paths.comparison, paths.root)
    summary = read_summary(paths.summary, paths.root)
    # a summary.csv older than config_id stands for the configuration "" only
    summary = with_config_id(summary, paths.summary.name, warn=False)
    comparison = with_cells(known_methods(comparison, paths.comparison.name))
    summary = with_cells(known_methods(summary, paths.summary.name))
    kept, ignored = newest_configs(comparison)
    summary = matching_summary(summary, kept)
    groups = result_groups(kept)
    records = {g: load_run_record(paths, *g) for g in groups}
    main_rows = kept[is_default(kept)].reset_index(drop=True)
    main_summary = summary[is_default(summary)].reset_index(drop=True)
    return Results(main_rows, main_summary, records, groups, ignored, paths.root, kept, summary)


def newest(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the newest configuration (the last config_id written) of every
    (dataset, setting, method, cell, K) of a results table (rows are appended in time order)."""
    if frame.empty:
        return frame
    keys = ["dataset", "setting", "method", *[c for c in CELL_COLUMNS if c in frame], "K", BOUND_KEY]
    last = with_bound_key(frame).groupby(keys, sort=False, dropna=False)["config_id"].transform("last")
    return frame[frame["config_id"] == last]


def replace_rows(rows: pd.DataFrame, better: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with those of every (dataset, method) that ``better`` has replaced by
    ``better``'s: e.g. the fixed-budget rows of a method by its tuned-protocol rows."""
    covered = better[["dataset", "method"]].drop_duplicates()
    marked = rows.merge(covered, on=["dataset", "method"], how="left", indicator=True)
    kept = rows[(marked["_merge"] == "left_only").to_numpy()]
    return pd.concat([kept, better], ignore_index=True)


def has_tuned_rows(results: Results) -> bool:
    """Whether the tuned protocol's rows (train/run_tuned.py) sit beside ``results``;
    page 1 reads them in place of the fixed-budget rows."""
    return ResultPaths(results.root / TUNED_DIR).comparison.is_file()
