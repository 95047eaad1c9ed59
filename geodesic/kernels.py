"""Compiled (numba) graph searches behind :class:`geodesic.graph.PrunedSearch` and ``Top2Search``.

Both are Dijkstra's algorithm with a binary heap over CSR arrays (each
undirected edge stored both ways), written in plain loops that numba compiles:

* :func:`pruned_search`: one search per source x, confined to
  ``{v : d(x, v) < bound[v]}``. With ``bound`` 1-Lipschitz (a distance to
  the nearest or second-nearest medoid) no node outside that region lies on
  a shortest path into it, so the confined search is exact and touches about
  one would-be cluster and its border. Cost O(R log R) per source, R the
  region's edges.
* :func:`top2_search`: the two nearest labelled sources of every node, a
  Dijkstra in which a node keeps (and passes on) at most two labels. Exact
  because a medoid among the two nearest of v is among the two nearest of
  every node on a shortest path to v. Starts from arbitrary proposals, so it
  serves both a full reset and the local repair after a swap.

They replace numpy label-correcting rounds that cost about 3.6 us per visited
(source, node) pair (300,000 grid vectors, K = 512); measured in
``benchmarks/results/grid_scale.csv``. The first call compiles (a few
seconds; cached on disk afterwards).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _push(hd, hv, hs, size, d, v, s):
    """Push (d, v, s) onto the binary min-heap held in (hd, hv, hs)[:size]; returns the new size."""
    j = size
    while j > 0:
        parent = (j - 1) >> 1
        if hd[parent] <= d:
            break
        hd[j], hv[j], hs[j] = hd[parent], hv[parent], hs[parent]
        j = parent
    hd[j], hv[j], hs[j] = d, v, s
    return size + 1


@njit(cache=True, inline="always")
def _pop(hd, hv, hs, size):
    """Remove the heap's minimum; returns (d, v, s, new size)."""
    d, v, s = hd[0], hv[0], hs[0]
    size -= 1
    ld, lv, ls = hd[size], hv[size], hs[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and hd[child + 1] < hd[child]:
            child += 1
        if ld <= hd[child]:
            break
        hd[i], hv[i], hs[i] = hd[child], hv[child], hs[child]
        i = child
    hd[i], hv[i], hs[i] = ld, lv, ls
    return d, v, s, size


@njit(cache=True, inline="always")
def _push_grow(hd, hv, hs, size, d, v, s):
    """:func:`_push`, first doubling the heap's arrays when full; returns (hd, hv, hs, size)."""
    if size == hd.size:
        hd, hv, hs = _grow(hd, size + 1), _grow(hv, size + 1), _grow(hs, size + 1)
    return hd, hv, hs, _push(hd, hv, hs, size, d, v, s)


@njit(cache=True, inline="always")
def _grow(a, need):
    if need <= a.size:
        return a
    b = np.empty(max(need, 2 * a.size), dtype=a.dtype)
    b[:a.size] = a
    return b


@njit(cache=True)
def pruned_search(indptr, indices, weights, sources, bound, dist, where):
    """Confined Dijkstra from every source in turn (indexed binary heap with decrease-key).

    Parameters
    ----------
    indptr, indices, weights : CSR arrays (int64, int64, float64) of the undirected graph.
    sources : (B,) int64 source nodes; a source with ``bound[x] <= 0`` gets no output.
    bound : (N,) float64; a node v is kept only when d(x, v) < bound[v].
    dist : (N,) float64 scratch, all ``inf`` on entry and on return.
    where : (N,) int64 scratch (heap position of a node), all -1 on entry and on return.

    Returns
    -------
    pos, node, d : (P,) int64, int64, float64
        Source position (0..B-1, non-decreasing), region node and its exact
        distance from the source, for every region node of every source.
    """
    cap = 1024
    out_p = np.empty(cap, dtype=np.int64)
    out_v = np.empty(cap, dtype=np.int64)
    out_d = np.empty(cap, dtype=np.float64)
    m = 0
    heap = np.empty(1024, dtype=np.int64)
    for i in range(sources.size):
        x = sources[i]
        if not bound[x] > 0:
            continue
        start = m
        dist[x] = 0.0
        heap[0] = x
        where[x] = 0
        size = 1
        while size > 0:
            u = heap[0]
            d = dist[u]
            where[u] = -1
            size -= 1
            if size > 0:  # sift the last entry down from the root
                last = heap[size]
                ld = dist[last]
                j = 0
                while True:
                    c = 2 * j + 1
                    if c >= size:
                        break
                    if c + 1 < size and dist[heap[c + 1]] < dist[heap[c]]:
                        c += 1
                    if ld <= dist[heap[c]]:
                        break
                    heap[j] = heap[c]
                    where[heap[j]] = j
                    j = c
                heap[j] = last
                where[last] = j
            if m == out_p.size:
                out_p, out_v, out_d = _grow(out_p, m + 1), _grow(out_v, m + 1), _grow(out_d, m + 1)
            out_p[m], out_v[m], out_d[m] = i, u, d
            m += 1
            for e in range(indptr[u], indptr[u + 1]):
                v = indices[e]
                nd = d + weights[e]
                if nd < bound[v] and nd < dist[v]:
                    dist[v] = nd
                    j = where[v]
                    if j < 0:  # not in the heap: append, then sift up
                        if size == heap.size:
                            heap = _grow(heap, size + 1)
                        j = size
                        size += 1
                    while j > 0:
                        parent = (j - 1) >> 1
                        if dist[heap[parent]] <= nd:
                            break
                        heap[j] = heap[parent]
                        where[heap[j]] = j
                        j = parent
                    heap[j] = v
                    where[v] = j
        for j in range(start, m):  # settled nodes are exactly the touched ones
            dist[out_v[j]] = np.inf
    return out_p[:m].copy(), out_v[:m].copy(), out_d[:m].copy()


@njit(cache=True, inline="always")
def _offer(d1, d2, s1, s2, u, nd, s):
    """Offer label (nd, s) to node u's top two; True when it entered (or shortened) them."""
    if s == s1[u]:
        if nd < d1[u]:
            d1[u] = nd
            return True
        return False
    if s == s2[u]:
        if nd < d2[u]:
            if nd < d1[u]:
                d2[u], s2[u] = d1[u], s1[u]
                d1[u], s1[u] = nd, s
            else:
                d2[u] = nd
            return True
        return False
    if nd < d1[u]:
        d2[u], s2[u] = d1[u], s1[u]
        d1[u], s1[u] = nd, s
        return True
    if nd < d2[u]:
        d2[u], s2[u] = nd, s
        return True
    return False


@njit(cache=True)
def top2_search(indptr, indices, weights, d1, d2, s1, s2, prop_v, prop_d, prop_s):
    """Two-label Dijkstra: merge proposals (node, distance, slot), propagate to a fixpoint.

    ``d1, d2, s1, s2`` (N,) hold every node's nearest and second-nearest
    label (distance, slot; ``inf`` / -1 when missing) and are updated in
    place. Returns the number of labels settled.
    """
    n_prop = prop_v.size
    cap = max(1024, 2 * n_prop)
    hd = np.empty(cap, dtype=np.float64)
    hv = np.empty(cap, dtype=np.int64)
    hs = np.empty(cap, dtype=np.int64)
    size = 0
    for i in range(n_prop):
        u, nd, s = prop_v[i], prop_d[i], prop_s[i]
        if _offer(d1, d2, s1, s2, u, nd, s):
            hd, hv, hs, size = _push_grow(hd, hv, hs, size, nd, u, s)
    settled = 0
    while size > 0:
        d, u, s, size = _pop(hd, hv, hs, size)
        if not ((s1[u] == s and d1[u] == d) or (s2[u] == s and d2[u] == d)):
            continue  # displaced or shortened since it was pushed
        settled += 1
        for e in range(indptr[u], indptr[u + 1]):
            v = indices[e]
            nd = d + weights[e]
            if _offer(d1, d2, s1, s2, v, nd, s):
                hd, hv, hs, size = _push_grow(hd, hv, hs, size, nd, v, s)
    return settled
