"""Markup and numbers as the report writes them: the Markdown subset shared by the
PDF and the README, and the format of every number (and path) in a sentence or a table."""
from __future__ import annotations

import math
import re
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np


# --- markup ---------------------------------------------------------------------------

def to_markup(md: str) -> str:
    """reportlab paragraph markup of the Markdown subset: the text escaped, then
    **bold** -> <b>, *italic* -> <i>, `code` -> Courier."""
    text = escape(md)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r'<font face="Courier">\1</font>', text)


def plain(md: str) -> str:
    """The words of the Markdown subset without its marks."""
    return re.sub(r"\*\*|\*|`", "", md)


# --- numbers ---------------------------------------------------------------------------

def fmt_rel(rel_pct: float) -> str:
    """'+8.1%', '+0.044%' (two significant digits below 0.1%), 'n/a' for a zero reference."""
    if not np.isfinite(rel_pct):
        return "n/a"
    return f"{rel_pct:+.2g}%" if 0 < abs(rel_pct) < 0.1 else f"{rel_pct:+.1f}%"


def fmt_diff(diff: float, rel_pct: float) -> str:
    """'-0.00421 (-8.1%)'."""
    return f"{diff:+.3g} ({fmt_rel(rel_pct)})"


def fmt_k_list(ks) -> str:
    """'K = 16, 64'."""
    return "K = " + ", ".join(str(int(k)) for k in ks)


def fmt_k_range(ks) -> str:
    """'K = 16 to 512' for three values or more that double from one to the next
    (every power of two between was run); the K as run otherwise ('K = 16, 64, 256',
    'K = 64, 512'): a range would suggest K that were not run."""
    ks = sorted(int(k) for k in ks)
    doubling = len(ks) > 2 and all(b == 2 * a for a, b in zip(ks, ks[1:]))
    return f"K = {ks[0]} to {ks[-1]}" if doubling else fmt_k_list(ks)


def fmt_mean_std(mean: float, std: float) -> str:
    """'0.188 ± 0.006': three significant digits, the std to the same decimals."""
    if not np.isfinite(mean):
        return "-"
    text = f"{mean:#.3g}"
    if "e" in text:
        return f"{mean:.3g}" + (f" ± {std:.2g}" if np.isfinite(std) else "")
    text = text.rstrip(".")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return text + (f" ± {std:.{decimals}f}" if np.isfinite(std) else "")


def fmt_seconds(seconds: float) -> str:
    """'1 h 02 min 05 s'."""
    s = int(round(seconds))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def unique_text(values) -> str:
    """Distinct values, in order, joined by commas ('-' when none)."""
    seen = [str(v) for v in dict.fromkeys(values) if not (isinstance(v, float) and math.isnan(v))]
    return ", ".join(seen) if seen else "-"


def span(low: str, high: str) -> str:
    """'a' when both ends read the same, else 'a to b'."""
    return low if low == high else f"{low} to {high}"


def join_words(words) -> str:
    """'', 'a', 'a and b', 'a, b and c'."""
    words = list(words)
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def plural(n: int, word: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} {word}" + ("s" if n != 1 else "")


def fmt_pct(pct: float) -> str:
    """'8.1%', '0.044%' (two significant digits below 0.1%): a size, unsigned."""
    return fmt_rel(abs(pct)).lstrip("+")


def fmt_share(pct: float) -> str:
    """'30%' (a share of the gap, rounded to a whole percent; never '-0%')."""
    return f"{int(round(pct))}%"


def run_label(dataset: str, setting: str, used=()) -> str:
    """A dataset as run: the data used ('mnist-5k', never the 'mnist' asked when it
    fell back), with the setting when it is not the full one."""
    name = ", ".join(map(str, used)) or dataset
    return name if setting == "full" else f"{name}, {setting} setting"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
