"""Which git commit produced each published row: the report's provenance.

A results folder holds rows (comparison.csv, generation.csv) and, per dataset
and setting, the run record of the *last* run (utils.paths.ResultPaths.run_record:
its git commit and dirty flag). A row may come from an earlier run than the
last, so the record alone cannot say which commit produced it. The history of
the folder can: a row was produced by the run whose record stood beside it
when the row first appeared in its table's history. A row is recognised across
versions by its identity (:data:`IDENTITY`: dataset, setting, method, cell, K,
seed) and its metric values as written, not by its config ids (those were
re-keyed once without rerunning anything). Rows that no commit holds yet are
the working tree's record's; outside a git checkout every row is its record's.

    >>> rows_by_commit(Path("experiments/results"), "comparison.csv", "comparison")[
    ...     ["dataset", "commit", "dirty"]].values.tolist()[:2]
    [['fashion-mnist', 'dabb13e084', True], ['mnist', '29f32170a8', False]]
"""
from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pandas as pd

from report.load import CELL_COLUMNS, with_cells
from utils import metric_registry as R

# What names a row across versions of its table: its key and its values as written.
IDENTITY = ["dataset", "setting", "method", *CELL_COLUMNS, "K", "seed"]
WORKING_TREE = "working tree"
PROVENANCE_COLUMNS = ["dataset", "setting", "commit", "dirty", "dataset_used", "methods", "n_rows"]


def git(root: Path, *args: str) -> str | None:
    """The output of ``git -C root args`` as text, or None outside a checkout (or
    without git)."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.decode()


def committed_versions(path: Path) -> list[tuple[str, str]]:
    """[(revision, text)] of every committed version of ``path``, oldest first
    ([] outside a checkout or for a file git never held)."""
    path = Path(path).resolve()
    top = git(path.parent, "rev-parse", "--show-toplevel")
    revisions = git(path.parent, "log", "--format=%H", "--", path.name)
    if not top or not revisions:
        return []
    rel = path.relative_to(Path(top.strip()).resolve()).as_posix()
    return [(rev, git(path.parent, "show", f"{rev}:{rel}") or "")
            for rev in reversed(revisions.split())]


def record_at(record: Path, revision: str) -> dict:
    """The run record ``record`` as it was at ``revision`` (the working tree's for
    :data:`WORKING_TREE`); {} where there was none."""
    if revision == WORKING_TREE:
        return json.loads(record.read_text()) if record.is_file() else {}
    top = git(record.parent, "rev-parse", "--show-toplevel")
    rel = record.resolve().relative_to(Path(top.strip()).resolve()).as_posix() if top else ""
    text = git(record.parent, "show", f"{revision}:{rel}") if rel else None
    return json.loads(text) if text else {}


def identities(frame: pd.DataFrame, values) -> pd.Series:
    """One string per row: its :data:`IDENTITY` and ``values`` columns as written
    (cells filled with each method's default where a version predates them)."""
    frame = with_cells(frame)
    columns = [c for c in IDENTITY if c in frame] + [c for c in values if c in frame]
    return frame[columns].astype(str).agg("|".join, axis=1)


def first_revisions(rows: pd.DataFrame, versions: list[tuple[str, str]], values) -> pd.Series:
    """The revision of ``versions`` (oldest first) in which each of ``rows`` first
    appears, by :func:`identities`; :data:`WORKING_TREE` for rows none holds."""
    wanted = identities(rows, values)
    first = {}
    for revision, text in versions:
        if not text.strip():
            continue
        old = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        for ident in set(identities(old, values)) - set(first):
            first[ident] = revision
    return wanted.map(lambda i: first.get(i, WORKING_TREE))


def published_text(path: Path, published: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of the CSV ``path`` as written (text), only those of ``published``
    (the rows the report reads, matched on :data:`IDENTITY` and config_id) when given."""
    text = with_cells(pd.read_csv(path, dtype=str, keep_default_na=False))
    if published is None or not len(text):
        return text
    on = [c for c in [*IDENTITY, "config_id"] if c in text and c in published]
    keys = with_cells(published)[on].copy()
    for c in ("K", "seed"):
        keys[c] = keys[c].astype(int).astype(str)
    return text.merge(keys.astype(str).drop_duplicates(), on=on, how="inner")


def rows_by_commit(root: Path, table: str, runner: str, published: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """The commits that produced the rows of ``root/table`` (all of them, or those of
    ``published`` only), by the record of ``runner`` ('comparison', 'generation')
    that stood beside each row when it first appeared: columns
    :data:`PROVENANCE_COLUMNS`, one row per (dataset, setting, commit, dirty)."""
    from utils.paths import ResultPaths

    path = Path(root) / table
    if not path.is_file():
        return pd.DataFrame(columns=PROVENANCE_COLUMNS)
    rows = published_text(path, published)
    values = R.columns(table=R.GENERATION if runner == "generation" else R.COMPARISON)
    rows = rows.assign(revision=first_revisions(rows, committed_versions(path), values))
    out = {}
    for (dataset, setting, revision), g in rows.groupby(["dataset", "setting", "revision"],
                                                        sort=False):
        git_info = record_at(ResultPaths(Path(root)).run_record(dataset, setting, runner),
                             revision).get("git", {})
        key = (dataset, setting, git_info.get("commit", "")[:10] or "not recorded",
               bool(git_info.get("dirty")))
        used, methods, n = out.get(key, ([], [], 0))
        out[key] = (list(dict.fromkeys([*used, *g.get("dataset_used", [dataset])])),
                    list(dict.fromkeys([*methods, *g["method"]])), n + len(g))
    return pd.DataFrame([[*key, ", ".join(used), ", ".join(methods), n]
                         for key, (used, methods, n) in out.items()], columns=PROVENANCE_COLUMNS)


# The tables of a results folder and the runner whose record stands beside each.
RUNNERS = {"comparison.csv": "comparison", "generation.csv": "generation"}


def table_files(path: Path) -> list[Path]:
    """The results tables of ``path``: itself when it is one, else every one beneath it."""
    path = Path(path)
    if path.is_file():
        return [path] if path.name in RUNNERS else []
    return sorted(p for name in RUNNERS for p in path.rglob(name)) if path.is_dir() else []


def provenance(root: Path, published: pd.DataFrame, others=()) -> pd.DataFrame:
    """Every commit that produced a published row: ``published`` (the rows of
    ``root``'s comparison.csv the report reads) and every results table of the
    paths ``others`` (files or folders, e.g. the extras'); columns ``table`` (its
    path below ``root``) and :data:`PROVENANCE_COLUMNS`."""
    root = Path(root)
    frames = [rows_by_commit(root, "comparison.csv", "comparison", published)
              .assign(table="comparison.csv")]
    for path in dict.fromkeys(p for other in others for p in table_files(other)):
        frames.append(rows_by_commit(path.parent, path.name, RUNNERS[path.name])
                      .assign(table=path.relative_to(root).as_posix()))
    return pd.concat(frames, ignore_index=True)[["table", *PROVENANCE_COLUMNS]]
