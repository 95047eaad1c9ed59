"""The report's table of mean ± std over seeds, as data: one row per group of rows,
one column per metric (:func:`mean_std_rows`, a list of rows of strings that tests
read; report.layout.render lays any such list out)."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import pandas as pd

from report.formatting import fmt_mean_std
from utils import metric_registry as R

# Metrics fixed by the configuration (the same for every seed): their value, not mean ± std.
FIXED = (R.BITS.column,)


class Key(NamedTuple):
    """A column that groups the rows: its heading and how a value is written."""

    column: str
    heading: str
    text: Callable[[object], str] = str


def int_text(value) -> str:
    return str(int(value))


# Counts that differ between seeds (epochs run, the best epoch): their range over seeds.
COUNTS = ("epochs_trained", "best_epoch", "decoder_epochs_trained", "decoder_best_epoch")


def cell_text(values: pd.Series, column: str) -> str:
    """'0.0123 ± 0.0004' over seeds; the value of a :data:`FIXED` column; '31-40', the
    range over seeds, of a :data:`COUNTS` column ('-' when it does not apply)."""
    if column in FIXED:
        return f"{values.mean():g}"
    if column in COUNTS:
        v = values.dropna()
        if v.empty:
            return "-"
        low, high = int(v.min()), int(v.max())
        return str(low) if low == high else f"{low}-{high}"
    return fmt_mean_std(values.mean(), values.std())


def mean_std_rows(rows: pd.DataFrame, keys: Sequence[Key],
                  columns: Sequence[tuple[str, str]]) -> list[list[str]]:
    """The heading and one row per group of ``keys`` (in order of appearance, NaN a
    group of its own): the keys' texts, the number of seeds and each of ``columns``
    ((metric column, heading)) as mean ± std over the group's rows."""
    data = [[k.heading for k in keys] + ["seeds"] + [h for _, h in columns]]
    for values, g in rows.groupby([k.column for k in keys], sort=False, dropna=False):
        data.append([k.text(v) for k, v in zip(keys, values)] + [str(g["seed"].nunique())]
                    + [cell_text(g[c], c) for c, _ in columns])
    return data
