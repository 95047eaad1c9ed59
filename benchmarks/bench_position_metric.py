"""Decoder-aware edges at the grid rate (#31 item 2): the cost of per-position metric tensors.

    python benchmarks/bench_position_metric.py --images 300            # 2 CPU cores, a prefix
    python benchmarks/bench_position_metric.py --images 54000 --device cuda

Times :func:`geodesic.position_metric.position_metrics` (49 x D Jacobian-vector products per
image, one position at a time: the conv decoder has no two positions with disjoint output
supports; the tangents vectorized with vmap) on the latent grids of the first ``--images``
Fashion-MNIST training images, side by side with what a user would otherwise write, one
torch.func.jvp per tangent (the same numbers, checked), and beside them, on the same grid
vectors, the latent k-NN graph and the re-weighting of its edges by the metric tensors,
then projects each to the 54,000 training images (2.6M vectors) that a full fit would use. Writes benchmarks/results/position_metric.csv and a run record.
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
    p.add_argument("--batch-size", type=int, default=16, help="grids per vectorized batch")
    p.add_argument("--tangent-chunk", type=int, default=49, help="tangents per vectorized pass")
    p.add_argument("--baseline-batch-size", type=int, default=256,
                   help="grids per JVP of the one-JVP-per-tangent baseline")
    p.add_argument("--conv-vae", type=Path, default=None,
                   help="a conv VAE checkpoint (train_vae.py --arch conv); default: untrained weights")
    p.add_argument("--n-neighbors", type=int, default=10, help="k of the latent k-NN graph")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--data-root", default="data")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained conv VAE")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/position_metric.csv"))
    args = p.parse_args(argv)
    if min(args.images, args.batch_size, args.tangent_chunk, args.baseline_batch_size,
           args.n_neighbors, args.threads) < 1:
        p.error("--images, --batch-size, --tangent-chunk, --baseline-batch-size, --n-neighbors "
                "and --threads must be >= 1")
    return args


def conv_vae(args, device):
    from models.conv_vae import ConvVAE

    if args.conv_vae is None:
        torch.manual_seed(args.seed)
        return ConvVAE().to(device).eval()
    from utils.checkpoint import load_checkpoint, rebuild

    return rebuild(load_checkpoint(args.conv_vae, device), ConvVAE, device, args.conv_vae).eval()


@torch.no_grad()
def one_jvp_per_tangent(decoder, grids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The baseline: the metric of every position by one torch.func.jvp per position and
    coordinate, each a full decoder pass (primal and tangent): (N, H, W, D, D)."""
    N, D, H, W = grids.shape
    out = torch.empty(N, H, W, D, D, dtype=grids.dtype)
    flat = lambda x: decoder(x).flatten(1)  # noqa: E731
    for start in range(0, N, batch_size):
        z = grids[start:start + batch_size]
        for p in range(H * W):
            cols = []
            for a in range(D):
                t = torch.zeros_like(z).view(len(z), D, H * W)
                t[:, a, p] = 1.0
                cols.append(torch.func.jvp(flat, (z,), (t.view_as(z),))[1].cpu())
            J = torch.stack(cols, dim=-1)
            out[start:start + len(z), p // W, p % W] = J.transpose(1, 2) @ J
    return out


def timed(fn, sync):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    sync()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return out, time.perf_counter() - start, time.process_time() - cpu


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

    on_device = lambda z: decoder(z.to(device))  # noqa: E731
    G, metric_s, metric_cpu = timed(lambda: pm.position_metrics(
        on_device, grids, batch_size=args.batch_size, tangent_chunk=args.tangent_chunk), sync)
    G0, base_s, base_cpu = timed(lambda: one_jvp_per_tangent(on_device, grids,
                                                             args.baseline_batch_size), sync)
    if not torch.allclose(G, G0, rtol=1e-4, atol=1e-7):
        raise RuntimeError("the vectorized metrics differ from one JVP per tangent")
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
    stored = round(FULL_IMAGES * H * W * D * (D + 1) / 2 * 4 / 1e6, 1)
    rows = [
        {**common, "stage": f"metric tensors ({name})", "seconds": round(sec, 2),
         "cpu_seconds": round(cpu_s, 2), "per_second": round(products / sec, 1),
         "unit": "JVP images", "speedup_vs_baseline": round(base_s / sec, 2),
         "projected_54k_s": round(sec * scale, 1), "goal_s": GOAL_SECONDS,
         "projected_over_goal": round(sec * scale / GOAL_SECONDS, 2), "stored_mb_54k": stored}
        for name, sec, cpu_s in (("vectorized tangents, position_metrics", metric_s, metric_cpu),
                                 ("baseline: one JVP per tangent", base_s, base_cpu))]
    rows += [
        {**common, "stage": "latent k-NN graph (exact, this prefix)", "seconds": round(graph_s, 2),
         "cpu_seconds": "",
         "per_second": round(len(X) / graph_s, 1), "unit": "vectors", "speedup_vs_baseline": "",
         "projected_54k_s": "",
         "goal_s": "", "projected_over_goal": "", "stored_mb_54k": ""},
        {**common, "stage": "edge re-weighting by the metrics", "seconds": round(reweight_s, 3),
         "cpu_seconds": "",
         "per_second": round(graph.nnz / 2 / reweight_s, 1), "unit": "edges",
         "speedup_vs_baseline": "", "projected_54k_s": round(reweight_s * scale, 1), "goal_s": "", "projected_over_goal": "",
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
