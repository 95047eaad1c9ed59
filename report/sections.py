"""What each section of the report reads and compares, declared as data.

A section reads one results table (comparison.csv or generation.csv), compares
the proposal of every contest among its methods (report.verdicts.section_contests:
the contests of utils/methods.py, rate by rate, narrowed to the methods it
declares) against its opponents by one rule (beyond the seed spread,
report.verdicts.compare_values) on its detail metrics, decides its answer on its
answer metrics (report.verdicts.verdict_of_tables) and tabulates its table
columns (report.tables). Adding a section on another CSV is declaring
an entry here; the verdict path and the table renderer are shared. A section
beyond comparison.csv plugs into report/build_report.py as an :class:`Extra`:
the CSV (or folder) it reads, its reader, its sentences and its layout, and
the SectionData it follows.

    >>> GENERATION.answer_metrics
    ('fid_samples',)
    >>> [q.name for q in QUESTIONS]
    ['reconstruction', 'label agreement', 'generation']
    >>> KL_WEIGHT.methods
    ('vqvae-conv', 'kmeans-conv', 'geodesic-conv', 'vae-conv')
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd

from report.load import Results
from utils import methods as M
from utils import metric_registry as R
from utils.paths import ResultPaths


class SectionData(NamedTuple):
    """The data of one section.

    name : what the section is about.
    table : the results table it reads (utils.metric_registry.COMPARISON or GENERATION).
    detail_metrics : the metric columns compared between the proposal and each opponent.
    answer_metrics : those of them the answer is decided on (the rest are stated only).
    table_columns : (metric column, heading) of its table of mean ± std over seeds.
    methods : the methods it compares (names of utils/methods.py): a rate's contest
        counts when its proposal is among them, against those of its opponents
        (and its reference) that are; default every method, each contest whole.
    """

    name: str
    table: str
    detail_metrics: tuple[str, ...]
    answer_metrics: tuple[str, ...]
    table_columns: tuple[tuple[str, str], ...] = ()
    methods: tuple[str, ...] = M.METHOD_NAMES


def columns(*metrics: R.Metric) -> tuple[str, ...]:
    return tuple(m.column for m in metrics)


# The answer is decided on the registry's primary metrics only (one per question: MSE for
# reconstruction, ARI for the labels); the others are stated beside them. PSNR is a
# monotone function of each run's MSE; geodesic distortion is what geodesic k-medoids
# minimises. Every method of utils/methods.py is compared, each rate's contest whole.
COMPARISON = SectionData(
    "reconstruction, labels and codebook use", R.COMPARISON,
    detail_metrics=columns(R.MSE, R.ARI, R.BCE, R.NMI, R.LABEL_ACCURACY, R.USAGE,
                           R.GEODESIC_DISTORTION),
    answer_metrics=tuple(R.columns(table=R.COMPARISON, role=R.PRIMARY)),
    methods=M.METHOD_NAMES)

# The generative answer is decided on sample FID (primary); the prior's NLL is stated, not
# voted: evenly used codes raise a histogram prior's NLL, so it would vote against good codes.
GENERATION = SectionData(
    "generation", R.GENERATION,
    detail_metrics=columns(R.FID_SAMPLES, R.PRIOR_NLL, R.SAMPLE_CLASS_ENTROPY, R.FID_RECON),
    answer_metrics=tuple(R.columns(table=R.GENERATION, role=R.PRIMARY)),
    table_columns=((R.BITS.column, "uniform bits"), (R.PRIOR_NLL.column, "prior NLL (bits)"),
                   (R.PRIOR_PERPLEXITY.column, "perplexity"), (R.FID_SAMPLES.column, "sample FID"),
                   (R.FID_RECON.column, "recon. FID"),
                   (R.SAMPLE_CLASS_ENTROPY.column, "class entropy (bits)"),
                   (R.SAMPLE_CLASSES.column, "classes")),
    methods=M.METHOD_NAMES)

# The beta-VAE rows (report/kl_weight.py) ask one thing of the grid rate: do the a-posteriori
# codes of a conv VAE trained with a smaller KL weight reach the end-to-end VQ-VAE of the same
# backbone? Its methods: the grid rate's, less the library quantizers (no beta rows of theirs).
KL_WEIGHT = SectionData(
    "grid rate with β-VAEs", R.COMPARISON, detail_metrics=(R.MSE.column,),
    answer_metrics=(R.MSE.column,),
    methods=tuple(m.name for m in M.methods(rate=M.GRID_RATE) if not m.from_library))

# The two training protocols (utils/protocol.py): the tuned one answers page 1, the
# fixed-budget one is its sensitivity check.
TUNED, FIXED = "tuned", "fixed"

# The section of each results table, by its name (utils.metric_registry's tables).
BY_TABLE = {s.table: s for s in (COMPARISON, GENERATION)}


def question_section(metric: R.Metric) -> SectionData:
    """The section of one question: its table's rows and methods, compared and decided
    on its primary metric alone."""
    return SectionData(metric.question, metric.table, detail_metrics=(metric.column,),
                       answer_metrics=(metric.column,), methods=BY_TABLE[metric.table].methods)


# Page 1's answer table: one row per question (utils.metric_registry.questions) and rate.
QUESTIONS = tuple(question_section(m) for m in R.questions())


class Extra(NamedTuple):
    """A results file beyond comparison.csv (e.g. the generation results).

    name : its section title.
    path : ResultPaths -> the CSV it reads (e.g. ``lambda p: p.generation``), or a
        folder its ``read`` collects.
    answer : (Results, its DataFrame) -> short-answer items (Markdown subset).
    details : (Results, its DataFrame, styles) -> reportlab flowables for the
        details pages (headings included), or None for none.
    read : path -> its DataFrame (default ``pd.read_csv``; a validating reader
        drops a torn last row and names a malformed one).
    group_answer : (Results, its DataFrame, (dataset, setting)) -> short-answer
        items that belong right after that group's verdicts (e.g. the same
        question rerun under another setting), or None.
    data : the :class:`SectionData` its verdicts and table follow, when its rows
        answer page 1's questions (their ``rows`` stand in for ``data.table``'s);
        None when they do not: a rerun of the main comparison, or rows that ask
        their own question (the beta-VAE rows follow :data:`KL_WEIGHT` inside
        report/kl_weight.py, and page 1 keeps the main rows).
    rows : its DataFrame -> the rows its verdicts read (e.g. the newest
        configuration only); page 1's answer table reads them for ``data.table``.
    appendix : (Results, its DataFrame, styles) -> reportlab flowables for the
        appendix (its per-K tables and rows), or None for none.
    protocol : 'tuned' when its rows are the tuned protocol's (docs/protocol.md), which
        page 1 reads in place of the fixed-budget rows: its findings and section come
        first, the fixed-budget ones after them as the sensitivity check; 'fixed' otherwise.
    """

    name: str
    path: Callable[[ResultPaths], Path]
    answer: Callable[[Results, pd.DataFrame], list]
    details: Callable | None = None
    read: Callable[[Path], pd.DataFrame] = pd.read_csv
    group_answer: Callable | None = None
    data: SectionData | None = None
    rows: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame
    appendix: Callable | None = None
    protocol: str = FIXED


def present_extras(results: Results, extras, protocol: str | None = None
                   ) -> list[tuple[Path, pd.DataFrame, Extra]]:
    """(path, frame, extra) of every Extra of ``extras`` whose CSV (or folder) exists and has
    rows; only those of ``protocol`` ('tuned' or 'fixed') when given."""
    out = []
    for extra in extras:
        if protocol is not None and extra.protocol != protocol:
            continue
        path = extra.path(ResultPaths(results.root))
        if path is None or not Path(path).exists():
            continue
        try:
            frame = extra.read(path)
        except pd.errors.EmptyDataError:
            continue
        if len(frame):
            out.append((Path(path), frame, extra))
    return out
