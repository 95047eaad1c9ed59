"""Decoder fine-tuning for the a-posteriori methods.

The VQ-VAE trains its decoder on its own codes; an a-posteriori quantizer
decodes its codes with a VAE decoder that never saw them. ``finetune_decoder``
closes that difference: a copy of the VAE's decoder is trained for a few
epochs to reconstruct the training images from their *quantized* latents,
codebook fixed (the loss is the Bernoulli negative log-likelihood, summed over
pixels and averaged over the batch, as the VAE's reconstruction term).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from utils.datasets import iterate_batches
from utils.metrics import bce_sum


def finetune_decoder(vae, codes, images: torch.Tensor, *, epochs: int, lr: float = 1e-3,
                     batch_size: int = 128, seed: int = 0):
    """A copy of ``vae`` whose decoder is trained on (codes (N, *vae.latent_shape) -> images (N, 1, 28, 28)).

    The encoder is copied unchanged and frozen; only ``decode``'s parameters
    move. Each epoch shuffles with a generator seeded from (seed, epoch), so the
    same seed gives the same decoder on CPU. Returns the copy in eval mode.
    """
    from utils.runtime import epoch_seed

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    tuned = copy.deepcopy(vae)
    if epochs == 0:
        return tuned.eval()
    device = next(tuned.parameters()).device
    z = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes,
                        dtype=torch.float32).to(device)
    x = images.to(device)
    decoder_params = [p for name, p in tuned.named_parameters() if name in decoder_parameter_names(tuned)]
    for p in tuned.parameters():
        p.requires_grad_(any(p is q for q in decoder_params))
    opt = torch.optim.Adam(decoder_params, lr=lr)
    tuned.train()
    with torch.enable_grad():
        for epoch in range(1, epochs + 1):
            gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            for zb, xb in iterate_batches(z, x, batch_size=batch_size, shuffle=True, generator=gen):
                loss = bce_sum(tuned.decode(zb), xb) / len(xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    for p in tuned.parameters():
        p.requires_grad_(True)
    return tuned.eval()


def decoder_parameter_names(vae) -> set[str]:
    """Names of the parameters that ``vae.decode`` uses (found by a probe pass:
    the ones that receive a gradient from decode alone)."""
    probe = torch.zeros(1, *vae.latent_shape, device=next(vae.parameters()).device)
    vae.zero_grad(set_to_none=True)
    with torch.enable_grad():
        vae.decode(probe).sum().backward()
    names = {n for n, p in vae.named_parameters() if p.grad is not None}
    vae.zero_grad(set_to_none=True)
    return names
