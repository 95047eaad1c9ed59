"""Build the comparison report (PDF) from the files train/run_comparison.py wrote.

    python report/build_report.py --results-dir experiments/results --out report/report.pdf

Reads <results-dir>/comparison.csv (one row per dataset, setting, method, K,
seed), summary.csv (mean and std over seeds), comparison_<dataset>_<setting>_run.json
(the run records) and the runner's own figures in <results-dir>/figures/; draws
the CSV-driven figures into that folder (utils/report_figures.py) and writes the
PDF with reportlab. Every number in the text is computed from those files.
"""
from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate,
                                Spacer, Table, TableStyle)

from utils.cli import make_parser, run_main
from utils.errors import UserError
from utils.report_figures import (MATCHED_METHODS, METHOD_ORDER, METRICS, direction,
                                  draw_report_figures)

PAGE_MARGIN = 2 * cm
FRAME_WIDTH = A4[0] - 2 * PAGE_MARGIN
FRAME_HEIGHT = A4[1] - 2 * PAGE_MARGIN
PROPOSAL = "geodesic-vae"
OPPONENTS = ("kmeans-vae", "vqvae-global")  # the ablation first, then the end-to-end baseline
# The key metrics, split in two tables that fit the page width at 8 pt.
TABLES = (("reconstruction", ("bits_per_image", "test_mse", "psnr", "test_bce")),
          ("codes", ("nmi", "code_to_label_accuracy", "usage", "geodesic_distortion")))
# PSNR is a monotone function of each run's MSE, so the conclusion does not count it twice.
CONCLUSION_METRICS = ("test_mse", "test_bce", "nmi", "code_to_label_accuracy", "usage",
                      "geodesic_distortion")
# geodesic_distortion is what geodesic k-medoids minimises: it is reported, not used for the answer.
ANSWER_METRICS = ("test_mse", "test_bce", "nmi", "code_to_label_accuracy", "usage")
RUNNER_FIGURES = (
    ("codebooks", "Decoded codebooks of every method, side by side (drawn by the runner)."),
    ("reconstructions", "Test images and their reconstructions by every method (drawn by the runner)."),
    ("latent_map", "2-D map of the VAE latent means with the geodesic medoids and the k-means "
                   "centroids (drawn by the runner)."),
    ("usage", "Code-usage histograms (drawn by the runner)."),
)
RULE_TEXT = ("A method <i>beats</i> another beyond the spread at a codebook size K when the "
             "difference of their means over seeds exceeds the sum of their standard deviations "
             "over seeds, |mean<sub>A</sub> - mean<sub>B</sub>| &gt; std<sub>A</sub> + "
             "std<sub>B</sub> (sample std, as in summary.csv); otherwise, or with a single seed, "
             "there is <i>no clear winner</i>. The number of seeds on which one method is better, "
             "paired by seed in comparison.csv, is given alongside.")


def parse_args(argv=None):
    """--results-dir and --out."""
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--results-dir", type=Path, default=Path("experiments/results"),
                   help="folder with comparison.csv, summary.csv, the run records and figures/")
    p.add_argument("--out", type=Path, default=Path("report/report.pdf"), help="the PDF to write")
    return p.parse_args(argv)


# --- reading the runner's files ------------------------------------------------------

def load_results(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """comparison.csv and summary.csv; a missing or empty one is a UserError naming it."""
    frames = []
    for name in ("comparison.csv", "summary.csv"):
        path = Path(results_dir) / name
        if not path.is_file():
            raise UserError(f"{path} missing; run make full (or python train/run_comparison.py "
                            f"--results-dir {results_dir})")
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
        if frame.empty:
            raise UserError(f"{path} has no rows; run make full (or python train/run_comparison.py "
                            f"--results-dir {results_dir})")
        frames.append(frame)
    return frames[0], frames[1]


def load_run_record(results_dir: Path, dataset: str, setting: str) -> dict:
    """comparison_<dataset>_<setting>_run.json, or {} when the runner left none."""
    path = Path(results_dir) / f"comparison_{dataset}_{setting}_run.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def result_groups(comparison: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, setting) pairs present: every full one before every quick one,
    datasets in the order they first appear."""
    pairs = list(dict.fromkeys(zip(comparison["dataset"], comparison["setting"])))
    return sorted(pairs, key=lambda p: (p[1] != "full", p[1]))


def rows_of(frame: pd.DataFrame, dataset: str, setting: str) -> pd.DataFrame:
    """Rows of one dataset and setting."""
    return frame[(frame["dataset"] == dataset) & (frame["setting"] == setting)]


# --- the conclusion, computed ---------------------------------------------------------

def values_by_k_seed(rows: pd.DataFrame, method: str, metric: str, ks) -> pd.DataFrame:
    """Finite values of one method as columns K, seed, value; vae-continuous
    (K = 0, no codebook) is repeated at every K in ``ks`` as the reference."""
    sub = rows[rows["method"] == method][["K", "seed", metric]].rename(columns={metric: "value"})
    sub = sub[np.isfinite(sub["value"])]
    if method == "vae-continuous":
        sub = pd.concat([sub.assign(K=k) for k in ks], ignore_index=True) if len(sub) else sub
    return sub


def compare_methods(comparison: pd.DataFrame, dataset: str, setting: str, a: str, b: str,
                    metric: str) -> pd.DataFrame:
    """Method ``a`` against ``b`` on ``metric`` at every K where both have values.

    Returns one row per K: mean_a, std_a, mean_b, std_b, n_a, n_b (seeds), diff
    (mean_a - mean_b), rel_pct (diff relative to |mean_b|), better (a, b or
    'tie' by the means), clear (|diff| > std_a + std_b, both with >= 2 seeds),
    winner (a, b or 'none' by that rule), seeds_a_better and n_paired (seeds
    present for both, paired by seed).
    """
    rows = rows_of(comparison, dataset, setting)
    ks = sorted(k for k in rows["K"].unique() if k > 0)
    va, vb = (values_by_k_seed(rows, m, metric, ks) for m in (a, b))
    higher = METRICS[metric][1]
    out = []
    for k in sorted(set(va["K"]) & set(vb["K"])):
        xa, xb = va[va["K"] == k], vb[vb["K"] == k]
        out.append(compare_at_k(xa, xb, a, b, higher) | {"K": int(k)})
    columns = ["K", "mean_a", "std_a", "mean_b", "std_b", "n_a", "n_b", "diff", "rel_pct",
               "better", "clear", "winner", "seeds_a_better", "n_paired"]
    return pd.DataFrame(out, columns=columns)


def compare_at_k(xa: pd.DataFrame, xb: pd.DataFrame, a: str, b: str, higher: bool) -> dict:
    """The comparison of two methods' per-seed values (columns seed, value) at one K."""
    mean_a, mean_b = xa["value"].mean(), xb["value"].mean()
    std_a, std_b = xa["value"].std(), xb["value"].std()  # ddof=1, as summary.csv
    diff = mean_a - mean_b
    sign = 1 if higher else -1
    better = a if sign * diff > 0 else b if sign * diff < 0 else "tie"
    clear = bool(len(xa) >= 2 and len(xb) >= 2 and abs(diff) > std_a + std_b)
    paired = xa.merge(xb, on="seed", suffixes=("_a", "_b"))
    return {"mean_a": mean_a, "std_a": std_a, "mean_b": mean_b, "std_b": std_b,
            "n_a": len(xa), "n_b": len(xb), "diff": diff,
            "rel_pct": 100 * diff / abs(mean_b) if mean_b != 0 else math.nan,
            "better": better, "clear": clear, "winner": better if clear and better != "tie" else "none",
            "seeds_a_better": int((sign * (paired["value_a"] - paired["value_b"]) > 0).sum()),
            "n_paired": len(paired)}


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


def span(low: str, high: str) -> str:
    """'a' when both ends read the same, else 'a to b'."""
    return low if low == high else f"{low} to {high}"


def gap_text(table: pd.DataFrame) -> str:
    """How much: 'difference of means -0.01, -22.2%', or its range over the rows
    (smallest to largest in absolute value); no % where the reference mean is 0."""
    order = table.reindex(table["diff"].abs().sort_values().index)
    lo, hi = order.iloc[0], order.iloc[-1]
    diffs = span(f"{lo['diff']:+.3g}", f"{hi['diff']:+.3g}")
    rels = span(fmt_rel(lo["rel_pct"]), fmt_rel(hi["rel_pct"]))
    noun = "difference" if " to " not in diffs else "differences"
    return f"{noun} of means {diffs}" + ("" if rels == "n/a" else f", {rels}")


def count_clause(table: pd.DataFrame, winner: str, loser: str, metric: str) -> str:
    """'<winner> beats <loser> on <metric> at 2 of 6 K (K = 16, 32; by ...)'."""
    won = table[table["winner"] == winner]
    text = f"{winner} beats {loser} on {METRICS[metric][0]} at {len(won)} of {len(table)} K"
    if len(won):
        where = "" if len(won) == len(table) else f"{fmt_k_list(won['K'])}; "
        text += f" ({where}{gap_text(won)})"
    return text


def metric_clauses(table: pd.DataFrame, a: str, b: str, metric: str) -> str:
    """Counts of clear wins, clear losses and no clear winner of ``a`` against ``b``.

    Differences are always mean of ``a`` minus mean of ``b``; the clause for ``b``
    winning appears only when it wins somewhere.
    """
    parts = [count_clause(table, a, b, metric)]
    if (table["winner"] == b).any():
        parts.append(count_clause(table, b, a, metric))
    none = table[table["winner"] == "none"]
    if len(none):
        leaning = none["better"].value_counts()
        lean = ", ".join(f"{m} better on average at {n}" for m, n in leaning.items() if m != "tie")
        parts.append(f"no clear winner at {len(none)} of {len(table)} K ({fmt_k_list(none['K'])}"
                     + (f"; {lean}" if lean else "") + ")")
    return "; ".join(parts)


def metric_sentence(table: pd.DataFrame, a: str, b: str, metric: str) -> str:
    """'<b>MSE</b> (lower is better): ' and the metric_clauses, as one sentence."""
    return f"<b>{METRICS[metric][0]}</b> ({direction(metric)}): {metric_clauses(table, a, b, metric)}."


def matched_comparisons(comparison: pd.DataFrame, dataset: str, setting: str) -> dict:
    """{opponent: {metric: table}} for geodesic-vae against each opponent at matched
    bits; a metric that does not apply to both methods is left out."""
    result = {}
    for b in OPPONENTS:
        tables = {m: compare_methods(comparison, dataset, setting, PROPOSAL, b, m)
                  for m in CONCLUSION_METRICS}
        result[b] = {m: t for m, t in tables.items() if len(t)}
    return result


def metric_verdict(table: pd.DataFrame, a: str, b: str) -> str:
    """'better' when ``a`` wins beyond the spread at half the K or more and never
    loses beyond it, 'worse' the other way round, else 'unclear'."""
    wins, losses = (table["winner"] == a).sum(), (table["winner"] == b).sum()
    if wins and not losses and 2 * wins >= len(table):
        return "better"
    if losses and not wins and 2 * losses >= len(table):
        return "worse"
    return "unclear"


def join_words(words) -> str:
    """'a', 'a and b', 'a, b and c'."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def metric_groups(tables: dict, b: str) -> dict[str, list[str]]:
    """The answer metrics of geodesic-vae against ``b``, grouped by metric_verdict."""
    groups = {"better": [], "worse": [], "unclear": []}
    for metric in ANSWER_METRICS:
        if metric in tables:
            groups[metric_verdict(tables[metric], PROPOSAL, b)].append(METRICS[metric][0])
    return groups


def describe(groups: dict[str, list[str]]) -> str:
    """'better on MSE and BCE, worse on NMI and without a clear winner on usage'."""
    parts = [f"{word} on {join_words(groups[key])}" for key, word in
             (("better", "better"), ("worse", "worse"), ("unclear", "without a clear winner"))
             if groups[key]]
    return join_words(parts) if parts else "not comparable on any metric"


def overall(groups: dict[str, list[str]]) -> str:
    """yes, no, mixed or no clear difference."""
    if groups["better"] and not groups["worse"]:
        return "yes"
    if groups["worse"] and not groups["better"]:
        return "no"
    return "mixed" if groups["better"] else "no clear difference"


def ablation_clause(groups: dict[str, list[str]]) -> str:
    """What geodesic-vae against kmeans-vae says about the geodesic distances themselves."""
    verdict = overall(groups)
    meaning = {"yes": "so the geodesic distances add a gain of their own",
               "no": "so the geodesic distances cost rather than help",
               "mixed": "so the geodesic distances trade one metric for another",
               "no clear difference": "so the geodesic distances themselves make no clear difference"}
    return f"against the kmeans-vae ablation it is {describe(groups)}, {meaning[verdict]}"


def answer_sentence(dataset: str, setting: str, comparisons: dict, n_seeds: int,
                    collapsed: list[str]) -> str:
    """The answer for one dataset in one plain sentence, whichever way it falls:
    against vqvae-global (the question), then against kmeans-vae (the ablation)."""
    groups = {b: metric_groups(tables, b) for b, tables in comparisons.items() if tables}
    head = f"<b>{escape(dataset)}</b> ({setting} setting, {n_seeds} seed{'s' * (n_seeds != 1)}): "
    if not groups:
        return head + f"no answer: {PROPOSAL} has no matched-bits opponent in these results."
    main = "vqvae-global" if "vqvae-global" in groups else next(iter(groups))
    text = (head + f"<b>{overall(groups[main])}</b> - at matched bits and compared with {main}, "
            f"{PROPOSAL} is {describe(groups[main])}")
    if main != "kmeans-vae" and "kmeans-vae" in groups:
        text += "; " + ablation_clause(groups["kmeans-vae"])
    if collapsed:
        text += f" (but {join_words(collapsed)} collapsed: see Limitations)"
    return text + "."


def losses_paragraph(comparisons: dict) -> str:
    """Where geodesic quantization loses beyond the spread, stated plainly."""
    items = []
    for b, tables in comparisons.items():
        for metric, table in tables.items():
            lost = table[table["winner"] == b]
            if len(lost):
                items.append(f"to {b} on {METRICS[metric][0]} at {fmt_k_list(lost['K'])} "
                             f"({gap_text(lost)})")
    if not items:
        return ("<b>Where geodesic quantization loses:</b> nowhere beyond the seed spread at "
                "matched bits.")
    return f"<b>Where geodesic quantization loses:</b> {PROPOSAL} loses " + "; ".join(items) + "."


def natural_sentences(comparison: pd.DataFrame, dataset: str, setting: str) -> list[str]:
    """vqvae-conv at its natural 49 log2 K bits against the others, on reconstruction,
    and the cost of quantization relative to the continuous VAE."""
    rows = rows_of(comparison, dataset, setting)
    out = []
    conv_bits = rows[rows["method"] == "vqvae-conv"]["bits_per_image"].dropna()
    if len(conv_bits):
        matched = rows[rows["method"].isin(MATCHED_METHODS)]["bits_per_image"].dropna()
        budget = (f"vqvae-conv spends {conv_bits.min():g}-{conv_bits.max():g} bits per image "
                  f"(49 log<sub>2</sub> K), against {matched.min():g}-{matched.max():g} for the "
                  f"one-code methods: 49 times the budget, so this is not a matched comparison."
                  if len(matched) else f"vqvae-conv spends {conv_bits.min():g}-{conv_bits.max():g} "
                                       f"bits per image.")
        out.append(budget)
    for metric in ("test_mse", "test_bce"):
        clauses = []
        for b in ("geodesic-vae", "kmeans-vae", "vqvae-global", "vae-continuous"):
            table = compare_methods(comparison, dataset, setting, "vqvae-conv", b, metric)
            if len(table):
                clauses.append(metric_clauses(table, "vqvae-conv", b, metric))
        if clauses:
            out.append(f"<b>{METRICS[metric][0]}</b> ({direction(metric)}, differences are "
                       f"vqvae-conv minus the other): " + "; ".join(clauses) + ".")
    return out + quantization_cost(comparison, dataset, setting)


def quantization_cost(comparison: pd.DataFrame, dataset: str, setting: str) -> list[str]:
    """MSE of each a-posteriori method above the continuous VAE it decodes through."""
    out = []
    for a in ("kmeans-vae", "geodesic-vae"):
        table = compare_methods(comparison, dataset, setting, a, "vae-continuous", "test_mse")
        if len(table):
            cells = ", ".join(f"{fmt_diff(r['diff'], r['rel_pct'])} at K = {r['K']}"
                              for _, r in table.iterrows())
            out.append(f"Cost of quantization: the MSE of {a} minus that of the continuous VAE "
                       f"(its bound) is {cells}.")
    return out


def collapsed_codebooks(summary: pd.DataFrame, dataset: str, setting: str) -> list[str]:
    """'vqvae-global (perplexity < 2 at K = 16, 64)' for end-to-end models whose
    codebook collapsed to about one code."""
    rows = rows_of(summary, dataset, setting)
    out = []
    for method in ("vqvae-global", "vqvae-conv"):
        sub = rows[(rows["method"] == method) & (rows["perplexity_mean"] < 2)]
        if len(sub):
            out.append(f"{method} (perplexity &lt; 2 at {fmt_k_list(sub['K'])})")
    return out


# --- formatting ----------------------------------------------------------------------

def fmt_mean_std(mean: float, std: float) -> str:
    """'0.1880 ± 0.0058': four significant digits, the std to the same decimals."""
    if not np.isfinite(mean):
        return "-"
    text = f"{mean:#.4g}"
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


# --- reportlab building blocks --------------------------------------------------------

def make_styles() -> dict[str, ParagraphStyle]:
    """Body 9.5 pt, tables 8 pt, captions 8.5 pt; headings unnumbered."""
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontSize=9.5, leading=12.5,
                          spaceAfter=4)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=16, leading=20),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontSize=14, leading=17, spaceBefore=6,
                             keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=11.5, leading=14, keepWithNext=1),
        "h3": ParagraphStyle("h3", parent=base["Heading3"], fontSize=10, leading=12.5, keepWithNext=1),
        "body": body,
        "bullet": ParagraphStyle("bullet", parent=body, leftIndent=12, bulletIndent=2, spaceAfter=2),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8.5, leading=10.5,
                                  fontName="Helvetica-Oblique", spaceAfter=8),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=9.5, spaceAfter=0),
        "head": ParagraphStyle("head", parent=body, fontSize=8, leading=9.5, spaceAfter=0,
                               fontName="Helvetica-Bold", alignment=TA_CENTER),
        "small": ParagraphStyle("small", parent=body, fontSize=7.5, leading=9, spaceAfter=0,
                                alignment=TA_CENTER),
    }


def bullets(texts, styles) -> list:
    """One bulleted Paragraph per text."""
    return [Paragraph(t, styles["bullet"], bulletText="•") for t in texts]


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


def figure(path: Path, caption: str, styles, max_height: float = 0.62 * FRAME_HEIGHT) -> KeepTogether:
    """A PNG at the text width (narrower if it would be taller than ``max_height``), captioned."""
    width_px, height_px = ImageReader(str(path)).getSize()
    width = FRAME_WIDTH
    height = width * height_px / width_px
    if height > max_height:
        width, height = width * max_height / height, max_height
    return KeepTogether([Image(str(path), width=width, height=height),
                         Paragraph(caption, styles["caption"])])


def footer(canvas, doc) -> None:
    """Page number at the bottom centre."""
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.drawCentredString(A4[0] / 2, PAGE_MARGIN / 2, f"page {doc.page}")
    canvas.restoreState()


# --- sections ------------------------------------------------------------------------

def question_section(styles) -> list:
    """The research question, as asked."""
    return [Paragraph("Question", styles["h1"]), Paragraph(
        "Does quantizing a trained VAE's latent space <i>a posteriori</i>, with geodesic distances "
        "on a k-NN graph of the latents (Isomap-style) and geodesic k-medoids as the codebook "
        "(<b>geodesic-vae</b>), give better discrete representations than a classical VQ-VAE "
        "trained end to end (van den Oord et al., 2017)? Better is measured on held-out test "
        "images: reconstruction (MSE, PSNR, BCE), agreement of the codes with the class labels "
        "(NMI, ARI, purity, code-to-label accuracy), codebook use (perplexity, usage) and the "
        "geometry of the codes in the VAE latent space (distortions, intra/inter distances).",
        styles["body"])]


def methods_section(comparison: pd.DataFrame, styles) -> list:
    """What each method is and how many bits per image it spends."""
    ks = sorted(int(k) for k in comparison["K"].unique() if k > 0)
    k_text = f"K in {{{', '.join(map(str, ks))}}}" if ks else "K"
    rows = [
        ("vqvae-global", "end-to-end VQ-VAE, one code per image", "log2 K",
         "the like-for-like baseline at matched bits"),
        ("vqvae-conv", "end-to-end VQ-VAE on a 7 × 7 grid of codes", "49 log2 K",
         "the classical setting; natural bits, not matched"),
        ("kmeans-vae", "Euclidean k-means on the VAE's latent means, decoded by the VAE",
         "log2 K", "ablation: a posteriori but not geodesic"),
        ("geodesic-vae", "geodesic k-medoids on a k-NN graph of the VAE's latent means, decoded "
         "by the VAE", "log2 K", "the proposal"),
        ("vae-continuous", "the VAE itself, unquantized (K = 0)", "-",
         "reference bound of the two a-posteriori methods"),
    ]
    data = [[Paragraph(h, styles["head"]) for h in ("method", "what it is", "bits per image", "role")]]
    data += [[Paragraph(f"<b>{m}</b>", styles["cell"]), Paragraph(what, styles["cell"]),
              Paragraph(bits, styles["cell"]), Paragraph(role, styles["cell"])]
             for m, what, bits, role in rows]
    widths = [0.17 * FRAME_WIDTH, 0.43 * FRAME_WIDTH, 0.12 * FRAME_WIDTH, 0.28 * FRAME_WIDTH]
    text = (f"The sweep uses {k_text}. The three one-code-per-image methods spend exactly "
            f"log<sub>2</sub> K bits per image, so at equal K they are compared at matched bits; "
            f"vqvae-conv spends 49 times as many and is reported at its natural budget. "
            f"Bits count the code indices only (no entropy coding).")
    return [Paragraph("Methods and bit budgets", styles["h1"]), table(data, widths),
            Spacer(1, 6), Paragraph(text, styles["body"])]


def setup_facts(comparison: pd.DataFrame, record: dict, dataset: str, setting: str) -> dict:
    """The set-up of one dataset and setting, as label -> text."""
    rows = rows_of(comparison, dataset, setting)
    config = record.get("config", {})
    used = unique_text(rows["dataset_used"])
    source = record.get("data_source")
    epochs = (f"{config['epochs']} (vqvae-conv: {config.get('conv_epochs', config['epochs'])})"
              if "epochs" in config else unique_text(sorted(rows["epochs"].unique())))
    git = record.get("git", {})
    return {
        "dataset asked": dataset,
        "dataset used": used + (f" (source: {source})" if source else ""),
        "train / test images": f"{unique_text(rows['n_train'].astype(int))} / "
                               f"{unique_text(rows['n_test'].astype(int))}"
                               + (f" (--limit {config['limit']})" if config.get("limit") else ""),
        "seeds": unique_text(sorted(rows["seed"].unique())),
        "epochs": epochs,
        "codebook sizes K": unique_text(sorted(int(k) for k in rows["K"].unique() if k > 0)),
        "k-NN neighbours": unique_text(rows["n_neighbors"].dropna().astype(int)),
        "device": str(record.get("device", "not recorded")),
        "torch threads": str(record.get("torch_threads", "not recorded")),
        "torch / python": f"{record.get('torch', '?')} / {record.get('python', '?')}",
        "git commit": (f"{git.get('commit', '?')[:10]}" + (" (dirty)" if git.get("dirty") else ""))
                      if git else "not recorded",
        "wall time (sum of wall_seconds)": fmt_seconds(rows["wall_seconds"].sum()),
    }


def setup_section(comparison: pd.DataFrame, records: dict, groups, styles) -> list:
    """One table per up to three (dataset, setting) columns."""
    story = [Paragraph("Set-up", styles["h1"]), Paragraph(
        "From the run records (comparison_&lt;dataset&gt;_&lt;setting&gt;_run.json) and "
        "comparison.csv. Wall time sums fit and evaluation seconds of every row; models reused "
        "from the cache count only their loading time.", styles["body"])]
    for start in range(0, len(groups), 3):
        chunk = groups[start:start + 3]
        facts = [setup_facts(comparison, records[g], *g) for g in chunk]
        head = [Paragraph("", styles["head"])] + [Paragraph(f"{escape(d)}, {s}", styles["head"])
                                                  for d, s in chunk]
        data = [head] + [[Paragraph(label, styles["cell"])]
                         + [Paragraph(escape(f[label]), styles["cell"]) for f in facts]
                         for label in facts[0]]
        label_w = 0.25 * FRAME_WIDTH
        story += [table(data, [label_w] + [(FRAME_WIDTH - label_w) / len(chunk)] * len(chunk)),
                  Spacer(1, 8)]
    return story


def metric_table(summary: pd.DataFrame, dataset: str, setting: str, metrics, styles) -> Table:
    """method × K rows of mean ± std over seeds; the best one-code method per K in bold."""
    rows = rows_of(summary, dataset, setting).copy()
    rows["order"] = rows["method"].map(METHOD_ORDER.index)
    rows = rows.sort_values(["order", "K"]).reset_index(drop=True)
    head = ["method", "K", "seeds"] + ["bits / image" if m == "bits_per_image" else
                                       f"{METRICS[m][0]}<br/>({direction(m)})" for m in metrics]
    data = [[Paragraph(h, styles["head"]) for h in head]]
    for _, r in rows.iterrows():
        cells = [r["method"], str(int(r["K"])) if r["K"] > 0 else "-", str(int(r["n_seeds"]))]
        for m in metrics:
            cells.append(f"{r[f'{m}_mean']:g}" if m == "bits_per_image" and np.isfinite(r[f"{m}_mean"])
                         else "continuous" if m == "bits_per_image"
                         else fmt_mean_std(r[f"{m}_mean"], r[f"{m}_std"]))
        data.append(cells)
    bold = [("FONT", (3 + j, 1 + i), (3 + j, 1 + i), "Helvetica-Bold", 8)
            for j, m in enumerate(metrics) if m != "bits_per_image" for i in best_rows(rows, m)]
    fixed = [0.17, 0.07, 0.07]
    free = (1 - sum(fixed)) / len(metrics)
    return table(data, [w * FRAME_WIDTH for w in fixed + [free] * len(metrics)], bold)


def best_rows(rows: pd.DataFrame, metric: str) -> list[int]:
    """Indices of the best mean among the one-code-per-image methods at each K."""
    out = []
    sub = rows[rows["method"].isin(MATCHED_METHODS) & np.isfinite(rows[f"{metric}_mean"])]
    for _, group in sub.groupby("K"):
        if len(group) > 1:
            values = group[f"{metric}_mean"]
            best = values.max() if METRICS[metric][1] else values.min()
            out += list(values.index[values == best])
    return out


def results_subsection(summary, dataset, setting, fig_dir: Path, styles, counter: list) -> list:
    """Tables and figures of one dataset and setting."""
    rows = rows_of(summary, dataset, setting)
    used = unique_text(rows["dataset_used"])
    story = [Paragraph(f"{escape(dataset)}, {setting} setting", styles["h2"]), Paragraph(
        f"Dataset used: {escape(used)}. Mean ± std over seeds (summary.csv); in bold, the best of "
        f"the one-code-per-image methods (vqvae-global, kmeans-vae, geodesic-vae) at each K. "
        f"'-' marks a metric that does not apply.", styles["body"])]
    for title, metrics in TABLES:
        story += [Paragraph(f"Table: {title} metrics", styles["h3"]),
                  metric_table(summary, dataset, setting, metrics, styles), Spacer(1, 6)]
    drawn = draw_report_figures(summary, dataset, setting, fig_dir)
    captions = {
        "rate_distortion": "Test MSE and BCE against bits per image (log scale). The one-code "
                           "methods share the shaded matched-bits band (shifted slightly apart "
                           "to keep error bars readable); vqvae-conv is far right; the dashed "
                           "line is the continuous VAE.",
        "label_metrics": "NMI and code-to-label accuracy against K, one-code-per-image methods.",
        "metric_grid": "Purity, ARI, perplexity, usage, intra/inter ratio (Euclidean, VAE latent "
                       "space) and geodesic distortion against K, where each applies.",
    }
    items = [(paths[0], captions[name]) for name, paths in drawn.items()]
    items += [(fig_dir / f"{name}_{dataset}_{setting}.png", cap) for name, cap in RUNNER_FIGURES
              if (fig_dir / f"{name}_{dataset}_{setting}.png").is_file()]
    for path, caption in items:
        counter[0] += 1
        story.append(figure(path, f"Figure {counter[0]}. {caption}", styles))
    return story


def comparison_table(tables: dict, b: str, styles) -> Table:
    """metric × K cells: difference of means (relative %), verdict and paired seeds."""
    ks = sorted({int(k) for t in tables.values() for k in t["K"]})
    data = [[Paragraph("metric", styles["head"])] + [Paragraph(f"K = {k}", styles["head"]) for k in ks]]
    for metric, t in tables.items():
        row = [Paragraph(f"{METRICS[metric][0]}<br/>({direction(metric)})", styles["cell"])]
        for k in ks:
            r = t[t["K"] == k]
            row.append(Paragraph(comparison_cell(r.iloc[0], b) if len(r) else "-", styles["small"]))
        data.append(row)
    label_w = 0.2 * FRAME_WIDTH
    return table(data, [label_w] + [(FRAME_WIDTH - label_w) / len(ks)] * len(ks))


def comparison_cell(r: pd.Series, b: str) -> str:
    """'-0.0042 (-8.1%)<br/><b>win*</b> 3/3' from one row of compare_methods."""
    word = {PROPOSAL: "win", b: "loss", "tie": "tie"}[r["better"]]
    mark = f"<b>{word}*</b>" if r["clear"] else word
    seeds = f"{r['seeds_a_better']}/{r['n_paired']}"
    return f"{r['diff']:+.3g}<br/>({fmt_rel(r['rel_pct'])})<br/>{mark} {seeds}"


def conclusion_subsection(comparison, dataset, setting, styles) -> list:
    """Matched-bit comparisons of geodesic-vae, where it loses, then the natural setting."""
    comparisons = matched_comparisons(comparison, dataset, setting)
    story = [Paragraph(f"{escape(dataset)}, {setting} setting", styles["h2"])]
    for b, tables in comparisons.items():
        if not tables:
            continue
        story.append(Paragraph(f"At matched bits: {PROPOSAL} vs {b} (differences are {PROPOSAL} "
                               f"minus {b})", styles["h3"]))
        story += bullets([metric_sentence(t, PROPOSAL, b, m) for m, t in tables.items()], styles)
        story += [Spacer(1, 4), KeepTogether([comparison_table(tables, b, styles), Paragraph(
            f"Each cell: mean of {PROPOSAL} minus mean of {b} (relative to {b}); win/loss: "
            f"{PROPOSAL}'s mean is better/worse; * beyond the spread; k/n: seeds on which "
            f"{PROPOSAL} is better, paired by seed.", styles["caption"])])]
    story.append(Paragraph(losses_paragraph(comparisons), styles["body"]))
    natural = natural_sentences(comparison, dataset, setting)
    if natural:
        story.append(Paragraph("The natural setting: vqvae-conv, and the continuous bound",
                               styles["h3"]))
        story += bullets(natural, styles)
    return story


def conclusion_section(comparison, summary, groups, styles) -> list:
    """One answer sentence per dataset (full setting when present), then the details."""
    story = [Paragraph("Conclusion", styles["h1"]), Paragraph(RULE_TEXT, styles["body"])]
    answers = []
    for dataset in dict.fromkeys(d for d, _ in groups):
        setting = "full" if (dataset, "full") in groups else next(s for d, s in groups if d == dataset)
        n_seeds = rows_of(comparison, dataset, setting)["seed"].nunique()
        comparisons = matched_comparisons(comparison, dataset, setting)
        answers.append(answer_sentence(dataset, setting, comparisons,
                                       n_seeds, collapsed_codebooks(summary, dataset, setting)))
    story += [Paragraph("The answer, per dataset", styles["h3"])] + bullets(answers, styles)
    story.append(Paragraph(
        "The answer weighs MSE, BCE, NMI, code-to-label accuracy and usage: <i>better</i> on a "
        "metric means a win beyond the spread at half the K or more and no loss beyond it, "
        "<i>worse</i> the reverse; <i>yes</i> needs at least one metric better and none worse "
        "against vqvae-global, <i>no</i> the reverse, <i>mixed</i> both. Geodesic distortion "
        "is reported below but not counted, since geodesic k-medoids minimises it by construction.",
        styles["body"]))
    for dataset, setting in groups:
        story += conclusion_subsection(comparison, dataset, setting, styles)
    return story


def limitation_facts(comparison: pd.DataFrame, summary: pd.DataFrame, records: dict,
                     groups) -> list[str]:
    """Computed caveats: seeds, epochs, dataset fallbacks, limits, collapsed codebooks."""
    out = []
    for dataset, setting in groups:
        rows = rows_of(comparison, dataset, setting)
        config = records[(dataset, setting)].get("config", {})
        seeds = sorted(rows["seed"].unique())
        epochs = unique_text(sorted(rows["epochs"].unique()))
        used = list(dict.fromkeys(rows["dataset_used"]))
        spread = (f"{len(seeds)} seeds, so the spread is estimated from {len(seeds)} values"
                  if len(seeds) > 1 else "1 seed, so the spread cannot be estimated and no "
                                         "difference is called beyond it")
        text = f"{escape(dataset)}, {setting}: {spread}; {epochs} training epochs"
        if used != [dataset]:
            text += (f"; {escape(dataset)} was asked and the run used "
                     f"{escape(', '.join(map(str, used)))} "
                     f"({unique_text(rows['n_train'].astype(int))} train / "
                     f"{unique_text(rows['n_test'].astype(int))} test images)")
        if config.get("limit"):
            text += f"; only the first {config['limit']} images of each split (--limit)"
        collapsed = collapsed_codebooks(summary, dataset, setting)
        if collapsed:
            text += (f"; codebook collapse: {join_words(collapsed)}, so those numbers describe a "
                     f"collapsed model, not a trained VQ-VAE")
        out.append(text + ".")
    return out


def limitations_section(comparison, summary, records, groups, styles) -> list:
    """Computed facts, then the caveats that hold for every run."""
    n_neighbors = unique_text(comparison["n_neighbors"].dropna().astype(int))
    fixed = [
        "Intra- and inter-cluster distances (and their ratio) are Euclidean distances in the VAE "
        "latent space, for every method, the VQ-VAEs' codes included.",
        f"Geodesic distortion is measured on the same k-NN graph (k = {n_neighbors}) whose "
        "geodesics geodesic-vae's k-medoids minimise, so it favours geodesic-vae by construction; "
        "Euclidean distortion likewise favours kmeans-vae. Neither applies to the VQ-VAEs.",
        "vqvae-conv has 49 codes per image, so the label metrics (NMI, ARI, purity, code-to-label "
        "accuracy) and the intra/inter distances do not apply to it.",
        "'Beyond the spread' (|difference of means| &gt; sum of stds) is a heuristic on few seeds, "
        "not a significance test; seeds are paired (the a-posteriori methods of one seed share "
        "that seed's VAE), and the paired counts are given beside it.",
        "The a-posteriori codebooks decode through a decoder trained on continuous latents and "
        "never fine-tuned to the codes; the VQ-VAEs train theirs end to end.",
        "Bits per image count the code indices only; no entropy coding (perplexity shows the "
        "effective number of codes).",
        "Hyper-parameters (latent size, k, learning rates, epochs) are shared, not tuned per "
        "method; fit times include cache loads, and geodesic-vae's include building the graph.",
    ]
    return ([Paragraph("Limitations", styles["h1"])]
            + bullets(limitation_facts(comparison, summary, records, groups), styles)
            + bullets(fixed, styles))


def title_block(results_dir: Path, records: dict, styles) -> list:
    """Title, source folder, date and git commits of the runs."""
    commits = unique_text(r.get("git", {}).get("commit", "")[:10] for r in records.values()
                          if r.get("git"))
    return [Paragraph("A-posteriori geodesic quantization of VAE latents vs. an end-to-end "
                      "VQ-VAE: comparison report", styles["title"]),
            Paragraph(f"Built {datetime.date.today().isoformat()} from {escape(str(results_dir))} "
                      f"(runs at git commit {escape(commits)}).", styles["body"])]


def build_story(results_dir: Path, comparison, summary, styles) -> list:
    """All sections, in order."""
    groups = result_groups(comparison)
    records = {g: load_run_record(results_dir, *g) for g in groups}
    story = title_block(results_dir, records, styles)
    story += question_section(styles) + methods_section(comparison, styles)
    story += setup_section(comparison, records, groups, styles)
    story += [PageBreak(), Paragraph("Results", styles["h1"])]
    counter = [0]
    for i, (dataset, setting) in enumerate(groups):
        story += ([PageBreak()] if i else []) + results_subsection(
            summary, dataset, setting, results_dir / "figures", styles, counter)
    story += [PageBreak()] + conclusion_section(comparison, summary, groups, styles)
    return story + limitations_section(comparison, summary, records, groups, styles)


def main(args):
    """Read the results, draw the figures, write the PDF to ``args.out``."""
    comparison, summary = load_results(args.results_dir)
    styles = make_styles()
    story = build_story(args.results_dir, comparison, summary, styles)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(str(args.out), pagesize=A4, leftMargin=PAGE_MARGIN,
                            rightMargin=PAGE_MARGIN, topMargin=PAGE_MARGIN,
                            bottomMargin=PAGE_MARGIN, title="Geodesic VAE quantization vs VQ-VAE",
                            author="vqvae-geodesic")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
