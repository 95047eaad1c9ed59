"""Losses and evaluation metrics shared by every stage.

Convention: losses are *summed* over the batch (as in Kingma & Welling and
pytorch/examples); logs divide by the number of samples to report per-image means.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from utils import metric_registry as R


def bce_sum(recon_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood summed over pixels and batch.

    recon_logits, x: (B, 1, 28, 28); x in [0, 1]. Uses BCE-with-logits, which
    is stable where sigmoid-then-log would underflow.
    """
    return F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum")


def gaussian_kld_sum(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latents and batch.

    Closed form of Kingma & Welling (2014), appendix B:
    -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2). mu, logvar: (B, d).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def elbo_loss(recon_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
              logvar: torch.Tensor, kl_weight: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO of a Bernoulli-decoder VAE, summed over the batch.

    Returns (total, bce, kld) with total = bce + kl_weight * kld, each a scalar
    tensor. kl_weight = 1 is the negative ELBO (Kingma & Welling 2014, eq. 10);
    another value is the beta-VAE objective (Higgins et al. 2017, eq. 4, beta =
    kl_weight), which is no longer a bound on -log p(x); bce and kld are the
    unweighted terms either way.
    """
    bce = bce_sum(recon_logits, x)
    kld = gaussian_kld_sum(mu, logvar)
    return bce + kl_weight * kld, bce, kld


def mse_sum(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error between images in [0, 1], summed over pixels and batch."""
    return F.mse_loss(recon, x, reduction="sum")


# --- reconstruction -----------------------------------------------------------

@torch.no_grad()
def reconstruction_errors(recon_logits: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """Per-image reconstruction errors of logits (B, 1, 28, 28) against x in [0, 1].

    bce: Bernoulli NLL summed over pixels, mean over images (nats per image).
    mse: squared error of sigmoid(logits) per pixel, mean over pixels and images.
    """
    b = len(x)
    return {"bce": float(bce_sum(recon_logits, x)) / b,
            "mse": float(mse_sum(torch.sigmoid(recon_logits), x)) / x.numel()}


def nats_to_bits(nats: float) -> float:
    """A code length in nats as bits (divided by ln 2)."""
    return nats / math.log(2)


def bits_per_dim(prior_nll_bits: float, recon_nll_bits: float, dims: int) -> float:
    """The likelihood bound in bits per dimension of a model with a deterministic
    encoder (van den Oord et al. 2017, section 4.2): -log p(x) <= -log p(x | z_q)
    - log p(z_q), i.e. (prior NLL of an image's codes + the decoder's reconstruction
    NLL of the image, both in bits per image) / ``dims`` (784 for 28x28 images)."""
    return (prior_nll_bits + recon_nll_bits) / dims


# --- code usage -----------------------------------------------------------------

def code_counts(indices, n_codes: int) -> np.ndarray:
    """How often each of the K codes is used: indices (any shape) -> (K,) int64."""
    idx = np.asarray(torch.as_tensor(indices).detach().cpu()).ravel()
    return np.bincount(idx, minlength=n_codes)


def perplexity(counts) -> float:
    """exp(H(p)) of the code-usage distribution p = counts / sum (K,), H in nats
    with 0 log 0 = 0: K for uniform use, 1 for collapse (the statistic the
    VQ-VAE logs per batch during training)."""
    p = np.asarray(counts, dtype=np.float64).ravel()
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def usage(counts) -> float:
    """Fraction of the K codes used at least once."""
    counts = np.asarray(counts)
    return float((counts > 0).mean())


# --- cluster geometry ---------------------------------------------------------

def intra_inter_distances(Z, labels, *, max_points: int = 5000, seed: int = 0,
                          chunk: int = 1024) -> dict[str, float]:
    """Mean Euclidean distance between pairs of points with the same code
    (intra) and with different codes (inter), over all pairs i < j.

    Z (N, d), labels (N,). Above ``max_points`` a seeded random subset is used,
    so the cost is at most max_points^2 / 2 distances, computed in row chunks
    (never an N x N matrix). Returns intra_cluster_mean, inter_cluster_mean and
    their ratio (lower: tighter, better separated clusters).
    """
    Z = torch.as_tensor(np.asarray(Z), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels))
    if len(Z) > max_points:
        keep = torch.from_numpy(np.random.default_rng(seed).choice(len(Z), max_points, replace=False))
        Z, labels = Z[keep], labels[keep]
    sums = {True: 0.0, False: 0.0}
    counts = {True: 0, False: 0}
    for start in range(0, len(Z), chunk):
        rows = slice(start, start + chunk)
        d = torch.cdist(Z[rows], Z)
        same = labels[rows, None] == labels[None, :]
        upper = torch.arange(start, start + len(d))[:, None] < torch.arange(len(Z))[None, :]
        for flag, mask in ((True, same & upper), (False, ~same & upper)):
            sums[flag] += float(d[mask].sum())
            counts[flag] += int(mask.sum())
    intra = sums[True] / counts[True] if counts[True] else float("nan")
    inter = sums[False] / counts[False] if counts[False] else float("nan")
    return {"intra_cluster_mean": intra, "inter_cluster_mean": inter,
            "intra_inter_ratio": intra / inter if counts[False] and counts[True] else float("nan")}


def euclidean_distortion(Z, codes) -> float:
    """Mean Euclidean distance ||z - code(z)|| over points: Z, codes (N, d)."""
    Z, codes = np.asarray(Z, dtype=np.float64), np.asarray(codes, dtype=np.float64)
    return float(np.linalg.norm(Z - codes, axis=1).mean())


def geodesic_point_code_distances(graph, train_latents, points, codes, assignment, *,
                                  n_neighbors: int = 10, chunk: int = 64) -> np.ndarray:
    """Geodesic distance from each point to its assigned code, both off the graph.

    graph: (N, N) symmetric sparse k-NN graph (as ``knn_graph`` returns) of ``train_latents`` (N, d).
    points (B, d), codes (K, d), assignment (B,) in [0, K).

    A point or code is joined to its ``n_neighbors`` nearest training latents,
    as Isomap's ``transform`` does, so d(p, c) = min over neighbours i of p and
    j of c of e(p, i) + d_graph(i, j) + e(j, c). Computed with Dijkstra from K
    extra code nodes that have outgoing edges only (a path cannot shortcut
    through another code), one row of N per code, ``chunk`` rows at a time:
    K Dijkstras, O(chunk * N) memory. A code that is itself a training node
    (a medoid) gets exactly that node's geodesic distances.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import dijkstra
    from sklearn.neighbors import NearestNeighbors

    train_latents = np.asarray(train_latents, dtype=np.float64)
    n, k_codes = len(train_latents), len(codes)
    nn = NearestNeighbors(n_neighbors=n_neighbors).fit(train_latents)
    c_dist, c_nbr = nn.kneighbors(np.asarray(codes, dtype=np.float64))
    p_dist, p_nbr = nn.kneighbors(np.asarray(points, dtype=np.float64))
    # One COO build (not sparse addition, which would drop the zero-length edge
    # from a medoid code to its own node). ``graph`` is symmetric already.
    base = sp.coo_matrix(graph)
    extended = sp.coo_matrix(
        (np.r_[base.data.astype(np.float64), c_dist.ravel()],
         (np.r_[base.row, np.repeat(np.arange(n, n + k_codes), n_neighbors)],
          np.r_[base.col, c_nbr.ravel()])), shape=(n + k_codes, n + k_codes)).tocsr()
    assignment = np.asarray(assignment)
    out = np.full(len(points), np.inf)
    for start in range(0, k_codes, chunk):
        ids = np.arange(start, min(start + chunk, k_codes))
        mine = np.flatnonzero((assignment >= ids[0]) & (assignment <= ids[-1]))
        if len(mine) == 0:
            continue
        dist = dijkstra(extended, directed=True, indices=n + ids)[:, :n]  # (chunk, N)
        local = assignment[mine] - ids[0]
        through = p_dist[mine] + dist[local[:, None], p_nbr[mine]]  # (len(mine), k)
        out[mine] = through.min(axis=1)
    return out


# --- codes against labels -------------------------------------------------------

def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a per-pixel MSE for images in [0, peak]."""
    return float(10.0 * np.log10(peak ** 2 / mse)) if mse > 0 else float("inf")


def purity(codes, labels) -> float:
    """Fraction of points whose label is their code's majority label (N,), (N,)."""
    codes, labels = np.asarray(codes).ravel(), np.asarray(labels).ravel()
    table = _contingency(codes, labels)
    return float(table.max(axis=1).sum() / len(labels))


def _contingency(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n distinct codes, n distinct labels) count table."""
    _, c = np.unique(codes, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    table = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (c, y), 1)
    return table


def code_to_label_accuracy(train_codes, train_labels, test_codes, test_labels) -> float:
    """Each code votes the majority label of its training points (ties: the
    smallest label); test points take their code's vote. A code never seen in
    training predicts the overall majority training label. Accuracy on test."""
    train_codes, train_labels = np.asarray(train_codes).ravel(), np.asarray(train_labels).ravel()
    test_codes, test_labels = np.asarray(test_codes).ravel(), np.asarray(test_labels).ravel()
    n_codes = int(max(train_codes.max(), test_codes.max())) + 1
    n_labels = int(max(train_labels.max(), test_labels.max())) + 1
    votes = np.zeros((n_codes, n_labels), dtype=np.int64)
    np.add.at(votes, (train_codes, train_labels), 1)
    vote = votes.argmax(axis=1)
    vote[votes.sum(axis=1) == 0] = np.bincount(train_labels, minlength=n_labels).argmax()
    return float((vote[test_codes] == test_labels).mean())


def label_agreement(codes, labels) -> dict[str, float]:
    """NMI, ARI and AMI (scikit-learn) and purity of codes (N,) against labels (N,)."""
    from sklearn.metrics import (adjusted_mutual_info_score, adjusted_rand_score,
                                 normalized_mutual_info_score)

    codes, labels = np.asarray(codes).ravel(), np.asarray(labels).ravel()
    return {R.NMI.column: float(normalized_mutual_info_score(labels, codes)),
            R.ARI.column: float(adjusted_rand_score(labels, codes)),
            R.AMI.column: float(adjusted_mutual_info_score(labels, codes)),
            R.PURITY.column: purity(codes, labels)}


def dead_codes(counts) -> int:
    """Codes used by no input: counts (K,) of the training split's codes -> how many are 0."""
    return int((np.asarray(counts) == 0).sum())


# --- one evaluation for every method --------------------------------------------

CODE_METRICS = R.columns(table=R.COMPARISON)  # every one; a results file keeps its protocol's


def evaluate_codes(*, recon_logits, x_test, bits, test_codes=None, train_codes=None,
                   train_labels=None, test_labels=None, n_codes=None, latent=None) -> dict:
    """All metrics of one method on the test split.

    recon_logits (N, 1, 28, 28) against x_test; test_codes (N,) one code per image
    or (N, 7, 7) a grid of codes (label metrics need one code per image and the
    labels, and are NaN otherwise); train_codes, those of the training split (the
    dead codes; with one code per image the code-to-label votes too); latent: for codes in the VAE latent space, a dict with
    graph, z_train, z_test, codebook, n_neighbors (distortions and cluster
    geometry); else z_test alone gives the cluster geometry of the codes.
    """
    recon = reconstruction_errors(recon_logits, x_test)
    row = {m: float("nan") for m in CODE_METRICS}
    row.update({R.BITS.column: bits, R.BCE.column: recon["bce"], R.MSE.column: recon["mse"],
                R.PSNR.column: psnr(recon["mse"])})
    if test_codes is None:
        return row
    counts = code_counts(test_codes, n_codes)
    row.update({R.PERPLEXITY.column: perplexity(counts), R.USAGE.column: usage(counts)})
    if train_codes is not None:
        row[R.DEAD_CODES.column] = dead_codes(code_counts(train_codes, n_codes))
    codes = np.asarray(test_codes)
    if codes.ndim == 1:
        if test_labels is not None:
            row.update(label_agreement(codes, test_labels))
            row[R.LABEL_ACCURACY.column] = code_to_label_accuracy(
                np.asarray(train_codes).ravel(), train_labels, codes, test_labels)
        if latent is not None:
            row.update(intra_inter_distances(latent["z_test"], codes))
        if latent is not None and "codebook" in latent:
            cb = latent["codebook"]
            row[R.EUCLIDEAN_DISTORTION.column] = euclidean_distortion(latent["z_test"], cb[codes])
            row[R.GEODESIC_DISTORTION.column] = float(geodesic_point_code_distances(
                latent["graph"], latent["z_train"], latent["z_test"], cb, codes,
                n_neighbors=latent["n_neighbors"]).mean())
    return row
