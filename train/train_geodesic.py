"""Quantize a trained VAE's latent space a posteriori (stage 3 of the pipeline).

    python train/train_geodesic.py --vae-checkpoint experiments/checkpoints/vae_mnist.pt \
        --codebook-size 64 128 256 --method geodesic euclidean

Encodes the training split (encoder means), builds the k-NN graph of those
latents once (joining components if needed), fits each quantizer for each K
(geodesic k-medoids, and k-means as the Euclidean ablation), quantizes the
test split, decodes the codes with the VAE decoder and logs one row per
(method, K) to experiments/logs/geodesic_log.csv.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.geodesic_vq import GeodesicQuantizer, make_quantizer
from models.vae import VAE
from utils.checkpoint import CheckpointError, load_checkpoint, rebuild, save_checkpoint
from utils.cli import SEED_HELP, make_parser, positive_int, run_main, run_only, seed_int, with_out_dir
from utils.csvlog import upsert_row
from train.finetune import finetune_decoder
from utils.datasets import load_dataset
from utils import methods as vocab
from utils import metrics, paths
from utils.runlock import run_lock
from utils.runtime import (ensure_output_dirs, pick_device, plain_config, print_args,
                           seed_everything, write_run_record)

KEY = ["method", "K", "n_neighbors", "seed", "edge_length", "code_vectors", "decoder"]
COLUMNS = KEY + ["geodesic_distortion", "euclidean_distortion",
           "intra_cluster_mean", "inter_cluster_mean", "intra_inter_ratio", "test_bce",
           "test_mse", "perplexity", "usage", "fit_seconds", "dataset"]


@dataclass
class GeodesicConfig:
    """Every setting of a run: the flags below, one field each (same names and defaults)."""

    vae_checkpoint: Path = paths.vae_checkpoint(paths.EXPERIMENTS, "mnist")
    codebook_size: list[int] = field(default_factory=lambda: [64, 128, 256])
    n_neighbors: int = 10
    method: list[str] = field(default_factory=lambda: list(vocab.QUANTIZER_KINDS))
    edge_length: str = "latent"
    code_vectors: str = "medoid"
    finetune_decoder: int = 0
    seed: int = 0
    device: str = run_only("auto")
    data_root: Path = run_only(Path("data"))
    limit: int | None = None
    out_dir: Path = run_only(paths.EXPERIMENTS)
    no_plots: bool = run_only(False)


class GeodesicResult(NamedTuple):
    """What :func:`train` returns: the log, and per (method, K) the quantizer's
    checkpoint and its row of the log."""

    log: Path
    checkpoints: dict[tuple[str, int], Path]
    metrics: dict[tuple[str, int], dict]


def parse_args(argv=None) -> GeodesicConfig:
    default = GeodesicConfig()
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--vae-checkpoint", type=Path, default=default.vae_checkpoint, help="trained VAE")
    p.add_argument("--codebook-size", type=positive_int, nargs="+", default=default.codebook_size,
                   help="codebook sizes K to fit")
    p.add_argument("--n-neighbors", type=positive_int, default=10, help="k of the k-NN graph")
    p.add_argument("--method", nargs="+", default=default.method,
                   choices=vocab.QUANTIZER_KINDS,
                   help="quantizers to fit (geodesic k-medoids; euclidean: k-means)")
    p.add_argument("--edge-length", default="latent", choices=vocab.EDGE_LENGTHS,
                   help="geodesic edges: Euclidean in latent space, or the length of the decoded "
                        "segment (pull-back metric of the VAE decoder)")
    p.add_argument("--code-vectors", default="medoid", choices=vocab.CODE_VECTORS["geodesic"],
                   help="geodesic code vectors: the medoids, or refined to decode their members best")
    p.add_argument("--finetune-decoder", type=int, default=0, metavar="EPOCHS",
                   help="fine-tune a copy of the VAE decoder on each quantizer's codes for EPOCHS "
                        "epochs before decoding the test split (0: the VAE decoder as trained)")
    p.add_argument("--seed", type=seed_int, default=0, help=f"{SEED_HELP}; of the quantizers")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i] (VAE and k-medoids)")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="first N train/test images (default: the VAE run's own limit)")
    p.add_argument("--out-dir", type=Path, default=default.out_dir,
                   help="where logs/, checkpoints/ and plots/ are written")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    return GeodesicConfig(**vars(p.parse_args(argv)))


def load_vae_and_data(path: Path, device, data_root, limit=None):
    """The VAE of ``path`` and the train/test splits it was trained on
    (the dataset recorded in the checkpoint; mismatches are errors)."""
    ckpt = load_checkpoint(path, device, hint="train it first: python train/train_vae.py")
    vae = rebuild(ckpt, VAE, device, path).eval()
    cfg = ckpt.get("config", {})
    requested = cfg.get("dataset", ckpt.get("dataset"))
    limit = limit if limit is not None else cfg.get("limit")
    train = load_dataset(requested, "train", data_root, limit=limit)
    test = load_dataset(requested, "test", data_root, limit=limit)
    if train.name != ckpt.get("dataset"):
        raise CheckpointError(f"{path} was trained on {ckpt.get('dataset')} but {requested} now "
                              f"loads {train.name}; retrain the VAE on this data")
    return vae, ckpt, train, test


def train(args: GeodesicConfig, out_dir: Path | None = None) -> GeodesicResult:
    """Fit every (method, K) of ``args`` on the VAE's latents, evaluate and log
    each into ``out_dir`` (default ``args.out_dir``)."""
    args = with_out_dir(args, out_dir)
    print_args(args)
    device = pick_device(args.device)
    seed_everything(args.seed)
    vae, vae_ckpt, train_data, test = load_vae_and_data(args.vae_checkpoint, device,
                                                        args.data_root, args.limit)
    requested = vae_ckpt["config"].get("dataset", train_data.name)
    out = paths.geodesic_paths(args.out_dir, requested)
    ensure_output_dirs(out["log"].parent, out["checkpoints"])
    with run_lock(out["log"]):  # one writer per log
        return fit_all(args, device, vae, train_data, test, requested, out)


def main(args: GeodesicConfig) -> None:
    train(args)


def fit_all(args, device, vae, train, test, requested: str, out: dict) -> GeodesicResult:
    """Every (method, K) of ``main``: fit, evaluate, save, log; then the plots."""
    write_run_record(out["record"], args, dataset=train.name, data_source=train.source,
                     device=str(device), vae_checkpoint=str(args.vae_checkpoint))
    z_train = vae.latent_means(train.images).numpy()
    z_test = vae.latent_means(test.images).numpy()
    for K in args.codebook_size:
        if K > len(z_train):
            raise ValueError(f"--codebook-size {K} is larger than the number of training "
                             f"latents N={len(z_train)}; use K <= N")
    start = time.perf_counter()
    node_graph = GeodesicQuantizer.build_graph(z_train, args.n_neighbors)
    graph = node_graph.graph
    graph_seconds = time.perf_counter() - start
    print(f"k-NN graph of {len(z_train)} latents (k={args.n_neighbors}): {graph.nnz} edges, "
          f"{graph_seconds:.1f}s", file=sys.stderr)

    fitted, saved, rows = {}, {}, {}
    decoder = "finetuned" if args.finetune_decoder else "frozen"
    for method in args.method:
        name = vocab.quantizer_method(method).name
        variant = vocab.variants(name, edge_lengths=[args.edge_length],
                                 code_vectors=[args.code_vectors], decoders=[decoder])[0]
        for K in args.codebook_size:
            quantizer = make_quantizer(name, K, seed=args.seed, n_neighbors=args.n_neighbors,
                                             device=str(device), variant=variant, decoder=vae.decode)
            start = time.perf_counter()
            if isinstance(quantizer, GeodesicQuantizer):
                fit_graph = quantizer.graph_for(z_train, latent_graph=node_graph)
                quantizer.fit(z_train, graph=fit_graph, images=train.images)
                fit_seconds = time.perf_counter() - start + graph_seconds
            else:
                quantizer.fit(z_train)
                fit_seconds = time.perf_counter() - start
            decoding = vae
            if args.finetune_decoder:
                decoding = finetune_decoder(vae, quantizer.quantize(z_train).codes, train.images,
                                            epochs=args.finetune_decoder, seed=args.seed)
            q = quantizer.quantize(z_test)
            row = {"method": method, "K": K, "n_neighbors": args.n_neighbors, "seed": args.seed,
                   **variant,
                   **metrics.evaluate_codes(
                       recon_logits=decoding.decode_logits(q.codes), x_test=test.images,
                       bits=float(np.log2(K)), test_codes=q.indices.numpy(), n_codes=K,
                       latent={"graph": graph, "z_train": z_train, "z_test": z_test,
                               "codebook": quantizer.codebook.numpy(),
                               "n_neighbors": args.n_neighbors}),
                   "fit_seconds": fit_seconds, "dataset": train.name}
            cell = "" if variant == vocab.variants(name)[0] else "_".join(v for v in variant.values() if v)
            saved[method, K] = paths.quantizer_checkpoint(out["checkpoints"], method, requested, K, cell)
            save_checkpoint(saved[method, K], {
                "quantizer": quantizer.state_dict(), "method": method, "config": plain_config(args),
                "dataset": train.name, "vae_checkpoint": str(args.vae_checkpoint),
                "metrics": {k: v for k, v in row.items() if k not in ("method", "dataset")}})
            # the row after its checkpoint, so that the log never names a quantizer not on disk
            if upsert_row(out["log"], COLUMNS, row, KEY):
                print(f"replaced the earlier row of {method} K={K} in {out['log']}", file=sys.stderr)
            fitted[method, K], rows[method, K] = quantizer, row
            print(f"{method:9s} K={K:4d}: test BCE {row['test_bce']:.1f}, MSE {row['test_mse']:.4f}, "
                  f"geodesic distortion {row['geodesic_distortion']:.3f}, usage {row['usage']:.2f}, "
                  f"fit {fit_seconds:.1f}s", file=sys.stderr)
    print(f"wrote {out['log']}", file=sys.stderr)
    if not args.no_plots:
        from utils.plot import plot_quantizers

        for path in plot_quantizers(vae, fitted, graph, z_train, train.labels.numpy(), test.images,
                                    out["plots"], f"{requested}", train.name):
            print(f"wrote {path}", file=sys.stderr)
    return GeodesicResult(out["log"], saved, rows)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
