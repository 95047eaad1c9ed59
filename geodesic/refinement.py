"""Which vector stands for a code: the latent that decodes best for its members.

Given a fixed partition of the training latents into K clusters (e.g. geodesic
k-medoids' cells), the refined code vector of cluster k is

    c_k = argmin_c  (1 / n_k) sum_{i in k} BCE(f(c), x_i)

with f the decoder (Bernoulli logits) and x_i the members' images. For the
Bernoulli likelihood the sum collapses to sufficient statistics: with
l = f(c), sum_i BCE(l, x_i) = sum_pixels [ n_k softplus(l) - l * S_k ],
S_k = sum_{i in k} x_i, so one optimiser step costs K decoder passes, not N.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def cluster_pixel_sums(labels: np.ndarray, images, n_clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) member counts and (K, ...) summed images of each cluster."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images,
                        dtype=torch.float32)
    idx = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.bincount(idx, minlength=n_clusters).float()
    sums = torch.zeros((n_clusters, *x.shape[1:])).index_add_(0, idx, x)
    return counts, sums


def mean_member_bce(decoder_logits, codes: torch.Tensor, counts: torch.Tensor,
                    sums: torch.Tensor) -> torch.Tensor:
    """(K,) mean BCE of each cluster's members when decoded from ``codes`` (K, d)."""
    logits = decoder_logits(codes).reshape(sums.shape)
    per_pixel = counts.view(-1, *[1] * (sums.dim() - 1)) * F.softplus(logits) - logits * sums
    return per_pixel.flatten(1).sum(1) / counts.clamp_min(1)


def refine_code_vectors(decoder_logits, init, labels, images, *, steps: int = 200,
                        lr: float = 0.05, seed: int = 0) -> np.ndarray:
    """Adam from ``init`` (K, d) (the medoids) on :func:`mean_member_bce`; returns
    float32 (K, d). A cluster's vector is kept where refinement did not lower
    its loss, so no code gets worse than its medoid."""
    torch.manual_seed(seed)
    start = torch.as_tensor(np.asarray(init), dtype=torch.float32)
    counts, sums = cluster_pixel_sums(labels, images, len(start))
    codes = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([codes], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            mean_member_bce(decoder_logits, codes, counts, sums).sum().backward()
            opt.step()
    with torch.no_grad():
        before = mean_member_bce(decoder_logits, start, counts, sums)
        after = mean_member_bce(decoder_logits, codes, counts, sums)
        best = torch.where((after < before)[:, None], codes, start)
    return best.detach().numpy().astype(np.float32)
