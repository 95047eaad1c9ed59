"""benchmarks/bench_position_metric.py: its rows (what was timed, and the projection to
54,000 images by proportion) on a synthetic stand-in, and one-line errors for bad flags."""
from __future__ import annotations

import csv
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_position_metric as bench  # noqa: E402


def test_rows_project_the_prefix_to_the_full_training_split(synthetic_root, tmp_path):
    out = tmp_path / "pm.csv"
    bench.main(bench.parse_args(["--images", "12", "--threads", "1", "--data-root",
                                 str(synthetic_root.root), "--out", str(out)]))
    rows = list(csv.DictReader(out.open()))
    assert [r["stage"].split(" ")[0] for r in rows] == ["metric", "metric", "latent", "edge"]
    metric, baseline = rows[0], rows[1]
    assert "vectorized" in metric["stage"] and "one JVP per tangent" in baseline["stage"]
    assert float(metric["speedup_vs_baseline"]) == pytest.approx(
        float(baseline["seconds"]) / float(metric["seconds"]), rel=0.05, abs=0.02)
    assert float(baseline["speedup_vs_baseline"]) == 1.0
    n = int(metric["images"])
    assert int(metric["vectors"]) == 49 * n
    assert float(metric["projected_54k_s"]) == pytest.approx(
        float(metric["seconds"]) * bench.FULL_IMAGES / n, rel=0.01, abs=0.1)
    assert float(metric["stored_mb_54k"]) == pytest.approx(54_000 * 49 * 10 * 4 / 1e6, rel=1e-3)
    assert out.with_suffix(".json").is_file()


@pytest.mark.parametrize("flag", ["--images", "--batch-size", "--tangent-chunk",
                                  "--baseline-batch-size", "--threads"])
def test_a_non_positive_count_is_a_one_line_error(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args([flag, "0"])
    assert stop.value.code == 2 and "must be >= 1" in capsys.readouterr().err
