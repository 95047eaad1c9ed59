"""Tests of utils/checkpoint.py: weights_only round trips, atomic writes, clear errors."""
from __future__ import annotations

import argparse
from dataclasses import asdict

import pytest
import torch

from models.vae import VAE
from utils.checkpoint import (CheckpointError, CheckpointWriteError, last_saved, load_checkpoint,
                              rebuild, save_checkpoint)


def assert_same(a, b, where="payload"):
    """Deep equality of nested dicts/lists of tensors and plain values."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def trained_model_and_optimizer():
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden_dim=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(4, 1, 28, 28)
    for _ in range(2):
        opt.zero_grad()
        model(x).recon_logits.sum().backward()
        opt.step()
    return model, opt, x


def only_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_with_weights_only(tmp_path):
    model, opt, _ = trained_model_and_optimizer()
    payload = {"model": model.state_dict(), "model_args": asdict(model.config),
               "optimizer": opt.state_dict(), "epoch": 3,
               "config": {"lr": 0.01, "limit": None, "resume": False, "dataset": "mnist-5k"},
               "dataset": "mnist-5k",
               "nested": {"a": [1, 2.5, "x", None, True], "b": {"t": torch.arange(5, dtype=torch.int64)},
                          "half": torch.ones(2, dtype=torch.float16)}}
    path = save_checkpoint(tmp_path / "sub" / "ck.pt", payload)  # the folder is created
    assert path == tmp_path / "sub" / "ck.pt" and path.is_file()
    back = load_checkpoint(path)
    assert_same(payload, back)
    # a plain torch.load with weights_only=True reads it too (no pickled objects inside)
    assert_same(payload, torch.load(path, weights_only=True))


def test_optimizer_state_resumes_the_same_trajectory(tmp_path):
    """Restoring model + Adam state and taking a step equals taking it in the original."""
    model, opt, x = trained_model_and_optimizer()
    save_checkpoint(tmp_path / "ck.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "model_args": asdict(model.config)})
    ck = load_checkpoint(tmp_path / "ck.pt")
    model2 = rebuild(ck, VAE)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(ck["optimizer"])
    for m, o in ((model, opt), (model2, opt2)):
        torch.manual_seed(9)
        o.zero_grad()
        m(x).recon_logits.sum().backward()
        o.step()
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name


def test_save_leaves_no_temp_files_and_overwrites(tmp_path):
    save_checkpoint(tmp_path / "ck.pt", {"epoch": 1})
    save_checkpoint(tmp_path / "ck.pt", {"epoch": 2})
    assert only_files(tmp_path) == ["ck.pt"]
    assert load_checkpoint(tmp_path / "ck.pt") == {"epoch": 2}


@pytest.mark.parametrize("exc,raised", [
    # torch's zip writer on a full disk
    (RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"),
     CheckpointWriteError),
    (OSError(28, "No space left on device"), CheckpointWriteError),
    (KeyboardInterrupt(), KeyboardInterrupt),
])
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, exc, raised):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    before = path.read_bytes()

    def torch_save_dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip archive")
        raise exc

    monkeypatch.setattr(torch, "save", torch_save_dies_mid_write)
    with pytest.raises(raised) as info:
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    if raised is CheckpointWriteError:
        msg = str(info.value)
        assert msg.startswith(f"could not write {path} (") and "\n" not in msg
        assert msg.endswith("the previous checkpoint there is unchanged")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert only_files(tmp_path) == ["ck.pt"]
    back = load_checkpoint(path)
    assert back["epoch"] == 1 and torch.equal(back["w"], torch.ones(3))


def test_missing_checkpoint_names_the_path_and_the_hint(tmp_path):
    path = tmp_path / "nope" / "vae.pt"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, hint="train without --resume first")
    msg = str(info.value)
    assert str(path) in msg and "train without --resume first" in msg and "\n" not in msg


def _truncated_tail(tmp_path):
    save_checkpoint(tmp_path / "full.pt", {"w": torch.ones(1000)})
    return (tmp_path / "full.pt").read_bytes()[:-10]


def _truncated_half(tmp_path):
    save_checkpoint(tmp_path / "full.pt", {"w": torch.ones(1000)})
    raw = (tmp_path / "full.pt").read_bytes()
    return raw[: len(raw) // 2]


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp: b"", id="empty"),
    pytest.param(lambda tmp: bytes(range(256)) * 4, id="binary-garbage"),
    pytest.param(lambda tmp: b"PK\x03\x04" + b"\x00" * 64, id="zip-header-only"),
    pytest.param(_truncated_half, id="truncated-half"),
    # Regression: these escaped as KeyError, IndexError and OSError before load_checkpoint
    # caught every exception of torch.load.
    pytest.param(lambda tmp: b"hello", id="text-hello"),
    pytest.param(lambda tmp: b"abc", id="text-abc"),
    pytest.param(_truncated_tail, id="truncated-tail"),
])
def test_unreadable_file_is_a_checkpoint_error(tmp_path, make):
    path = tmp_path / "bad.pt"
    path.write_bytes(make(tmp_path))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg


def test_pickled_objects_are_refused(tmp_path):
    """An argparse Namespace inside (DINO's mistake) is not loadable with weights_only."""
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _vae_checkpoint(**model_args):
    torch.manual_seed(0)
    m = VAE(**model_args)
    return m, {"model": m.state_dict(), "model_args": asdict(m.config)}


def test_rebuild_gives_the_same_model(tmp_path):
    m, ck = _vae_checkpoint(latent_dim=3, hidden_dim=16)
    save_checkpoint(tmp_path / "ck.pt", ck)
    r = rebuild(load_checkpoint(tmp_path / "ck.pt"), VAE)
    assert r.config == m.config
    x = torch.rand(2, 1, 28, 28)
    for a, b in zip(m.encode(x), r.encode(x)):
        assert torch.equal(a, b)


def test_rebuild_with_a_mismatched_state_dict(tmp_path):
    _, ck = _vae_checkpoint(latent_dim=3, hidden_dim=16)
    ck["model_args"]["latent_dim"] = 4  # shapes no longer fit
    with pytest.raises(CheckpointError, match="does not match VAE") as info:
        rebuild(ck, VAE, path=tmp_path / "ck.pt")
    assert str(tmp_path / "ck.pt") in str(info.value) and "\n" not in str(info.value)


def test_rebuild_with_a_missing_or_extra_key():
    _, ck = _vae_checkpoint(latent_dim=3, hidden_dim=16)
    missing = dict(ck, model={k: v for k, v in ck["model"].items() if k != "fc4.bias"})
    with pytest.raises(CheckpointError, match="does not match VAE"):
        rebuild(missing, VAE)
    extra = dict(ck, model={**ck["model"], "fc5.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="does not match VAE"):
        rebuild(extra, VAE)


@pytest.mark.parametrize("drop", ["model", "model_args"])
def test_rebuild_without_a_model(drop):
    _, ck = _vae_checkpoint()
    del ck[drop]
    with pytest.raises(CheckpointError, match="does not hold a model"):
        rebuild(ck, VAE)


def test_checkpoint_gets_the_usual_file_mode(tmp_path):
    """Regression: mkstemp's 0600 used to survive the rename."""
    import os
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(2)})
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_first_write_says_nothing_was_written(tmp_path, monkeypatch):
    def no_space(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointWriteError, match="nothing was written"):
        save_checkpoint(tmp_path / "new.pt", {"epoch": 1})
    assert only_files(tmp_path) == []


def test_last_saved_names_the_last_checkpoint_written(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"epoch": 1})
    save_checkpoint(tmp_path / "b.pt", {"epoch": 1})
    assert last_saved() == tmp_path / "b.pt"


@pytest.mark.parametrize("content", [
    lambda: torch.save({"args": argparse.Namespace(lr=0.1)}, BUF),
    lambda: BUF.write(bytes(range(256)) * 4),
])
def test_load_errors_never_advise_weights_only_false(tmp_path, content):
    """torch suggests retrying with weights_only=False, which runs the file's code."""
    BUF.seek(0)
    BUF.truncate()
    content()
    path = tmp_path / "bad.pt"
    path.write_bytes(BUF.getvalue())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "weights_only" not in msg and "False" not in msg and "arbitrary code" not in msg
    assert str(path) in msg and "\n" not in msg and "\x1b" not in msg


def test_a_pickled_object_is_named_in_the_error(tmp_path):
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_dict(tmp_path):
    torch.save(torch.ones(2), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a dict"):
        load_checkpoint(tmp_path / "t.pt")


def test_rebuild_refuses_another_model_class():
    ck = {"model": {}, "model_args": {"arch": "global"}, "model_class": "VQVAE"}
    with pytest.raises(CheckpointError) as info:
        rebuild(ck, VAE, path="x.pt")
    assert str(info.value) == "x.pt holds a VQVAE, not a VAE"


@pytest.mark.parametrize("model_args,err", [
    ({"arch": "global", "codebook_size": 8, "code_dim": 4}, "TypeError"),  # a VQ-VAE's, no class
    ({"latent_dim": -1}, "ValueError"),
])
def test_rebuild_turns_constructor_errors_into_a_checkpoint_error(model_args, err):
    _, ck = _vae_checkpoint()
    ck["model_args"] = model_args
    with pytest.raises(CheckpointError) as info:
        rebuild(ck, VAE, path="old.pt")
    msg = str(info.value)
    assert msg.startswith("old.pt does not hold a VAE") and err in msg and "\n" not in msg


BUF = __import__("io").BytesIO()


def test_ctrl_c_during_a_write_is_raised_after_it_and_names_the_new_file(tmp_path, monkeypatch):
    """A SIGINT that arrives inside torch.save is held until the file is complete;
    the interruption then names the checkpoint just written, not the one before."""
    import os
    import signal

    from utils import checkpoint as C

    first = C.save_checkpoint(tmp_path / "a.pt", {"x": torch.zeros(1)})
    real_save = torch.save

    def save_and_interrupt(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-write
        real_save(obj, f)

    monkeypatch.setattr(C.torch, "save", save_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(tmp_path / "b.pt", {"x": torch.ones(1)})
    assert C.last_saved() == tmp_path / "b.pt" != first
    assert torch.load(tmp_path / "b.pt", weights_only=True)["x"].item() == 1.0
