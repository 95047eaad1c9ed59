"""The comparison's image figures, drawn from its cached models.

For one seed and codebook size K: decoded codebooks side by side, the same
test images through every method, the latent map with geodesic medoids and
k-means centroids, and code usage on the test split. Every method's way in is
its :mod:`utils.methods` entry; the models come from the runner's cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from train import comparison_methods as cm
from utils import metrics
from utils import methods as vocab
from utils import paths
from utils import plot

# Graph images of the grid interpolation: whole 7x7xD latent grids as points of one k-NN graph.
GRID_INTERPOLATION_IMAGES = 2000


@torch.no_grad()
def draw_figures(args, train, test, device, K: int, seed: int) -> list[Path]:
    """All runner figures of ``args.results_dir`` for (seed, K); returns the files."""
    out = paths.ResultPaths(args.results_dir)
    run = cm.SeedRun(args, seed, train, test, device)
    vae = run.vae
    x = test.images[:16]
    rows = {"VAE (continuous)": torch.sigmoid(vae.decode_logits(vae.latent_means(x)))}
    codebooks, usage, markers = {}, {}, {}
    for name in args.methods:
        method = vocab.get(name)
        if method.build == "vqvae":
            model = cm.vqvae_for(args, method.options["arch"], K, seed, device, method.options)
            rows[name] = torch.sigmoid(model(x.to(device)).recon_logits.cpu())
            codes = torch.cat([c.cpu() for c in cm.batched(model.encode, test.images, device)])
            usage[name] = metrics.code_counts(codes, K)
            if method.codes_per_image == 1:
                codebooks[f"{name} codes"] = model.decode_indices(
                    torch.arange(K, device=device)).cpu()
        elif method.build == "quantizer":
            arch = cm.arch_of(name)
            q, _ = cm.quantizer_for(run, name, K, cm.variants(args, name)[0])
            z_test = run.latents(arch)[1]
            codes, vectors = cm.quantized_latents(q, z_test[:16])
            rows[name] = torch.sigmoid(run.vae_for(arch).decode_logits(vectors))
            usage[name] = metrics.code_counts(cm.quantized_latents(q, z_test)[0], K)
            if arch == "mlp":  # a grid code alone decodes to no image
                what = f"{method.options['quantizer']} codes"
                codebooks[f"{name}: {what}"] = torch.sigmoid(vae.decode_logits(q.codebook))
                markers[name] = q.codebook.numpy()
        elif method.build == "vae" and cm.arch_of(name) == "conv":
            conv = run.vae_for("conv")
            rows["conv VAE (continuous)"] = torch.sigmoid(conv.decode_logits(conv.latent_means(x)))
    where = f"{train.name}, K={K}, seed {seed}"
    fig = lambda name: out.figure(name, args.dataset, args.setting)  # noqa: E731
    files = []
    if codebooks:  # a run of grid methods only has no decodable codebook
        files += plot.plot_codebooks_side_by_side(codebooks, fig("codebooks"),
                                                  title=f"decoded codebooks ({where}; first 64 codes)")
    files += plot.plot_reconstructions(x, None, fig("reconstructions"), n=16, rows=rows,
                                       title=f"the same test images through every method ({where})")
    files += plot.plot_latent_graph(run.z_train, train.labels.numpy(), run.graph, fig("latent_map"),
                                    markers=markers, title=f"VAE latents of {train.name} (PCA), "
                                                           f"k-NN graph, codes (K={K})")
    files += plot.plot_usage_panels(usage, fig("usage"),
                                    title=f"code usage on the test split ({where})")
    files += draw_interpolations(run, fig("interpolation"))
    if any(vocab.get(m).rate == vocab.GRID_RATE and vocab.get(m).build == "quantizer"
           for m in args.methods):
        files += draw_grid_interpolation(run, fig("interpolation_grid"), n_images=min(
            args.grid_fit_images or GRID_INTERPOLATION_IMAGES, GRID_INTERPOLATION_IMAGES))
    return files


def interpolation_ends(labels: np.ndarray, n_pairs: int) -> list[tuple[int, int]]:
    """Pairs of test indices of different classes: the first image of class i and of
    the class half-way round the label list, for the first ``n_pairs`` classes."""
    first = {c: int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)}
    classes = sorted(first)
    return [(first[classes[i]], first[classes[(i + len(classes) // 2) % len(classes)]])
            for i in range(min(n_pairs, len(classes)))]


def interpolation_blocks(Z: np.ndarray, graphs: dict, z_test: np.ndarray, labels: np.ndarray,
                         ends, decode, mean, *, n_neighbors: int, n_frames: int) -> list[dict]:
    """{row label: decoded frames} per pair of test indices ``ends``: the straight line
    between their latents and the shortest path through the training points Z (N, d)
    in each of ``graphs`` ({"latent" | "decoder": sparse N x N}); ``decode`` maps
    (n, d) points to images, ``mean`` is the decoder the decoder lengths are measured
    through (:func:`geodesic.decoder_metric.segment_lengths`)."""
    from geodesic.decoder_metric import segment_lengths
    from geodesic.interpolation import geodesic_path, resample, straight_line

    blocks = []
    for a, b in ends:
        za, zb = z_test[a], z_test[b]
        block = {f"{labels[a]}->{labels[b]} straight": decode(straight_line(za, zb, n_frames))}
        for edge, graph in graphs.items():
            lengths = None if edge == "latent" else (lambda s, e: segment_lengths(mean, s, e))
            path = geodesic_path(graph, Z, za, zb, n_neighbors=n_neighbors, edge_length=lengths)
            block[f"geodesic, {edge} edges"] = decode(resample(path.points, n_frames))
        blocks.append(block)
    return blocks


@torch.no_grad()
def draw_interpolations(run: cm.SeedRun, out, *, n_pairs: int = 3, n_frames: int = 10) -> list[Path]:
    """Between pairs of test images of different classes: the VAE's decoding of the
    straight latent line, and of the shortest k-NN graph path with latent and with
    decoder edge lengths (resampled at even latent arc length)."""
    from geodesic.decoder_metric import bernoulli_mean_decoder

    vae, labels = run.vae, run.test.labels.numpy()
    decode = lambda z: torch.sigmoid(vae.decode_logits(torch.as_tensor(z, dtype=torch.float32)))  # noqa: E731
    graphs = {edge: run.graph_for(edge).graph for edge in ("latent", "decoder")}
    blocks = interpolation_blocks(run.z_train, graphs, run.z_test, labels,
                                  interpolation_ends(labels, n_pairs), decode,
                                  bernoulli_mean_decoder(vae), n_neighbors=run.args.n_neighbors,
                                  n_frames=n_frames)
    return plot.plot_interpolations(blocks, out, title=f"interpolations between test images "
                                                       f"({run.train.name}, seed {run.seed})")


def grid_decoder(conv_vae):
    """The conv VAE's decoder mean on flattened grids: (B, D*7*7) -> (B, 1, 28, 28)."""
    from geodesic.decoder_metric import bernoulli_mean_decoder

    mean, shape = bernoulli_mean_decoder(conv_vae), conv_vae.latent_shape
    return lambda z: mean(z.reshape(-1, *shape))


@torch.no_grad()
def draw_grid_interpolation(run: cm.SeedRun, out, *, n_images: int = GRID_INTERPOLATION_IMAGES,
                            n_pairs: int = 1, n_frames: int = 10) -> list[Path]:
    """The grid rate's interpolation (issue #31, item 4): between two test images, the
    conv VAE's decoding of the straight line between their 7x7xD latent grids, and of
    the shortest path through the grids of the first ``n_images`` training images,
    each grid one point of a k-NN graph with latent (Euclidean) edges or with decoder
    edges, the whole grid's pull-back metric J^T J (J: decoded image w.r.t. all 49 D
    values) integrated along each edge by the trapezoid rule. The per-position metric
    a grid *quantizer* would need is out of reach on 2 cores (docs/protocol.md); a path
    between two images moves every position at once, and this is its metric."""
    from geodesic.decoder_metric import reweight_graph
    from geodesic.graph import connect_components, knn_graph

    conv, labels = run.vae_for("conv"), run.test.labels.numpy()
    z_train, z_test = (z.reshape(len(z), -1) for z in run.latents("conv"))
    Z = z_train[:n_images].astype(np.float64)
    mean = grid_decoder(conv)
    decode = lambda z: mean(torch.as_tensor(z, dtype=torch.float32))  # noqa: E731
    latent = connect_components(knn_graph(Z, run.args.n_neighbors), Z)
    graphs = {"latent": latent, "decoder": reweight_graph(latent, Z, mean)}
    blocks = interpolation_blocks(Z, graphs, z_test, labels, interpolation_ends(labels, n_pairs),
                                  decode, mean, n_neighbors=run.args.n_neighbors,
                                  n_frames=n_frames)
    return plot.plot_interpolations(blocks, out, title=f"grid-rate interpolation between test "
                                                       f"images ({run.train.name}, seed {run.seed}, "
                                                       f"{len(Z)} training grids)")
