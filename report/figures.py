"""Comparison figures drawn from summary.csv (written by train/run_comparison.py).

Every saved figure is a PNG and a PDF (``utils.plot.save_figure``) named by
``utils.paths`` (:data:`utils.paths.SUMMARY_FIGURES`); the headline figure of
page 1 is drawn in memory, since it only regroups panels of those figures.
Each method keeps the colour, marker and label of its entry in
``utils.methods.METHODS`` in every figure, so that the report reads across
figures; in the ablation figure each cell of a method is a shade of that
method's colour family. Usable on its own:

    from report.figures import draw_summary_figures
    draw_summary_figures(pd.read_csv("experiments/results/summary.csv"), "mnist", "full",
                         Path("/tmp/figures"))
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from report.formatting import run_label  # noqa: E402
from report.verdicts import (ABLATION_METRIC, bound_weights, cell_rows, cells_present,  # noqa: E402
                             direction, rows_of)
from utils import methods as M  # noqa: E402
from utils import metric_registry as R  # noqa: E402
from utils.paths import SUMMARY_FIGURES, ResultPaths  # noqa: E402
from utils.plot import save_figure  # noqa: E402

RATE_DISTORTION, LABEL_METRICS, METRIC_GRID, ABLATION = SUMMARY_FIGURES
GRID_METRICS = tuple(m.column for m in (R.PURITY, R.ARI, R.PERPLEXITY, R.USAGE, R.INTRA_INTER,
                                         R.GEODESIC_DISTORTION))
# Figures are drawn about as wide as the report's text column, so 9 pt stays >= 8 pt printed.
FIGURE_WIDTH_IN = 6.6
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 10}
# Matched-bit methods share an x position; a small multiplicative shift keeps their error bars apart.
DODGE_STEP = 2 ** 0.06


def matched_methods(rate: str = M.IMAGE_RATE) -> tuple[str, ...]:
    """The quantized methods compared at matched bits at ``rate``."""
    return M.matched(rate)


def dodge(method: str) -> float:
    """The x shift of a matched-bits method: its matched methods spread
    symmetrically around the true K; 1 for any other method."""
    rate = M.get(method).rate
    group = M.matched(rate)
    if method not in group or len(group) < 2:
        return 1.0
    return DODGE_STEP ** (group.index(method) - (len(group) - 1) / 2)


def method_rows(rows: pd.DataFrame, method: str, metric: str, x: str) -> pd.DataFrame:
    """One method's rows with a finite mean of ``metric``, sorted by ``x``."""
    sub = rows[(rows["method"] == method) & np.isfinite(rows[R.get(metric).mean])]
    return sub.sort_values(x)


def run_title(rows: pd.DataFrame, dataset: str, setting: str) -> str:
    """The dataset of ``rows`` as run ('mnist-5k'), never the name asked when it fell back."""
    rows = rows_of(rows, dataset, setting)
    used = dict.fromkeys(rows["dataset_used"]) if "dataset_used" in rows else ()
    return run_label(dataset, setting, used)


def panel_title(metric: str, prefix: str = "") -> str:
    """'<prefix><name> (lower is better)'; the direction on a second line when the
    title is long, so that neighbouring titles never touch."""
    label = f"{prefix}{R.get(metric).label}"
    return f"{label} ({direction(metric)})" if len(label) <= 10 else f"{label}\n({direction(metric)})"


def log2_axis(ax) -> None:
    """Log-scale x with ticks at powers of two, labelled as plain integers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2, numticks=12))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def errorbar(ax, method: str, x, mean, std, shift: float = 1.0) -> None:
    """Mean with std error bars (std NaN with one seed: no bar), in the method's style."""
    m = M.get(method)
    ax.errorbar(np.asarray(x, float) * shift, mean, yerr=np.nan_to_num(np.asarray(std, float)),
                color=m.color, marker=m.marker, ms=5, lw=1.4, capsize=3, label=m.label)


def continuous_reference(ax, rows: pd.DataFrame, metric: str, rate: str = M.IMAGE_RATE, *,
                         band: bool = True) -> None:
    """The unquantized reference of ``rate`` as a dashed horizontal line, its seed
    spread as a band unless not ``band`` (nothing when the rate has none or it
    lacks the metric)."""
    name = M.reference(rate)
    ref = rows[(rows["method"] == name) & np.isfinite(rows[R.get(metric).mean])] if name else rows[:0]
    if ref.empty:
        return
    mean, std = float(ref[R.get(metric).mean].iloc[0]), float(np.nan_to_num(ref[R.get(metric).std].iloc[0]))
    m = M.get(name)
    ax.axhline(mean, color=m.color, ls="--", lw=1.2, label=m.label)
    if band and std > 0:
        ax.axhspan(mean - std, mean + std, color=m.color, alpha=0.12, lw=0)


def legend_rank(label: str) -> int:
    """Position of a legend entry: the shaded band first, then the methods in METHODS order."""
    for i, m in enumerate(M.METHODS.values()):
        if label == m.label:
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
    shaded "matched bits" band, methods with more codes per image further
    right, and the unquantized reference (no bit budget) is a dashed line.
    """
    rows = rows_of(summary, dataset, setting)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH_IN, 3.3), layout="constrained")
        matched_bits = rows[rows["method"].isin(matched_methods())][R.BITS.mean].dropna()
        for ax, metric in zip(axes, (R.MSE.column, R.BCE.column)):
            if len(matched_bits):
                ax.axvspan(matched_bits.min() * 2 ** -0.35, matched_bits.max() * 2 ** 0.35,
                           color="0.85", alpha=0.6, lw=0, label=r"matched bits ($\log_2 K$ per image)")
            for method in M.names(quantized=True):
                sub = method_rows(rows, method, metric, R.BITS.mean)
                if len(sub):
                    errorbar(ax, method, sub[R.BITS.mean], sub[R.get(metric).mean],
                             sub[R.get(metric).std], dodge(method))
            continuous_reference(ax, rows, metric)
            log2_axis(ax)
            ax.set(xlabel="bits per image (log scale)", ylabel=f"test {R.get(metric).label}",
                   title=panel_title(metric, "test "))
        fig.suptitle(f"Rate vs distortion: {run_title(rows, dataset, setting)} (mean ± std over "
                     f"seeds)")
        figure_legend(fig, axes)
        return save_figure(fig, out)


def plot_against_k(summary: pd.DataFrame, dataset: str, setting: str, metrics, out, *,
                   title: str, ncols: int, methods=None) -> list[Path]:
    """One panel per metric against K (log2 x), mean ± std over seeds, for
    ``methods`` (default: every quantized method)."""
    rows = rows_of(summary, dataset, setting)
    methods = M.names(quantized=True) if methods is None else methods
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
                    errorbar(ax, method, sub["K"], sub[R.get(metric).mean], sub[R.get(metric).std],
                             dodge(method))
                    drawn += 1
            if not drawn:
                empty_panel(ax)
            log2_axis(ax)
            ax.set(xlabel="codebook size K", ylabel=R.get(metric).label, title=panel_title(metric))
        fig.suptitle(title)
        figure_legend(fig, axes)
        return save_figure(fig, out)


def plot_label_metrics(summary: pd.DataFrame, dataset: str, setting: str, out) -> list[Path]:
    """NMI and code-to-label accuracy against K for the one-code-per-image methods."""
    return plot_against_k(summary, dataset, setting, (R.NMI.column, R.LABEL_ACCURACY.column), out,
                          title=f"Codes vs labels: {run_title(summary, dataset, setting)} "
                                "(mean ± std over seeds)",
                          ncols=2, methods=matched_methods())


def plot_metric_grid(summary: pd.DataFrame, dataset: str, setting: str, out,
                     metrics=GRID_METRICS) -> list[Path]:
    """Purity, ARI, perplexity, usage, intra/inter ratio and geodesic distortion
    against K; a method appears in a panel where the metric applies to it."""
    return plot_against_k(summary, dataset, setting, metrics, out, ncols=3,
                          title=f"Further code metrics: {run_title(summary, dataset, setting)} "
                                "(mean ± std over seeds)")


PLOTS = {RATE_DISTORTION: plot_rate_distortion, LABEL_METRICS: plot_label_metrics,
         METRIC_GRID: plot_metric_grid}


# The ablation figure: a colour family per method (its METHODS colour's), a shade per
# (edge length, code vectors), the line style by decoder.
CELL_CMAPS = {M.quantizer_method("geodesic").name: "Greens",
              M.quantizer_method("euclidean").name: "Oranges"}
DECODER_STYLES = {"frozen": "-", "finetuned": "--"}


def cell_colors(cells) -> dict[tuple, tuple]:
    """{(method, edge_length, code_vectors): RGBA}, shades from mid to dark in each
    method's colour family (grey for a method without one)."""
    out = {}
    for method in dict.fromkeys(c.method for c in cells):
        keys = list(dict.fromkeys((c.method, c.edge_length, c.code_vectors)
                                  for c in cells if c.method == method))
        cmap = plt.get_cmap(CELL_CMAPS.get(method, "Greys"))
        shades = np.linspace(0.5, 0.95, len(keys)) if len(keys) > 1 else [0.7]
        out |= {k: cmap(v) for k, v in zip(keys, shades)}
    return out


def plot_ablation(cell_summary: pd.DataFrame, dataset: str, setting: str, out, *,
                  methods=None, metric: str = ABLATION_METRIC) -> list[Path]:
    """Test MSE (mean ± std over seeds) against K for every ablation cell of
    ``methods`` (default: the a-posteriori methods): one line per cell, the
    geodesic cells in greens and the k-means cells in oranges, frozen decoders
    solid and fine-tuned ones dashed; the unquantized reference dotted."""
    methods = M.names(family=M.A_POSTERIORI)[::-1] if methods is None else methods
    rows = rows_of(cell_summary, dataset, setting)
    cells = [c for m in methods for c in cells_present(rows, m)]
    colors = cell_colors(cells)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 3.6), layout="constrained")
        for i, cell in enumerate(cells):
            sub = cell_rows(rows[rows["K"] > 0], cell)
            sub = sub[np.isfinite(sub[R.get(metric).mean])].sort_values("K")
            if not len(sub):
                continue
            # a small shift per cell keeps the error bars of cells at one K apart
            shift = DODGE_STEP ** ((i - (len(cells) - 1) / 2) / 2)
            ax.errorbar(sub["K"] * shift, sub[R.get(metric).mean],
                        yerr=np.nan_to_num(sub[R.get(metric).std].to_numpy(float)),
                        color=colors[(cell.method, cell.edge_length, cell.code_vectors)],
                        ls=DECODER_STYLES.get(cell.decoder, "-"), marker=M.get(cell.method).marker,
                        ms=4, lw=1.3, capsize=2, label=cell.label)
        reference = M.reference()
        ref = rows[(rows["method"] == reference) & np.isfinite(rows[R.get(metric).mean])] \
            if reference else rows[:0]
        if len(ref):
            ax.axhline(float(ref[R.get(metric).mean].iloc[0]), color=M.get(reference).color, ls=":",
                       lw=1.2, label=M.get(reference).label)
        if not cells:
            empty_panel(ax)
        log2_axis(ax)
        ax.set(xlabel="codebook size K (log2 K bits per image)", ylabel=f"test {R.get(metric).label}",
               title=panel_title(metric, "test "))
        fig.suptitle(f"Ablation cells: {run_title(rows, dataset, setting)} (mean ± std over seeds; "
                     f"dashed: fine-tuned decoder)")
        handles, labels = ax.get_legend_handles_labels()
        if labels:
            fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
        return save_figure(fig, out)


def draw_ablation_figure(cell_summary: pd.DataFrame, dataset: str, setting: str,
                         fig_dir: Path, methods=None) -> list[Path]:
    """The ablation figure of one dataset and setting into ``fig_dir`` ([png, pdf])."""
    return plot_ablation(cell_summary, dataset, setting,
                         Path(fig_dir) / figure_stem(ABLATION, dataset, setting), methods=methods)


def figure_stem(name: str, dataset: str, setting: str) -> str:
    """The file name (no suffix) utils/paths.py gives a figure."""
    return ResultPaths(Path(".")).figure(name, dataset, setting).name


def draw_summary_figures(summary: pd.DataFrame, dataset: str, setting: str,
                         fig_dir: Path) -> dict[str, list[Path]]:
    """Every figure of SUMMARY_FIGURES for one dataset and setting into ``fig_dir``;
    returns {name: [png, pdf]}."""
    return {name: plot(summary, dataset, setting, Path(fig_dir) / figure_stem(name, dataset, setting))
            for name, plot in PLOTS.items()}


def seed_stats(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std over seeds (ddof 1, as summary.csv) of ``metric`` and of the bits
    per image, per method and K: columns method, K, mean, std, bits."""
    rows = rows[np.isfinite(rows[metric].astype(float))]
    stats = rows.groupby(["method", "K"])[metric].agg(["mean", "std"])
    bits = rows.groupby(["method", "K"])[R.BITS.column].first().rename("bits")
    return stats.join(bits).reset_index()


def headline_methods(contests) -> list[str]:
    """Each contest's proposal, its a-posteriori ablations and its end-to-end
    opponent, rate by rate."""
    return list(dict.fromkeys(n for c in contests for n in (*c.ablations, c.proposal, c.question)
                              if n))


def reference_line(ax, rows: pd.DataFrame, metric: str, rate: str) -> None:
    """The unquantized reference of ``rate`` in per-seed ``rows``: its mean over seeds
    as a dashed horizontal line across the bits of ``rate``'s quantized methods (nothing
    when ``rows`` lack it). Where the reference has one bound per KL weight (the tuned
    protocol chooses β per K), each K's bits get the bound of its own β
    (report.verdicts.bound_weights), labelled with that β."""
    name = M.reference(rate)
    if not name:
        return
    at_rate = rows["method"].map(lambda n: M.get(n).quantized and M.get(n).rate == rate)
    bits = rows[at_rate].groupby("K")[R.BITS.column].first().astype(float).sort_values()
    own = rows[(rows["method"] == name) & np.isfinite(rows[metric].astype(float))]
    if own.empty or bits.empty:
        return
    weights = bound_weights(rows, name, list(bits.index))
    # each K's stretch of the x axis: to the geometric midpoints between neighbouring K
    edges = np.sqrt(bits.to_numpy()[1:] * bits.to_numpy()[:-1])
    left = np.concatenate([[bits.iloc[0] / 1.25], edges])
    right = np.concatenate([edges, [bits.iloc[-1] * 1.25]])
    m = M.get(name)
    betas = [weights.get(k) for k in bits.index]
    start = 0
    for i in range(1, len(betas) + 1):  # one line per run of neighbouring K with one bound
        if i < len(betas) and betas[i] == betas[start]:
            continue
        beta = betas[start]
        ref = own[metric] if beta is None else own[own["kl_weight"] == beta][metric]
        y = float(ref.astype(float).mean())
        ax.hlines(y, left[start], right[i - 1], color=m.color, ls="--", lw=1.2, label=m.label)
        if beta is not None:
            ax.annotate(f"β = {beta:g}", (left[start], y), xytext=(2, 2), textcoords="offset points",
                        fontsize=6, color=m.color)
        start = i


def log_y_axis(ax) -> None:
    """A log y axis ticked at 1, 2 and 5 times the powers of ten, in plain numbers
    (0.002, 0.005, 0.01, ...), no minor labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_headline(comparison: pd.DataFrame, groups, contests,
                  generation: pd.DataFrame | None = None) -> io.BytesIO:
    """Page 1's figure: one row per (dataset, setting, label) of ``groups``; test MSE
    (log y) against bits per image (log2 x) for the methods of every contest of
    ``contests`` (both rates), mean ± std over the seeds of ``comparison`` (one row
    per method, K and seed: the rows page 1's table reads, tuned where they exist),
    the unquantized reference of each rate dashed; and, where ``generation`` (its
    newest rows) has them, sample FID against bits, the FID of training against
    test images dotted. Returned as PNG bytes (150 dpi)."""
    groups = list(groups)
    methods = headline_methods(contests)
    metrics = [R.MSE.column] + ([R.FID_SAMPLES.column] if generation is not None
                                and len(generation) else [])
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(max(len(groups), 1), len(metrics), squeeze=False,
                                 figsize=(FIGURE_WIDTH_IN, 2.0 * max(len(groups), 1) + 0.6),
                                 layout="constrained")
        for row, (dataset, setting, label) in zip(axes, groups):
            for ax, metric in zip(row, metrics):
                if metric == R.MSE.column:
                    rows = rows_of(comparison, dataset, setting)
                    stats = seed_stats(rows, metric)
                    for c in contests:
                        reference_line(ax, rows, metric, c.rate)
                else:
                    gen = rows_of(generation, dataset, setting)
                    stats = seed_stats(gen, metric)
                    if len(gen):
                        floor = gen.drop_duplicates("seed")[R.FID_TRAIN.column]
                        ax.axhline(floor.mean(), color="0.3", ls=":", lw=1.2,
                                   label="training vs test images")
                drawn = 0
                for method in methods:
                    sub = stats[(stats["method"] == method) & np.isfinite(stats["mean"])]
                    if len(sub):
                        sub = sub.sort_values("bits")
                        errorbar(ax, method, sub["bits"], sub["mean"], sub["std"], dodge(method))
                        drawn += 1
                if not drawn:
                    empty_panel(ax)
                log2_axis(ax)
                if metric == R.MSE.column:  # both rates' MSE, 0.002 to 0.05, readable at once
                    log_y_axis(ax)
                ax.set(ylabel=f"test {R.get(metric).label} (log scale)" if metric == R.MSE.column
                       else R.get(metric).label,
                       title=panel_title(metric, f"{label}: "))
        for ax in axes[-1]:
            ax.set_xlabel("bits per image (log scale)")
        figure_legend(fig, axes)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=150)
        plt.close(fig)
    buffer.seek(0)
    return buffer
