"""Geodesic k-medoids at scale: our sparse fit against the all-pairs reference route.

    python benchmarks/bench_geodesic.py [--sizes 5000 20000] [--big 60000]
        [--clusters 64 512] [--n-neighbors 10] [--quick] [--out benchmarks/results/geodesic.csv]

Data: PCA-20 of the 60,000 Fashion-MNIST training images (a stand-in for VAE
latents, as the ``data`` column says), first N rows. For every N in --sizes
and K in --clusters two routes are timed:

* ours: ``knn_graph`` + ``connect_components`` + ``geodesic_kmedoids``
  (geodesic/graph.py), never an N x N array;
* reference, what a user would otherwise do: ``Isomap(n_neighbors=k).fit(X)``
  for ``dist_matrix_`` (all pairs), then ``kmedoids.fasterpam(D, K)``;

and ours alone at N = --big (the reference needs 14.4 GB there). Every fit
runs in a fresh child process (forked from a fork server started before the
data are loaded, so its ``ru_maxrss`` is its own), which reports its
wall time, its peak resident memory (``ru_maxrss``) and the loss; an idle
child with the same imports and data gives the baseline memory (``idle_mb``).
The CSV holds one row per fit with the ratios to the reference of the same
(N, K): speedup (time_ref / time_ours), memory ratio (peak_ref / peak_ours,
whole processes) and loss gap (loss_ours / loss_ref - 1). For N <= 10,000
each route is fitted --repeats times, interleaved, and the median time kept
(this machine is shared; a single sub-second fit is noisy). A run record
(config, command line, git commit) is written beside the CSV.
"""
from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import time
from pathlib import Path

import numpy as np

COLUMNS = ["n", "k_neighbors", "K", "method", "seconds", "graph_seconds", "cluster_seconds", "peak_mb",
           "idle_mb", "loss", "speedup_vs_ref", "mem_ratio_vs_ref", "loss_gap_vs_ref", "data"]
DATA_NOTE = "PCA-20 of Fashion-MNIST train images (stand-in for VAE latents)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000],
                   help="numbers of points N compared with the all-pairs reference route")
    p.add_argument("--big", type=int, default=60000,
                   help="N of the run of ours alone (no reference); 0 skips it")
    p.add_argument("--clusters", type=int, nargs="+", default=[64, 512], help="numbers of medoids K")
    p.add_argument("--n-neighbors", type=int, default=10, help="k of the k-NN graph (both routes)")
    p.add_argument("--seed", type=int, default=0, help="seed of our k-medoids and of FasterPAM")
    p.add_argument("--repeats", type=int, default=3,
                   help="fits per route, interleaved, for N <= 10,000 (median time, largest peak kept); "
                        "larger N are fitted once")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --sizes 2000 and no big run, written to geodesic_quick.csv")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV output (default benchmarks/results/geodesic.csv, or geodesic_quick.csv with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.big = [2000], 0
    if args.out is None:
        args.out = Path("benchmarks/results") / ("geodesic_quick.csv" if args.quick else "geodesic.csv")
    return args


def load_latents(n_max: int) -> np.ndarray:
    """(n_max, 20) float64: PCA-20 fitted on all 60,000 training images, first n_max rows."""
    from sklearn.decomposition import PCA

    from utils.datasets import load_dataset

    images = load_dataset("fashion-mnist", "train", download=False, val_fraction=0).images  # all 60,000
    flat = images.reshape(len(images), -1).numpy()
    return PCA(n_components=20, random_state=0).fit_transform(flat).astype(np.float64)[:n_max]


# ----------------------------------------------------------------------------
# What runs in the child processes. Each returns a dict; peak memory is the
# child's ru_maxrss (kB on Linux), read after the fit.
# ----------------------------------------------------------------------------
def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def idle_child(X) -> dict:
    import kmedoids  # noqa: F401  (same imports as the fits)
    import sklearn.manifold  # noqa: F401

    import geodesic.graph  # noqa: F401
    return {"peak_mb": peak_mb()}


def ours_child(X, k, K, seed) -> dict:
    import kmedoids  # noqa: F401  (same baseline as the reference child)
    import sklearn.manifold  # noqa: F401

    from geodesic.graph import connect_components, knn_graph
    from geodesic.kmedoids import geodesic_kmedoids
    start = time.perf_counter()
    graph = connect_components(knn_graph(X, n_neighbors=k), X)
    built = time.perf_counter()
    result = geodesic_kmedoids(graph, K, seed=seed)
    end = time.perf_counter()
    return {"seconds": end - start, "graph_seconds": built - start, "cluster_seconds": end - built,
            "peak_mb": peak_mb(), "loss": result.loss}


def reference_child(X, k, K, seed) -> dict:
    import kmedoids
    from sklearn.manifold import Isomap

    import geodesic.graph  # noqa: F401  (same baseline as our child)
    start = time.perf_counter()
    D = Isomap(n_neighbors=k).fit(X).dist_matrix_
    built = time.perf_counter()
    result = kmedoids.fasterpam(D, K, random_state=seed)
    end = time.perf_counter()
    return {"seconds": end - start, "graph_seconds": built - start, "cluster_seconds": end - built,
            "peak_mb": peak_mb(), "loss": float(result.loss)}


def start_clean_forkserver() -> None:
    """Start the fork server while this process is still small.

    Linux keeps a process's peak RSS across fork and exec (``ru_maxrss`` of a
    child spawned from this process, after the data are loaded, starts at our
    ~1 GB). Children forked from a server started early start near zero.
    """
    multiprocessing.get_context("forkserver")
    multiprocessing.forkserver.ensure_running()


def in_fresh_process(fn, *args) -> dict:
    """Run ``fn(*args)`` in a new process (forked from the clean fork server) and return its result."""
    with multiprocessing.get_context("forkserver").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


# ----------------------------------------------------------------------------
def ratios(row: dict, ref: dict | None) -> dict:
    if ref is None or row["method"] == "reference":
        return {"speedup_vs_ref": "", "mem_ratio_vs_ref": "", "loss_gap_vs_ref": ""}
    return {"speedup_vs_ref": round(ref["seconds"] / row["seconds"], 2),
            "mem_ratio_vs_ref": round(ref["peak_mb"] / row["peak_mb"], 2),
            "loss_gap_vs_ref": round(row["loss"] / ref["loss"] - 1, 5)}


def measure(method: str, X, k: int, K: int, seed: int) -> dict:
    """One fit in a fresh process; returns its timings, peak memory and loss."""
    fn = ours_child if method == "ours" else reference_child
    print(f"  {method:9s} N={len(X):6d} K={K:4d} ...", end="", flush=True)
    out = in_fresh_process(fn, X, k, K, seed)
    print(f" {out['seconds']:8.2f} s, {out['peak_mb']:7.0f} MB, loss {out['loss']:.6g}", flush=True)
    return out


def summarise(method: str, fits: list[dict], X, k: int, K: int, idle_mb: float) -> dict:
    """One CSV row from repeated fits: median times, largest peak, the (deterministic) loss."""
    def median(key):
        return float(np.median([f[key] for f in fits]))
    return {"n": len(X), "k_neighbors": k, "K": K, "method": method,
            "seconds": round(median("seconds"), 3), "graph_seconds": round(median("graph_seconds"), 3),
            "cluster_seconds": round(median("cluster_seconds"), 3),
            "peak_mb": round(max(f["peak_mb"] for f in fits), 1), "idle_mb": round(idle_mb, 1),
            "loss": round(fits[0]["loss"], 4), "data": DATA_NOTE}


def print_table(rows: list[dict]) -> None:
    head = f"{'N':>6} {'K':>4} {'method':9} {'seconds':>8} {'peak MB':>8} {'loss':>11} " \
           f"{'speedup':>8} {'mem ratio':>9} {'loss gap':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        gap = f"{100 * r['loss_gap_vs_ref']:+.2f}%" if r["loss_gap_vs_ref"] != "" else ""
        speed = f"{r['speedup_vs_ref']:.1f}x" if r["speedup_vs_ref"] != "" else ""
        mem = f"{r['mem_ratio_vs_ref']:.1f}x" if r["mem_ratio_vs_ref"] != "" else ""
        print(f"{r['n']:>6} {r['K']:>4} {r['method']:9} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} "
              f"{r['loss']:>11.6g} {speed:>8} {mem:>9} {gap:>9}")


def main(args):
    from utils.bench import write_csv
    from utils.runtime import print_args, write_run_record

    start_clean_forkserver()
    print_args(args)
    sizes = sorted(set(args.sizes))
    n_max = max(sizes + [args.big])
    X_all = load_latents(n_max)
    idle_mb = in_fresh_process(idle_child, X_all[:n_max])["peak_mb"]
    print(f"idle child: {idle_mb:.0f} MB; {os.cpu_count()} CPU cores")
    rows = []
    for n in sizes:
        X = X_all[:n]
        repeats = args.repeats if n <= 10_000 else 1
        for K in args.clusters:
            fits = {"ours": [], "reference": []}
            for _ in range(repeats):  # interleaved, so that changing load hits both routes alike
                for method in fits:
                    fits[method].append(measure(method, X, args.n_neighbors, K, args.seed))
            ours = summarise("ours", fits["ours"], X, args.n_neighbors, K, idle_mb)
            ref = summarise("reference", fits["reference"], X, args.n_neighbors, K, idle_mb)
            for row in (ours, ref):
                row.update(ratios(row, ref))
                rows.append(row)
            write_csv(args.out, [{c: r[c] for c in COLUMNS} for r in rows])  # keep what is done
    if args.big:
        for K in args.clusters:
            X = X_all[:args.big]
            row = summarise("ours", [measure("ours", X, args.n_neighbors, K, args.seed)], X, args.n_neighbors, K,
                            idle_mb)
            row.update(ratios(row, None))
            rows.append(row)
    write_csv(args.out, [{c: r[c] for c in COLUMNS} for r in rows])
    write_run_record(args.out.with_suffix(".json"), args, data=DATA_NOTE, idle_mb=idle_mb)
    print()
    print_table(rows)
    print(f"\n-> {args.out}")
    return rows


if __name__ == "__main__":
    main(parse_args())
