"""The comparison's image figures, drawn from its cached models.

For one seed and codebook size K: decoded codebooks side by side, the same
test images through every method, the latent map with geodesic medoids and
k-means centroids, and code usage on the test split. Every method's way in is
its :mod:`utils.methods` entry; the models come from the runner's cache.
"""
from __future__ import annotations

from pathlib import Path

import torch

from train import comparison_methods as cm
from utils import metrics
from utils import methods as vocab
from utils import paths
from utils import plot


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
            model = cm.vqvae_for(args, method.options["arch"], K, seed, device)
            rows[name] = torch.sigmoid(model(x.to(device)).recon_logits.cpu())
            codes = torch.cat([c.cpu() for c in cm.batched(model.encode, test.images, device)])
            usage[name] = metrics.code_counts(codes, K)
            if method.codes_per_image == 1:
                codebooks[f"{name} codes"] = model.decode_indices(
                    torch.arange(K, device=device)).cpu()
        elif method.build == "quantizer":
            q, _ = cm.quantizer_for(run, name, K, cm.variants(args, name)[0])
            rows[name] = torch.sigmoid(vae.decode_logits(q.quantize(run.z_test[:16]).codes))
            usage[name] = metrics.code_counts(q.quantize(run.z_test).indices, K)
            what = f"{method.options['quantizer']} codes"
            codebooks[f"{name}: {what}"] = torch.sigmoid(vae.decode_logits(q.codebook))
            markers[name] = q.codebook.numpy()
    where = f"{train.name}, K={K}, seed {seed}"
    fig = lambda name: out.figure(name, args.dataset, args.setting)  # noqa: E731
    files = plot.plot_codebooks_side_by_side(codebooks, fig("codebooks"),
                                             title=f"decoded codebooks ({where}; first 64 codes)")
    files += plot.plot_reconstructions(x, None, fig("reconstructions"), n=16, rows=rows,
                                       title=f"the same test images through every method ({where})")
    files += plot.plot_latent_graph(run.z_train, train.labels.numpy(), run.graph, fig("latent_map"),
                                    markers=markers, title=f"VAE latents of {train.name} (PCA), "
                                                           f"k-NN graph, codes (K={K})")
    files += plot.plot_usage_panels(usage, fig("usage"),
                                    title=f"code usage on the test split ({where})")
    return files
