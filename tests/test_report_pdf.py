"""The published report, rendered from experiments/results into a temporary folder and
read back from its text (#28): page 1 answers in at most 350 words with the answer
table, the main body ends by page 12, and no table cell's text overflows its column."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pypdf import PdfReader

from report import answer as AN
from report import build_report as br
from report import formatting as F
from report import layout
from report.load import load_results
from report.verdicts import all_ablations, all_verdicts

ROOT = Path(__file__).resolve().parents[1]
PAGE_ONE_WORDS = 350
APPENDIX_BY_PAGE = 13


def words(page: str) -> list[str]:
    """The words of a page: its tokens that hold a letter or a digit (a bare '=', '±'
    or '/' is read as a symbol, not a word)."""
    return [w for w in page.split() if any(c.isalnum() for c in w)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(story, the pages' text with whitespace collapsed, the short answer) of the
    report built from the committed results, written to a temporary PDF."""
    out = tmp_path_factory.mktemp("report")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # committed files may predate config_id
        results = load_results(ROOT / "experiments" / "results")
        story = br.report_story(results, out / "figures")
        answer = AN.short_answer(results, all_verdicts(results), br.EXTRAS, all_ablations(results))
    layout.write_pdf(list(story), out / "report.pdf")  # reportlab consumes the list it builds
    pages = [" ".join(p.extract_text().split()) for p in PdfReader(out / "report.pdf").pages]
    return story, pages, answer


def test_page_one_answers_in_few_words_with_the_answer_table(report):
    _, pages, answer = report
    assert len(words(pages[0])) <= PAGE_ONE_WORDS, len(words(pages[0]))
    squash = lambda md: " ".join(F.plain(md).split())  # noqa: E731
    assert squash(answer.sentence) in pages[0]
    for row in [answer.table.head, *answer.table.rows]:
        for cell in row:
            assert all(squash(line) in pages[0] for line in cell.split("\n")), cell
    assert "Findings" in pages[1]  # the bullets that page 1 used to hold


def test_the_appendix_starts_by_page_13(report):
    _, pages, _ = report
    starts = [i + 1 for i, p in enumerate(pages) if f"{layout.APPENDIX}: per-K tables" in p]
    assert starts and starts[0] <= APPENDIX_BY_PAGE, starts
    appendix = " ".join(pages[starts[0] - 1:])
    for part in ("every metric at every K", "the ablation cells", "the β-VAE rows",
                 "batch sizes chosen on validation", "Set-up and configurations", "Provenance"):
        assert part in appendix, part
    main_body = " ".join(pages[:starts[0] - 1])
    assert "configurations (config_id)" not in main_body  # config ids are appendix matter


def test_no_table_cell_overflows_its_column(report):
    story, _, _ = report
    tables = layout.tables_in(story)
    assert len(tables) > 10
    assert [o for t in tables for o in layout.cell_overflows(t)] == []


def test_datasets_are_named_as_run(report):
    _, pages, _ = report
    whole = " ".join(pages)
    assert "mnist-5k" in pages[0]
    assert "mnist (full)" not in whole and "mnist, full setting" not in whole


def test_the_overflow_check_catches_a_cell_wider_than_its_column():
    styles = layout.make_styles()
    long = "a_method_name_without_any_space_that_no_column_of_ten_percent_can_hold"
    # rendered: every text cell is a Paragraph, which cannot break inside a word
    rendered = layout.render([["method", "K"], [long, "16"]], [0.1], styles)
    assert layout.cell_overflows(rendered) == [(1, 0, long)]
    # a raw string cell is measured in its own font
    raw = layout.table([["method", "K"], [long, "16"]], [40, 40])
    assert layout.cell_overflows(raw) == [(1, 0, long)]
    # nested in a KeepTogether, it is still found
    assert layout.tables_in([layout.KeepTogether([rendered])]) == [rendered]


def test_mean_and_std_break_before_the_plus_minus_rather_than_overflow():
    styles = layout.make_styles()
    narrow = layout.render([["method", "MSE"], ["vqvae-conv", "0.00926 ± 0.00036"]], [0.2, 0.1],
                           styles)
    cell = narrow._cellvalues[1][1]
    assert "<br/>± " in cell.text and layout.cell_overflows(narrow) == []
    wide = layout.render([["method", "MSE"], ["vqvae-conv", "0.00926 ± 0.00036"]], [0.2, 0.3],
                         styles)
    assert "<br/>" not in wide._cellvalues[1][1].text


def test_the_pdfs_record_no_build_time_so_a_rebuild_changes_only_content(tmp_path):
    """report.pdf carries reportlab's invariant date, and a figure PDF none, so rebuilding
    from the same results leaves the committed files byte-identical."""
    import datetime

    import matplotlib.pyplot as plt
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph

    from utils.plot import save_figure

    layout.write_pdf([Paragraph("x", getSampleStyleSheet()["Normal"])], tmp_path / "r.pdf")
    built = PdfReader(tmp_path / "r.pdf").metadata
    assert built.creation_date is None or built.creation_date.date() != datetime.date.today()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png, pdf = save_figure(fig, tmp_path / "line")
    assert "/CreationDate" not in (PdfReader(pdf).metadata or {})
