"""Decoder fine-tuning on frozen codes: the same decoder treatment for both sides.

The VQ-VAE trains its decoder on its own codes; an a-posteriori quantizer
decodes its codes with a VAE decoder that never saw them. :func:`finetune`
closes that difference: a copy of the model's decoder is trained to
reconstruct the training images from their *quantized* latents, codebook and
encoder fixed (the loss is the Bernoulli negative log-likelihood, summed over
pixels and averaged over the batch, as the VAE's reconstruction term). In the
tuned protocol an end-to-end model gets the same treatment on its own frozen
codes (``decode=vqvae_decode``), with the same epoch budget and early stopping
on the validation split.
"""
from __future__ import annotations

import copy
from typing import Callable, NamedTuple

import numpy as np
import torch

from utils.datasets import iterate_batches
from utils.metrics import bce_sum
from utils.runtime import epoch_seed

Decode = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def vae_decode(model, z: torch.Tensor) -> torch.Tensor:
    """A VAE's decoder: latents (B, *latent_shape) -> logits (B, 1, 28, 28)."""
    return model.decode(z)


def vqvae_decode(model, z_q: torch.Tensor) -> torch.Tensor:
    """A VQ-VAE's decoder on code vectors, code dimension last ((B, D) or (B, 7, 7, D))."""
    return model.decode_codes(z_q)


class Finetuned(NamedTuple):
    """A fine-tuned copy (eval mode) and how it trained: ``epochs_trained`` run,
    ``best_epoch`` the epoch of its weights (the last one without validation data)."""

    model: torch.nn.Module
    epochs_trained: int
    best_epoch: int


def _as_tensor(codes, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes,
                           dtype=torch.float32).to(device)


def _bce_per_image(model, decode: Decode, z: torch.Tensor, x: torch.Tensor,
                   batch_size: int = 1000) -> float:
    with torch.no_grad():
        total = sum(float(bce_sum(decode(model, z[i:i + batch_size]), x[i:i + batch_size]))
                    for i in range(0, len(z), batch_size))
    return total / len(z)


def finetune(model, codes, images: torch.Tensor, *, epochs: int, lr: float = 1e-3,
             batch_size: int = 128, seed: int = 0, decode: Decode = vae_decode,
             val: tuple | None = None, patience: int | None = None) -> Finetuned:
    """A copy of ``model`` whose decoder is trained on (codes (N, ...) -> images (N, 1, 28, 28)).

    Only the parameters ``decode`` uses move (found by a probe pass); the
    original is untouched. Each epoch shuffles with a generator seeded from
    (seed, epoch), so the same seed gives the same decoder on CPU. With
    ``val`` = (codes, images) of the validation split and ``patience``,
    training stops ``patience`` epochs after the lowest validation BCE and the
    copy keeps that epoch's weights (early stopping; ``epochs`` is the budget).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if patience is not None and val is None:
        raise ValueError("early stopping (patience) needs validation codes and images (val=)")
    tuned = copy.deepcopy(model)
    if epochs == 0:
        return Finetuned(tuned.eval(), 0, 0)
    device = next(tuned.parameters()).device
    z, x = _as_tensor(codes, device), images.to(device)
    names = decoder_parameter_names(tuned, z[:1], decode)
    decoder_params = [p for name, p in tuned.named_parameters() if name in names]
    for p in tuned.parameters():
        p.requires_grad_(any(p is q for q in decoder_params))
    opt = torch.optim.Adam(decoder_params, lr=lr)
    if val is not None:
        z_val, x_val = _as_tensor(val[0], device), val[1].to(device)
    best_value, best_epoch, best_state, epoch = float("inf"), 0, None, 0
    with torch.enable_grad():
        for epoch in range(1, epochs + 1):
            tuned.train()
            gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            for zb, xb in iterate_batches(z, x, batch_size=batch_size, shuffle=True, generator=gen):
                loss = bce_sum(decode(tuned, zb), xb) / len(xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if val is None:
                best_epoch = epoch
                continue
            tuned.eval()
            value = _bce_per_image(tuned, decode, z_val, x_val)
            if value < best_value:
                best_value, best_epoch = value, epoch
                best_state = copy.deepcopy(tuned.state_dict())
            if patience is not None and epoch - best_epoch >= patience:
                break
    if best_state is not None:
        tuned.load_state_dict(best_state)
    for p in tuned.parameters():
        p.requires_grad_(True)
    return Finetuned(tuned.eval(), epoch, best_epoch)


def finetune_decoder(vae, codes, images: torch.Tensor, *, epochs: int, lr: float = 1e-3,
                     batch_size: int = 128, seed: int = 0):
    """A copy of ``vae`` whose decoder is trained on (codes (N, *vae.latent_shape) ->
    images (N, 1, 28, 28)) for ``epochs`` epochs (:func:`finetune` without early stopping)."""
    return finetune(vae, codes, images, epochs=epochs, lr=lr, batch_size=batch_size,
                    seed=seed).model


def decoder_parameter_names(model, probe: torch.Tensor | None = None,
                            decode: Decode = vae_decode) -> set[str]:
    """Names of the parameters that ``decode`` uses (found by a probe pass on
    ``probe``, one code batch, by default a zero latent of ``model.latent_shape``:
    the ones that receive a gradient from decoding alone)."""
    if probe is None:
        probe = torch.zeros(1, *model.latent_shape, device=next(model.parameters()).device)
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        decode(model, probe).sum().backward()
    names = {n for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return names
