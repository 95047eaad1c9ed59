"""The README's generated blocks, each between two markers: the short answer
(the sentence and the answer table of page 1 of the PDF, from the same
:class:`report.answer.ShortAnswer`, required), the methods table (from the method registry) and the wall times of
the make targets (from ``wall_times.csv``), both optional."""
from __future__ import annotations

from pathlib import Path

from report.answer import ShortAnswer
from utils import methods as M
from utils.csvlog import read_rows
from utils.errors import UserError

README_START = "<!-- short-answer:start -->"
README_END = "<!-- short-answer:end -->"


def markdown_table(head, rows) -> str:
    """A Markdown table of text cells ('\\n' in a cell becomes a line break)."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


def readme_block(answer: ShortAnswer, pdf: Path) -> str:
    """The README's short answer in Markdown, markers excluded: the sentence and
    the table of page 1 of the PDF, and the note under that table."""
    return (f"{answer.sentence}\n\n{markdown_table(answer.table.head, answer.table.rows)}\n\n"
            f"{answer.table_note} Details, spreads and per-K tables: [`{pdf}`]({pdf}).")


def replace_readme_block(readme: str, block: str) -> str:
    """``readme`` with the text between the short-answer markers replaced by ``block``."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"the README has no {README_START} ... {README_END} block; add the two "
                        f"markers around its short answer")
    return readme[:start + len(README_START)] + "\n" + block + "\n" + readme[end:]


def markers(name: str) -> tuple[str, str]:
    """The two markers of the README block ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_optional_block(readme: str, name: str, block: str) -> str:
    """``readme`` with block ``name`` replaced by ``block`` when its markers are there."""
    start, end = markers(name)
    i, j = readme.find(start), readme.find(end)
    if i < 0 and j < 0:
        return readme
    if i < 0 or j < i:
        raise UserError(f"the README's {name} block needs both {start} and {end}, in that order")
    return readme[:i + len(start)] + "\n" + block + "\n" + readme[j:]


def methods_table() -> str:
    """The README's methods table, one row per entry of utils/methods.py."""
    return markdown_table(["method", "family", "rate", "codes per image", "what it is"],
                          [[f"`{m.name}`", m.family, m.rate,
                            str(m.codes_per_image) if m.quantized else "–", m.description]
                           for m in M.methods()])


WALL_TIME_COLUMNS = ["target", "command", "what", "wall_minutes", "commit", "date", "machine"]


def wall_times_table(csv: Path) -> str:
    """The README's table of measured wall times, from ``wall_times.csv``."""
    rows = []
    for r in read_rows(csv, WALL_TIME_COLUMNS, text=[c for c in WALL_TIME_COLUMNS if c != "wall_minutes"]):
        when = " ".join(x for x in (r["commit"], r["date"]) if x) or "–"
        rows.append([f"`{r['command']}`", r["what"], f"{float(r['wall_minutes']):.0f} min",
                     f"{when}, {r['machine']}"])
    return markdown_table(["target", "what", "wall time", "measured at"], rows)


def generated_blocks(results_dir: Path) -> dict[str, str]:
    """The optional blocks' contents: the methods table, and the wall times when
    ``results_dir`` has a wall_times.csv."""
    blocks = {"methods": methods_table()}
    if (Path(results_dir) / "wall_times.csv").is_file():
        blocks["wall-times"] = wall_times_table(Path(results_dir) / "wall_times.csv")
    return blocks
