"""utils/metric_registry.py: every metric column of the results files is declared
once, with its summary columns and its direction."""
from __future__ import annotations

import pytest

from utils import metric_registry as R
from utils.metrics import CODE_METRICS
from utils.results import METRICS
from utils.results import (COLUMNS, GENERATION_COLUMNS, GENERATION_METRICS, TUNED_COLUMNS,
                           TUNED_GENERATION_COLUMNS, TUNED_GENERATION_METRICS, TUNED_METRICS,
                           summarize)


def test_every_metric_column_of_the_results_files_is_declared():
    assert CODE_METRICS == R.columns(table=R.COMPARISON)
    assert GENERATION_METRICS == R.columns(table=R.GENERATION, protocol=R.FIXED)
    assert GENERATION_METRICS + TUNED_GENERATION_METRICS == R.columns(table=R.GENERATION)
    assert set(R.columns()) <= set(TUNED_COLUMNS) | set(TUNED_GENERATION_COLUMNS)
    assert sorted(METRICS + TUNED_METRICS) == sorted(R.columns(table=R.COMPARISON))
    assert set(TUNED_METRICS) == {R.AMI.column, R.DEAD_CODES.column} and not set(TUNED_METRICS) & set(COLUMNS)
    # a metric only the tuned protocol measures is no column of the fixed files
    tuned_only = R.columns(table=R.GENERATION, protocol=R.TUNED)
    assert set(tuned_only) - set(GENERATION_COLUMNS) == {
        R.BITS_PER_DIM.column, R.RECON_NLL.column, R.KID_SAMPLES.column, R.KID_SAMPLES_STD.column,
        R.KID_TRAIN.column}
    assert R.BITS_PER_DIM.role == R.SECONDARY and R.BITS_PER_DIM.lower_is_better


def test_summary_columns_are_what_summary_csv_holds():
    import pandas as pd

    row = {c: 0.0 for c in COLUMNS} | {c: "" for c in ("config_id", "edge_length", "code_vectors",
                                                       "decoder", "config_hash", "dataset_used")}
    frame = pd.DataFrame([row | {"dataset": "d", "setting": "s", "method": "m", "K": 1, "seed": s}
                          for s in (0, 1)])
    summary = summarize(frame)
    assert set(R.summary_columns(METRICS)) <= set(summary.columns)
    assert R.summary_columns([R.MSE.column]) == ["test_mse_mean", "test_mse_std"]


@pytest.mark.parametrize("metric, lower", [(R.MSE, True), (R.BCE, True), (R.PSNR, False),
                                           (R.NMI, False), (R.USAGE, False), (R.FID_SAMPLES, True),
                                           (R.GEODESIC_DISTORTION, True)])
def test_direction(metric, lower):
    assert metric.lower_is_better is lower and metric.higher_is_better is not lower
    assert metric.direction == ("lower is better" if lower else "higher is better")


def test_names_are_unique_and_roles_known():
    names = [m.name for m in R.METRICS.values()]
    assert len(names) == len(set(names))
    assert {m.role for m in R.METRICS.values()} <= {R.PRIMARY, R.SECONDARY}
    assert R.metrics(role=R.PRIMARY) == [R.MSE, R.ARI, R.FID_SAMPLES]


def test_unknown_column_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown metric column 'mse'.*test_mse"):
        R.get("mse")


def test_one_primary_metric_per_question():
    assert [(m.question, m.column) for m in R.questions()] == [
        ("reconstruction", "test_mse"), ("label agreement", "ari"), ("generation", "fid_samples")]
    assert R.questions() == R.metrics(role=R.PRIMARY)  # every primary metric answers a question
    assert not any(m.question for m in R.metrics(role=R.SECONDARY))
