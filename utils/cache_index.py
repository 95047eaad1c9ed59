"""``<work-dir>/index.csv``: which cached model serves which row of the comparison.

The cache of the comparison is a flat folder of ``<kind>-<config hash>`` entries
(``utils.paths.cache_dir``); this index names, for every (dataset, method, K,
seed, ablation cell) whose models are cached, each part it is built from (the
VAE, the VQ-VAE, the fitted quantizer, the fine-tuned decoder) with that part's
config hash and its path relative to the work folder. Rows are merged under a
lock (:class:`utils.runlock.waiting_lock`) and the file is rewritten atomically,
so concurrent sweeps sharing a work folder keep every entry.
"""
from __future__ import annotations

from pathlib import Path

from utils import csvlog
from utils.methods import VARIANT_COLUMNS
from utils.runlock import waiting_lock

INDEX = "index.csv"
# row_hash: the row's config_hash in comparison.csv; config_hash: the part's own
# (the <hash> of its cache folder or file name); path: relative to the work folder.
KEY = ["dataset", "method", "K", "seed", *VARIANT_COLUMNS, "row_hash", "part"]
COLUMNS = KEY + ["config_hash", "path"]


def index_path(work_dir: str | Path) -> Path:
    """The index of a work folder."""
    return Path(work_dir) / INDEX


def read_index(work_dir: str | Path) -> list[dict[str, str]]:
    """The rows of the index (as written, strings); [] when there is none yet."""
    path = index_path(work_dir)
    if not path.is_file() or not path.stat().st_size:
        return []
    return csvlog.read_rows(path, COLUMNS)


def record(work_dir: str | Path, entries: list[dict]) -> Path:
    """Merge ``entries`` (dicts of :data:`COLUMNS`; ``path`` absolute or relative to
    ``work_dir``) into the index: an entry replaces the row of the same :data:`KEY`.
    Returns the index's path."""
    work_dir = Path(work_dir)
    path = index_path(work_dir)
    new = []
    for e in entries:
        p = Path(e["path"])
        rel = p.resolve().relative_to(work_dir.resolve()) if p.is_absolute() else p
        new.append(csvlog.format_row({**e, "path": rel.as_posix()}, COLUMNS))
    with waiting_lock(path):
        rows = {tuple(r[k] for k in KEY): r for r in read_index(work_dir)}
        changed = False
        for r in new:
            ident = tuple(r[k] for k in KEY)
            changed |= rows.get(ident) != r
            rows[ident] = r
        if changed or not path.is_file():
            csvlog.write_rows(path, COLUMNS, rows.values())
    return path


def lookup(work_dir: str | Path, *, method: str, K: int, seed: int) -> list[dict[str, str]]:
    """The index rows of (method, K, seed), every dataset and cell."""
    want = (method, str(K), str(seed))
    return [r for r in read_index(work_dir) if (r["method"], r["K"], r["seed"]) == want]
