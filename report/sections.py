"""What each verdict section of the report compares, declared as data.

A section reads one results table (comparison.csv or generation.csv), compares
the proposal of every contest (report.verdicts.contests: the methods of
utils/methods.py, rate by rate) against its opponents by one rule (beyond the
seed spread, report.verdicts.compare_values) on its detail metrics, decides its
answer on its answer metrics (report.verdicts.verdict_of_tables) and tabulates
its table columns (report.tables). Adding a section on another CSV is declaring
an entry here; the verdict path and the table renderer are shared.

    >>> GENERATION.answer_metrics
    ('fid_samples', 'prior_nll_bits')
"""
from __future__ import annotations

from typing import NamedTuple

from utils import metric_registry as R


class SectionData(NamedTuple):
    """The data of one section.

    name : what the section is about.
    table : the results table it reads (utils.metric_registry.COMPARISON or GENERATION).
    detail_metrics : the metric columns compared between the proposal and each opponent.
    answer_metrics : those of them the answer is decided on (the rest are stated only).
    table_columns : (metric column, heading) of its table of mean ± std over seeds.
    """

    name: str
    table: str
    detail_metrics: tuple[str, ...]
    answer_metrics: tuple[str, ...]
    table_columns: tuple[tuple[str, str], ...] = ()


def columns(*metrics: R.Metric) -> tuple[str, ...]:
    return tuple(m.column for m in metrics)


# PSNR is a monotone function of each run's MSE, so it is not counted twice; geodesic
# distortion is what geodesic k-medoids minimises: reported, not used for the answer.
COMPARISON = SectionData(
    "reconstruction, labels and codebook use", R.COMPARISON,
    detail_metrics=columns(R.MSE, R.BCE, R.NMI, R.LABEL_ACCURACY, R.USAGE, R.GEODESIC_DISTORTION),
    answer_metrics=columns(R.MSE, R.BCE, R.NMI, R.LABEL_ACCURACY, R.USAGE))

# What the generative answer is decided on: how close samples are to the test images,
# and how few bits the prior needs for the test codes (its rate).
GENERATION = SectionData(
    "generation", R.GENERATION,
    detail_metrics=columns(R.FID_SAMPLES, R.PRIOR_NLL, R.SAMPLE_CLASS_ENTROPY, R.FID_RECON),
    answer_metrics=columns(R.FID_SAMPLES, R.PRIOR_NLL),
    table_columns=((R.BITS.column, "uniform bits"), (R.PRIOR_NLL.column, "prior NLL (bits)"),
                   (R.PRIOR_PERPLEXITY.column, "perplexity"), (R.FID_SAMPLES.column, "sample FID"),
                   (R.FID_RECON.column, "recon. FID"),
                   (R.SAMPLE_CLASS_ENTROPY.column, "class entropy (bits)"),
                   (R.SAMPLE_CLASSES.column, "classes")))
