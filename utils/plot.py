"""Figures, each drawn from files a run wrote (a CSV or a checkpoint).

Every figure is saved as PNG and PDF. CLI:

    python utils/plot.py vae --log experiments/logs/vae_train_log.csv \
        --checkpoint experiments/checkpoints/vae_mnist.pt
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.grid": True,
                     "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                     "savefig.bbox": "tight"})


def save_figure(fig, path: str | Path) -> list[Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.pdf``; returns both paths. Neither file
    records when it was drawn, so the same data give the same bytes."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return out


def image_grid(images: np.ndarray | torch.Tensor, ncol: int) -> np.ndarray:
    """(N, 1, 28, 28) or (N, 28, 28) in [0, 1] -> one (rows*29-1, ncol*29-1) mosaic."""
    imgs = torch.as_tensor(images).detach().cpu().float().reshape(-1, 28, 28).numpy()
    nrow = -(-len(imgs) // ncol)
    grid = np.ones((nrow * 29 - 1, ncol * 29 - 1), dtype=np.float32)
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncol)
        grid[r * 29:r * 29 + 28, c * 29:c * 29 + 28] = img
    return grid


def load_log(log_csv: str | Path, text_columns=("dataset",)) -> pd.DataFrame:
    """A per-epoch CSV log as a DataFrame, every column but ``text_columns``
    numeric. A malformed file (text in a number column, extra fields, empty,
    binary, no ``epoch`` column) is a one-line CSVError naming the file (and
    line); a torn last line is dropped with a warning."""
    from utils.csvlog import CSVError, read_rows

    rows = read_rows(log_csv, text=text_columns)
    if not rows:
        raise CSVError(f"{log_csv} holds no rows to plot")
    df = pd.DataFrame(rows)
    if "epoch" not in df:
        raise CSVError(f"{log_csv} has no 'epoch' column")
    numeric = [c for c in df.columns if c not in text_columns]
    df[numeric] = df[numeric].apply(pd.to_numeric)
    return df


def plot_curves(log_csv: str | Path, groups: dict[str, list[str]], out: str | Path,
                title: str = "") -> list[Path]:
    """One panel per group of columns of a per-epoch CSV; a ``val_`` column (the
    validation part) is dashed and labelled "validation"."""
    df = load_log(log_csv)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, (label, cols) in zip(axes[0], groups.items()):
        for col in cols:
            if col in df:
                val = col.startswith("val_")
                ax.plot(df["epoch"], df[col], marker="o", ms=3, ls="--" if val else "-",
                        label=("validation " if val else "train ") * (len(cols) > 1)
                        + col.removeprefix("val_"))
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_reconstructions(originals, reconstructions, out, title="", n: int = 16,
                         rows: dict[str, torch.Tensor] | None = None) -> list[Path]:
    """Originals above reconstructions (first ``n``); ``rows`` adds more labelled rows."""
    named = {"original": originals[:n]}
    if reconstructions is not None:
        named["reconstruction"] = reconstructions[:n]
    named.update({k: v[:n] for k, v in (rows or {}).items()})
    fig, axes = plt.subplots(len(named), 1, figsize=(n * 0.55, 0.75 * len(named) + 0.4),
                             squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], named.items()):
        ax.imshow(image_grid(imgs, n), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def project_2d(z: np.ndarray) -> tuple[np.ndarray, str]:
    """(N, d) -> (N, 2): the points themselves when d == 2, else their first two
    principal components. Returns the projection and an axis-label prefix."""
    z = np.asarray(z, dtype=np.float64)
    if z.shape[1] <= 2:
        return np.pad(z, ((0, 0), (0, 2 - z.shape[1]))), "z"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(z), "PC"


def plot_latent_map(z, labels, out, title: str = "") -> list[Path]:
    """Scatter of latents (N, d), projected to 2-D, coloured by label."""
    xy, axis = project_2d(z)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(labels), cmap="tab10", s=4, alpha=0.7,
                    linewidths=0)
    fig.colorbar(sc, ax=ax, label="label", ticks=range(10))
    ax.set(xlabel=f"{axis}1", ylabel=f"{axis}2", title=title or "test latents")
    return save_figure(fig, out)


def plot_code_usage(counts, out, title: str = "") -> list[Path]:
    """Histogram of how often each code is used, codes sorted by use (K,)."""
    counts = np.sort(np.asarray(counts))[::-1]
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1), width=1.0, color="tab:blue")
    used = (counts > 0).mean()
    ax.set(xlabel=f"code (sorted by use; {used:.0%} of {len(counts)} used)",
           ylabel="fraction of assignments", title=title)
    return save_figure(fig, out)


def plot_codebooks_side_by_side(named: dict[str, torch.Tensor], out, title: str = "",
                                ncol: int = 8) -> list[Path]:
    """Several decoded codebooks {name: (K, 1, 28, 28)} in panels side by side
    (the first ``ncol * ncol`` codes of each)."""
    fig, axes = plt.subplots(1, len(named), figsize=(3.3 * len(named), 3.7), squeeze=False)
    for ax, (name, images) in zip(axes[0], named.items()):
        ax.imshow(image_grid(images[:ncol * ncol], ncol), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_usage_panels(named_counts: dict[str, np.ndarray], out, title: str = "",
                      ncol: int = 2) -> list[Path]:
    """Code-usage histograms {name: counts (K,)}, ``ncol`` panels a row (so the
    figure prints legibly at text width), codes sorted by use."""
    nrow = -(-len(named_counts) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.5 * nrow + 0.4), squeeze=False,
                             sharey=True)
    for ax, (name, counts) in zip(axes.flat, named_counts.items()):
        counts = np.sort(np.asarray(counts))[::-1]
        ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1), width=1.0)
        ax.set_title(f"{name}: {(counts > 0).mean():.0%} of {len(counts)} codes used", fontsize=9)
        ax.set_xlabel("code (sorted by use)", fontsize=8)
    for ax in axes.flat[len(named_counts):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of test codes", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_codebook(images, out, title: str = "", ncol: int = 16) -> list[Path]:
    """Decoded codebook (K, 1, 28, 28) as one image grid."""
    grid = image_grid(images, min(ncol, len(images)))
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 45 + 0.4, grid.shape[0] / 45 + 0.6))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, out)


def plot_latent_graph(z, labels, graph, out, *, markers: dict[str, np.ndarray] | None = None,
                      max_nodes: int = 2000, seed: int = 0, title: str = "") -> list[Path]:
    """2-D map (PCA) of latents z (N, d) coloured by label, with the k-NN graph's
    edges among a random subset of ``max_nodes`` nodes, and ``markers``: named
    (M, d) point sets (e.g. medoids, centroids) drawn on top."""
    from matplotlib.collections import LineCollection
    from sklearn.decomposition import PCA

    z = np.asarray(z, dtype=np.float64)
    pca = PCA(n_components=2, random_state=0).fit(z) if z.shape[1] > 2 else None
    proj = (lambda a: pca.transform(np.asarray(a, dtype=np.float64))) if pca else (lambda a: np.asarray(a))
    keep = np.sort(np.random.default_rng(seed).choice(len(z), min(max_nodes, len(z)), replace=False))
    xy = proj(z[keep])
    sub = graph[keep][:, keep].tocoo()
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    ax.add_collection(LineCollection(np.stack([xy[sub.row], xy[sub.col]], axis=1),
                                     colors="0.6", linewidths=0.3, alpha=0.5, zorder=1))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(labels)[keep], cmap="tab10", s=5,
                    linewidths=0, zorder=2)
    fig.colorbar(sc, ax=ax, label="label", ticks=range(10))
    styles = [dict(marker="*", s=90, c="black", edgecolors="white", linewidths=0.5),
              dict(marker="X", s=45, c="crimson", edgecolors="white", linewidths=0.5)]
    for (name, points), style in zip((markers or {}).items(), styles):
        mxy = proj(points)
        ax.scatter(mxy[:, 0], mxy[:, 1], label=name, zorder=3, **style)
    if markers:
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    pc = "PC" if pca else "z"
    ax.set(xlabel=f"{pc}1", ylabel=f"{pc}2", title=title)
    return save_figure(fig, out)


@torch.no_grad()
def plot_quantizers(vae, fitted: dict, graph, z_train, labels, test_images, plot_dir,
                    tag: str, dataset: str) -> list[Path]:
    """Figures of train_geodesic.py: decoded codebooks, the latent map with the
    graph and codes, and test images reconstructed through each quantizer.

    fitted: {(method, K): fitted quantizer}.
    """
    plot_dir = Path(plot_dir)
    paths = []
    for (method, K), qz in fitted.items():
        decoded = torch.sigmoid(vae.decode_logits(qz.codebook))
        paths += plot_codebook(decoded, plot_dir / f"{method}_codebook_{tag}_K{K}",
                               title=f"{method} codebook, K={K}, decoded by the VAE ({dataset})")
    K = max(k for _, k in fitted)
    markers = {f"{m} codes (K={k})": qz.codebook.numpy() for (m, k), qz in fitted.items() if k == K}
    paths += plot_latent_graph(z_train, labels, graph, plot_dir / f"latent_graph_{tag}_K{K}",
                               markers=markers, title=f"training latents of {dataset}: k-NN graph "
                               f"and codes (PCA)")
    n = 16
    z_test = vae.latent_means(test_images[:n])
    rows = {"VAE (no quantization)": torch.sigmoid(vae.decode_logits(z_test))}
    for (method, k), qz in fitted.items():
        if k == K:
            rows[f"{method} K={k}"] = torch.sigmoid(vae.decode_logits(qz.quantize(z_test).codes))
    paths += plot_reconstructions(test_images, None, plot_dir / f"quantized_reconstructions_{tag}_K{K}",
                                  title=f"test images of {dataset} through each quantizer", n=n,
                                  rows=rows)
    return paths


def plot_interpolations(pairs: list[dict], out, *, title: str = "") -> list:
    """Image strips of several interpolations: ``pairs`` is a list of
    {row label: images (n_frames, 1, 28, 28)}; each pair is a block of rows
    (e.g. straight line, geodesic with latent edges, geodesic with decoder edges)."""
    rows = [(f"{label}", imgs) for block in pairs for label, imgs in block.items()]
    n_frames = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(min(6.6, 0.55 * n_frames + 1.6),
                                                   0.62 * len(rows) + 0.5), squeeze=False)
    per_block = len(pairs[0]) if pairs else 1
    for i, (ax, (label, imgs)) in enumerate(zip(axes[:, 0], rows)):
        ax.imshow(image_grid(imgs, n_frames), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        if i % per_block == per_block - 1 and i < len(rows) - 1:
            ax.spines["bottom"].set_linewidth(2.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)
