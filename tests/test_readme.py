"""README.md is a reference: its layout names every module, and it stays about 250 lines."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "geodesic", "train", "utils", "report", "benchmarks")


def layout_sections(readme: str) -> dict[str, str]:
    """{package: its text in the README's Layout block} (a section runs from the line that
    starts with ``package/`` to the next line that starts with a non-space)."""
    block = readme.split("## Layout", 1)[1].split("```")[1]
    sections, current = {}, None
    for line in block.splitlines():
        m = re.match(r"^([a-z_]+)/\s", line)
        if m:
            current = m.group(1)
            sections[current] = line
        elif line.startswith(" ") and current:
            sections[current] += "\n" + line
    return sections


def test_layout_sections_parse_a_hand_made_block():
    text = "## Layout\n\n```\nmodels/   a.py · b.py\n          c.py\ntrain/    d.py\n```\n"
    assert layout_sections(text) == {"models": "models/   a.py · b.py\n          c.py",
                                     "train": "train/    d.py"}


def test_layout_names_every_module():
    sections = layout_sections((ROOT / "README.md").read_text())
    missing = [f"{pkg}/{p.name}" for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))
               if p.name != "__init__.py"
               and not re.search(rf"(?<![\w/]){re.escape(p.name)}", sections.get(pkg, ""))]
    assert not missing, f"README's layout does not name: {', '.join(missing)}"


def test_readme_is_a_reference_not_a_diary():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250  # issue #28: at most 250


def test_generated_methods_block_has_one_row_per_registry_entry():
    from report import readme
    from utils import methods as M

    rows = readme.methods_table().splitlines()[2:]
    assert [r.split("|")[1].strip().strip("`") for r in rows] == list(M.METHODS)
    for row, m in zip(rows, M.METHODS.values()):
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1:4] == [m.family, m.rate, str(m.codes_per_image) if m.quantized else "–"]


def test_optional_blocks_are_replaced_only_where_their_markers_are(tmp_path):
    from report import readme

    start, end = readme.markers("methods")
    assert readme.replace_optional_block("no markers\n", "methods", "X") == "no markers\n"
    assert readme.replace_optional_block(f"a\n{start}\nold\n{end}\nb", "methods", "X") == \
        f"a\n{start}\nX\n{end}\nb"
    csv = tmp_path / "wall_times.csv"
    csv.write_text(",".join(readme.WALL_TIME_COLUMNS) + "\nmake x,make x,a thing,12.4,abc1234,"
                   "2026-12-04,2 CPU cores\n")
    assert readme.wall_times_table(csv).splitlines()[2] == \
        "| `make x` | a thing | 12 min | abc1234 2026-12-04, 2 CPU cores |"

