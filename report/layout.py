"""The PDF's layout with reportlab: page 1 answers, the main body explains, the
appendix holds the rows.

Page 1: the question in two sentences, the answer in one, the answer table and
the headline figure across both rates (report/answer.py: the sentence and the table
are the README's block too). The main body, at most twelve pages: the findings,
methods and bit budgets, the rule, one section per (dataset, setting) -- what ran,
the figures of reconstruction and labels, the verdict of every rate's contest, the
ablation -- then the sections of ``extras`` (report.sections.Extra) whose CSV is
present, then the limitations. The appendix: per group every metric at every K,
the comparisons at each K, the ablation cells and the further figures; the
extras' rows; the set-up and configuration ids; the commit of every published
row (report/provenance.py).

Every text cell wraps within its column (:func:`render`, checked by
:func:`cell_overflows`); headings start a new page rather than end one
(:func:`heading`). No page is left mostly empty: figures are at most
:data:`FIGURE_MAX` of the page tall, and the square figures that read at half
width (:data:`PAIRED`) go two side by side.
"""
from __future__ import annotations

import datetime
import io
import os
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import (ActionFlowable, CondPageBreak, Image, KeepInFrame,
                                KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer,
                                Table, TableStyle)

from report import formatting as F
from report import ablation_text as AB
from report import answer as AN
from report import setup_text as ST
from report import verdict_text as VT
from report.figures import (ABLATION, LABEL_METRICS, METRIC_GRID, RATE_DISTORTION,
                            draw_ablation_figure, draw_summary_figures)
from report.load import Results
from report.provenance import provenance
from report.sections import FIXED, TUNED, present_extras
from report.verdicts import (ABLATION_METRIC, AblationVerdict, RateVerdict, all_ablations,
                             cell_rows, contests, direction, rows_of)
from utils import methods as M
from utils import metric_registry as R
from utils.paths import RESULTS, RUNNER_FIGURE_CAPTIONS, RUNNER_FIGURES, ResultPaths

PAGE_MARGIN = 2 * cm
FRAME_WIDTH = A4[0] - 2 * PAGE_MARGIN
FRAME_HEIGHT = A4[1] - 2 * PAGE_MARGIN
# A figure with its caption is at most this tall, so two fit a page.
FIGURE_MAX = 0.44 * FRAME_HEIGHT
HEADLINE_MAX = 0.55 * FRAME_HEIGHT
# Below this much room, page 1's headline figure would be a thumbnail: it moves on.
HEADLINE_MIN = 0.14 * FRAME_HEIGHT
# The key metrics, split in two tables that fit the page width at 8 pt.
TABLES = (("reconstruction", tuple(m.column for m in (R.BITS, R.MSE, R.PSNR, R.BCE))),
          ("codes", tuple(m.column for m in (R.NMI, R.LABEL_ACCURACY, R.USAGE,
                                             R.GEODESIC_DISTORTION))))
# RUNNER_FIGURES grows at its end (captions in utils/paths.py beside the names); a figure
# without a caption gets a generic one.
CODEBOOKS, RECONSTRUCTIONS, LATENT_MAP, USAGE = RUNNER_FIGURES[:4]
CAPTIONS = {**RUNNER_FIGURE_CAPTIONS,
    RATE_DISTORTION: "Test MSE and BCE against bits per image (log scale). The one-code methods "
                     "share the shaded matched-bits band (shifted slightly apart to keep error "
                     "bars readable); methods with more codes per image lie further right; the "
                     "dashed line is the unquantized VAE.",
    LABEL_METRICS: "NMI and code-to-label accuracy against K, one-code-per-image methods.",
    METRIC_GRID: "Purity, ARI, perplexity, usage, intra/inter ratio (Euclidean, VAE latent space) "
                 "and geodesic distortion against K, where each applies.",
    ABLATION: "Test MSE against K for every ablation cell (mean ± std over seeds): the "
              "geodesic cells in greens, the k-means cells in oranges, frozen decoders solid, "
              "fine-tuned decoders dashed; the dotted line is the unquantized VAE.",
}
# The ablation tables: one per metric, a row per cell, a column per K.
ABLATION_TABLE_METRICS = (ABLATION_METRIC, R.LABEL_ACCURACY.column, R.NMI.column)
# Each table is followed by the figure of the same metrics; the rest follow the comparisons.
TABLE_FIGURES = (RATE_DISTORTION, LABEL_METRICS)
LATER_FIGURES = (METRIC_GRID, CODEBOOKS, RECONSTRUCTIONS, LATENT_MAP, USAGE, *RUNNER_FIGURES[4:])
# Figures about as tall as wide that still read at half the text width: two side by side.
PAIRED = (LATENT_MAP, USAGE)


# --- building blocks -----------------------------------------------------------------------

def make_styles() -> dict[str, ParagraphStyle]:
    """Body 9.5 pt, tables 8 pt, captions 8.5 pt; headings unnumbered."""
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontSize=9.5, leading=12.5,
                          spaceAfter=4)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=15, leading=19,
                                spaceAfter=2),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontSize=14, leading=17, spaceBefore=6,
                             keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=11.5, leading=14, keepWithNext=1),
        "h3": ParagraphStyle("h3", parent=base["Heading3"], fontSize=10, leading=12.5, keepWithNext=1),
        "body": body,
        # a paragraph that introduces the table below it: kept on the same page
        "lead": ParagraphStyle("lead", parent=body, keepWithNext=1),
        "meta": ParagraphStyle("meta", parent=body, fontSize=8.5, leading=10.5,
                               textColor=colors.HexColor("#555555"), alignment=TA_CENTER),
        "bullet": ParagraphStyle("bullet", parent=body, leftIndent=12, bulletIndent=2, spaceAfter=3),
        # page 1's answer: one item per dataset, rate and section, with the headline below
        "answer": ParagraphStyle("answer", parent=body, fontSize=8.5, leading=10.5, leftIndent=12,
                                 bulletIndent=2, spaceAfter=2),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8.5, leading=10.5,
                                  fontName="Helvetica-Oblique", spaceAfter=8),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=9.5, spaceAfter=0),
        "head": ParagraphStyle("head", parent=body, fontSize=8, leading=9.5, spaceAfter=0,
                               fontName="Helvetica-Bold", alignment=TA_CENTER),
        "small": ParagraphStyle("small", parent=body, fontSize=7.5, leading=9, spaceAfter=0,
                                alignment=TA_CENTER),
        "num": ParagraphStyle("num", parent=body, fontSize=8, leading=9.5, spaceAfter=0,
                              alignment=TA_CENTER),
    }


def para(md: str, style) -> Paragraph:
    """A Paragraph of text in report.formatting's Markdown subset."""
    return Paragraph(F.to_markup(md), style)


def bullets(texts, styles, style: str = "bullet") -> list:
    """One bulleted Paragraph per Markdown text (in ``styles[style]``)."""
    return [Paragraph(F.to_markup(t), styles[style], bulletText="•") for t in texts]


# Left and right padding of every table cell (points).
CELL_PADDING = 3


def table(data, col_widths, extra_style=()) -> Table:
    """A grid table with a grey header row repeated across pages."""
    t = Table(data, colWidths=col_widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), "Helvetica", 8), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
        ("ALIGN", (1, 1), (-1, -1), "CENTER"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        *extra_style]))
    return t


def fit(cell, width: float, style: ParagraphStyle, bold: bool = False):
    """A text cell as a Paragraph that wraps within ``width`` (a column's width), its
    ' ± ' broken onto a line of its own when the text is wider than the column;
    any other cell (a Paragraph, an image) as it is."""
    if not isinstance(cell, str):
        return cell
    font = "Helvetica-Bold" if bold else style.fontName
    text = escape(cell)
    if stringWidth(cell, font, style.fontSize) > width - 2 * CELL_PADDING:
        text = text.replace(" ± ", "<br/>± ")
    return Paragraph(f"<b>{text}</b>" if bold else text, style)


def render(data: list[list], fixed: Sequence[float], styles, bold=()) -> Table:
    """``data`` (a heading of strings, then rows of strings or Paragraphs) as a grid
    table across the frame: the first ``len(fixed)`` columns take those fractions of
    its width, the others share the rest equally; every text cell wraps within its
    column (:func:`fit`); ``bold``: (row, column) of ``data`` in bold."""
    n_free = len(data[0]) - len(fixed)
    free = (1 - sum(fixed)) / max(n_free, 1)
    widths = [w * FRAME_WIDTH for w in [*fixed] + [free] * n_free]
    head = [Paragraph(h, styles["head"]) for h in data[0]]
    body = [[fit(cell, w, styles["cell" if j == 0 else "num"], (i, j) in bold)
             for j, (cell, w) in enumerate(zip(row, widths))]
            for i, row in enumerate(data[1:], start=1)]
    return table([head, *body], widths)


def cell_overflows(t: Table) -> list[tuple[int, int, str]]:
    """(row, column, text) of every cell of ``t`` whose text cannot fit its column:
    a Paragraph whose widest word, or a string whose widest line, is wider than
    the column less its padding (reportlab's own measures: Paragraph.minWidth,
    stringWidth in the cell's font)."""
    out = []
    for i, row in enumerate(t._cellvalues):
        for j, value in enumerate(row):
            cs = t._cellStyles[i][j]
            room = t._argW[j] - cs.leftPadding - cs.rightPadding
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, Paragraph):
                    need, text = v.minWidth(), v.getPlainText()
                elif isinstance(v, str) and v:
                    need = max(stringWidth(line, cs.fontname, cs.fontsize) for line in v.split("\n"))
                    text = v
                else:
                    continue
                if need > room + 0.01:
                    out.append((i, j, text))
    return out


def tables_in(story) -> list[Table]:
    """Every Table of ``story``, those inside KeepTogether, KeepInFrame and other
    tables' cells included."""
    out = []
    for f in story:
        if isinstance(f, Table):
            out.append(f)
            out += tables_in(v for row in f._cellvalues for cell in row
                             for v in (cell if isinstance(cell, (list, tuple)) else [cell]))
        elif isinstance(f, (KeepTogether, KeepInFrame)):
            out += tables_in(f._content)
    return out


def image_size(source) -> tuple[int, int]:
    """(width, height) in pixels of a PNG path or bytes buffer."""
    if isinstance(source, io.BytesIO):
        source = io.BytesIO(source.getvalue())
    return ImageReader(source if not isinstance(source, Path) else str(source)).getSize()


def fitted_image(source, width: float, max_height: float) -> Image:
    """The image at ``width`` (narrower if it would be taller than ``max_height``)."""
    w_px, h_px = image_size(source)
    height = width * h_px / w_px
    if height > max_height:
        width, height = width * max_height / height, max_height
    src = str(source) if isinstance(source, Path) else io.BytesIO(source.getvalue())
    return Image(src, width=width, height=height)


def caption_height(caption: str, styles, width: float) -> float:
    """The height a caption takes at ``width``."""
    return Paragraph(caption, styles["caption"]).wrap(width, FRAME_HEIGHT)[1] + 8


def figure(path: Path, caption: str, styles, max_height: float = FIGURE_MAX) -> KeepTogether:
    """A PNG at the text width, image and caption together at most ``max_height``."""
    room = max_height - caption_height(caption, styles, FRAME_WIDTH)
    return KeepTogether([fitted_image(path, FRAME_WIDTH, room), Paragraph(caption, styles["caption"])])


def figure_pair(left: tuple, right: tuple, styles) -> Table:
    """Two (path, caption) figures side by side, each half the text width."""
    half = FRAME_WIDTH / 2 - 4
    cells = []
    for path, caption in (left, right):
        room = FIGURE_MAX - caption_height(caption, styles, half)
        cells.append([fitted_image(path, half, room), Paragraph(caption, styles["caption"])])
    t = Table([cells], colWidths=[FRAME_WIDTH / 2] * 2, hAlign="LEFT")
    t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                           ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 4)]))
    return t


def figure_flowables(items, styles, counter: list) -> list:
    """(name, path, caption) items in order, numbered 'Figure n.' across the report;
    two adjacent PAIRED figures go side by side."""
    out, i = [], 0
    while i < len(items):
        pair = (i + 1 < len(items) and items[i][0] in PAIRED and items[i + 1][0] in PAIRED)
        chunk = items[i:i + 2] if pair else items[i:i + 1]
        numbered = []
        for _, path, caption in chunk:
            counter[0] += 1
            numbered.append((path, f"Figure {counter[0]}. {caption}"))
        out.append(figure_pair(*numbered, styles) if pair else figure(*numbered[0], styles))
        i += len(chunk)
    return out


def footer(canvas, doc) -> None:
    """Page number at the bottom centre."""
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.drawCentredString(A4[0] / 2, PAGE_MARGIN / 2, f"page {doc.page}")
    canvas.restoreState()


# --- page 1 ----------------------------------------------------------------------------------

class BreakOnPageOne(ActionFlowable):
    """A page break while on page 1 only: when a long answer pushed the headline
    figure onto page 2, the details follow it there instead of leaving that page
    half empty."""

    def apply(self, doc) -> None:
        if doc.page == 1:
            doc.handle_pageBreak()


def lines(md: str, style) -> Paragraph:
    """A Paragraph of Markdown-subset text whose '\\n' break the line."""
    return Paragraph(F.to_markup(md).replace("\n", "<br/>"), style)


def answer_table(table: AN.AnswerTable, styles) -> Table:
    """Page 1's answer table (report.answer.answer_table) laid out."""
    rows = [[lines(c, styles["cell" if j < 2 else "num"]) for j, c in enumerate(row)]
            for row in table.rows]
    return render([table.head, *rows], [0.22, 0.18], styles)


HEADLINE_CAPTION = (
    "Figure 1. Test MSE and sample FID against bits per image (mean ± std over seeds); "
    "dashed: unquantized VAEs.")


def built_from(root: Path) -> str:
    """' from <root>' for a report built from other results than the published ones."""
    return "" if Path(root).resolve() == RESULTS.resolve() else f" from {F.display_path(root)}"


def page_one(results: Results, answer: AN.ShortAnswer, headline: io.BytesIO | None, styles) -> list:
    """Title, the question in two sentences, the answer in one, the answer table,
    the headline figure; then a page break (when all of it fits page 1)."""
    story = [Paragraph("A-posteriori geodesic quantization of VAE latents vs. an end-to-end "
                       "VQ-VAE", styles["title"]),
             para(f"Built {datetime.date.today().isoformat()}{built_from(results.root)}; "
                  f"provenance in the appendix.", styles["meta"]),
             Paragraph("Question", styles["h2"]), para(ST.question_text(), styles["body"]),
             Paragraph("Answer", styles["h2"]), para(answer.sentence, styles["body"]),
             answer_table(answer.table, styles), Spacer(1, 3),
             para(answer.table_note, styles["caption"])]
    if headline is not None:
        caption = Paragraph(HEADLINE_CAPTION, styles["caption"])
        image = fitted_image(headline, FRAME_WIDTH, HEADLINE_MAX)
        story += [CondPageBreak(HEADLINE_MIN),
                  KeepInFrame(0, HEADLINE_MAX, [image, caption], mode="shrink")]
    return story + [BreakOnPageOne()]


def heading(md: str, styles, level: str = "h1", room: float = 0.2) -> list:
    """A heading that starts a new page unless ``room`` of the frame's height is
    left below it, so that it never ends a page (its style keeps it with the next
    flowable too)."""
    return [CondPageBreak(room * FRAME_HEIGHT), Paragraph(F.to_markup(md), styles[level])]


SENSITIVITY = "Sensitivity: fixed training budgets"


def findings_section(answer: AN.ShortAnswer, styles) -> list:
    """Every finding in one item (the verdicts with their numbers, the ablation, the
    extra sections), the tuned protocol's first when there are any (page 1 reads them),
    then the fixed-budget ones as the sensitivity check; and how their words are decided."""
    if not answer.tuned_items:
        return (heading("Findings", styles) + bullets(answer.items, styles, "answer")
                + [para(answer.note, styles["caption"])])
    return (heading("Findings: the tuned protocol", styles)
            + bullets(answer.tuned_items, styles, "answer")
            + heading(SENSITIVITY, styles, "h2", 0.15) + bullets(answer.items, styles, "answer")
            + [para(answer.note, styles["caption"])])


SENSITIVITY_INTRO = ("The rows below train every model for a set number of epochs with one "
                     "setting per side and judge the a-posteriori methods at their default "
                     "cells with frozen decoders. Page 1 reads the tuned rows above in their "
                     "place wherever those exist; these rows show how far the verdicts move "
                     "with the training budget.")


# --- the details -------------------------------------------------------------------------------

def methods_section(results: Results, styles) -> list:
    """What each method is and how many bits per image it spends."""
    data = [[Paragraph(h, styles["head"]) for h in ("method", "what it is", "bits per image", "role")]]
    data += [[para(f"**{m}**", styles["cell"]), para(what, styles["cell"]),
              para(bits, styles["cell"]), para(role, styles["cell"])]
             for m, what, bits, role in ST.methods_rows(results)]
    widths = [w * FRAME_WIDTH for w in (0.17, 0.43, 0.12, 0.28)]
    return [*heading("Methods and bit budgets", styles), table(data, widths),
            Spacer(1, 6), para(ST.methods_text(results), styles["body"]),
            Paragraph("How a winner is called", styles["h2"]), para(ST.RULE, styles["body"])]


def setup_section(results: Results, styles) -> list:
    """The appendix's set-up: one table per up to three (dataset, setting) columns."""
    story = heading("Set-up and configurations", styles, "h2") + [para(
        f"From the run records and {ST.COMPARISON_CSV}. Wall time sums fit and evaluation seconds "
        f"of every row; models reused from the cache count only their loading time.",
        styles["body"])]
    groups = results.groups
    for start in range(0, len(groups), 3):
        chunk = groups[start:start + 3]
        facts = [ST.setup_facts(results, *g) for g in chunk]
        head = [""] + [VT.group_label(results, *g) for g in chunk]
        data = [head] + [[label] + [f[label] for f in facts] for label in facts[0]]
        story += [render(data, [0.25], styles), Spacer(1, 8)]
    return story


def provenance_section(results: Results, extras, styles) -> list:
    """Every commit that produced a published row, with its dirty flag
    (report.provenance)."""
    others = [path for path, _, _ in present_extras(results, extras)]
    frame = provenance(results.root, results.cells, others)
    data = [["folder", "table", "dataset", "commit", "dirty", "methods", "rows"]]
    for r in frame.itertuples():
        folder, _, name = r.table.rpartition("/")
        data.append([folder or "(main)", name, F.run_label(r.dataset, r.setting, [r.dataset_used]),
                     r.commit,
                     "yes" if r.dirty else "no", r.methods, str(r.n_rows)])
    return heading("Provenance", styles, "h2") + [para(
        "The git commit of the run that produced each published row, and whether that checkout had "
        "uncommitted changes: the run record that stood beside the row when it first appeared in "
        "the history of its table (report/provenance.py).", styles["body"]),
        render(data, [0.19, 0.14, 0.12, 0.11, 0.1, 0.27], styles)]


def best_rows(rows: pd.DataFrame, metric: str) -> list[int]:
    """Indices of the best mean among each contest's methods at each K."""
    out = []
    higher = R.get(metric).higher_is_better
    for contest in contests():
        sub = rows[rows["method"].isin([contest.proposal, *contest.opponents])
                   & np.isfinite(rows[R.get(metric).mean])]
        for _, group in sub.groupby("K"):
            if len(group) > 1:
                values = group[R.get(metric).mean]
                out += list(values.index[values == (values.max() if higher else values.min())])
    return out


def metric_table(summary: pd.DataFrame, dataset: str, setting: str, metrics, styles) -> Table:
    """method × K rows of mean ± std over seeds; the best of each contest per K in bold."""
    rows = rows_of(summary, dataset, setting).copy()
    rows["order"] = rows["method"].map(list(M.METHODS).index)
    rows = rows.sort_values(["order", "K"]).reset_index(drop=True)
    head = ["method", "K", "seeds"] + ["bits / image" if m == R.BITS.column else
                                       f"{R.get(m).label}<br/>({direction(m)})" for m in metrics]
    data = [head]
    for _, r in rows.iterrows():
        cells = [r["method"], str(int(r["K"])) if r["K"] > 0 else "-", str(int(r["n_seeds"]))]
        for m in metrics:
            mean = r[R.get(m).mean]
            cells.append((f"{mean:g}" if np.isfinite(mean) else "continuous") if m == R.BITS.column
                         else F.fmt_mean_std(mean, r[R.get(m).std]))
        data.append(cells)
    bold = {(1 + i, 3 + j) for j, m in enumerate(metrics) if m != R.BITS.column
            for i in best_rows(rows, m)}
    return render(data, [0.17, 0.07, 0.07], styles, bold)


def comparison_cell(r: pd.Series, a: str, b: str) -> str:
    """'-0.0042<br/>(-8.1%)<br/><b>win*</b> 3/3' from one row of compare_methods."""
    word = {a: "win", b: "loss", "tie": "tie"}[r["better"]]
    mark = f"<b>{word}*</b>" if r["clear"] else word
    return (f"{r['diff']:+.3g}<br/>({F.fmt_rel(r['rel_pct'])})<br/>{mark} "
            f"{r['seeds_a_better']}/{r['n_paired']}")


def comparison_table(tables: dict, a: str, b: str, styles) -> Table:
    """metric × K cells: difference of means (relative %), verdict and paired seeds."""
    ks = sorted({int(k) for t in tables.values() for k in t["K"]})
    data = [[Paragraph("metric", styles["head"])] + [Paragraph(f"K = {k}", styles["head"]) for k in ks]]
    for metric, t in tables.items():
        row = [Paragraph(f"{R.get(metric).label}<br/>({direction(metric)})", styles["cell"])]
        for k in ks:
            r = t[t["K"] == k]
            row.append(Paragraph(comparison_cell(r.iloc[0], a, b) if len(r) else "-", styles["small"]))
        data.append(row)
    label_w = 0.2 * FRAME_WIDTH
    return table(data, [label_w] + [(FRAME_WIDTH - label_w) / len(ks)] * len(ks))


def verdict_summary(results: Results, v: RateVerdict, styles) -> list:
    """One contest on one group, in the main body: its verdict (with the K it rests
    on), the sentences against each opponent, where the proposal loses and the
    cost of quantization."""
    words = VT.verdict_words(v.against[v.main]) if v.against else v.answer
    story = heading(f"At matched bits, {VT.rate_phrase(v.contest)}: {words}", styles, "h2")
    story.append(para(VT.answer_item(v), styles["body"]))
    if v.against:
        story.append(para(VT.losses_sentence(v), styles["body"]))
    return story + bullets(VT.quantization_cost(results, v), styles)


def verdict_details(results: Results, v: RateVerdict, styles) -> list:
    """One contest on one group, in the appendix: per opponent the metric sentences
    and the comparison table of every metric at every K."""
    a, label = v.contest.proposal, VT.verdict_label(v)
    story = []
    for b, ov in v.against.items():
        story += heading(f"{label}, {VT.rate_short(v.contest)}: {a} vs {b} (differences are {a} "
                         f"minus {b})", styles, "h3", 0.15)
        story += bullets([VT.metric_sentence(t, a, b, m) for m, t in ov.tables.items()], styles)
        story += [Spacer(1, 4), KeepTogether([comparison_table(ov.tables, a, b, styles), para(
            f"Each cell: mean of {a} minus mean of {b} (relative to {b}); win/loss: {a}'s mean is "
            f"better/worse; * beyond the spread; k/n: seeds on which {a} is better, paired by "
            f"seed.", styles["caption"])])]
    return story


def cell_table(cell_summary: pd.DataFrame, av: AblationVerdict, metric: str, styles) -> Table:
    """cell × K of mean ± std over seeds of ``metric``, for every cell of both
    sides; the default cells marked, the best mean of each side per K in bold."""
    rows = rows_of(cell_summary, av.dataset, av.setting)
    ks = sorted(int(k) for k in rows[rows["method"].isin(list(av.cells))]["K"].unique() if k > 0)
    data = [["method", "cell", "seeds"] + [f"K = {k}" for k in ks]]
    pick = np.nanmax if R.get(metric).higher_is_better else np.nanmin
    for method, cells in av.cells.items():
        subs = [cell_rows(rows, cell).set_index("K") for cell in cells]
        means = np.array([[sub.at[k, R.get(metric).mean] if k in sub.index else np.nan for k in ks]
                          for sub in subs], dtype=float).reshape(len(subs), len(ks))
        finite = np.isfinite(means)
        # a best only where the cells differ (a fine-tuned decoder leaves the codes, so the
        # label metrics, as they were)
        best = [pick(means[:, j]) if np.unique(means[finite[:, j], j]).size > 1 else np.nan
                for j in range(len(ks))]
        for i, (cell, sub) in enumerate(zip(cells, subs)):
            seeds = sub["n_seeds"].astype(int)
            row = [method, cell.name + (" (default)" if cell.is_default else ""),
                   F.span(str(seeds.min()), str(seeds.max()))]
            for j, k in enumerate(ks):
                if not finite[i, j]:
                    row.append("-")
                    continue
                value = F.fmt_mean_std(means[i, j], sub.at[k, R.get(metric).std]).replace(
                    " ± ", "<br/>± ")
                row.append(Paragraph(f"<b>{value}</b>" if means[i, j] == best[j] else value,
                                     styles["small"]))
            data.append(row)
    return render(data, [0.14, 0.26, 0.07], styles)


def ablation_summary(av: AblationVerdict, fig_dir: Path, results: Results, styles,
                     counter: list) -> list:
    """One group's ablation in the main body: what each factor closes of the gap,
    and the figure of test MSE against K for every cell."""
    story = heading(f"Ablation: the cells of {av.proposal.method} and {av.opponent.method}",
                    styles, "h2") + [para(AB.ablation_item(av), styles["body"])]
    png = draw_ablation_figure(results.cell_summary, av.dataset, av.setting, fig_dir,
                               methods=tuple(av.cells))[0]
    return story + figure_flowables([(ABLATION, png, caption(ABLATION))], styles, counter)


def ablation_cells(results: Results, av: AblationVerdict, styles) -> list:
    """One group's ablation in the appendix: what the cells are, the computed
    sentences per K and a table per metric of every cell and K."""
    record = results.records.get((av.dataset, av.setting), {})
    story = heading(f"{VT.verdict_label(av)}: the ablation cells", styles, "h2") + [
        para(AB.ablation_intro(av, record), styles["body"])]
    story += bullets(AB.ablation_sentences(av), styles)
    for metric in ABLATION_TABLE_METRICS:
        if R.get(metric).mean not in results.cell_summary:
            continue
        story += [Spacer(1, 4), KeepTogether([
            Paragraph(f"Table: {R.get(metric).label} by cell ({direction(metric)})", styles["h3"]),
            cell_table(results.cell_summary, av, metric, styles)])]
    return story + [para(f"Mean ± std over seeds ({ST.SUMMARY_CSV}); seeds: fewest to most over K; "
                         f"in bold, the best cell of each method at each K (on the test split: "
                         f"reported, not used for any verdict).", styles["caption"])]


def caption(name: str) -> str:
    """The caption of a figure: CAPTIONS, or its name for a figure added since."""
    return CAPTIONS.get(name, f"{name.replace('_', ' ').capitalize()} (drawn by the runner).")


def runner_figures(results: Results, dataset: str, setting: str, names) -> list[tuple[str, Path]]:
    """(name, png) of the runner's figures present, in ``names`` order."""
    paths = ResultPaths(results.root)
    pngs = [(name, paths.figure(name, dataset, setting).with_suffix(".png")) for name in names]
    return [(name, png) for name, png in pngs if png.is_file()]


def group_figures(results: Results, dataset: str, setting: str, fig_dir: Path) -> dict:
    """{name: (name, png, caption)} of one group: the figures drawn from summary.csv
    (into ``fig_dir``) and the runner's that are present."""
    drawn = draw_summary_figures(results.summary, dataset, setting, fig_dir)
    items = {name: (name, paths[0], caption(name)) for name, paths in drawn.items()}
    return items | {name: (name, png, caption(name))
                    for name, png in runner_figures(results, dataset, setting, RUNNER_FIGURES)}


def group_section(results: Results, verdicts: list[RateVerdict], dataset: str, setting: str,
                  figures: dict, fig_dir: Path, styles, counter: list,
                  ablation: AblationVerdict | None = None) -> list:
    """One dataset and setting in the main body: what ran, the figures of
    reconstruction and labels against bits, the verdict of every contest, the
    ``ablation`` (when there is one) and the unmatched methods."""
    story = heading(VT.group_label(results, dataset, setting), styles) + [
        para(ST.group_intro(results, dataset, setting), styles["body"])]
    story += figure_flowables([figures[n] for n in TABLE_FIGURES if n in figures], styles, counter)
    for v in verdicts:
        story += verdict_summary(results, v, styles)
    if ablation is not None:
        story += ablation_summary(ablation, fig_dir, results, styles, counter)
    natural = VT.natural_sentences(results, dataset, setting)
    if natural:
        story += heading("At natural bits: methods with more codes per image, and the continuous "
                         "bound", styles, "h2") + bullets(natural, styles)
    return story


def group_appendix(results: Results, verdicts: list[RateVerdict], dataset: str, setting: str,
                   figures: dict, styles, counter: list,
                   ablation: AblationVerdict | None = None) -> list:
    """One dataset and setting in the appendix: the per-K tables of every metric,
    the comparisons at each K, the ablation cells and the further figures."""
    label = VT.group_label(results, dataset, setting)
    story = heading(f"{label}: every metric at every K", styles, "h2") + [para(
        f"Mean ± std over seeds ({ST.SUMMARY_CSV}); in bold, the best of the methods compared at "
        f"matched bits at each K. '-' marks a metric that does not apply.", styles["lead"])]
    for title, metrics in TABLES:
        story += [Paragraph(f"Table: {title} metrics, {label}", styles["h3"]),
                  metric_table(results.summary, dataset, setting, metrics, styles), Spacer(1, 6)]
    for v in verdicts:
        story += verdict_details(results, v, styles)
    if ablation is not None:
        story += ablation_cells(results, ablation, styles)
    later = [figures[n] for n in LATER_FIGURES if n in figures]
    if later:
        story += heading(f"{label}: further figures", styles, "h2", 0.3)
    return story + figure_flowables(later, styles, counter)


def extras_sections(results: Results, extras, styles, part: str = "details",
                    protocol: str | None = None) -> list:
    """The ``part`` ('details': the main body's, 'appendix') of every Extra of
    ``extras`` whose CSV is present; only those of ``protocol`` when given."""
    story = []
    for _, frame, extra in present_extras(results, extras, protocol):
        make = getattr(extra, part)
        if make is not None:
            story += make(results, frame, styles)
    return story


def limitations_section(results: Results, styles) -> list:
    """Computed facts, then the caveats that hold for every run."""
    return (heading("Limitations", styles)
            + bullets(ST.limitation_facts(results), styles)
            + bullets(ST.fixed_limitations(results), styles))


APPENDIX = "Appendix"


def build_story(results: Results, verdicts: list[RateVerdict], answer: AN.ShortAnswer,
                headline: io.BytesIO | None, fig_dir: Path, styles, extras=(),
                ablations: list[AblationVerdict] | None = None) -> list:
    """All sections, in order: page 1, the main body (findings, methods, the tuned
    extras' sections, then as the sensitivity check one section per group of the
    fixed-budget rows and the other extras' sections, limitations), then the appendix (per-K
    tables, comparisons and ablation cells per group, the extras' rows, set-up,
    provenance); ``extras``: report.sections.Extra sections; ``ablations``: the
    groups' AblationVerdicts (default: computed here)."""
    ablations = all_ablations(results) if ablations is None else ablations
    story = page_one(results, answer, headline, styles)
    story += findings_section(answer, styles) + methods_section(results, styles)
    counter = [1]  # Figure 1 is the headline
    groups = []
    for dataset, setting in results.groups:
        mine = [v for v in verdicts if (v.dataset, v.setting) == (dataset, setting)]
        ablation = next((a for a in ablations if (a.dataset, a.setting) == (dataset, setting)),
                        None)
        groups.append((mine, dataset, setting, group_figures(results, dataset, setting, fig_dir),
                       ablation))
    tuned = extras_sections(results, extras, styles, protocol=TUNED)
    story += tuned
    if tuned:
        story += heading(SENSITIVITY, styles) + [para(SENSITIVITY_INTRO, styles["body"])]
    for mine, dataset, setting, figures, ablation in groups:
        story += group_section(results, mine, dataset, setting, figures, fig_dir, styles, counter,
                               ablation)
    story += extras_sections(results, extras, styles, protocol=FIXED)
    story += limitations_section(results, styles)
    story += [PageBreak(), Paragraph(f"{APPENDIX}: per-K tables, ablation cells, β and batch-size "
                                     f"rows, configurations and commits", styles["h1"])]
    for mine, dataset, setting, figures, ablation in groups:
        story += group_appendix(results, mine, dataset, setting, figures, styles, counter,
                                ablation)
    story += extras_sections(results, extras, styles, "appendix")
    return story + setup_section(results, styles) + provenance_section(results, extras, styles)


def write_pdf(story: list, out: Path) -> int:
    """Write ``story`` to ``out`` atomically (A4, page numbers); returns the number of pages.
    The file is invariant (no creation date or random id), so the same results give the
    same bytes and a rebuild changes report.pdf only when its content changes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pages = []
    doc = SimpleDocTemplate(str(tmp), pagesize=A4, leftMargin=PAGE_MARGIN,
                            rightMargin=PAGE_MARGIN, topMargin=PAGE_MARGIN,
                            bottomMargin=PAGE_MARGIN, title="Geodesic VAE quantization vs VQ-VAE",
                            author="vqvae-geodesic", invariant=True)

    def on_page(canvas, d):
        footer(canvas, d)
        pages.append(d.page)

    from reportlab import rl_config

    a85 = rl_config.useA85  # ASCII85 text encoding of binary streams: +25% on every figure
    rl_config.useA85 = 0
    try:
        doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
        os.replace(tmp, out)
    finally:
        rl_config.useA85 = a85
        tmp.unlink(missing_ok=True)
    return len(pages)
