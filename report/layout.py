"""The PDF's layout with reportlab: page 1 carries the answer, the details follow.

Page 1: the question, the short answer (report/text.py, the same words as the
README) and one headline figure (at the top of page 2 when the answer leaves it
too little room). From page 2: methods and bit budgets, the rule,
the set-up, then one section per (dataset, setting) -- tables, the matched-bits
comparisons of every rate's contest, the ablation of the a-posteriori cells
(when the results hold cells other than the default ones), figures -- then the
sections of
``extras`` (report.sections.Extra) whose CSV is present, then the limitations.

No page is left mostly empty: figures are at most :data:`FIGURE_MAX` of the
page tall (so one that does not fit leaves at most that much behind it), each
table is followed by the figure of its metrics, and the square figures that
read at half width (:data:`PAIRED`) go two side by side.
"""
from __future__ import annotations

import datetime
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (ActionFlowable, CondPageBreak, Image, KeepInFrame,
                                KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table,
                                TableStyle)

from report import formatting as F
from report import text as T
from report.figures import (ABLATION, LABEL_METRICS, METRIC_GRID, RATE_DISTORTION,
                            draw_ablation_figure, draw_summary_figures)
from report.load import Results
from report.sections import present_extras
from report.verdicts import (ABLATION_METRIC, AblationVerdict, RateVerdict, all_ablations,
                             cell_rows, contests, direction, rows_of)
from utils import methods as M
from utils import metric_registry as R
from utils.paths import RUNNER_FIGURE_CAPTIONS, RUNNER_FIGURES, ResultPaths

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
    }


def para(md: str, style) -> Paragraph:
    """A Paragraph of text in report.text's Markdown subset."""
    return Paragraph(F.to_markup(md), style)


def bullets(texts, styles, style: str = "bullet") -> list:
    """One bulleted Paragraph per Markdown text (in ``styles[style]``)."""
    return [Paragraph(F.to_markup(t), styles[style], bulletText="•") for t in texts]


def table(data, col_widths, extra_style=()) -> Table:
    """A grid table with a grey header row repeated across pages."""
    t = Table(data, colWidths=col_widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), "Helvetica", 8), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
        ("ALIGN", (1, 1), (-1, -1), "CENTER"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        *extra_style]))
    return t


def render(data: list[list], fixed: Sequence[float], styles, extra_style=()):
    """``data`` (a heading of strings, then rows of strings or Paragraphs) as a grid
    table across the frame: the first ``len(fixed)`` columns take those fractions of
    its width, the others share the rest equally; ``extra_style``: more TableStyle
    commands (e.g. bold cells)."""
    n_free = len(data[0]) - len(fixed)
    free = (1 - sum(fixed)) / max(n_free, 1)
    head = [Paragraph(h, styles["head"]) for h in data[0]]
    return table([head, *data[1:]], [w * FRAME_WIDTH for w in [*fixed] + [free] * n_free],
                 extra_style)


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


def page_one(results: Results, answer: T.ShortAnswer, headline: io.BytesIO | None, styles) -> list:
    """Title, question, the short answer, the headline figure; then a page break
    (when all of it fits page 1)."""
    commits = T.run_commits(results.records)
    story = [Paragraph(f"A-posteriori geodesic quantization of VAE latents vs. an end-to-end "
                       f"VQ-VAE", styles["title"]),
             para(f"Comparison report, built {datetime.date.today().isoformat()} from "
                  f"{T.display_path(results.root)} (runs at git commit{'s' * (',' in commits)} "
                  f"{commits}).", styles["meta"]),
             Paragraph("Question", styles["h2"]), para(T.question_text(), styles["body"]),
             Paragraph("Answer", styles["h2"]), para(answer.lead, styles["body"])]
    story += bullets(answer.items, styles, "answer")
    story.append(para(answer.note + " Details, spreads and per-K tables follow from page 2.",
                      styles["caption"]))
    if headline is not None:
        caption = Paragraph(
            "Figure 1. The headline: test MSE and code-to-label accuracy against the codebook "
            "size K for the methods compared at matched bits (log2 K bits per image), mean ± std "
            "over seeds; the dashed line and band are the unquantized VAE.", styles["caption"])
        image = fitted_image(headline, FRAME_WIDTH, HEADLINE_MAX)
        story += [CondPageBreak(HEADLINE_MIN),
                  KeepInFrame(0, HEADLINE_MAX, [image, caption], mode="shrink")]
    return story + [BreakOnPageOne()]


# --- the details -------------------------------------------------------------------------------

def methods_section(results: Results, styles) -> list:
    """What each method is and how many bits per image it spends."""
    data = [[Paragraph(h, styles["head"]) for h in ("method", "what it is", "bits per image", "role")]]
    data += [[para(f"**{m}**", styles["cell"]), para(what, styles["cell"]),
              para(bits, styles["cell"]), para(role, styles["cell"])]
             for m, what, bits, role in T.methods_rows(results)]
    widths = [w * FRAME_WIDTH for w in (0.17, 0.43, 0.12, 0.28)]
    return [Paragraph("Methods and bit budgets", styles["h1"]), table(data, widths),
            Spacer(1, 6), para(T.methods_text(results), styles["body"]),
            Paragraph("How a winner is called", styles["h2"]), para(T.RULE, styles["body"])]


def setup_section(results: Results, styles) -> list:
    """One table per up to three (dataset, setting) columns."""
    story = [Paragraph("Set-up", styles["h1"]), para(
        f"From the run records and {T.COMPARISON_CSV}. Wall time sums fit and evaluation seconds "
        f"of every row; models reused from the cache count only their loading time.",
        styles["body"])]
    groups = results.groups
    for start in range(0, len(groups), 3):
        chunk = groups[start:start + 3]
        facts = [T.setup_facts(results, *g) for g in chunk]
        head = [Paragraph("", styles["head"])] + [para(f"{d}, {s}", styles["head"]) for d, s in chunk]
        data = [head] + [[para(label, styles["cell"])] + [para(f[label], styles["cell"]) for f in facts]
                         for label in facts[0]]
        label_w = 0.25 * FRAME_WIDTH
        story += [table(data, [label_w] + [(FRAME_WIDTH - label_w) / len(chunk)] * len(chunk)),
                  Spacer(1, 8)]
    return story


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
    bold = [("FONT", (3 + j, 1 + i), (3 + j, 1 + i), "Helvetica-Bold", 8)
            for j, m in enumerate(metrics) if m != R.BITS.column for i in best_rows(rows, m)]
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


def verdict_details(results: Results, v: RateVerdict, styles) -> list:
    """One contest on one group: per opponent the metric sentences and the
    comparison table, then where the proposal loses and the cost of quantization."""
    a = v.contest.proposal
    story = [Paragraph(F.to_markup(f"At matched bits, {T.rate_phrase(v.contest)}: "
                                   f"{T.verdict_words(v.against[v.main]) if v.against else v.answer}"),
                      styles["h2"])]
    if not v.against:
        return story + [para(T.answer_item(v), styles["body"])]
    for b, ov in v.against.items():
        story.append(Paragraph(f"{a} vs {b} (differences are {a} minus {b})", styles["h3"]))
        story += bullets([T.metric_sentence(t, a, b, m) for m, t in ov.tables.items()], styles)
        story += [Spacer(1, 4), KeepTogether([comparison_table(ov.tables, a, b, styles), para(
            f"Each cell: mean of {a} minus mean of {b} (relative to {b}); win/loss: {a}'s mean is "
            f"better/worse; * beyond the spread; k/n: seeds on which {a} is better, paired by "
            f"seed.", styles["caption"])])]
    story.append(para(T.losses_sentence(v), styles["body"]))
    return story + bullets(T.quantization_cost(results, v), styles)


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


def ablation_section(results: Results, av: AblationVerdict, fig_dir: Path, styles,
                     counter: list) -> list:
    """One group's ablation: what the cells are, the computed sentences, a table
    per metric of every cell and K, and the figure of test MSE against K."""
    record = results.records.get((av.dataset, av.setting), {})
    story = [Paragraph(f"Ablation: the cells of {av.proposal.method} and {av.opponent.method}",
                       styles["h2"]), para(T.ablation_intro(av, record), styles["body"])]
    story += bullets(T.ablation_sentences(av), styles)
    for metric in ABLATION_TABLE_METRICS:
        if R.get(metric).mean not in results.cell_summary:
            continue
        story += [Spacer(1, 4), KeepTogether([
            Paragraph(f"Table: {R.get(metric).label} by cell ({direction(metric)})", styles["h3"]),
            cell_table(results.cell_summary, av, metric, styles)])]
    story.append(para(f"Mean ± std over seeds ({T.SUMMARY_CSV}); seeds: fewest to most over K; in "
                      f"bold, the best cell of each method at each K (on the test split: reported, "
                      f"not used for any verdict).", styles["caption"]))
    png = draw_ablation_figure(results.cell_summary, av.dataset, av.setting, fig_dir,
                               methods=tuple(av.cells))[0]
    return story + figure_flowables([(ABLATION, png, caption(ABLATION))], styles, counter)


def caption(name: str) -> str:
    """The caption of a figure: CAPTIONS, or its name for a figure added since."""
    return CAPTIONS.get(name, f"{name.replace('_', ' ').capitalize()} (drawn by the runner).")


def runner_figures(results: Results, dataset: str, setting: str, names) -> list[tuple[str, Path]]:
    """(name, png) of the runner's figures present, in ``names`` order."""
    paths = ResultPaths(results.root)
    pngs = [(name, paths.figure(name, dataset, setting).with_suffix(".png")) for name in names]
    return [(name, png) for name, png in pngs if png.is_file()]


def group_section(results: Results, verdicts: list[RateVerdict], dataset: str, setting: str,
                  fig_dir: Path, styles, counter: list,
                  ablation: AblationVerdict | None = None) -> list:
    """One dataset and setting: each table with the figure of its metrics, the
    comparisons of every contest, the ``ablation`` (when there is one), the
    unmatched methods, the other figures."""
    summary = results.summary
    used = F.unique_text(rows_of(summary, dataset, setting)["dataset_used"])
    story = [Paragraph(f"{dataset}, {setting} setting", styles["h1"]), para(
        f"Dataset used: {used}. Mean ± std over seeds ({T.SUMMARY_CSV}); in bold, the best of the "
        f"methods compared at matched bits at each K. '-' marks a metric that does not apply.",
        styles["body"])]
    drawn = draw_summary_figures(summary, dataset, setting, fig_dir)
    items = {name: (name, paths[0], caption(name)) for name, paths in drawn.items()}
    items |= {name: (name, png, caption(name))
              for name, png in runner_figures(results, dataset, setting, RUNNER_FIGURES)}
    for (title, metrics), name in zip(TABLES, TABLE_FIGURES):
        story += [Paragraph(f"Table: {title} metrics", styles["h3"]),
                  metric_table(summary, dataset, setting, metrics, styles), Spacer(1, 6)]
        story += figure_flowables([items[name]] if name in items else [], styles, counter)
    for v in verdicts:
        story += verdict_details(results, v, styles)
    if ablation is not None:
        story += ablation_section(results, ablation, fig_dir, styles, counter)
    natural = T.natural_sentences(results, dataset, setting)
    if natural:
        story += [Paragraph("At natural bits: methods with more codes per image, and the "
                            "continuous bound", styles["h2"])] + bullets(natural, styles)
    later = [items[n] for n in LATER_FIGURES if n in items]
    return story + figure_flowables(later, styles, counter)


def extras_sections(results: Results, extras, styles) -> list:
    """The details of every Extra of ``extras`` whose CSV is present."""
    story = []
    for _, frame, extra in present_extras(results, extras):
        if extra.details is not None:
            story += extra.details(results, frame, styles)
    return story


def limitations_section(results: Results, styles) -> list:
    """Computed facts, then the caveats that hold for every run."""
    return ([Paragraph("Limitations", styles["h1"])]
            + bullets(T.limitation_facts(results), styles)
            + bullets(T.fixed_limitations(results), styles))


def build_story(results: Results, verdicts: list[RateVerdict], answer: T.ShortAnswer,
                headline: io.BytesIO | None, fig_dir: Path, styles, extras=(),
                ablations: list[AblationVerdict] | None = None) -> list:
    """All sections, in order; ``extras``: report.sections.Extra sections;
    ``ablations``: the groups' AblationVerdicts (default: computed here)."""
    ablations = all_ablations(results) if ablations is None else ablations
    story = page_one(results, answer, headline, styles)
    story += methods_section(results, styles) + setup_section(results, styles)
    counter = [1]  # Figure 1 is the headline
    for dataset, setting in results.groups:
        mine = [v for v in verdicts if (v.dataset, v.setting) == (dataset, setting)]
        ablation = next((a for a in ablations if (a.dataset, a.setting) == (dataset, setting)),
                        None)
        story += group_section(results, mine, dataset, setting, fig_dir, styles, counter,
                               ablation)
    return story + extras_sections(results, extras, styles) + limitations_section(results, styles)


def write_pdf(story: list, out: Path) -> int:
    """Write ``story`` to ``out`` atomically (A4, page numbers); returns the number of pages."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pages = []
    doc = SimpleDocTemplate(str(tmp), pagesize=A4, leftMargin=PAGE_MARGIN,
                            rightMargin=PAGE_MARGIN, topMargin=PAGE_MARGIN,
                            bottomMargin=PAGE_MARGIN, title="Geodesic VAE quantization vs VQ-VAE",
                            author="vqvae-geodesic")

    def on_page(canvas, d):
        footer(canvas, d)
        pages.append(d.page)

    try:
        doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(pages)
