"""The conv VAE (models/conv_vae.py) and ``train_vae.py --arch conv``, against
the conv VQ-VAE it mirrors and the analytic ELBO terms."""
from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F

from models.conv_net import grid_vectors, vectors_to_grid
from models.conv_vae import ConvVAE
from models.vqvae import VQVAE
from train.train_vae import COLUMNS, main, parse_args, run_paths
from utils.checkpoint import CheckpointError, rebuild
from utils.datasets import load_dataset
from utils.metrics import elbo_loss


def test_shapes_and_the_vqvae_conv_architecture():
    torch.manual_seed(0)
    vae = ConvVAE(latent_dim=6)
    x = torch.rand(5, 1, 28, 28)
    out = vae(x)
    assert out.recon_logits.shape == (5, 1, 28, 28)
    assert out.mu.shape == out.logvar.shape == (5, 6, 7, 7) and vae.latent_shape == (6, 7, 7)
    vq = VQVAE(arch="conv", code_dim=6)
    # the decoder is the conv VQ-VAE's, layer by layer; the encoder too, but for its
    # last 1x1 convolution, which gives mean and log-variance (2 D channels)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(vae.decoder) == shapes(vq.decoder)
    enc, vq_enc = shapes(vae.encoder), shapes(vq.encoder)
    last = max(enc, key=lambda k: int(k.split(".")[0]))
    assert enc[last][0] == 2 * vq_enc[last][0]
    assert {k: v for k, v in enc.items() if k.split(".")[0] != last.split(".")[0]} == \
        {k: v for k, v in vq_enc.items() if k.split(".")[0] != last.split(".")[0]}


def test_elbo_terms_against_the_closed_forms():
    """KL of N(mu, sigma^2) to N(0, 1), summed over every grid position and
    channel; the decoder term is the Bernoulli NLL of the decoded sample."""
    torch.manual_seed(1)
    vae = ConvVAE(latent_dim=3)
    x = (torch.rand(4, 1, 28, 28) > 0.5).float()
    mu, logvar = vae.encode(x)
    torch.manual_seed(2)
    z = vae.reparameterize(mu, logvar)
    total, bce, kld = elbo_loss(vae.decode(z), x, mu, logvar)
    var = logvar.exp()
    assert kld.item() == pytest.approx((0.5 * (var + mu ** 2 - 1 - logvar)).sum().item(), rel=1e-5)
    p = torch.sigmoid(vae.decode(z))
    ref = -(x * p.clamp_min(1e-12).log() + (1 - x) * (1 - p).clamp_min(1e-12).log()).sum()
    assert bce.item() == pytest.approx(ref.item(), rel=1e-4)
    assert total.item() == pytest.approx(bce.item() + kld.item(), rel=1e-6)


def test_grid_vectors_round_trip_in_raster_order():
    z = torch.arange(2 * 3 * 7 * 7, dtype=torch.float32).reshape(2, 3, 7, 7)
    v = grid_vectors(z)
    assert v.shape == (98, 3)
    # vector 7 * r + c of image n is the channel vector at row r, column c
    torch.testing.assert_close(v[49 + 7 * 2 + 5], z[1, :, 2, 5])
    torch.testing.assert_close(vectors_to_grid(v, 2), z)


def conv_args(out, *extra, epochs=1):
    return parse_args(["--arch", "conv", "--dataset", "mnist-5k", "--limit", "192", "--epochs",
                       str(epochs), "--batch-size", "64", "--latent-dim", "4", "--out-dir", str(out),
                       "--data-root", str(out / "data"), "--device", "cpu", "--no-plots", *extra])


def test_train_vae_arch_conv_logs_the_validation_elbo_of_its_checkpoint(tmp_path):
    main(conv_args(tmp_path))
    paths = run_paths(tmp_path, "mnist-5k", "conv")
    assert paths["checkpoint"].name == "vae_conv_mnist-5k.pt"
    with open(paths["log"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and len(rows) == 1
    ckpt = torch.load(paths["checkpoint"], weights_only=True)
    assert ckpt["model_class"] == "ConvVAE" and ckpt["config"]["arch"] == "conv"
    model = rebuild(ckpt, ConvVAE).eval()
    x = load_dataset("mnist-5k", "val", limit=192).images.double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, logvar = (t.double() for t in model.encode(x.float()))
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        bce = torch.zeros(len(x), dtype=torch.float64)
        for _ in range(16):
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g, dtype=torch.float64)
            logits = model.decode(z.float()).flatten(1).double()
            bce += (F.softplus(logits) - x.flatten(1) * logits).sum(1) / 16
    assert float(rows[0]["val_kld"]) == pytest.approx(kl.mean().item(), rel=1e-4)
    assert float(rows[0]["val_bce"]) == pytest.approx(bce.mean().item(), rel=0.02)
    with pytest.raises(CheckpointError, match="latent_dim"):
        main(conv_args(tmp_path, "--resume", "--latent-dim", "5", epochs=2))
