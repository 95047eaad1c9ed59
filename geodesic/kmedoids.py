"""Geodesic k-medoids: k-medoids on the shortest-path distance of a neighbour graph.

:func:`geodesic_kmedoids` clusters the N nodes of a (k-NN) graph around K
medoid nodes under the geodesic (Isomap) distance from sparse graph searches
only, never an N x N matrix, optionally with a weight per node: the
multiplicity of a node that stands for several identical vectors
(:func:`geodesic.ann.collapse_duplicates`), so that the weighted objective on the
unique vectors equals the plain one on all of them. The graph searches it
builds on (:class:`geodesic.graph.Top2Search`, :class:`geodesic.graph.PrunedSearch`)
live with the other graph tools in :mod:`geodesic.graph`.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra

from geodesic.graph import CSRGraph, PrunedSearch, Top2Search, check_square, out_dtype

__all__ = ["GeodesicKMedoidsResult", "geodesic_kmedoids", "kmedoids_loss"]

#: Largest N for which the seeding draws one medoid at a time by default
#: (``seed_batch=1``); above, in k-means|| rounds (see :func:`_kmedoids_plusplus`).
SEQUENTIAL_SEEDING_MAX_N = 100_000


class GeodesicKMedoidsResult(NamedTuple):
    """Result of :func:`geodesic_kmedoids`.

    Attributes
    ----------
    medoids : ndarray of shape (K,), int64
        Node indices of the medoids.
    labels : ndarray of shape (N,), int64
        Index into ``medoids`` (0..K-1) of each node's nearest medoid.
    distances : ndarray of shape (N,)
        Geodesic distance of each node to its medoid (float32 for a float32
        graph, float64 otherwise).
    loss : float
        ``(weights * distances).sum()``, the k-medoids objective (total
        deviation; ``distances.sum()`` without weights).
    seconds : dict of str to float, optional
        Wall seconds of each phase, in order: ``"setup"`` (input checks,
        connectivity, reordering), ``"seeding"`` (k-medoids++, or only the
        first nearest / second-nearest assignment when ``init`` gives the
        medoids), ``"alternating"`` (the steps before the swaps),
        ``"swaps"`` (the swap passes with their alternating steps) and
        ``"assignment"`` (the final Dijkstra); they add up to the call's
        time. None only for results built by hand.
    """

    medoids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    loss: float
    seconds: dict | None = None



# ----------------------------------------------------------------------------
# Geodesic k-medoids
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def _single_torch_thread(device: torch.device):
    """Run small CPU tensor ops on one thread, then restore the setting.

    The dense blocks here are small (<= a few 10^5 entries); torch's intra-op
    thread pool then only adds wake-up latency, which on a busy 2-core machine
    made single ops 10-1000x slower (measured: ``Tensor.min(dim)`` on a
    (16, 64) tensor took 23 ms instead of 3 us).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_kmedoids_input(graph, n_clusters) -> sp.csr_matrix:
    graph = check_square(graph)
    n = graph.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}.")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got K={n_clusters}.")
    if n_clusters > n:
        raise ValueError(f"K={n_clusters} is larger than the number of points N={n}; pass n_clusters <= {n}.")
    n_components, _ = connected_components(graph, directed=False)
    if n_components > 1:
        raise ValueError(
            f"the graph has {n_components} connected components, so some geodesic distances are infinite; "
            "call connect_components(graph, X) first."
        )
    return graph


def _check_init(init, n: int, n_clusters: int) -> np.ndarray | None:
    """None for ``init="k-medoids++"``, else ``init`` as (K,) int64 distinct node indices in [0, N)."""
    if isinstance(init, str):
        if init == "k-medoids++":
            return None
        raise ValueError(f"init must be 'k-medoids++' or an array of {n_clusters} distinct node indices, got "
                         f"{init!r}; for a k-means start pass geodesic.kmeans_init.kmeans_init_nodes(points, "
                         f"weights, K, seed) as init.")
    nodes = np.asarray(init)
    if nodes.shape != (n_clusters,):
        raise ValueError(f"init must have shape (K,) = ({n_clusters},), one node per medoid, got {nodes.shape}.")
    if nodes.dtype == bool or not np.issubdtype(nodes.dtype, np.integer):
        raise ValueError(f"init must hold integer node indices, got dtype {nodes.dtype}.")
    if nodes.min() < 0 or nodes.max() >= n:
        raise ValueError(f"init holds node indices outside [0, N) = [0, {n}): {nodes.min()}..{nodes.max()}.")
    if np.unique(nodes).size != n_clusters:
        raise ValueError(f"init must hold {n_clusters} distinct nodes, got {np.unique(nodes).size} distinct; "
                         f"a medoid cannot be repeated.")
    return nodes.astype(np.int64)


def _kmedoids_plusplus(g: CSRGraph, n_clusters: int, rng: np.random.Generator, search: PrunedSearch,
                       w: np.ndarray, *, seed_batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic k-medoids++ seeding (Arthur & Vassilvitskii, 2007, D^2 sampling).

    Each new medoid is drawn with probability proportional to its weight times
    the squared geodesic distance to the nearest medoid so far (a node of
    multiplicity w is w points at the same place).

    ``seed_batch == 1``: one medoid at a time, the distances updated by a
    search confined to where the new medoid is nearer (it is 1-Lipschitz),
    i.e. to the new medoid's cell. At millions of nodes the first cells are
    huge and these numpy searches slow; ``seed_batch > 1`` draws medoids in
    rounds of 1, 1, 2, 4, ... up to ``seed_batch`` from the same D^2
    distribution (the oversampling rounds of k-means||, Bahmani et al., 2012,
    "Scalable k-means++") and updates the distances after each round with one
    multi-source Dijkstra (scipy, ``min_only=True``, O(E log N) whatever the
    cell sizes) while the new cells are large, then with the round's pruned
    searches together (each confined to its new cell).

    Returns the medoids (K,) and every node's distance to the nearest (N,).
    """
    n = g.n
    medoids = np.empty(n_clusters, dtype=np.int64)
    is_medoid = np.zeros(n, dtype=bool)
    # uniform weights draw exactly as the unweighted algorithm always did
    x = int(rng.integers(n)) if np.ptp(w) == 0 else int(rng.choice(n, p=w / w.sum()))
    # the first search covers the whole graph: scipy's Dijkstra is faster there
    nearest = dijkstra(g.csr, directed=True, indices=x)
    medoids[0] = x
    is_medoid[x] = True
    k, size = 1, 1
    while k < n_clusters:
        size = 1 if seed_batch == 1 else min(size * 2 if k > 1 else 1, seed_batch, n_clusters - k)
        weight = w * nearest**2
        total = weight.sum()
        if seed_batch == 1:  # scalar draws: the same stream as before batches existed
            if total > 0:
                x = int(rng.choice(n, p=weight / total))
            else:  # only duplicates of medoids are left: any non-medoid will do
                x = int(rng.choice(np.flatnonzero(~is_medoid)))
        elif np.count_nonzero(weight) >= size:
            x = rng.choice(n, size=size, replace=False, p=weight / total)
        else:
            x = rng.choice(np.flatnonzero(~is_medoid), size=size, replace=False)
        medoids[k:k + size] = x
        is_medoid[x] = True
        k += size
        if seed_batch == 1:
            _, v, d = search.run(np.asarray(x).reshape(1), nearest)
            nearest[v] = d
            nearest[x] = 0.0
        elif size * 4 <= k - size and size <= search.batch_size:
            # new cells are small now (~N/k each): pruned searches from the round's medoids
            _, v, d = search.run(np.asarray(x), nearest)
            np.minimum.at(nearest, v, d)
            nearest[x] = 0.0
        else:
            nearest = dijkstra(g.csr, directed=True, indices=medoids[:k], min_only=True)
    return medoids, nearest


#: Clusters are packed into dense blocks of about this many nodes: a block is
#: (nodes, nodes), so packing more small clusters together only adds zeros.
_GROUP_NODES = 256
#: Most float64 entries of one dense block of within-cluster distances (128 MB).
_BLOCK_ENTRIES = 2**24


def _cluster_costs(sub: sp.csr_matrix, rows: np.ndarray, cluster_of: np.ndarray, w: np.ndarray,
                   device) -> np.ndarray:
    """Weighted summed distance from each of ``rows`` to the other members of its cluster.

    ``sub`` is a block-diagonal graph (one block per cluster, positions
    ``cluster_of``); distances are shortest paths inside each block, computed
    for a chunk of rows at a time so that the dense (rows, nodes) block stays
    below ``_BLOCK_ENTRIES`` entries. The masked row sums (weighted by ``w``,
    the block's node weights) run on ``device``.
    """
    n_nodes = sub.shape[0]
    cl = torch.as_tensor(cluster_of, device=device)
    tw = torch.as_tensor(w, device=device)
    out = np.empty(rows.size)
    step = max(1, _BLOCK_ENTRIES // max(n_nodes, 1))
    for start in range(0, rows.size, step):
        chunk = rows[start:start + step]
        dist = torch.as_tensor(dijkstra(sub, directed=True, indices=chunk), device=device)
        same = cl[torch.as_tensor(chunk, device=device)][:, None] == cl[None, :]
        zero = torch.zeros((), dtype=dist.dtype, device=device)
        out[start:start + chunk.size] = torch.where(same, dist * tw, zero).sum(1).cpu().numpy()
    return out


def _update_medoids(g: CSRGraph, top2: Top2Search, medoids: np.ndarray, w: np.ndarray, *, n_candidates: int,
                    device: torch.device) -> int:
    """One medoid-update step of the alternating (Voronoi iteration) algorithm.

    For every cluster, its ``n_candidates`` members closest to the current
    medoid are scored by their summed distance to all members, with shortest
    paths *inside* the cluster's subgraph. Those are upper bounds on the
    geodesic distances, so a member whose bound beats the current medoid's
    true cost (from ``top2``) really is better: the step never increases the
    loss. Only members near the medoid are scored because the best one
    rarely lies far from it (swaps handle the big moves), which makes the
    step cost O(n_candidates N) instead of O(sum of squared cluster sizes);
    with non-uniform weights the heaviest member of each cluster is scored
    too (a node standing for thousands of identical points is often the
    best medoid of its cluster wherever the current one is).
    Small clusters are packed into block-diagonal groups of about
    ``_GROUP_NODES`` nodes, scored by one Dijkstra per group.

    Returns the number of medoids moved (``medoids`` is updated in place).
    """
    n, K = g.n, medoids.size
    label = top2.s1
    # nodes cluster by cluster, each cluster from its medoid outwards
    order = np.lexsort((top2.d1, label))
    sizes = np.bincount(label, minlength=K)
    starts = np.r_[0, np.cumsum(sizes)]
    rank_in_cluster = np.arange(n) - np.repeat(starts[:-1], sizes)
    current_cost = np.bincount(label, weights=w * top2.d1, minlength=K)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    coo = g.csr.tocoo()
    intra = label[coo.row] == label[coo.col]
    sub_all = sp.csr_matrix((coo.data[intra], (rank[coo.row[intra]], rank[coo.col[intra]])), shape=(n, n))
    w_sorted = w[order]
    scored = rank_in_cluster < n_candidates
    if np.ptp(w) > 0:
        # heaviest member of each cluster (the last of each cluster by weight)
        by_weight = np.lexsort((w_sorted, label[order]))
        scored[by_weight[starts[1:][sizes > 0] - 1]] = True
    moved = 0
    k = 0
    while k < K:
        k_end, total = k + 1, sizes[k]
        while k_end < K and total + sizes[k_end] <= _GROUP_NODES:
            total += sizes[k_end]
            k_end += 1
        lo, hi = starts[k], starts[k_end]
        cluster_of = np.repeat(np.arange(k_end - k), sizes[k:k_end])
        rows = np.flatnonzero(scored[lo:hi])
        costs = _cluster_costs(sub_all[lo:hi, lo:hi], rows, cluster_of, w_sorted[lo:hi], device)
        # best row per cluster of the group
        by_cluster = np.lexsort((costs, cluster_of[rows]))
        first = np.flatnonzero(np.r_[True, np.diff(cluster_of[rows][by_cluster]) != 0])
        for pos in by_cluster[first]:
            kk = k + cluster_of[rows[pos]]
            node = order[lo + rows[pos]]
            if costs[pos] < current_cost[kk] * (1 - 1e-12) and node != medoids[kk]:
                medoids[kk] = node
                moved += 1
        k = k_end
    return moved


def _swap_gains(s1, d1, d2, w, K, n_cand, cpos, v, d, *, device):
    """FasterPAM's swap gains (Schubert & Rousseeuw, 2021, Alg. 2) for a batch of candidates.

    Parameters
    ----------
    s1, d1, d2 : ndarray of shape (N,)
        Slot of and distance to the nearest medoid, distance to the second.
    w : ndarray of shape (N,)
        Node weights: every term of the gain counts a node w times.
    K, n_cand : int
    cpos, v, d : ndarray of shape (P,)
        Candidate position, node and d(x, node) for every node with
        d(x, node) < d2[node] (the only nodes that contribute).

    Returns
    -------
    delta : ndarray of shape (n_cand, K)
        Change of the loss when candidate c replaces the medoid in slot m
        (negative = better).
    """
    near = d < d1[v]
    t_near = torch.as_tensor(near, device=device)
    t_d = torch.as_tensor(d, device=device)
    t_d1 = torch.as_tensor(d1[v], device=device)
    t_d2 = torch.as_tensor(d2[v], device=device)
    t_w = torch.as_tensor(w[v], device=device)
    t_c = torch.as_tensor(cpos, device=device)
    # gain shared by all removals: the nodes that move to x
    shared = torch.zeros(n_cand, dtype=torch.float64, device=device)
    shared.index_add_(0, t_c[t_near], (t_w * (t_d - t_d1))[t_near])
    # per removed medoid: its removal loss (members fall back to their second
    # medoid), corrected where x is nearer than that second medoid
    removal = torch.as_tensor(np.bincount(s1, weights=w * (d2 - d1), minlength=K), device=device)
    corr = torch.zeros(n_cand * K, dtype=torch.float64, device=device)
    corr.index_add_(0, t_c * K + torch.as_tensor(s1[v], device=device),
                    t_w * torch.where(t_near, t_d1 - t_d2, t_d - t_d2))
    return (removal[None, :] + corr.view(n_cand, K) + shared[:, None]).cpu().numpy()


def _swap_pass(g: CSRGraph, top2: Top2Search, medoids: np.ndarray, candidates: np.ndarray, w: np.ndarray,
               search: PrunedSearch, *, batch_size: int, device: torch.device, max_visits: float = math.inf,
               progress=None) -> tuple[int, int]:
    """One pass of FasterPAM-style swaps (Schubert & Rousseeuw, 2021, Alg. 2) over ``candidates``.

    FasterPAM's gain of swapping a non-medoid x in for medoid m needs, besides
    the removal loss of every medoid, only the nodes o with d(x, o) < ds(o)
    (ds: distance to the second-nearest medoid): ``PrunedSearch`` finds
    exactly those. Candidates are evaluated ``batch_size`` at a time; per batch
    the (B, K) matrix of swap gains is accumulated on ``device`` and the
    improving swaps are applied best first, skipping any whose region (searched
    nodes plus the nodes that hold the removed medoid among their two nearest)
    overlaps one already applied in this batch. Non-overlapping swaps change
    the loss independently, so the loss falls by at least the sum of their
    gains; this stands in for FasterPAM's eager one-at-a-time swaps. A skipped
    candidate goes to the front of the next batch (once). The pass ends early
    once its searches have visited ``max_visits`` (source, node) pairs.

    Returns the number of swaps made and of (source, node) pairs visited;
    ``medoids`` and ``top2`` are updated.
    """
    n, K = g.n, medoids.size
    is_medoid = np.zeros(n, dtype=bool)
    is_medoid[medoids] = True
    retried = np.zeros(n, dtype=bool)
    mark = np.zeros(n, dtype=bool)
    swaps, pos, visits = 0, 0, 0
    retry = np.empty(0, dtype=np.int64)
    while (pos < candidates.size or retry.size) and visits < max_visits:
        take = max(batch_size - retry.size, 0)
        fresh = candidates[pos:pos + take]
        pos += fresh.size
        if progress is not None:
            progress.update(fresh.size)
        batch = np.concatenate([retry, fresh])
        retry = np.empty(0, dtype=np.int64)
        batch = batch[~is_medoid[batch]]
        if not batch.size:
            continue
        d1 = top2.d1
        # K = 1 has no second medoid: a finite stand-in larger than any
        # distance gives FasterPAM's formula the right totals
        d2 = top2.d2 if K > 1 else np.full(n, 2 * d1.max() + 1.0)
        cpos, v, d = search.run(batch, d2)
        visits += v.size
        delta = _swap_gains(top2.s1, d1, d2, w, K, batch.size, cpos, v, d, device=device)
        gain = delta.min(axis=1)
        # gains below round-off of the loss are not improvements
        eps = 1e-10 * max(float(w @ d1), 1e-300)
        improving = np.flatnonzero(gain < -eps)
        if not improving.size:
            continue
        improving = improving[np.argsort(gain[improving], kind="stable")]
        seg = np.searchsorted(cpos, np.arange(batch.size + 1))
        # blocked[m]: removing slot m would touch a region already changed in this batch
        blocked = np.zeros(K, dtype=bool)
        touched, slots, new_nodes, skipped = [], [], [], []
        for c in improving:
            region = v[seg[c]:seg[c + 1]]
            if mark[region].any():
                slot = -1
            else:
                # many far-away candidates want the same cheapest medoid: take
                # the best slot still free rather than give up the candidate
                gains = np.where(blocked, np.inf, delta[c])
                slot = int(np.argmin(gains))
                if not gains[slot] < -eps:
                    slot = -1
            if slot < 0:
                if not retried[batch[c]]:
                    retried[batch[c]] = True
                    skipped.append(batch[c])
                continue
            holders = np.flatnonzero((top2.s1 == slot) | (top2.s2 == slot))
            for nodes in (region, holders):
                mark[nodes] = True
                blocked[top2.s1[nodes]] = True
                blocked[top2.s2[nodes][top2.s2[nodes] >= 0]] = True
                touched.append(nodes)
            slots.append(slot)
            new_nodes.append(batch[c])
        for t in touched:
            mark[t] = False
        retry = np.asarray(skipped, dtype=np.int64)
        slots = np.asarray(slots, dtype=np.int64)
        new_nodes = np.asarray(new_nodes, dtype=np.int64)
        is_medoid[medoids[slots]] = False
        is_medoid[new_nodes] = True
        medoids[slots] = new_nodes
        top2.replace(slots, new_nodes)
        swaps += slots.size
    return swaps, visits


def geodesic_kmedoids(graph, n_clusters: int, *, weights=None, seed: int = 0, max_iter: int = 3,
                      n_swap_passes: int = 10, candidate_fraction: float = 1.0, candidates_per_cluster: int = 32,
                      batch_size: int | None = None, medoid_candidates: int = 16, tol: float = 1e-3,
                      max_search_entries: int = 2**27, seed_batch: int | None = None,
                      max_swap_visits: int | str | None = "auto", device=None,
                      verbose: bool = False, init="k-medoids++") -> GeodesicKMedoidsResult:
    """k-medoids on the geodesic distance of a graph, without any N x N matrix.

    Minimises the total deviation ``sum_i w_i min_k d(i, m_k)`` over K medoid
    nodes, d the shortest-path distance in the undirected ``graph`` and w_i
    the node weights (the multiplicity of a node that stands for w_i
    identical vectors, :func:`geodesic.ann.collapse_duplicates`; all ones by
    default), to within about 1 % of FasterPAM on the full geodesic matrix
    (measured on PCA-20 Fashion-MNIST, N = 5,000 and 20,000, K = 64 and 512;
    with weights, against FasterPAM on the expanded points in
    tests/test_kmedoids.py).

    Algorithm
    ---------
    1. **Geodesic k-medoids++ seeding**: D^2 sampling (Arthur & Vassilvitskii,
       2007, "k-means++"), weighted, with ``numpy.random.default_rng(seed)``;
       one medoid at a time, each updating the nearest-medoid distances by a
       search confined to its own cell (:class:`PrunedSearch`), or above
       :data:`SEQUENTIAL_SEEDING_MAX_N` nodes in k-means|| rounds of up to
       ``seed_batch`` medoids (:func:`_kmedoids_plusplus`). Or the medoids
       given as ``init`` (e.g. k-means centroids snapped to nodes,
       :func:`geodesic.kmeans_init.kmeans_init_nodes`).
    2. **Alternating** (Voronoi iteration; Park & Jun, 2009): assign every
       node to its nearest medoid, then move each medoid to the best of the
       ``medoid_candidates`` members nearest to it (and, weighted, its
       heaviest member), scored by weighted shortest paths inside the
       cluster (upper bounds, so the loss never rises); at most ``max_iter``
       steps. Alone this stays 7-12 % above PAM.
    3. **Swaps**: up to ``n_swap_passes`` passes of FasterPAM's swap rule
       (Schubert & Rousseeuw, 2021, "Fast and eager k-medoids clustering",
       Alg. 2; every term weighted) over fresh random candidates,
       ``candidate_fraction`` of the nodes but at most
       ``candidates_per_cluster * K`` per pass, each pass followed by one
       alternating step; stop when a pass lowers the loss by less than
       ``tol`` (relative) or when the swap searches have visited
       ``max_swap_visits`` (candidate, node) pairs in all. The gain of
       swapping in x needs d(x, o) only where d(x, o) < ds(o), ds the
       distance to o's second-nearest medoid; ds is 1-Lipschitz, so a search
       from x pruned there is exact and visits x's would-be cell and its
       border (~2 N/K nodes), not N. Candidates are evaluated in batches
       (gains as a (B, K) tensor) and the improving swaps of a batch whose
       regions do not overlap are all applied (:func:`_swap_pass`).
    4. The result is read off one multi-source Dijkstra
       (``dijkstra(indices=medoids, min_only=True)``), independent of the
       bookkeeping above.

    The nearest and second-nearest medoid of every node are maintained by a
    two-label multi-source search (:class:`Top2Search`); after a swap only the
    nodes that held the removed medoid, or that the new one enters, are
    searched again.

    Cost: with E ~ N k edges, the seeding and each alternating step touch
    O(E) edges (plus ``medoid_candidates`` N for the cluster scores), a swap
    pass about ``min(candidate_fraction N, candidates_per_cluster K) x 2
    N/K x k`` edges, i.e. O(N k candidates_per_cluster) at most, and all
    passes together at most ``max_swap_visits`` node visits (about 0.5-1 us
    each on one core, compiled searches in :mod:`geodesic.kernels`; the
    default, the larger of 2^26 and 64 N, binds only from a few 10^5 nodes
    on: at 252,265 nodes and K = 512 a full pass visits about 2 x 10^7, at
    2,459,354 nodes about 1.3 x 10^8).
    The graph is first put in reverse Cuthill-McKee order (neighbours at
    nearby indices: 1.6x faster searches there). Memory is O(E + P) with P
    the nodes one batch of searches visits (about B x 2 N/K, at most
    ``max_search_entries``) and dense blocks of at most 2^24 float64;
    nothing is N x N. Measured on 2 shared CPU cores
    (``benchmarks/results/geodesic.csv``): N = 60,000, d = 20, k = 10,
    K = 512: 15 s for graph and fit, 0.83 GB peak RSS (0.63 GB of it
    imports); N = 20,000: 2.3-2.8 s against 92 s and 9.8 GB for Isomap +
    FasterPAM, with the loss within 0.5 %. Millions of nodes
    (``benchmarks/results/grid_scale.csv``, idle 2 cores, K = 512): 252,265
    weighted nodes 73 s; 2,459,354 nodes 389 s at 5.5 GB peak, with a loss
    5.5 % below CLARA's (FasterPAM on 5 subsamples of 20,000).

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
        Connected neighbour graph (:func:`knn_graph` or
        ``geodesic.ann.NeighborIndex.graph`` then :func:`connect_components`),
        read as undirected.
    n_clusters : int
        Number of medoids K, 1 <= K <= N.
    weights : array-like of shape (N,), optional
        Non-negative node weights, e.g. ``NeighborIndex.counts_``; the
        objective counts node i w_i times. Default all ones (uniform weights
        give exactly the unweighted result).
    seed : int, default=0
        Seed of the numpy Generator used for seeding and candidate order.
    max_iter : int, default=3
        Most alternating steps before the swap passes; 0 turns alternating
        off (also between passes).
    n_swap_passes : int, default=10
        Most passes of swaps (``tol`` usually ends them after 3-6); 0 gives
        k-medoids++ plus alternating only.
    candidate_fraction : float, default=1.0
        Fraction of the nodes tried as swap candidates per pass (a fresh random
        subset each pass), capped by ``candidates_per_cluster``.
    batch_size : int, optional
        Swap candidates evaluated together; memory 8 N batch_size bytes.
        Default ``clip(K // 4, 4, 256)``: roughly as many swaps fit side by
        side as there are groups of neighbouring clusters.
    medoid_candidates : int, default=16
        Members (nearest to the medoid) scored per cluster in an alternating
        step; more cost more and, measured, gain nothing once swaps follow.
    candidates_per_cluster : int, default=32
        Cap on swap candidates per pass, per medoid (K times this in all):
        what finds the improving swaps is how many candidates land in each
        cluster, and each candidate costs ~N/K, so this keeps a pass O(N k)
        whatever K. Small problems (N <= 32 K) get full passes.
    tol : float, default=1e-3
        Stop the swap passes when one lowers the loss by less than this
        fraction.
    max_search_entries : int, default=2**27
        Cap on ``batch x N``, the worst case of what one batch of pruned
        searches returns (24 bytes per visited node; a search visits all N
        only when there is no second medoid): the batch is at most
        ``max_search_entries // N`` sources (54 at N = 2.46M).
    seed_batch : int, optional
        Medoids drawn per seeding round; default 1 (exact sequential
        k-medoids++) up to :data:`SEQUENTIAL_SEEDING_MAX_N` nodes, else
        ``max(1, K // 16)``.
    max_swap_visits : int, "auto" or None, default="auto"
        Work cap of the swap phase, in (candidate, node) pairs visited by
        the pruned searches over all passes: the time/quality knob at
        millions of nodes. Deterministic (counts work, not seconds); 0 skips
        the swaps, None removes the cap, ``"auto"`` is ``max(2**26, 64 N)``:
        measured on the grid stand-in (K = 512), about 3 passes at 252,265
        nodes (graph and fit 80 s), one pass at 2,459,354 nodes.
    device : str or torch.device, optional
        Where the dense parts (cluster distance blocks, swap gains) run; CPU by
        default, e.g. ``"cuda"``. The graph searches always run on the CPU.
    verbose : bool, default=False
        Print the loss after each phase, and a tqdm bar over swap candidates
        when stderr is a terminal (not into a log file).
    init : "k-medoids++" or array-like of int of shape (K,), default="k-medoids++"
        Starting medoids: geodesic k-medoids++ (step 1), or K distinct node
        indices in [0, N) used as they are (no seeding draws; ``seed`` then
        only orders the swap candidates).

    Returns
    -------
    GeodesicKMedoidsResult
        ``(medoids (K,), labels (N,), distances (N,), loss, seconds)``.

    Raises
    ------
    ValueError
        K < 1 or K > N, a non-square graph, negative or non-finite edge
        lengths, a disconnected graph (call :func:`connect_components`), or
        an ``init`` that is not K distinct node indices.
    """
    clock, cpu_clock = time.perf_counter(), time.process_time()
    graph = _check_kmedoids_input(graph, n_clusters)
    n = graph.shape[0]
    w = _check_weights(weights, n)
    init_nodes = _check_init(init, n, n_clusters)
    if not 0 < candidate_fraction <= 1:
        raise ValueError(f"candidate_fraction must be in (0, 1], got {candidate_fraction}.")
    if batch_size is None:
        batch_size = int(np.clip(n_clusters // 4, 4, 256))
    if min(batch_size, medoid_candidates, candidates_per_cluster, max_search_entries) < 1 or \
            min(max_iter, n_swap_passes) < 0:
        raise ValueError("batch_size, medoid_candidates, candidates_per_cluster and max_search_entries must be "
                         ">= 1, max_iter and n_swap_passes >= 0.")
    if seed_batch is None:
        seed_batch = 1 if n <= SEQUENTIAL_SEEDING_MAX_N else max(1, n_clusters // 16)
    if seed_batch < 1:
        raise ValueError(f"seed_batch must be >= 1, got {seed_batch}.")
    if isinstance(max_swap_visits, str):
        if max_swap_visits != "auto":
            raise ValueError(f"max_swap_visits must be an integer >= 0, 'auto' or None, got {max_swap_visits!r}.")
        max_swap_visits = max(2**26, 64 * n)
    if max_swap_visits is not None and max_swap_visits < 0:
        raise ValueError(f"max_swap_visits must be >= 0 or None, got {max_swap_visits}.")
    # one batch's searches return up to batch x N entries: cap that at max_search_entries
    batch_size = max(1, min(batch_size, n, max_search_entries // n))
    device = torch.device(device) if device is not None else torch.device("cpu")
    rng = np.random.default_rng(seed)
    # work in reverse Cuthill-McKee order (faster searches); map back at the end
    g, order = CSRGraph(graph).reordered()
    w = w[order]
    search = PrunedSearch(g, batch_size=batch_size)
    seconds, phase_start = {}, clock

    def log(msg):
        if verbose:
            print(f"[geodesic_kmedoids] {time.perf_counter() - clock:7.1f} s ({time.process_time() - cpu_clock:7.1f} s "
                  f"CPU)  {msg}", flush=True)

    def end_phase(name, msg=None):
        """Record the wall seconds since the previous phase ended under ``name``."""
        nonlocal phase_start
        now = time.perf_counter()
        seconds[name], phase_start = now - phase_start, now
        if msg is not None:
            log(msg)

    end_phase("setup")
    with _single_torch_thread(device):
        if init_nodes is None:
            medoids, _ = _kmedoids_plusplus(g, n_clusters, rng, search, w, seed_batch=seed_batch)
        else:  # the given nodes, in the reordered numbering
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n)
            medoids = rank[init_nodes]
        top2 = Top2Search(g)
        top2.reset(medoids)
        end_phase("seeding", f"{'k-medoids++ seeding' if init_nodes is None else 'given init'}: "
                             f"loss {w @ top2.d1:.6g}")

        def alternate(steps):
            for _ in range(steps):
                if _update_medoids(g, top2, medoids, w, n_candidates=medoid_candidates, device=device) == 0:
                    break
                top2.reset(medoids)

        alternate(max_iter)
        end_phase("alternating", f"alternating: loss {w @ top2.d1:.6g}")
        n_candidates = max(1, min(math.ceil(candidate_fraction * n), candidates_per_cluster * n_clusters))
        visits_left = math.inf if max_swap_visits is None else float(max_swap_visits)
        for p in range(n_swap_passes):
            if visits_left <= 0:
                log("swap work budget (max_swap_visits) spent")
                break
            before = w @ top2.d1
            candidates = rng.permutation(n)[:n_candidates]
            progress = None
            if verbose and sys.stderr.isatty():  # a bar in a log file is only noise
                from tqdm import tqdm
                progress = tqdm(total=n_candidates, desc=f"swap pass {p + 1}", leave=False)
            swaps, visits = _swap_pass(g, top2, medoids, candidates, w, search, batch_size=search.batch_size,
                                       device=device, max_visits=visits_left, progress=progress)
            visits_left -= visits
            if progress is not None:
                progress.close()
            alternate(min(max_iter, 1))
            after = w @ top2.d1
            log(f"swap pass {p + 1}: {swaps} swaps, {visits} nodes visited, loss {after:.6g}")
            if before - after <= tol * before:
                break
        end_phase("swaps")

    # final assignment from one exact multi-source Dijkstra
    dist, _, src = dijkstra(g.csr, directed=True, indices=medoids, min_only=True, return_predecessors=True)
    slot_of = np.full(n, -1, dtype=np.int64)
    slot_of[medoids] = np.arange(n_clusters)
    labels = np.empty(n, dtype=np.int64)
    labels[order] = slot_of[src]
    distances = np.empty(n, dtype=out_dtype(graph))
    distances[order] = dist
    end_phase("assignment")
    log("final assignment; seconds per phase: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    return GeodesicKMedoidsResult(medoids=order[medoids], labels=labels, distances=distances, loss=float(w @ dist),
                                  seconds=seconds)


def _check_weights(weights, n: int) -> np.ndarray:
    """(N,) float64 node weights; all ones when ``weights`` is None."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape (N,) = ({n},), one per graph node, got {w.shape}.")
    if not np.isfinite(w).all() or w.min() < 0 or w.sum() <= 0:
        raise ValueError("weights must be finite and non-negative with a positive sum "
                         "(e.g. the multiplicities collapse_duplicates returns).")
    return w


def kmedoids_loss(graph, medoids, weights=None) -> float:
    """The (weighted) k-medoids objective ``sum_i w_i min_k d(i, m_k)`` of a medoid set.

    One multi-source Dijkstra (``min_only=True``): O(E log N), no (K, N) rows.
    What scores a medoid set found elsewhere (e.g. CLARA's on a subsample)
    on the whole graph.

    Parameters
    ----------
    graph : sparse matrix of shape (N, N)
    medoids : array-like of int of shape (K,)
    weights : array-like of shape (N,), optional
        Node multiplicities; default all ones.

    Returns
    -------
    loss : float
        ``inf`` when some node cannot reach any medoid.
    """
    graph = check_square(graph)
    n = graph.shape[0]
    w = _check_weights(weights, n)
    medoids = np.unique(np.asarray(medoids, dtype=np.int64))
    if not medoids.size or medoids.min() < 0 or medoids.max() >= n:
        raise ValueError(f"medoids must be a non-empty array of node indices in [0, {n - 1}].")
    dist = dijkstra(graph, directed=False, indices=medoids, min_only=True)
    return float(w @ dist)
