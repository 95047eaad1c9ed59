"""Early stopping (utils/training.py ``fit`` with ``patience``, train/finetune.py ``finetune``)
against brute-force references: the best epoch is the argmin of the validation losses seen,
training ends ``patience`` epochs after it, the kept weights are that epoch's, and a resumed
run ends exactly as an uninterrupted one."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from models.vae import VAE
from train.finetune import finetune, finetune_decoder
from utils.checkpoint import load_checkpoint
from utils.datasets import Data
from utils.metrics import bce_sum
from utils.training import EarlyStopping, best_checkpoint, finished, fit

SCRIPT = [5.0, 3.0, 4.0, 2.5, 2.6, 2.7, 1.0, 9.0]  # validation losses, epoch 1, 2, ...


def reference(values, patience, budget):
    """(epochs run, best epoch) by brute force: stop at the first epoch e with
    e - argmin(values[:e]) >= patience, or at the budget."""
    for e in range(1, budget + 1):
        best = min(range(1, e + 1), key=lambda i: (values[i - 1], i))
        if e - best >= patience or e == budget:
            return e, best
    raise AssertionError


@pytest.mark.parametrize("patience", [1, 2, 3, 10])
def test_early_stopping_matches_the_brute_force_rule(patience):
    stop, seen = EarlyStopping("val", patience), 0
    for epoch, value in enumerate(SCRIPT, start=1):
        stop.observe(epoch, {"val": value})
        seen = epoch
        if stop.stopped:
            break
    assert (seen, stop.best_epoch) == reference(SCRIPT, patience, len(SCRIPT))


def test_nan_never_improves():
    stop = EarlyStopping("val", 2)
    stop.observe(1, {"val": 1.0})
    assert not stop.observe(2, {"val": float("nan")}) and stop.best_epoch == 1


def scripted_fit(tmp_path, epochs, *, resume=False, patience=2):
    """fit() of a tiny linear model whose validation loss follows SCRIPT; returns
    the result and {epoch: the weights at that epoch's end}."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    ckpt = tmp_path / "checkpoints" / "m.pt"
    done = 0
    if resume:
        stored = load_checkpoint(ckpt)
        model.load_state_dict(stored["model"])
        optimizer.load_state_dict(stored["optimizer"])
        done = stored["epoch"]
    weights, epoch = {}, [done]
    x = torch.randn(32, 3)

    def step(batch):
        (xb,) = batch
        loss = model(xb).pow(2).mean()
        return loss, {"loss": loss}

    def evaluate():
        epoch[0] += 1
        weights[epoch[0]] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val_loss": SCRIPT[epoch[0] - 1]}

    args = SimpleNamespace(epochs=epochs, patience=patience, batch_size=8, seed=0, resume=resume,
                           overwrite=False, max_loss_ratio=1e3)
    paths = {"checkpoint": ckpt, "log": tmp_path / "logs" / "m.csv"}
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    result = fit(args=args, model=model, optimizer=optimizer, done=done, train_step=step,
                 evaluate=evaluate, train_images=x, data=Data(x, x, "toy", "test"), paths=paths,
                 columns=["epoch", "loss", "val_loss", "seconds", "dataset"], model_args={},
                 summary=lambda r: "", monitor="val_loss")
    return model, result, weights


def test_fit_stops_after_patience_and_keeps_the_best_weights(tmp_path):
    model, result, weights = scripted_fit(tmp_path, epochs=8)
    run, best = reference(SCRIPT, 2, 8)
    assert (result.metrics["epochs_trained"], result.metrics["best_epoch"]) == (run, best) == (6, 4)
    assert result.checkpoint == best_checkpoint(tmp_path / "checkpoints" / "m.pt")
    kept = load_checkpoint(result.checkpoint)
    assert kept["epoch"] == best and result.metrics["val_loss"] == SCRIPT[best - 1]
    for k, v in kept["model"].items():  # the file and the model in memory: epoch 4's weights
        assert torch.equal(v, weights[best][k]) and torch.equal(model.state_dict()[k], v)
    last = load_checkpoint(tmp_path / "checkpoints" / "m.pt")
    assert last["epoch"] == run and last["stopped"] and finished(last, epochs=100)


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path):
    whole = scripted_fit(tmp_path / "a", epochs=8)
    scripted_fit(tmp_path / "b", epochs=3)  # a budget that ends before the stop ...
    part = load_checkpoint(tmp_path / "b" / "checkpoints" / "m.pt")
    assert not finished(part, epochs=8) and part["best_epoch"] == 2
    model, result, _ = scripted_fit(tmp_path / "b", epochs=8, resume=True)  # ... then resumed
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
    assert drop(result.metrics) == drop(whole[1].metrics)
    for k, v in whole[0].state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    # a stopped run that is resumed with a larger budget trains no further
    again = scripted_fit(tmp_path / "b", epochs=20, resume=True)[1]
    assert again.metrics["epochs_trained"] == 6


def decoder_data():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3).eval()
    patterns = torch.rand(4, 1, 28, 28).round()
    codes = torch.randn(4, 3)[torch.arange(64) % 4]
    images = patterns[torch.arange(64) % 4]
    noisy = images.clone()
    noisy[:, :, :14] = 1 - noisy[:, :, :14]  # a validation split the training data misleads
    return vae, codes, images, noisy


def test_finetune_keeps_the_best_validation_epoch():
    """The early-stopped copy equals the copy trained without validation for exactly
    its best epoch (same seed, same batches), whose validation BCE is the lowest of all
    epochs up to the stop: the brute-force reference."""
    vae, codes, images, val_images = decoder_data()
    out = finetune(vae, codes, images, epochs=30, lr=1e-2, batch_size=16, seed=1,
                   val=(codes, val_images), patience=2)
    assert out.epochs_trained - out.best_epoch == 2 and out.epochs_trained < 30
    with torch.no_grad():
        scores = [float(bce_sum(finetune_decoder(vae, codes, images, epochs=e, lr=1e-2,
                                                 batch_size=16, seed=1).decode(codes), val_images))
                  for e in range(1, out.epochs_trained + 1)]
    assert min(range(len(scores)), key=scores.__getitem__) + 1 == out.best_epoch
    same = finetune_decoder(vae, codes, images, epochs=out.best_epoch, lr=1e-2, batch_size=16, seed=1)
    for k, v in same.state_dict().items():
        assert torch.allclose(out.model.state_dict()[k], v, atol=1e-6)


def test_finetune_patience_needs_validation_data():
    vae, codes, images, _ = decoder_data()
    with pytest.raises(ValueError, match="validation"):
        finetune(vae, codes, images, epochs=2, patience=1)
