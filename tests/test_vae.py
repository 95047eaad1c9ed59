"""Tests of models/vae.py: shapes, gradients, the reparameterization, rebuilding."""
from __future__ import annotations

import io
from dataclasses import asdict

import pytest
import torch

from models.vae import VAE, VAEConfig, VAEOutput
from utils.metrics import elbo_loss


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VAE()


@pytest.fixture
def batch():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_shapes_of_encode_decode_forward(model, batch):
    mu, logvar = model.encode(batch)
    assert mu.shape == logvar.shape == (3, 20)
    assert model.decode(mu).shape == (3, 1, 28, 28)
    out = model(batch)
    assert isinstance(out, VAEOutput)
    assert out.recon_logits.shape == (3, 1, 28, 28)
    assert out.mu.shape == out.logvar.shape == (3, 20)
    # flattened input is accepted and gives the same code
    mu_flat, _ = model.encode(batch.reshape(3, 784))
    assert torch.equal(mu_flat, mu)


def test_config_drives_the_architecture():
    m = VAE(latent_dim=2, hidden_dim=16)
    assert m.latent_dim == 2 and m.config == VAEConfig(784, 16, 2)
    mu, logvar = m.encode(torch.rand(5, 1, 28, 28))
    assert mu.shape == (5, 2) and m.decode(mu).shape == (5, 1, 28, 28)
    n_params = sum(p.numel() for p in m.parameters())
    assert n_params == (784 * 16 + 16) + 2 * (16 * 2 + 2) + (2 * 16 + 16) + (16 * 784 + 784)


def test_forward_is_mu_decoded_up_to_the_noise(model, batch):
    """forward = decode(mu + sigma*eps): with the noise drawn the same way, it matches."""
    torch.manual_seed(5)
    out = model(batch)
    mu, logvar = model.encode(batch)
    torch.manual_seed(5)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    assert torch.allclose(out.recon_logits, model.decode(z), atol=1e-6)
    assert torch.equal(out.mu, mu) and torch.equal(out.logvar, logvar)


def test_gradients_reach_every_parameter(model, batch):
    out = model(batch)
    total, _, _ = elbo_loss(out.recon_logits, batch, out.mu, out.logvar)
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_reparameterize_has_the_right_mean_and_variance():
    mu = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64).expand(200_000, 3)
    var = torch.tensor([4.0, 0.25, 1.0], dtype=torch.float64)
    logvar = var.log().expand(200_000, 3)
    torch.manual_seed(0)
    z = VAE.reparameterize(mu, logvar)
    assert z.shape == mu.shape
    # standard errors: sigma / sqrt(n) <= 0.0045 for the mean, ~var*sqrt(2/n) for the variance
    assert torch.allclose(z.mean(0), mu[0], atol=0.02)
    assert torch.allclose(z.var(0), var, rtol=0.02)


def test_reparameterize_passes_gradients_to_mu_and_logvar():
    mu = torch.tensor([[0.3, -0.7]], requires_grad=True)
    logvar = torch.tensor([[0.2, -1.0]], requires_grad=True)
    torch.manual_seed(3)
    z = VAE.reparameterize(mu, logvar)
    z.sum().backward()
    eps = (z.detach() - mu.detach()) / torch.exp(0.5 * logvar.detach())
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    # dz/dlogvar = 1/2 * sigma * eps
    assert torch.allclose(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"latent_dim": 0}, {"latent_dim": -1}, {"hidden_dim": 0},
                                    {"latent_dim": 2.5}, {"input_dim": "784"},
                                    {"latent_dim": True}, {"input_dim": 100},
                                    {"image_shape": (1, 0, 28)}, {"image_shape": ()},
                                    {"image_shape": (1, 28.0, 28)}, {"image_shape": "1x28x28"}])
def test_invalid_config_is_a_value_error(kwargs):
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=field):
        VAE(**kwargs)


def test_unknown_config_key_is_rejected():
    with pytest.raises(TypeError):
        VAE(latent_dims=2)


def test_rebuilt_from_config_and_state_dict_gives_identical_outputs(batch):
    torch.manual_seed(0)
    original = VAE(latent_dim=3, hidden_dim=32)
    with torch.no_grad():  # make the weights differ from any fresh init
        for p in original.parameters():
            p.add_(0.01)
    torch.manual_seed(123)  # a different init, overwritten by the state_dict
    copy = VAE(**asdict(original.config))
    assert not torch.equal(copy.fc1.weight, original.fc1.weight)
    copy.load_state_dict(original.state_dict(), strict=True)
    for a, b in zip(original.encode(batch), copy.encode(batch)):
        assert torch.equal(a, b)
    assert torch.equal(original.decode(torch.ones(2, 3)), copy.decode(torch.ones(2, 3)))



def test_default_config_is_28x28_and_old_model_args_still_load():
    assert VAEConfig() == VAEConfig(784, 400, 20, (1, 28, 28))
    old_style = {"input_dim": 784, "hidden_dim": 400, "latent_dim": 20}
    torch.manual_seed(0)
    old = VAE(**old_style)
    assert old.config == VAEConfig()
    torch.manual_seed(0)
    assert torch.equal(VAE().fc4.weight, old.fc4.weight)  # same layers, same init
    assert asdict(old.config) == {**old_style, "image_shape": (1, 28, 28)}


def test_image_shape_drives_input_dim_and_decoder_output():
    m = VAE(image_shape=[3, 8, 6], hidden_dim=16, latent_dim=2)  # a list, e.g. from JSON
    assert m.config.image_shape == (3, 8, 6) and m.config.input_dim == 144
    assert m.fc1.in_features == 144 and m.fc4.out_features == 144
    x = torch.rand(5, 3, 8, 6)
    out = m(x)
    assert out.recon_logits.shape == (5, 3, 8, 6)
    assert m.decode(out.mu).shape == (5, 3, 8, 6)
    assert m.decode_logits(torch.zeros(7, 2), batch_size=3).shape == (7, 3, 8, 6)
    assert VAE(input_dim=144, image_shape=(3, 8, 6)).config.input_dim == 144


def test_model_args_with_image_shape_survive_a_weights_only_checkpoint():
    m = VAE(image_shape=(1, 14, 14), hidden_dim=8, latent_dim=2)
    buffer = io.BytesIO()
    torch.save({"model_args": asdict(m.config), "model": m.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    rebuilt = VAE(**ckpt["model_args"])
    rebuilt.load_state_dict(ckpt["model"], strict=True)
    assert rebuilt.config == m.config
    z = torch.randn(4, 2)
    assert torch.equal(rebuilt.decode(z), m.decode(z)) and rebuilt.decode(z).shape == (4, 1, 14, 14)
