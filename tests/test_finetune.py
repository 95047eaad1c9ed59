"""train/finetune.py: only the decoder moves, the loss on the codes drops, same seed same result."""
import torch

from models.vae import VAE
from train.finetune import decoder_parameter_names, finetune_decoder
from utils.metrics import bce_sum


def setup():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3).eval()
    patterns = torch.rand(4, 1, 28, 28).round()  # one binary image per code: learnable exactly
    codes = torch.randn(4, 3)[torch.arange(64) % 4]  # 4 codes shared by 64 images
    images = patterns[torch.arange(64) % 4]
    return vae, codes, images


def test_decoder_parameters_are_found_by_the_probe():
    vae, _, _ = setup()
    assert decoder_parameter_names(vae) == {"fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias"}


def test_only_the_decoder_moves_and_the_loss_on_the_codes_drops():
    vae, codes, images = setup()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    tuned = finetune_decoder(vae, codes, images, epochs=5, lr=1e-2, batch_size=16, seed=1)
    for k, v in vae.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k]), k
    for k, v in tuned.state_dict().items():
        moved = not torch.equal(v, before[k])
        assert moved == (k.startswith("fc3") or k.startswith("fc4")), k
    with torch.no_grad():
        assert bce_sum(tuned.decode(codes), images) < 0.5 * bce_sum(vae.decode(codes), images)
    assert all(p.requires_grad for p in tuned.parameters())


def test_same_seed_same_decoder_and_zero_epochs_is_a_copy():
    vae, codes, images = setup()
    a = finetune_decoder(vae, codes, images, epochs=2, batch_size=16, seed=3)
    b = finetune_decoder(vae, codes, images, epochs=2, batch_size=16, seed=3)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    same = finetune_decoder(vae, codes, images, epochs=0)
    assert same is not vae and all(torch.equal(same.state_dict()[k], v)
                                   for k, v in vae.state_dict().items())
