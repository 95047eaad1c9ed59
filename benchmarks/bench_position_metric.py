"""Decoder-aware edges at the grid rate (#31 item 2): the cost of per-position metric tensors.

    python benchmarks/bench_position_metric.py --images 300            # 2 CPU cores, a prefix
    python benchmarks/bench_position_metric.py --images 54000 --device cuda

Times :func:`geodesic.position_metric.position_metrics` (49 x D Jacobian-vector products per
image, one position at a time: the conv decoder has no two positions with disjoint output
supports) on the latent grids of the first ``--images`` Fashion-MNIST training images, and
beside it, on the same grid vectors, the latent k-NN graph and the re-weighting of its edges
by the metric tensors, then projects each to the 54,000 training images (2.6M vectors) that a
full fit would use. Writes benchmarks/results/position_metric.csv and a run record.
The decoder's weights change no cost: without ``--conv-vae`` an untrained conv VAE is used.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from geodesic import position_metric as pm
from models.conv_net import grid_vectors
from bench_geodesic import peak_mb  # benchmarks/ is on sys.path when run as a script
from utils.bench import write_csv
from utils.runtime import write_run_record

FULL_IMAGES = 54_000  # Fashion-MNIST's training images minus the validation part
GOAL_SECONDS = 15 * 60  # #31: the metric tensors of all 2.6M vectors within 15 minutes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=300, help="training images whose grids are measured")
    p.add_argument("--batch-size", type=int, default=256, help="grids per JVP batch")
    p.add_argument("--conv-vae", type=Path, default=None,
                   help="a conv VAE checkpoint (train_vae.py --arch conv); default: untrained weights")
    p.add_argument("--n-neighbors", type=int, default=10, help="k of the latent k-NN graph")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--data-root", default="data")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained conv VAE")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/position_metric.csv"))
    args = p.parse_args(argv)
    if min(args.images, args.batch_size, args.n_neighbors, args.threads) < 1:
        p.error("--images, --batch-size, --n-neighbors and --threads must be >= 1")
    return args


def conv_vae(args, device):
    from models.conv_vae import ConvVAE

    if args.conv_vae is None:
        torch.manual_seed(args.seed)
        return ConvVAE().to(device).eval()
    from utils.checkpoint import load_checkpoint, rebuild

    return rebuild(load_checkpoint(args.conv_vae, device), ConvVAE, device, args.conv_vae).eval()


def main(args):
    from geodesic.decoder_metric import bernoulli_mean_decoder
    from geodesic.graph import connect_components, knn_graph
    from utils.datasets import load_dataset

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train = load_dataset("fashion-mnist", "train", args.data_root, limit=args.images)
    vae = conv_vae(args, device)
    with torch.no_grad():
        grids = vae.latent_means(train.images.to(device)).cpu()
    decoder = bernoulli_mean_decoder(vae)
    n, (D, H, W) = len(grids), grids.shape[1:]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    sync()
    start, cpu = time.perf_counter(), time.process_time()
    G = pm.position_metrics(lambda z: decoder(z.to(device)), grids, batch_size=args.batch_size)
    sync()
    metric_s, metric_cpu = time.perf_counter() - start, time.process_time() - cpu
    X = grid_vectors(grids).numpy()
    Gv = G.reshape(-1, D, D).numpy()
    start = time.perf_counter()
    graph = connect_components(knn_graph(X, args.n_neighbors), X)
    graph_s = time.perf_counter() - start
    start = time.perf_counter()
    pm.reweight_graph_by_metric(graph, X, Gv)
    reweight_s = time.perf_counter() - start
    scale = FULL_IMAGES / n
    products = n * H * W * D
    common = {"images": n, "vectors": len(X), "D": D, "device": str(device), "threads": args.threads,
              "load_average": round(os.getloadavg()[0], 2)}
    rows = [
        {**common, "stage": "metric tensors (JVPs)", "seconds": round(metric_s, 2),
         "cpu_seconds": round(metric_cpu, 2),
         "per_second": round(products / metric_s, 1), "unit": "JVP images",
         "projected_54k_s": round(metric_s * scale, 1), "goal_s": GOAL_SECONDS,
         "projected_over_goal": round(metric_s * scale / GOAL_SECONDS, 2),
         "stored_mb_54k": round(FULL_IMAGES * H * W * D * (D + 1) / 2 * 4 / 1e6, 1)},
        {**common, "stage": "latent k-NN graph (exact, this prefix)", "seconds": round(graph_s, 2),
         "cpu_seconds": "",
         "per_second": round(len(X) / graph_s, 1), "unit": "vectors", "projected_54k_s": "",
         "goal_s": "", "projected_over_goal": "", "stored_mb_54k": ""},
        {**common, "stage": "edge re-weighting by the metrics", "seconds": round(reweight_s, 3),
         "cpu_seconds": "",
         "per_second": round(graph.nnz / 2 / reweight_s, 1), "unit": "edges",
         "projected_54k_s": round(reweight_s * scale, 1), "goal_s": "", "projected_over_goal": "",
         "stored_mb_54k": ""},
    ]
    for r in rows:
        r["peak_mb"] = round(peak_mb(), 1)
        print(", ".join(f"{k} {v}" for k, v in r.items() if v != ""), flush=True)
    write_csv(args.out, rows)
    write_run_record(args.out.with_suffix(".json"), args, dataset=train.name, data_source=train.source,
                     splits=["train"])
    print(f"-> {args.out}")


if __name__ == "__main__":
    from utils.cli import run_main

    raise SystemExit(run_main(main, parse_args()))
