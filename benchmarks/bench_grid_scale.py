"""Geodesic k-medoids at latent-grid scale: approximate k-NN graph, collapsed duplicates, against CLARA.

    python benchmarks/bench_grid_scale.py [--n-images 60000] [--clusters 512] [--prefix 300000]
        [--init k-medoids++ k-means] [--swap-budget 32] [--prefix-clara] [--clara-samples 5]
        [--clara-size 20000] [--threads 2] [--no-exact] [--conv-vae CKPT] [--quick]
        [--out benchmarks/results/grid_scale.csv]

Data, a stand-in for a conv encoder's 7x7 latent grid (the ``data`` column
says so): 8x8 patches at stride 4 of the first --n-images Fashion-MNIST
training images padded to 32x32 (49 patches per image, image by image), PCA
to 16 dimensions fitted on every 20th patch. Exact duplicate patches are
collapsed before the PCA and expanded after it, so duplicates stay
bit-identical (60,000 images: 2,940,000 vectors, 2,459,354 unique).
With ``--conv-vae CKPT``, the data are instead a trained conv VAE's own 7x7
grid latent means of the training part (54,000 images, 2,646,000 vectors).

Stages, each in a fresh child process forked from a fork server started
before the data are loaded, so that its peak RSS (``ru_maxrss``) is its own;
wall and CPU seconds are both reported (this machine is shared: wall time
includes waiting for the CPU, single-threaded CPU time does not):

* ``prefix``: the first --prefix vectors, graph (``NeighborIndex`` +
  ``connect_components``) then ``geodesic_kmedoids(weights=counts)``, once
  per ``--init`` (the ``method`` names it; ``k-means``: the start of
  ``geodesic.kmeans_init.kmeans_init_nodes`` on the nodes, --threads faiss
  threads, its seconds inside the fit's), each fit's seconds per phase in
  its ``note``; graph + fit in a ``prefix_total`` row; then, with
  --swap-budget B > 0, one more fit (k-medoids++) whose swap phase stops after
  B x nodes node visits (``max_swap_visits``; "swap budget B N" in its
  ``method``): the time/loss knob at this scale. With --prefix-clara, CLARA
  (below) on the prefix too. The route without this module, for
  the ratio: today's exact scikit-learn graph on the same vectors
  (``knn_graph`` + ``connect_components``, duplicates not collapsed); its fit
  is not re-run (about 30 min, docs/shared notes).
* ``graph``: all vectors, duplicates collapsed, HNSW (faiss) above 200,000
  nodes; recall@10 of the graph's lists on 1,000 nodes against brute force.
* ``kmedoids``: geodesic k-medoids at K = --clusters on all nodes, weighted
  by multiplicity, once per ``--init`` (and at --swap-budget).
* ``predict``: the next --predict vectors after the prefix quantized out of
  sample by ``GeodesicKMedoids`` fitted on the prefix (``predict`` timed),
  beside faiss k-means' nearest centroid of the same rows.
* ``prefix_kmeans`` / ``kmeans``: what a user would run instead, on the same
  vectors: ``faiss.Kmeans(d, K, niter=20, max_points_per_centroid=10**9,
  seed=--seed)`` on all the prefix's (all) vectors, duplicates included,
  --threads faiss threads (:func:`geodesic.kmeans_init.kmeans_centroids`);
  timed and its peak RSS taken before scoring. Its ``loss`` is geodesic,
  comparable with the fits': the centroids snapped to distinct nearest
  nodes (:func:`geodesic.kmeans_init.snap_to_nodes`), scored on the graph,
  weighted by multiplicity.
* ``clara`` (Kaufman & Rousseeuw, 1990): --clara-samples random subsamples of
  --clara-size *vectors* (duplicates included, as a user would draw them);
  on each, the exact geodesic matrix of the subsample's own k-NN graph
  (all-pairs Dijkstra; the full graph's geodesics among 20,000 nodes would
  take 20,000 full-graph Dijkstra runs), ``kmedoids.fasterpam`` on it, and
  its medoids scored on the whole graph with one multi-source Dijkstra,
  weighted by multiplicity; the best of the samples is kept.
* ``prefix_on_full``: the prefix fit's medoids scored on the whole graph
  (one multi-source Dijkstra, weighted by multiplicity), against the fit on
  all vectors: what fitting on a subsample of images costs in loss (the
  comparison's ``--grid-fit-images``; ``--prefix 294000`` is its 6,000 images).
* ``ratio`` rows: per init, graph + fit seconds / faiss k-means seconds
  (prefix and all), loss geodesic / snapped k-means, loss geodesic / CLARA
  and loss prefix fit / full fit; loss init k-means / init k-medoids++ when
  both ran; and prefix graph time exact / ours.

A run record (config, command line, git commit) is written beside the CSV.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_geodesic import in_fresh_process, peak_mb, start_clean_forkserver  # children with their own peak RSS

COLUMNS = ["stage", "n_points", "n_nodes", "K", "method", "seconds", "cpu_seconds", "peak_mb", "recall_at_10",
           "loss", "n_components", "ratio", "note", "data"]
INITS = ("k-medoids++", "k-means")
DATA_NOTE = ("Fashion-MNIST train 8x8 patches at stride 4 (padded to 32x32), PCA-16: stand-in for a conv "
             "VAE's 7x7 latent grid")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n-images", type=int, default=60000,
                   help="training images (49 vectors each; with --conv-vae, counted before the validation "
                        "part is held out)")
    p.add_argument("--clusters", type=int, default=512, help="number of medoids K")
    p.add_argument("--n-neighbors", type=int, default=10, help="k of the k-NN graph (all routes)")
    p.add_argument("--prefix", type=int, default=300000, help="vectors in the prefix run; 0 skips it")
    p.add_argument("--init", nargs="*", choices=INITS, default=list(INITS),
                   help="starts of geodesic k-medoids, each fitted side by side at the default swap "
                        "cap (geodesic_kmedoids's k-medoids++, or weighted faiss k-means snapped to "
                        "nodes); none (a bare --init) leaves only the --swap-budget fit")
    p.add_argument("--predict", type=int, default=490000,
                   help="vectors after the prefix quantized out of sample by a fit on the prefix (#30: the "
                        "490k test grid vectors), timed beside k-means' nearest centroid; 0 skips it")
    p.add_argument("--max-iter", type=int, default=3,
                   help="alternating (Voronoi) steps of every fit before the swaps "
                        "(geodesic_kmedoids's max_iter)")
    p.add_argument("--swap-init", choices=INITS, default="k-medoids++",
                   help="the start of the --swap-budget fit")
    p.add_argument("--swap-budget", type=float, default=32.0,
                   help="one more fit (init --swap-init) beside the default ones, its swap work capped at "
                        "this many node visits per graph node (geodesic_kmedoids's max_swap_visits = "
                        "budget x nodes; the default 'auto' is max(2^26, 64 N)); 0 skips it")
    p.add_argument("--prefix-clara", action="store_true",
                   help="also run CLARA on the prefix (its loss beside the prefix fits')")
    p.add_argument("--clara-samples", type=int, default=5, help="CLARA subsamples; 0 skips CLARA")
    p.add_argument("--clara-size", type=int, default=20000, help="vectors per CLARA subsample")
    p.add_argument("--no-exact", action="store_true",
                   help="skip the exact scikit-learn graph of the prefix (the reference route, ~2 min at 300k)")
    p.add_argument("--no-full", action="store_true", help="skip the graph and fit of all vectors (and CLARA)")
    p.add_argument("--conv-vae", type=Path, default=None,
                   help="a conv VAE checkpoint (train_vae.py --arch conv on fashion-mnist): use its 7x7 grid of "
                        "latent means of the training split instead of the patch stand-in")
    p.add_argument("--seed", type=int, default=0, help="seed of k-medoids, of CLARA's samples and of FasterPAM")
    p.add_argument("--threads", type=int, default=2,
                   help="faiss threads of the HNSW graph, of the k-means start and of the faiss k-means stage "
                        "(NeighborIndex's default is 1: the same graph every run)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2,000 images, K 64, prefix 30,000, 2 CLARA samples of 3,000, "
                        "written to grid_scale_quick.csv")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV output (default benchmarks/results/grid_scale.csv, or grid_scale_quick.csv with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_images, args.clusters, args.prefix = 2000, 64, 30000
        args.clara_samples, args.clara_size, args.predict = 2, 3000, min(args.predict, 20000)
    if min(args.n_images, args.clusters, args.n_neighbors, args.threads) < 1 or min(args.prefix,
                                                                                   args.clara_samples,
                                                                                   args.predict,
                                                                                   args.swap_budget) < 0:
        p.error("--n-images, --clusters, --n-neighbors and --threads must be >= 1, --prefix, --clara-samples, "
                "--predict and --swap-budget >= 0")
    if args.max_iter < 0:
        p.error("--max-iter must be >= 0")
    if not args.init and not args.swap_budget:
        p.error("nothing to fit: give an --init or a --swap-budget > 0")
    args.init = list(dict.fromkeys(args.init))  # each init once, in the order given
    if args.out is None:
        args.out = Path("benchmarks/results") / ("grid_scale_quick.csv" if args.quick else "grid_scale.csv")
    return args


def _unique_rows(A: np.ndarray):
    """np.unique of the rows of a C-contiguous array through a bytes view (returns first index, inverse)."""
    keys = np.ascontiguousarray(A).view(np.dtype((np.void, A.dtype.itemsize * A.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def grid_standin(n_images: int) -> np.ndarray:
    """(49 n_images, 16) float32 stand-in latents, image by image, patch by patch (row-major 7x7)."""
    import torch
    from sklearn.decomposition import PCA

    from utils.datasets import load_dataset

    # val_fraction=0: every training image (the grid facts count 60,000 x 49 vectors)
    images = load_dataset("fashion-mnist", "train", download=False, limit=n_images, val_fraction=0).images
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))  # (n, 1, 32, 32)
    patches = padded.unfold(2, 8, 4).unfold(3, 8, 4).reshape(len(images) * 49, 64)
    pixels = (patches * 255).round().to(torch.uint8).numpy()  # the stored 8-bit values, exactly
    first, inverse = _unique_rows(pixels)
    pca = PCA(n_components=16, random_state=0).fit(pixels[::20].astype(np.float32) / 255)
    # transform each distinct patch once: duplicates then stay bit-identical after the PCA
    unique = pca.transform(pixels[first].astype(np.float32) / 255).astype(np.float32)
    return unique[inverse]


def conv_vae_latents(checkpoint: Path, n_images: int) -> np.ndarray:
    """(49 n, D) float32 grid latent means of a conv VAE on the first n images of
    Fashion-MNIST's training part (the comparison's split: validation held out),
    image-major like the comparison's ``fit_vectors``."""
    import torch

    from models.conv_net import grid_vectors
    from train import train_vae
    from utils.checkpoint import load_checkpoint, rebuild
    from utils.datasets import load_dataset

    vae = rebuild(load_checkpoint(checkpoint, "cpu"), train_vae.ARCHS["conv"], "cpu", checkpoint).eval()
    images = load_dataset("fashion-mnist", "train", download=False, limit=n_images).images
    return grid_vectors(torch.as_tensor(vae.latent_means(images))).numpy().astype(np.float32)


# ----------------------------------------------------------------------------
# Children. Each returns a dict; peak memory is the child's ru_maxrss.
# ----------------------------------------------------------------------------
class _Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict:
        return {"seconds": round(time.perf_counter() - self.wall, 2), "cpu_seconds": round(time.process_time() - self.cpu, 2)}


def _repair(graph, points):
    """connect_components, returning the number of components it found."""
    from geodesic.graph import connect_components

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repaired = connect_components(graph, points)
    n_components = 1
    for w in caught:
        words = str(w.message).split()
        if "components;" in words:
            n_components = int(words[words.index("components;") - 2])
    return repaired, n_components


def graph_child(z_path: str, n_points: int, k: int, method: str, out_path: str, threads: int = 1) -> dict:
    """NeighborIndex (duplicates collapsed) + connect_components; saves graph, counts and points."""
    import scipy.sparse as sp

    from geodesic.ann import NeighborIndex, sample_recall

    Z = np.load(z_path, mmap_mode="r")[:n_points]
    clock = _Clock()
    index = NeighborIndex(np.ascontiguousarray(Z), k, method=method, n_threads=threads)
    graph, n_components = _repair(index.graph(), index.points_)
    out = clock.read()
    out.update(method=index.method_ + (f", {threads} threads" if index.method_ == "hnsw" else ""),
               n_nodes=len(index.points_), n_components=n_components, peak_mb=peak_mb(),
               recall_at_10=round(sample_recall(index, 1000), 4))
    sp.save_npz(out_path, graph, compressed=False)
    np.savez(out_path + ".nodes.npz", counts=index.counts_, inverse=index.inverse_, points=index.points_)
    return out


def exact_route_child(z_path: str, n_points: int, k: int) -> dict:
    """Today's route: exact scikit-learn graph of all vectors (duplicates kept) + repair."""
    from geodesic.graph import knn_graph

    Z = np.ascontiguousarray(np.load(z_path, mmap_mode="r")[:n_points])
    clock = _Clock()
    graph, n_components = _repair(knn_graph(Z, k), Z)
    out = clock.read()
    out.update(method="exact sklearn, duplicates kept", n_nodes=n_points, n_components=n_components,
               peak_mb=peak_mb())
    return out


def phase_note(phases: dict) -> str:
    """"k-means init 1.2 s, seeding 6.1 s, ..." from a dict of seconds per phase."""
    return ", ".join(f"{name} {seconds:.3g} s" for name, seconds in phases.items())


def kmedoids_child(graph_path: str, K: int, seed: int, init: str = "k-medoids++", threads: int = 1,
                   budget: float = 0.0, max_iter: int = 3) -> dict:
    """geodesic_kmedoids on a saved graph, weighted by multiplicity, from ``init`` (one of INITS);
    with ``budget`` > 0 its swap work capped at budget x nodes visits (else the default)."""
    import scipy.sparse as sp

    from geodesic.kmeans_init import kmeans_init_nodes
    from geodesic.kmedoids import geodesic_kmedoids

    graph = sp.load_npz(graph_path)
    nodes = np.load(graph_path + ".nodes.npz")
    counts = nodes["counts"]
    clock = _Clock()
    phases, start = {}, "k-medoids++"
    if init == "k-means":
        start = kmeans_init_nodes(nodes["points"], counts, K, seed, n_threads=threads)
        phases["k-means init"] = time.perf_counter() - clock.wall
    cap = int(budget * graph.shape[0]) if budget > 0 else "auto"
    result = geodesic_kmedoids(graph, K, weights=counts, seed=seed, verbose=True, init=start,
                               max_swap_visits=cap, max_iter=max_iter)
    out = clock.read()
    phases.update(result.seconds)
    out.update(peak_mb=peak_mb(), loss=result.loss, medoids=result.medoids, note=phase_note(phases))
    return out


def kmeans_child(z_path: str, n_points: int, K: int, seed: int, threads: int, graph_path: str) -> dict:
    """faiss k-means on the first n_points vectors as a user runs it; the geodesic loss of its
    centroids snapped to the graph's nodes (scoring not timed)."""
    import scipy.sparse as sp

    from geodesic.kmeans_init import kmeans_centroids, snap_to_nodes
    from geodesic.kmedoids import kmedoids_loss

    Z = np.ascontiguousarray(np.load(z_path, mmap_mode="r")[:n_points])
    clock = _Clock()
    centroids = kmeans_centroids(Z, K, seed=seed, niter=20, max_points_per_centroid=10**9, n_threads=threads)
    out = clock.read()
    out["peak_mb"] = peak_mb()
    del Z
    nodes = np.load(graph_path + ".nodes.npz")
    medoids = snap_to_nodes(centroids, nodes["points"], n_threads=threads)
    out.update(method=f"faiss k-means, 20 iterations, {threads} threads", n_nodes=len(nodes["counts"]),
               loss=kmedoids_loss(sp.load_npz(graph_path), medoids, nodes["counts"]),
               note="loss: centroids snapped to distinct nearest nodes, geodesic on the graph, weighted "
                    "by multiplicity; seconds and peak: k-means alone")
    return out


def predict_child(z_path: str, n_fit: int, n_new: int, K: int, seed: int, threads: int) -> dict:
    """Out-of-sample quantization (#30 item 4): ``GeodesicKMedoids`` fitted on the first
    n_fit vectors (not timed), then ``predict`` of the next n_new vectors, timed; beside it
    what a user of k-means runs: faiss k-means' nearest centroid (``IndexFlatL2``) of the
    same rows, timed alone. Returns the seconds of both and the labels (for tests)."""
    from geodesic.ann import faiss_threads
    from geodesic.kmeans_init import kmeans_centroids
    from models.geodesic_kmedoids import GeodesicKMedoids

    Z = np.load(z_path, mmap_mode="r")
    fit, new = np.ascontiguousarray(Z[:n_fit]), np.ascontiguousarray(Z[n_fit:n_fit + n_new])
    est = GeodesicKMedoids(K, random_state=seed).fit(fit)
    clock = _Clock()
    labels = est.predict(new)
    out = clock.read()
    centroids = kmeans_centroids(fit, K, seed=seed, niter=20, max_points_per_centroid=10**9, n_threads=threads)
    with faiss_threads(threads) as faiss:
        flat = faiss.IndexFlatL2(centroids.shape[1])
        flat.add(centroids)
        start = time.perf_counter()
        _, nearest = flat.search(new.astype(np.float32), 1)
        seconds = time.perf_counter() - start
    out.update(kmeans_seconds=round(seconds, 3), peak_mb=peak_mb(), n_nodes=len(est.nodes_),
               labels=labels, kmeans_labels=nearest[:, 0],
               method=f"GeodesicKMedoids.predict ({est.index_.method_ if est.index_ else 'one node'} "
                      f"search, 1 thread) of {len(new)} new vectors")
    return out


def prefix_on_full_child(full_path: str, prefix_path: str, prefix_medoids) -> dict:
    """Loss on the whole graph of medoids found on the prefix graph.

    A prefix node is mapped to the first prefix vector it stands for, which
    is also vector number ``i`` of the whole set, then to that vector's node
    in the whole graph."""
    import scipy.sparse as sp

    from geodesic.kmedoids import kmedoids_loss

    _, first_vector = np.unique(np.load(prefix_path + ".nodes.npz")["inverse"], return_index=True)
    full = np.load(full_path + ".nodes.npz")
    medoid_nodes = full["inverse"][first_vector[np.asarray(prefix_medoids)]]
    clock = _Clock()
    loss = kmedoids_loss(sp.load_npz(full_path), medoid_nodes, full["counts"])
    out = clock.read()
    out.update(peak_mb=peak_mb(), loss=loss)
    return out


def clara_child(graph_path: str, K: int, k: int, n_samples: int, size: int, seed: int) -> dict:
    """CLARA with FasterPAM on the exact geodesics of each subsample's own k-NN graph."""
    import kmedoids
    import scipy.sparse as sp
    from scipy.sparse.csgraph import dijkstra

    from geodesic.graph import knn_graph
    from geodesic.kmedoids import kmedoids_loss

    graph = sp.load_npz(graph_path)
    nodes = np.load(graph_path + ".nodes.npz")
    counts, inverse, points = nodes["counts"], nodes["inverse"], nodes["points"]
    rng = np.random.default_rng(seed)
    clock = _Clock()
    losses, sub_seconds = [], []
    for s in range(n_samples):
        start = time.perf_counter()
        drawn = inverse[rng.choice(len(inverse), size, replace=False)]  # node of each drawn vector
        sub_nodes, sub_inverse = np.unique(drawn, return_inverse=True)
        sub_graph, _ = _repair(knn_graph(points[sub_nodes], k), points[sub_nodes])
        D = dijkstra(sub_graph, directed=False).astype(np.float32)  # (U_s, U_s), U_s <= size
        D = D[np.ix_(sub_inverse, sub_inverse)]  # the drawn vectors, duplicates expanded
        fit = kmedoids.fasterpam(D, K, random_state=seed + s, n_cpu=1)
        del D
        medoid_nodes = sub_nodes[sub_inverse[np.asarray(fit.medoids)]]
        losses.append(kmedoids_loss(graph, medoid_nodes, counts))
        sub_seconds.append(time.perf_counter() - start)
        print(f"  CLARA sample {s + 1}/{n_samples}: {len(sub_nodes)} nodes, loss on all {losses[-1]:.6g}, "
              f"{sub_seconds[-1]:.0f} s", flush=True)
    out = clock.read()
    out.update(peak_mb=peak_mb(), loss=min(losses), losses=losses)
    return out


# ----------------------------------------------------------------------------
def data_note(args) -> str:
    if args.conv_vae is None:
        return DATA_NOTE
    return (f"Fashion-MNIST train (validation part held out) 7x7 grid latent means of the conv VAE "
            f"{args.conv_vae.name}")


def row(stage, n_points, result=None, **fields) -> dict:
    out = {c: "" for c in COLUMNS}
    out.update(stage=stage, n_points=n_points)
    for key in COLUMNS:
        if result is not None and key in result:
            out[key] = result[key]
    out.update(fields)
    if isinstance(out["loss"], float):
        out["loss"] = round(out["loss"], 2)
    if isinstance(out["peak_mb"], float):
        out["peak_mb"] = round(out["peak_mb"], 1)
    return out


def report(stage: str, result: dict) -> None:
    keys = ("method", "n_nodes", "seconds", "cpu_seconds", "peak_mb", "recall_at_10", "n_components", "loss")
    print(f"{stage}: " + ", ".join(f"{k} {result[k]}" for k in keys if k in result), flush=True)


def fits_beside_kmeans(args, add, stage: str, n_points: int, g: dict, graph_path: str, z_path: str,
                       target: str) -> dict:
    """Geodesic k-medoids once per ``--init`` on a saved graph, then faiss k-means on the same
    vectors, with their rows and ratio rows passed to ``add``; returns {init: fit}.

    ``stage`` is "prefix_" or "": the rows are ``<stage>kmedoids`` (and ``prefix_total``)
    and ``<stage>kmeans``; ``g`` is the graph stage's result, ``target`` the fit's note.
    """
    K, fits = args.clusters, {}
    for init, budget in fit_variants(args):
        label = init if not budget else f"{init}, swap budget {budget:g} N"
        label += f", {args.max_iter} alternating steps" if args.max_iter != 3 else ""
        f = in_fresh_process(kmedoids_child, graph_path, K, args.seed, init, args.threads, budget,
                             args.max_iter)
        report(f"{stage}kmedoids, init {label}", f)
        add(row(f"{stage}kmedoids", n_points, f, n_nodes=g["n_nodes"], K=K, method=f"geodesic, weighted, init {label}",
                note=f["note"] if stage else f"{target}; {f['note']}"))
        if stage:
            add(row("prefix_total", n_points, n_nodes=g["n_nodes"], K=K, method=f"graph + fit, init {label}",
                    seconds=round(g["seconds"] + f["seconds"], 2),
                    cpu_seconds=round(g["cpu_seconds"] + f["cpu_seconds"], 2), note=target))
        fits[label] = f
    km = in_fresh_process(kmeans_child, z_path, n_points, K, args.seed, args.threads, graph_path)
    report(f"{stage}kmeans", km)
    add(row(f"{stage}kmeans", n_points, km, K=K))
    which = "prefix" if stage else "all vectors"
    for init, f in fits.items():
        add(row("ratio", n_points, K=K, ratio=round((g["seconds"] + f["seconds"]) / km["seconds"], 2),
                method=f"{which}: graph + fit seconds, init {init} / faiss k-means seconds",
                note=f"CPU seconds ratio {(g['cpu_seconds'] + f['cpu_seconds']) / max(km['cpu_seconds'], 1e-9):.2f}"))
        add(row("ratio", n_points, K=K, ratio=round(f["loss"] / km["loss"], 4),
                method=f"{which}: loss geodesic init {init} / faiss k-means snapped to nodes"))
    if all(init in fits for init in INITS):
        add(row("ratio", n_points, K=K, ratio=round(fits["k-means"]["loss"] / fits["k-medoids++"]["loss"], 4),
                method=f"{which}: loss geodesic init k-means / init k-medoids++"))
    return fits


def fit_variants(args) -> list[tuple[str, float]]:
    """(init, swap budget per node; 0 = the default cap) of every fit: each --init at the
    default, then --swap-init at --swap-budget when it is > 0."""
    return [(init, 0.0) for init in args.init] + ([(args.swap_init, args.swap_budget)]
                                                  if args.swap_budget else [])


def clara_rows(args, add, n_points: int, g: dict, graph_path: str, fits: dict, which: str) -> None:
    """CLARA on a saved graph, its row, and the loss ratio of every fit against it."""
    K = args.clusters
    c = in_fresh_process(clara_child, graph_path, K, args.n_neighbors, args.clara_samples,
                         args.clara_size, args.seed)
    report(f"{which}clara", c)
    add(row(f"{which}clara", n_points, c, n_nodes=g["n_nodes"], K=K,
            method=f"FasterPAM on {args.clara_samples} x {args.clara_size} vectors",
            note="subsample geodesics on its own k-NN graph; best medoid set scored on "
                 "the whole graph, weighted; losses " + " ".join(f"{x:.6g}" for x in c["losses"])))
    for label, f in fits.items():
        add(row("ratio", n_points, K=K, ratio=round(f["loss"] / c["loss"], 4),
                method=f"{'prefix: ' if which else ''}loss geodesic init {label} / CLARA"))


def main(args):
    from utils.bench import write_csv
    from utils.runtime import print_args, write_run_record

    start_clean_forkserver()
    print_args(args)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()}", flush=True)
    K, k = args.clusters, args.n_neighbors
    rows = []

    note = data_note(args)

    def save():
        for r in rows:
            r["data"] = note
        write_csv(args.out, rows)

    def add(r):
        rows.append(r)
        save()

    with tempfile.TemporaryDirectory() as tmp:
        z_path = os.path.join(tmp, "Z.npy")
        Z = grid_standin(args.n_images) if args.conv_vae is None else conv_vae_latents(args.conv_vae, args.n_images)
        n = len(Z)
        np.save(z_path, Z)
        del Z
        print(f"stand-in: {n} vectors of dimension 16", flush=True)
        prefix_path, full = os.path.join(tmp, "prefix.npz"), os.path.join(tmp, "full.npz")
        prefix_fits = {}
        if args.prefix:
            m = min(args.prefix, n)
            pg = in_fresh_process(graph_child, z_path, m, k, "auto", prefix_path, args.threads)
            report("prefix graph", pg)
            add(row("prefix_graph", m, pg))
            prefix_fits = fits_beside_kmeans(args, add, "prefix_", m, pg, prefix_path, z_path,
                                             "target graph + fit <= 20 s (#30)")
            if args.prefix_clara and args.clara_samples:
                clara_rows(args, add, m, pg, prefix_path, prefix_fits, "prefix_")
            if args.predict and n > m:
                pr = in_fresh_process(predict_child, z_path, m, args.predict, args.clusters, args.seed,
                                      args.threads)
                report("out-of-sample predict", pr)
                new = min(args.predict, n - m)
                add(row("predict", new, pr, K=args.clusters, note=f"target <= 10 s (#30); faiss k-means' "
                        f"nearest centroid of the same rows {pr['kmeans_seconds']} s"))
                add(row("ratio", new, K=args.clusters, method="predict seconds: geodesic / k-means' nearest centroid",
                        ratio=round(pr["seconds"] / max(pr["kmeans_seconds"], 1e-9), 1)))
        if not args.no_full:
            g = in_fresh_process(graph_child, z_path, n, k, "auto", full, args.threads)
            report("graph", g)
            add(row("graph", n, g, note="target <= 180 s, recall@10 >= 0.9"))
            fits = fits_beside_kmeans(args, add, "", n, g, full, z_path, "target <= 900 s, peak <= 8 GB")
            for init, pf in prefix_fits.items():  # none without a prefix run
                f = fits[init]
                pof = in_fresh_process(prefix_on_full_child, full, prefix_path, pf["medoids"])
                report(f"prefix medoids on the whole graph, init {init}", pof)
                add(row("prefix_on_full", n, pof, n_nodes=g["n_nodes"], K=K,
                        method=f"medoids fitted on the first {m} vectors, init {init}", note="scoring time only"))
                add(row("ratio", n, K=K, method=f"loss prefix fit / full fit, on the whole graph, init {init}",
                        ratio=round(pof["loss"] / f["loss"], 4)))
            if args.clara_samples:
                clara_rows(args, add, n, g, full, fits, "")
        if args.prefix and not args.no_exact:  # last: the slowest stage per vector
            e = in_fresh_process(exact_route_child, z_path, m, k)
            report("prefix exact route graph", e)
            add(row("prefix_graph_reference", m, e,
                    note="today's knn_graph + connect_components; its fit (~30 min) not re-run"))
            add(row("ratio", m, method="prefix graph seconds: exact route / ours",
                    ratio=round(e["seconds"] / pg["seconds"], 2),
                    note=f"CPU seconds ratio {e['cpu_seconds'] / max(pg['cpu_seconds'], 1e-9):.2f}"))
    save()
    write_run_record(args.out.with_suffix(".json"), args, data=note,
                     load_average=os.getloadavg())
    print(f"\n-> {args.out}")
    return rows


if __name__ == "__main__":
    import sys

    from utils.cli import run_main

    sys.exit(run_main(main, parse_args()))
