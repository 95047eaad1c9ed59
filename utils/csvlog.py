"""Append-only CSV logs, one row per epoch, flushed as written."""
from __future__ import annotations

import csv
from pathlib import Path


class CSVLogger:
    """Write rows with fixed ``columns`` to ``path``.

    With ``resume_after=E`` an existing file keeps its rows with epoch <= E
    (rows of epochs the checkpoint never reached are dropped, so a resumed run
    does not log an epoch twice); otherwise the file starts anew.
    """

    def __init__(self, path: str | Path, columns: list[str], *, resume_after: int | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_after is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_after]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    def log(self, row: dict) -> None:
        """Append one row; floats are written with 6 significant digits."""
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"row lacks columns {missing}")
        fmt = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(fmt)
