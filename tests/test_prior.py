"""models/prior.py: the gated PixelCNN is causal without a blind spot, a
normalised distribution that its sampler follows, and it learns; the histogram
prior's NLL is the analytic entropy."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch

from models.prior import GatedPixelCNN, HistogramPrior, PixelCNNConfig


def tiny(n_codes=4, height=5, width=5, channels=8, n_layers=5, seed=0, **kw):
    """A random float64 model; 5 layers of kernel 3 see the whole 5x5 past."""
    torch.manual_seed(seed)
    return GatedPixelCNN(n_codes=n_codes, height=height, width=width, channels=channels,
                         n_layers=n_layers, **kw).double().eval()


@torch.no_grad()
def dependencies(model, codes, labels=None):
    """Brute force: dep[q, p] is True when changing the code at raster position q
    (to any other value) changes some logit at position p. codes (1, H, W)."""
    H, W = codes.shape[1:]
    K = model.n_codes
    base = model(codes, labels).logits[0].reshape(K, H * W)
    dep = np.zeros((H * W, H * W), dtype=bool)
    for q in range(H * W):
        for value in range(K):
            if value == codes[0].view(-1)[q]:
                continue
            changed = codes.clone()
            changed[0].view(-1)[q] = value
            diff = (model(changed, labels).logits[0].reshape(K, H * W) - base).abs().amax(dim=0)
            # masked weights contribute exact zeros; a real path, however weak
            # through many random gates (down to ~1e-7 on 7x7), is far above float64 rounding
            dep[q] |= (diff > 1e-13).numpy()
    return dep


def raster_past(n):
    """past[q, p] = q < p: position p may depend on q exactly when q comes first."""
    return np.triu(np.ones((n, n), dtype=bool), k=1)


# ---------------------------------------------------------------------------- causality

@pytest.mark.parametrize("kernel_size,n_layers", [(3, 5), (5, 3)])
def test_logits_depend_on_exactly_the_earlier_positions(kernel_size, n_layers):
    model = tiny(kernel_size=kernel_size, n_layers=n_layers)
    codes = torch.randint(0, 4, (1, 5, 5), generator=torch.Generator().manual_seed(1))
    dep = dependencies(model, codes)
    # causal: a change at q moves no logit at a position <= q ...
    assert not (dep & ~raster_past(25)).any()
    # ... and no blind spot: it moves the logits of every later position
    assert (dep == raster_past(25)).all()


def test_class_conditional_model_is_causal_too():
    model = tiny(n_classes=3)
    codes = torch.randint(0, 4, (1, 5, 5), generator=torch.Generator().manual_seed(2))
    assert (dependencies(model, codes, torch.tensor([2])) == raster_past(25)).all()


@pytest.mark.parametrize("stack", ["vertical_mask", "horizontal_mask"])
def test_the_causality_check_catches_an_unmasked_first_layer(stack):
    """The check above can fail: with either mask of the first layer opened,
    the current position leaks into its own logits."""
    model = tiny()
    getattr(model.layers[0], stack).fill_(1.0)
    codes = torch.randint(0, 4, (1, 5, 5), generator=torch.Generator().manual_seed(1))
    dep = dependencies(model, codes)
    assert dep[np.arange(25), np.arange(25)].any()


def test_default_config_sees_the_whole_past_of_a_7x7_map():
    torch.manual_seed(0)
    model = GatedPixelCNN(n_codes=2).double().eval()
    assert (model.config.height, model.config.width) == (7, 7)
    codes = torch.randint(0, 2, (1, 7, 7), generator=torch.Generator().manual_seed(0))
    assert (dependencies(model, codes) == raster_past(49)).all()


# ----------------------------------------------------------------- a proper distribution

def all_maps(K, H, W):
    return torch.tensor(list(itertools.product(range(K), repeat=H * W))).reshape(-1, H, W)


@pytest.mark.parametrize("n_classes", [None, 2])
def test_probabilities_of_all_maps_sum_to_one(n_classes):
    model = tiny(n_codes=3, height=2, width=2, n_layers=2, n_classes=n_classes)
    maps = all_maps(3, 2, 2)  # all 81 maps
    for label in ([None] if n_classes is None else range(n_classes)):
        labels = None if label is None else torch.full((len(maps),), label)
        bits = model.nll_bits(maps, labels)
        assert float(torch.exp2(-bits).sum()) == pytest.approx(1.0, abs=1e-10)


def test_loss_and_bits_agree_with_a_direct_log_softmax():
    model = tiny(n_codes=4, height=3, width=4, n_layers=3)
    codes = torch.randint(0, 4, (6, 3, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(codes)
    logp = torch.log_softmax(out.logits, dim=1).gather(1, codes[:, None]).squeeze(1)  # (6, 3, 4)
    assert out.logits.shape == (6, 4, 3, 4)
    assert float(out.loss) == pytest.approx(float(-logp.mean()), rel=1e-12)
    assert torch.allclose(out.nll_bits_per_map, -logp.sum(dim=(1, 2)) / math.log(2))
    assert torch.allclose(model.nll_bits(codes, batch_size=4), out.nll_bits_per_map)


def test_samples_follow_the_model_distribution():
    model = tiny(n_codes=2, height=2, width=2, n_layers=2).float()
    maps = all_maps(2, 2, 2)
    probs = torch.exp2(-model.nll_bits(maps)).double()
    draws = model.sample(20000, generator=torch.Generator().manual_seed(0))
    index = (draws.reshape(-1, 4) * torch.tensor([8, 4, 2, 1])).sum(dim=1)  # raster order, base 2
    observed = np.bincount(index.numpy(), minlength=16)
    assert scipy.stats.chisquare(observed, probs.numpy() / probs.sum().item() * 20000).pvalue > 1e-3


def test_low_temperature_samples_are_the_greedy_decoding():
    model = tiny(n_codes=4, height=3, width=3, n_layers=3)
    greedy = torch.zeros(1, 3, 3, dtype=torch.long)
    for p in range(9):
        greedy.view(-1)[p] = model(greedy).logits[0].reshape(4, 9)[:, p].argmax()
    draws = model.sample(5, temperature=1e-4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(draws, greedy.expand(5, 3, 3))


def test_sampling_is_reproducible_and_keeps_the_mode():
    model = tiny(n_classes=3).float().train()
    labels = torch.tensor([0, 1, 2, 1])
    a = model.sample(4, labels=labels, generator=torch.Generator().manual_seed(5))
    b = model.sample(4, labels=labels, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (4, 5, 5) and a.dtype == torch.long
    assert model.training  # restored after sampling in eval mode


# ------------------------------------------------------------------------------ learning

def train(model, codes, labels=None, steps=100, lr=2e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(codes, labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_nll_of_one_repeated_map_goes_to_zero():
    torch.manual_seed(0)
    code_map = torch.randint(0, 16, (1, 7, 7))
    model = GatedPixelCNN(n_codes=16, channels=16, n_layers=3)
    before = float(model.nll_bits(code_map))
    train(model, code_map)  # a batch of one map: the gradient of the whole data set
    after = model.nll_bits(code_map.expand(4, 7, 7))
    assert before > 49 * 2 and float(after.max()) < 0.05


def test_labels_carry_the_one_bit_that_separates_two_maps():
    """Two maps, one per class, that differ from the first position on: the
    unconditional prior needs log2(2) = 1 bit per map, the conditional one 0."""
    torch.manual_seed(0)
    maps = torch.randint(0, 8, (2, 4, 4))
    maps[1, 0, 0] = (maps[0, 0, 0] + 1) % 8
    codes, labels = maps, torch.tensor([0, 1])  # the whole data set in one batch
    kw = dict(n_codes=8, height=4, width=4, channels=16, n_layers=3)
    plain = train(GatedPixelCNN(**kw), codes)
    cond = train(GatedPixelCNN(n_classes=2, **kw), codes, labels)
    assert float(plain.nll_bits(codes).mean()) == pytest.approx(1.0, abs=0.05)
    assert float(cond.nll_bits(codes, labels).max()) < 0.05


def test_rebuilds_from_model_args_and_state_dict():
    model = tiny(n_classes=2)
    again = GatedPixelCNN(**model.model_args).double()
    again.load_state_dict(model.state_dict(), strict=True)
    codes = torch.randint(0, 4, (3, 5, 5))
    labels = torch.tensor([0, 1, 1])
    assert torch.equal(model(codes, labels).logits, again.eval()(codes, labels).logits)
    assert model.model_args == dict(n_codes=4, height=5, width=5, channels=8, n_layers=5,
                                    kernel_size=3, n_classes=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_codes=1), "n_codes"), (dict(n_codes=4, kernel_size=4), "odd"),
    (dict(n_codes=4, kernel_size=1), "kernel_size"), (dict(n_codes=4, n_layers=0), "n_layers"),
    (dict(n_codes=4, n_classes=0), "n_classes")])
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PixelCNNConfig(**kwargs)


def test_bad_inputs_are_refused():
    model = tiny()
    cond = tiny(n_classes=2)
    with pytest.raises(ValueError, match=r"\(B, 5, 5\)"):
        model(torch.zeros(2, 7, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model(torch.full((2, 5, 5), 4))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.zeros(2, 5, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="class-conditional"):
        cond.sample(2)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)


# ----------------------------------------------------------------------- histogram prior

def test_histogram_nll_is_the_entropy_of_a_known_histogram():
    counts = np.array([5, 3, 2, 0])
    codes = torch.from_numpy(np.repeat(np.arange(4), counts))
    prior = HistogramPrior(4, alpha=0.0).fit(codes)
    entropy = scipy.stats.entropy(counts / counts.sum(), base=2)
    assert float(prior.nll_bits(codes).mean()) == pytest.approx(entropy, rel=1e-12)
    assert prior.entropy_bits == pytest.approx(entropy, rel=1e-12)
    assert torch.isinf(prior.nll_bits(torch.tensor([3])))[0]  # never seen, alpha = 0


def test_laplace_smoothing_gives_every_code_mass():
    codes = torch.tensor([0, 0, 0, 1, 1, 2])
    prior = HistogramPrior(4).fit(codes)  # alpha = 1
    expected = np.array([4, 3, 2, 1]) / 10  # (n_k + 1) / (N + K)
    assert torch.allclose(prior.probs, torch.from_numpy(expected))
    assert torch.allclose(prior.nll_bits(torch.arange(4)), torch.from_numpy(-np.log2(expected)))
    assert prior.entropy_bits == pytest.approx(scipy.stats.entropy(expected, base=2))


def test_histogram_over_maps_sums_the_bits_of_the_positions():
    codes = torch.tensor([[[0, 1], [1, 1]], [[2, 1], [0, 1]]])  # (2, 2, 2)
    prior = HistogramPrior(3, alpha=0.5, code_shape=(2, 2)).fit(codes)
    p = (np.array([2, 5, 1]) + 0.5) / (8 + 1.5)
    assert torch.allclose(prior.nll_bits(codes),
                          torch.tensor([-np.log2(p[[0, 1, 1, 1]]).sum(), -np.log2(p[[2, 1, 0, 1]]).sum()],
                                       dtype=torch.float64))
    assert prior.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        prior.nll_bits(torch.zeros(2, 3, dtype=torch.long))


def test_histogram_samples_follow_the_smoothed_probabilities():
    prior = HistogramPrior(3).fit(torch.tensor([0, 0, 0, 0, 1, 1]))
    draws = prior.sample(9000, generator=torch.Generator().manual_seed(0))
    expected = prior.probs.numpy() * 9000
    assert scipy.stats.chisquare(np.bincount(draws.numpy(), minlength=3), expected).pvalue > 1e-3
    sharp = prior.sample(200, temperature=0.01, generator=torch.Generator().manual_seed(0))
    assert (sharp == 0).all()


def test_histogram_prior_checks_its_input():
    with pytest.raises(RuntimeError, match="not fitted"):
        HistogramPrior(3).nll_bits(torch.tensor([0]))
    with pytest.raises(ValueError, match="alpha"):
        HistogramPrior(3, alpha=-1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        HistogramPrior(3).fit(torch.tensor([0, 3]))
    prior = HistogramPrior(3).fit(torch.tensor([0, 1]))
    again = HistogramPrior(**prior.model_args)
    again.load_state_dict(prior.state_dict(), strict=True)
    assert torch.equal(again.probs, prior.probs)
