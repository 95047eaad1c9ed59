"""Every output path of the project, named once.

The training scripts, the comparison runner, the report and the tests build
their file names here, so that renaming one cannot make a reader silently miss
it. Files are named after the *requested* dataset (``vae_mnist.pt`` even when
``mnist`` fell back to ``mnist-5k``); the dataset actually used is recorded
inside each file.

Published results (the full sweeps) live in ``experiments/results/`` and are
committed; the quick setting of ``make all`` writes to the git-ignored
``experiments/results/quick/`` and ``report/report_quick.pdf``, so a
newcomer's first command leaves every tracked file untouched.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

EXPERIMENTS = Path("experiments")
RESULTS = EXPERIMENTS / "results"
WORK = EXPERIMENTS / "comparison"  # cached models of the comparison, by config hash
REPORT_DIR = Path("report")
# Under a results folder: train/select_batch_size.py's choice and the sweep rerun at it.
BATCH_SIZE_DIR = "batch_size"
TUNED_DIR = "tuned"  # the tuned protocol's rows and selection table
SETTINGS = ("full", "quick")

# Figures the runner draws from its models, and figures the report draws from summary.csv.
RUNNER_FIGURES = ("codebooks", "reconstructions", "latent_map", "usage", "interpolation",
                  "interpolation_grid")
SUMMARY_FIGURES = ("rate_distortion", "label_metrics", "metric_grid", "ablation")
# The report's caption of each runner figure, named beside it so that a new figure brings its own.
RUNNER_FIGURE_CAPTIONS = {
    "codebooks": "Decoded codebooks of every method, side by side (drawn by the runner).",
    "reconstructions": "Test images and their reconstructions by every method (drawn by the "
                       "runner).",
    "latent_map": "2-D map of the VAE latent means with the geodesic medoids and the k-means "
                  "centroids (drawn by the runner).",
    "usage": "Code-usage histograms (drawn by the runner).",
    "interpolation": "Interpolations between test images: the VAE decoding of the straight "
                     "latent line and of the shortest k-NN-graph path with latent and with "
                     "decoder edge lengths.",
    "interpolation_grid": "Grid rate: interpolation between two test images, the conv VAE's "
                          "decoding of the straight line between their 7x7 latent grids and of "
                          "the shortest k-NN-graph path through training grids, with latent and "
                          "with decoder (whole-grid pull-back) edge lengths.",
}


def stage_paths(out_dir: Path, stage: str, dataset: str) -> dict[str, Path]:
    """Where a training stage writes: ``<stage>_train_log.csv`` for the default
    dataset (mnist), ``<stage>_<dataset>_train_log.csv`` otherwise; the run
    record, the checkpoint ``<stage>_<dataset>.pt`` and the plot folder."""
    out_dir = Path(out_dir)
    log = f"{stage}_train_log.csv" if dataset == "mnist" else f"{stage}_{dataset}_train_log.csv"
    return {"log": out_dir / "logs" / log,
            "record": out_dir / "logs" / f"{stage}_{dataset}_run.json",
            "checkpoint": out_dir / "checkpoints" / f"{stage}_{dataset}.pt",
            "plots": out_dir / "plots"}


def vae_stage(arch: str = "mlp") -> str:
    """Stage name of train_vae.py for an architecture (vae, vae_conv)."""
    return "vae" if arch == "mlp" else f"vae_{arch}"


def vae_checkpoint(out_dir: Path, dataset: str, arch: str = "mlp") -> Path:
    """The VAE checkpoint of train_vae.py."""
    return stage_paths(out_dir, vae_stage(arch), dataset)["checkpoint"]


def vqvae_stage(arch: str) -> str:
    """Stage name of train_vqvae.py for an architecture (vqvae_conv, vqvae_global)."""
    return f"vqvae_{arch}"


def geodesic_paths(out_dir: Path, dataset: str) -> dict[str, Path]:
    """train_geodesic.py's log (one row per method and K), run record, checkpoint
    folder and plot folder."""
    out_dir = Path(out_dir)
    log = "geodesic_log.csv" if dataset == "mnist" else f"geodesic_{dataset}_log.csv"
    return {"log": out_dir / "logs" / log,
            "record": out_dir / "logs" / f"geodesic_{dataset}_run.json",
            "checkpoints": out_dir / "checkpoints", "plots": out_dir / "plots"}


def quantizer_checkpoint(checkpoints: Path, method: str, dataset: str, K: int, cell: str = "") -> Path:
    """A fitted quantizer of train_geodesic.py: ``<method>_vq_<dataset>_K<K>.pt``, with
    ``_<cell>`` before the suffix for an ablation cell other than the default."""
    return Path(checkpoints) / f"{method}_vq_{dataset}_K{K}{'_' + cell if cell else ''}.pt"


def results_dir(setting: str, base: Path = RESULTS) -> Path:
    """Where a comparison setting writes: ``base`` for the full sweeps (committed),
    ``base/quick`` for the quick setting (git-ignored)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    return Path(base) if setting == "full" else Path(base) / "quick"


def tuned_dir(setting: str, base: Path = RESULTS) -> Path:
    """Where the tuned protocol (train/run_tuned.py) writes in a setting:
    ``<results_dir(setting)>/tuned``."""
    return results_dir(setting, base) / TUNED_DIR


def report_pdf(setting: str) -> Path:
    """report/report.pdf for the published results, report/report_quick.pdf for make all's."""
    return REPORT_DIR / ("report.pdf" if setting == "full" else "report_quick.pdf")


class ResultPaths(NamedTuple):
    """The files of one results folder (``results_dir``)."""

    root: Path

    @property
    def comparison(self) -> Path:
        """One row per dataset, setting, method, K, seed and configuration."""
        return self.root / "comparison.csv"

    @property
    def summary(self) -> Path:
        """Mean and std over seeds per configuration."""
        return self.root / "summary.csv"

    @property
    def generation(self) -> Path:
        """One row per dataset, setting, method, K, seed and configuration of a prior."""
        return self.root / "generation.csv"

    @property
    def generation_summary(self) -> Path:
        """Mean and std over seeds of generation.csv per configuration."""
        return self.root / "generation_summary.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def samples_figure(self, dataset: str, method: str, K: int, setting: str) -> Path:
        """A sample grid of one method's prior (without suffix; PNG and PDF)."""
        return self.figures / f"samples_{dataset}_{method}_K{K}_{setting}"

    def run_record(self, dataset: str, setting: str, runner: str = "comparison") -> Path:
        """A runner's provenance record of one dataset and setting."""
        return self.root / f"{runner}_{dataset}_{setting}_run.json"

    def figure(self, name: str, dataset: str, setting: str) -> Path:
        """A figure's path without suffix (save_figure writes .png and .pdf)."""
        if name not in RUNNER_FIGURES + SUMMARY_FIGURES:
            raise ValueError(f"unknown figure {name!r}")
        return self.figures / f"{name}_{dataset}_{setting}"


def cache_dir(work_dir: Path, kind: str, config_hash: str) -> Path:
    """A cached model of the comparison: ``<work_dir>/<kind>-<hash>/``."""
    return Path(work_dir) / f"{kind}-{config_hash}"


def cached_quantizer(work_dir: Path, method: str, K: int, config_hash: str) -> Path:
    """A cached fitted quantizer of the comparison."""
    return Path(work_dir) / f"{method}_K{K}-{config_hash}.pt"
