"""CSV logs and result tables: rows written whole, read back validated.

Every writer here ends a row with a newline and writes the row in one call,
so a process that dies mid-write leaves a last line without its newline.
Readers treat such a line as torn and drop it with a warning: its content
cannot be trusted even when it parses ("12" may be the start of "127.3").
Any other malformed row (wrong number of fields, text where a number
belongs) is an error that names the file and the line.

Floats are written with 6 significant digits.
"""
from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Iterable

from utils.errors import UserError
from utils.runtime import atomic_file


class CSVError(UserError):
    """A CSV file that cannot be read as the table it should be."""


def format_value(value) -> str:
    """0.333... -> '0.333333'; None -> ''; anything else as str."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_row(row: dict, columns: list[str]) -> dict[str, str]:
    """The strings a writer puts in each of ``columns`` (KeyError when one is missing)."""
    missing = [c for c in columns if c not in row]
    if missing:
        raise KeyError(f"row lacks columns {missing}")
    return {c: format_value(row[c]) for c in columns}


def _line(values: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(values))
    return buf.getvalue()


def _is_number(text: str) -> bool:
    if text == "":  # a missing value (pandas writes NaN as an empty field)
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise CSVError(f"{path} is not a CSV file (it holds binary data)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CSVError(f"{path} is not a CSV file (byte {err.start} is not UTF-8 text)") from None
    if not text.strip():
        raise CSVError(f"{path} is empty: no header line")
    return text


def read_header(path: str | Path) -> list[str]:
    """The header line of a CSV file, as a list of column names."""
    with Path(path).open(newline="") as f:
        return next(csv.reader([f.readline()]), [])


def read_rows(path: str | Path, columns: list[str] | None = None, *,
              numeric: Iterable[str] = (), text: Iterable[str] | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings, after checking every one.

    Parameters
    ----------
    path : the CSV file; its first line is the header.
    columns : the header the file must have (None: any header).
    numeric : columns whose values must parse as numbers (or be empty).
    text : alternatively, the only columns that may hold text; every other
        column of the header must then be numeric.

    A last line without its newline was torn by a writer that stopped: it is
    dropped with a warning. A bad row anywhere else, an empty file, a binary
    file or an unexpected header raise CSVError naming the file (and line).
    """
    path = Path(path)
    if not path.is_file():
        raise CSVError(f"no CSV file at {path}")
    content = _decode(path)
    reader = csv.reader(io.StringIO(content))
    try:
        records = [(reader.line_num, rec) for rec in reader]
    except csv.Error as err:
        raise CSVError(f"{path}, line {reader.line_num}: {err}") from None
    torn_tail = not content.endswith("\n")
    header = records[0][1]
    if columns is not None and header != list(columns):
        raise CSVError(f"{path} has the columns {header}, not {list(columns)}; "
                       f"move it away to start a new file")
    must_be_numbers = [c for c in header if c not in set(text)] if text is not None else list(numeric)
    unknown = [c for c in must_be_numbers if c not in header]
    if unknown:
        raise CSVError(f"{path} lacks the columns {unknown}")
    rows = []
    for i, (line_no, rec) in enumerate(records[1:], start=1):
        if not rec:
            continue  # a blank line
        last = i == len(records) - 1
        if last and torn_tail:
            warnings.warn(f"{path}: dropped the torn last line {line_no} "
                          f"({','.join(rec)[:60]!r}), left by a run that stopped mid-write",
                          stacklevel=2)
            break
        if len(rec) != len(header):
            raise CSVError(f"{path}, line {line_no}: {len(rec)} fields where the header has "
                           f"{len(header)}")
        row = dict(zip(header, rec))
        for col in must_be_numbers:
            if not _is_number(row[col]):
                raise CSVError(f"{path}, line {line_no}: column {col!r} holds {row[col]!r}, "
                               f"not a number")
        rows.append(row)
    return rows


def write_rows(path: str | Path, columns: list[str], rows: Iterable[dict]) -> Path:
    """Write the header and ``rows`` atomically (temp file, fsync, ``os.replace``)."""
    body = _line(columns) + "".join(_line(format_row(r, columns).values()) for r in rows)
    with atomic_file(path, "w") as f:
        f.write(body)
    return Path(path)


def _append_line(path: Path, line: str) -> None:
    with path.open("a", newline="") as f:
        f.write(line)  # one write: a crash leaves at most one line without its newline
        f.flush()
        os.fsync(f.fileno())


def _repair_torn_tail(path: Path) -> None:
    """Cut a last line that lacks its newline, so the next row starts a line."""
    raw = path.read_bytes()
    if not raw or raw.endswith(b"\n"):
        return
    keep = raw.rfind(b"\n") + 1
    warnings.warn(f"{path}: dropped the torn last line {raw[keep:][:60]!r}, left by a run that "
                  f"stopped mid-write", stacklevel=3)
    with path.open("r+b") as f:
        f.truncate(keep)


def append_row(path: str | Path, columns: list[str], row: dict) -> None:
    """Append one row (the header first when the file is new or empty), on
    disk at once; a torn last line left by a crash is cut first (warning).
    A file with another header is a CSVError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _line(format_row(row, columns).values())
    if path.is_file() and path.stat().st_size:
        _repair_torn_tail(path)
    if not path.is_file() or not path.stat().st_size:
        _append_line(path, _line(columns) + line)
        return
    with path.open(newline="") as f:
        header = next(csv.reader([f.readline()]), [])
    if header != list(columns):
        raise CSVError(f"{path} has the columns {header}, not {list(columns)}; "
                       f"move it away to start a new file")
    _append_line(path, line)


def upsert_row(path: str | Path, columns: list[str], row: dict, key: Iterable[str]) -> bool:
    """Put ``row`` into the table at ``path``, replacing the row with the same
    values in the ``key`` columns (as written, e.g. ``K=64, seed=0``) or
    appending it; the file is rewritten atomically. Returns True when a row
    was replaced. Rows are validated as by :func:`read_rows`."""
    path = Path(path)
    key = list(key)
    new = format_row(row, columns)
    rows = read_rows(path, columns) if path.is_file() and path.stat().st_size else []
    ident = tuple(new[k] for k in key)
    same = [i for i, r in enumerate(rows) if tuple(r[k] for k in key) == ident]
    if same:
        rows[same[0]] = new
        rows = [r for i, r in enumerate(rows) if i not in same[1:]]
    else:
        rows.append(new)
    write_rows(path, columns, rows)
    return bool(same)


class CSVLogger:
    """Write rows with fixed ``columns`` to ``path``, one line per :meth:`log`.

    The file starts with ``rows`` when given (e.g. a resumed run's rows,
    reconciled with its checkpoint); else, with ``resume_after=E``, with the
    existing file's rows of epochs <= E (rows of epochs the checkpoint never
    reached are dropped, so a resumed run does not log an epoch twice; a torn
    last line is dropped with a warning); otherwise it starts anew. The start
    is written atomically.
    """

    def __init__(self, path: str | Path, columns: list[str], *, resume_after: int | None = None,
                 rows: list[dict] | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        if rows is None:
            rows = []
            if resume_after is not None and self.path.is_file():
                old = read_rows(self.path, numeric=("epoch",))
                rows = [{c: r.get(c, "") for c in self.columns} for r in old
                        if r["epoch"] != "" and float(r["epoch"]) <= resume_after]
        write_rows(self.path, self.columns, rows)

    def log(self, row: dict) -> None:
        """Append one row, on disk when this returns."""
        _append_line(self.path, _line(format_row(row, self.columns).values()))
