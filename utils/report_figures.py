"""Comparison figures drawn from summary.csv (written by train/run_comparison.py).

Every figure is saved as PNG and PDF (``utils.plot.save_figure``). Each method
keeps one colour and one marker in every figure, so that the report reads
across figures. Used by ``report/build_report.py``; usable on its own:

    from utils.report_figures import draw_report_figures
    draw_report_figures(pd.read_csv("experiments/results/summary.csv"), "mnist", "full",
                        "experiments/results/figures")
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from utils.plot import save_figure  # noqa: E402

METHOD_ORDER = ("vqvae-global", "vqvae-conv", "kmeans-vae", "geodesic-vae", "vae-continuous")
# Methods with one code per image: log2(K) bits, the like-for-like comparison.
MATCHED_METHODS = ("vqvae-global", "kmeans-vae", "geodesic-vae")
METHOD_STYLE = {
    "vqvae-global": {"color": "#1f77b4", "marker": "s", "label": r"vqvae-global ($\log_2 K$ bits)"},
    "vqvae-conv": {"color": "#9467bd", "marker": "D", "label": r"vqvae-conv ($49\,\log_2 K$ bits)"},
    "kmeans-vae": {"color": "#ff7f0e", "marker": "^", "label": r"kmeans-vae ($\log_2 K$ bits)"},
    "geodesic-vae": {"color": "#2ca02c", "marker": "o", "label": r"geodesic-vae ($\log_2 K$ bits)"},
    "vae-continuous": {"color": "#555555", "marker": "", "label": "vae-continuous (unquantized)"},
}
# metric column -> (short name, True when higher is better)
METRICS = {
    "bits_per_image": ("bits/image", False),
    "test_mse": ("MSE", False),
    "psnr": ("PSNR (dB)", True),
    "test_bce": ("BCE", False),
    "nmi": ("NMI", True),
    "ari": ("ARI", True),
    "purity": ("purity", True),
    "code_to_label_accuracy": ("code-to-label accuracy", True),
    "perplexity": ("perplexity", True),
    "usage": ("usage", True),
    "geodesic_distortion": ("geodesic distortion", False),
    "euclidean_distortion": ("Euclidean distortion", False),
    "intra_inter_ratio": ("intra/inter ratio", False),
}
GRID_METRICS = ("purity", "ari", "perplexity", "usage", "intra_inter_ratio", "geodesic_distortion")
# Figures are drawn about as wide as the report's text column, so 9 pt stays >= 8 pt printed.
FIGURE_WIDTH_IN = 6.6
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 10}
# Matched-bit methods share an x position; a small multiplicative shift keeps their error bars apart.
DODGE = {"vqvae-global": 2 ** -0.06, "kmeans-vae": 1.0, "geodesic-vae": 2 ** 0.06}


def select(summary: pd.DataFrame, dataset: str, setting: str) -> pd.DataFrame:
    """Rows of summary.csv for one dataset and setting."""
    return summary[(summary["dataset"] == dataset) & (summary["setting"] == setting)]


def method_rows(rows: pd.DataFrame, method: str, metric: str, x: str) -> pd.DataFrame:
    """One method's rows with a finite mean of ``metric``, sorted by ``x``."""
    sub = rows[(rows["method"] == method) & np.isfinite(rows[f"{metric}_mean"])]
    return sub.sort_values(x)


def direction(metric: str) -> str:
    """'higher is better' or 'lower is better'."""
    return "higher is better" if METRICS[metric][1] else "lower is better"


def panel_title(metric: str, prefix: str = "") -> str:
    """'<prefix><name> (lower is better)'; the direction on a second line when the
    title is long, so that neighbouring titles never touch."""
    name = f"{prefix}{METRICS[metric][0]}"
    return f"{name} ({direction(metric)})" if len(name) <= 10 else f"{name}\n({direction(metric)})"


def log2_axis(ax) -> None:
    """Log-scale x with ticks at powers of two, labelled as plain integers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2, numticks=12))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def errorbar(ax, method: str, x, mean, std, dodge: float = 1.0) -> None:
    """Mean with std error bars (std NaN with one seed: no bar), in the method's style."""
    style = METHOD_STYLE[method]
    ax.errorbar(np.asarray(x, float) * dodge, mean, yerr=np.nan_to_num(np.asarray(std, float)),
                color=style["color"], marker=style["marker"], ms=5, lw=1.4, capsize=3,
                label=style["label"])


def continuous_reference(ax, rows: pd.DataFrame, metric: str) -> None:
    """vae-continuous as a dashed horizontal line, its seed spread as a band."""
    ref = rows[(rows["method"] == "vae-continuous") & np.isfinite(rows[f"{metric}_mean"])]
    if ref.empty:
        return
    mean, std = float(ref[f"{metric}_mean"].iloc[0]), float(np.nan_to_num(ref[f"{metric}_std"].iloc[0]))
    style = METHOD_STYLE["vae-continuous"]
    ax.axhline(mean, color=style["color"], ls="--", lw=1.2, label=style["label"])
    if std > 0:
        ax.axhspan(mean - std, mean + std, color=style["color"], alpha=0.12, lw=0)


def legend_rank(label: str) -> int:
    """Position of a legend entry: the shaded band first, then the methods in METHOD_ORDER."""
    for i, method in enumerate(METHOD_ORDER):
        if label == METHOD_STYLE[method]["label"]:
            return i + 1
    return 0


def figure_legend(fig, axes) -> None:
    """One legend for all panels, below them (outside the data), no duplicate entries."""
    handles = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    labels = sorted(handles, key=legend_rank)
    if labels:
        fig.legend([handles[k] for k in labels], labels, loc="outside lower center",
                   ncol=min(3, len(labels)), frameon=False)


def empty_panel(ax, text: str = "no data") -> None:
    """Say so in a panel that has nothing to show."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def plot_rate_distortion(summary: pd.DataFrame, dataset: str, setting: str, out) -> list[Path]:
    """Test MSE and test BCE (mean, std over seeds) against bits per image.

    Log2 x axis; the one-code-per-image methods sit at log2 K bits inside a
    shaded "matched bits" band, vqvae-conv far right at 49 log2 K bits, and
    vae-continuous (no bit budget) is a dashed horizontal reference.
    """
    rows = select(summary, dataset, setting)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH_IN, 3.3), layout="constrained")
        matched_bits = rows[rows["method"].isin(MATCHED_METHODS)]["bits_per_image_mean"].dropna()
        for ax, metric in zip(axes, ("test_mse", "test_bce")):
            if len(matched_bits):
                ax.axvspan(matched_bits.min() * 2 ** -0.35, matched_bits.max() * 2 ** 0.35,
                           color="0.85", alpha=0.6, lw=0, label=r"matched bits ($\log_2 K$ per image)")
            for method in METHOD_ORDER[:-1]:
                sub = method_rows(rows, method, metric, "bits_per_image_mean")
                if len(sub):
                    errorbar(ax, method, sub["bits_per_image_mean"], sub[f"{metric}_mean"],
                             sub[f"{metric}_std"], DODGE.get(method, 1.0))
            continuous_reference(ax, rows, metric)
            log2_axis(ax)
            ax.set(xlabel="bits per image (log scale)", ylabel=f"test {METRICS[metric][0]}",
                   title=panel_title(metric, "test "))
        fig.suptitle(f"Rate vs distortion: {dataset}, {setting} setting (mean ± std over seeds)")
        figure_legend(fig, axes)
        return save_figure(fig, out)


def plot_against_k(summary: pd.DataFrame, dataset: str, setting: str, metrics, out, *,
                   title: str, ncols: int, methods=METHOD_ORDER[:-1]) -> list[Path]:
    """One panel per metric against K (log2 x), mean ± std over seeds, for ``methods``."""
    rows = select(summary, dataset, setting)
    nrows = -(-len(metrics) // ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(FIGURE_WIDTH_IN, 2.6 * nrows + 0.7),
                                 squeeze=False, layout="constrained")
        for ax in axes.ravel()[len(metrics):]:
            ax.set_visible(False)
        for ax, metric in zip(axes.ravel(), metrics):
            drawn = 0
            for method in methods:
                sub = method_rows(rows[rows["K"] > 0], method, metric, "K")
                if len(sub):
                    errorbar(ax, method, sub["K"], sub[f"{metric}_mean"], sub[f"{metric}_std"],
                             DODGE.get(method, 1.0))
                    drawn += 1
            if not drawn:
                empty_panel(ax)
            log2_axis(ax)
            ax.set(xlabel="codebook size K", ylabel=METRICS[metric][0], title=panel_title(metric))
        fig.suptitle(title)
        figure_legend(fig, axes)
        return save_figure(fig, out)


def plot_label_metrics(summary: pd.DataFrame, dataset: str, setting: str, out) -> list[Path]:
    """NMI and code-to-label accuracy against K for the one-code-per-image methods."""
    return plot_against_k(summary, dataset, setting, ("nmi", "code_to_label_accuracy"), out,
                          title=f"Codes vs labels: {dataset}, {setting} setting "
                                "(mean ± std over seeds)",
                          ncols=2, methods=MATCHED_METHODS)


def plot_metric_grid(summary: pd.DataFrame, dataset: str, setting: str, out,
                     metrics=GRID_METRICS) -> list[Path]:
    """Purity, ARI, perplexity, usage, intra/inter ratio and geodesic distortion
    against K; a method appears in a panel where the metric applies to it."""
    return plot_against_k(summary, dataset, setting, metrics, out, ncols=3,
                          title=f"Further code metrics: {dataset}, {setting} setting "
                                "(mean ± std over seeds)")


def draw_report_figures(summary: pd.DataFrame, dataset: str, setting: str,
                        fig_dir) -> dict[str, list[Path]]:
    """All three figures for one dataset and setting into ``fig_dir``;
    returns {name: [png, pdf]} with names rate_distortion, label_metrics, metric_grid."""
    fig_dir = Path(fig_dir)
    tag = f"{dataset}_{setting}"
    plots = {"rate_distortion": plot_rate_distortion, "label_metrics": plot_label_metrics,
             "metric_grid": plot_metric_grid}
    return {name: plot(summary, dataset, setting, fig_dir / f"{name}_{tag}")
            for name, plot in plots.items()}
