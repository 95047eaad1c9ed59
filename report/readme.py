"""The README's short answer: the Markdown block between two markers, written from
the same :class:`report.text.ShortAnswer` as page 1 of the PDF."""
from __future__ import annotations

from pathlib import Path

from report.text import ShortAnswer
from utils.errors import UserError

README_START = "<!-- short-answer:start -->"
README_END = "<!-- short-answer:end -->"


def readme_block(answer: ShortAnswer, pdf: Path) -> str:
    """The README's short answer in Markdown, markers excluded."""
    items = "\n".join(f"- {item}" for item in answer.items)
    return (f"{answer.lead}\n\n{items}\n\n{answer.note} Details, spreads and per-K tables: "
            f"[`{pdf}`]({pdf}).")


def replace_readme_block(readme: str, block: str) -> str:
    """``readme`` with the text between the short-answer markers replaced by ``block``."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"the README has no {README_START} ... {README_END} block; add the two "
                        f"markers around its short answer")
    return readme[:start + len(README_START)] + "\n" + block + "\n" + readme[end:]
