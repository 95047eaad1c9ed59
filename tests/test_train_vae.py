"""Tests of train/train_vae.py (in process and as a script), utils/training.py's
epoch loop and train/plot_run.py's command line. Small runs on mnist-5k, on the CPU."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from models.vae import VAE
from train.train_vae import COLUMNS, main, parse_args, run_paths, train
from utils.checkpoint import CheckpointError, rebuild
from utils.cli import run_main
from utils.datasets import load_dataset
from utils.training import NonFiniteLossError, run_epoch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ["epoch", "total_loss", "bce", "kld", "val_total_loss", "val_bce", "val_kld", "seconds"]
LOSSES = ["total_loss", "bce", "kld", "val_total_loss", "val_bce", "val_kld"]
# the file names the script's docstring promises for a dataset other than mnist
LOG_NAME, CKPT_NAME = "logs/vae_mnist-5k_train_log.csv", "checkpoints/vae_mnist-5k.pt"


def vae_args(out, *extra, epochs=2, limit=256, batch_size=64):
    return parse_args(["--dataset", "mnist-5k", "--limit", str(limit), "--epochs", str(epochs),
                       "--batch-size", str(batch_size), "--out-dir", str(out),
                       "--data-root", str(out / "data"), "--device", "cpu", "--no-plots", *extra])


def read_log(out):
    with open(out / LOG_NAME, newline="") as f:
        return list(csv.DictReader(f))


def losses(rows):
    return [[row[c] for c in LOSSES] for row in rows]


def load_ckpt(out):
    return torch.load(out / CKPT_NAME, weights_only=True)


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """One 2-epoch run (256 images, batch 64), shared read-only; copy it to resume from it."""
    out = tmp_path_factory.mktemp("run2")
    main(vae_args(out))
    return out


@pytest.fixture
def copy_of_run2(run2, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run2, out)
    return out


# ----------------------------------------------------------------------------- outputs

def test_csv_header_and_rows(run2):
    with open(run2 / LOG_NAME, newline="") as f:
        header = next(csv.reader(f))
    assert header[:8] == HEADER and header[8:] == ["dataset"] and header == COLUMNS
    rows = read_log(run2)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert r["dataset"] == "mnist-5k"
        values = {c: float(r[c]) for c in LOSSES + ["seconds"]}
        assert all(math.isfinite(v) for v in values.values()) and values["seconds"] > 0
        for prefix in ("", "val_"):  # written with 6 significant digits each
            assert values[prefix + "total_loss"] == pytest.approx(
                values[prefix + "bce"] + values[prefix + "kld"], rel=2e-5)
            assert values[prefix + "kld"] >= 0
        # per-image -ELBO of 784 Bernoulli pixels: below 784 log 2 once anything is learned
        assert 50 < values["total_loss"] < 784 * math.log(2)


def test_checkpoint_is_complete_and_rebuilds(run2):
    ck = load_ckpt(run2)  # weights_only=True: plain values and tensors only
    assert {"model", "model_args", "optimizer", "epoch", "config", "dataset"} <= set(ck)
    assert ck["epoch"] == 2 and ck["dataset"] == "mnist-5k"
    assert ck["model_class"] == "VAE"
    assert {k: ck["model_args"][k] for k in ("input_dim", "hidden_dim", "latent_dim")} == {
        "input_dim": 784, "hidden_dim": 400, "latent_dim": 20}
    cfg = ck["config"]
    assert cfg["lr"] == 1e-3 and cfg["batch_size"] == 64 and cfg["limit"] == 256
    assert cfg["dataset"] == "mnist-5k" and cfg["seed"] == 0 and cfg["epochs"] == 2
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in cfg.values())
    model = rebuild(ck, VAE)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert ck["optimizer"]["state"][0]["step"].item() == 2 * 4  # 2 epochs of 256/64 batches
    assert (run2 / "logs" / "vae_mnist-5k_run.json").is_file()


def test_logged_val_loss_is_the_per_image_negative_elbo_on_the_val_part(run2):
    """Recompute the last validation -ELBO from the checkpoint with many z samples
    per image, on the validation part of the first 256 training images."""
    ck = load_ckpt(run2)
    model = rebuild(ck, VAE).eval()
    x = load_dataset("mnist-5k", "val", limit=256).images.flatten(1).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, logvar = (t.double() for t in model.encode(x.float()))
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        bce = torch.zeros(len(x), dtype=torch.float64)
        n_samples = 16
        for _ in range(n_samples):
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g, dtype=torch.float64)
            logits = model.decode(z.float()).flatten(1).double()
            # -log Bernoulli(x | sigmoid(l)) = softplus(l) - x l
            bce += (torch.nn.functional.softplus(logits) - x * logits).sum(1) / n_samples
    last = read_log(run2)[-1]
    assert float(last["val_kld"]) == pytest.approx(kl.mean().item(), rel=1e-4)
    assert float(last["val_bce"]) == pytest.approx(bce.mean().item(), rel=0.02)
    assert float(last["val_total_loss"]) == pytest.approx((bce + kl).mean().item(), rel=0.02)
    # ... and not on the test split, whose KL term differs
    x_test = load_dataset("mnist-5k", "test", limit=256).images.flatten(1)
    with torch.no_grad():
        mu, logvar = model.encode(x_test)
        kl_test = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1).mean().item()
    assert float(last["val_kld"]) != pytest.approx(kl_test, rel=1e-4)


def test_run_paths():
    from pathlib import Path
    assert run_paths(Path("o"), "mnist")["log"] == Path("o/logs/vae_train_log.csv")
    assert run_paths(Path("o"), "mnist")["checkpoint"] == Path("o/checkpoints/vae_mnist.pt")
    p = run_paths(Path("o"), "fashion-mnist")
    assert p["log"] == Path("o/logs/vae_fashion-mnist_train_log.csv")
    assert p["checkpoint"] == Path("o/checkpoints/vae_fashion-mnist.pt")


def test_train_is_the_script_as_a_function(run2, tmp_path):
    """train(cfg, out_dir) runs what main runs, into out_dir, and returns the
    checkpoint and its last epoch's metrics; a finished run returns them again."""
    cfg = vae_args(tmp_path / "ignored")
    result = train(cfg, tmp_path / "here")
    assert result.checkpoint == tmp_path / "here" / CKPT_NAME and result.checkpoint.is_file()
    assert not (tmp_path / "ignored" / CKPT_NAME).exists()
    assert losses(read_log(tmp_path / "here")) == losses(read_log(run2))
    assert result.metrics == {**load_ckpt(tmp_path / "here")["metrics"], "epochs_trained": 2,
                              "best_epoch": 2}
    assert "dataset" not in result.metrics and result.metrics["epoch"] == 2
    again = train(replace(cfg, resume=True), tmp_path / "here")
    assert again == result


# ----------------------------------------------------------------------------- reproducibility

def test_same_seed_same_numbers_other_seed_other_numbers(run2, tmp_path):
    main(vae_args(tmp_path / "again"))
    assert losses(read_log(tmp_path / "again")) == losses(read_log(run2))
    a, b = load_ckpt(run2)["model"], load_ckpt(tmp_path / "again")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    main(vae_args(tmp_path / "seed1", "--seed", "1", epochs=1))
    assert losses(read_log(tmp_path / "seed1"))[0] != losses(read_log(run2))[0]


def test_training_lowers_the_loss(tmp_path):
    main(vae_args(tmp_path, epochs=3, limit=512, batch_size=32))
    rows = read_log(tmp_path)
    train = [float(r["total_loss"]) for r in rows]
    val = [float(r["val_total_loss"]) for r in rows]
    assert train[-1] < train[0] and train[-1] < 0.8 * train[0]
    assert val[0] > val[1] > val[2]


def test_resume_equals_an_uninterrupted_run(copy_of_run2, tmp_path):
    straight = tmp_path / "straight"
    main(vae_args(straight, epochs=4))
    main(vae_args(copy_of_run2, "--resume", epochs=4))
    a, b = load_ckpt(straight), load_ckpt(copy_of_run2)
    assert a["epoch"] == b["epoch"] == 4
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    rows_a, rows_b = read_log(straight), read_log(copy_of_run2)
    assert [r["epoch"] for r in rows_b] == ["1", "2", "3", "4"]
    assert losses(rows_a) == losses(rows_b)


def test_resume_at_the_target_epoch_changes_nothing(copy_of_run2):
    before = losses(read_log(copy_of_run2))
    weights = load_ckpt(copy_of_run2)["model"]
    main(vae_args(copy_of_run2, "--resume", epochs=2))
    assert losses(read_log(copy_of_run2)) == before
    after = load_ckpt(copy_of_run2)["model"]
    assert all(torch.equal(weights[k], after[k]) for k in weights)


@pytest.mark.parametrize("flag,value,key", [("--lr", "0.01", "lr"), ("--seed", "3", "seed"),
                                            ("--latent-dim", "5", "latent_dim"),
                                            ("--batch-size", "32", "batch_size"),
                                            ("--kl-weight", "0.5", "kl_weight")])
def test_resume_with_other_settings_is_a_clear_error(copy_of_run2, capsys, flag, value, key):
    ckpt = copy_of_run2 / CKPT_NAME
    before = ckpt.read_bytes()
    args = vae_args(copy_of_run2, "--resume", flag, value, epochs=3)
    assert run_main(main, args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"{key}=" in lines[0] and value in lines[0] and str(ckpt) in lines[0]
    assert ckpt.read_bytes() == before
    assert len(read_log(copy_of_run2)) == 2


def test_a_checkpoint_from_before_kl_weight_resumes_as_kl_weight_one(copy_of_run2, capsys):
    """Checkpoints written before --kl-weight existed hold no kl_weight: they were
    trained on the plain -ELBO, so they resume at the default 1 and refuse another."""
    path = copy_of_run2 / CKPT_NAME
    ck = load_ckpt(copy_of_run2)
    del ck["config"]["kl_weight"]
    torch.save(ck, path)
    assert run_main(main, vae_args(copy_of_run2, "--resume", "--kl-weight", "0.5", epochs=3)) == 2
    assert "kl_weight=1.0" in error_lines(capsys.readouterr().err)[0]
    main(vae_args(copy_of_run2, "--resume", epochs=3))
    assert load_ckpt(copy_of_run2)["epoch"] == 3


def test_kl_weight_trains_on_the_beta_objective(run2, tmp_path):
    """total_loss = bce + beta * kld in the log, and beta changes what is trained."""
    main(vae_args(tmp_path, "--kl-weight", "0.1"))
    rows = read_log(tmp_path)
    for r in rows:
        for prefix in ("", "val_"):
            assert float(r[f"{prefix}total_loss"]) == pytest.approx(
                float(r[f"{prefix}bce"]) + 0.1 * float(r[f"{prefix}kld"]), rel=1e-5)
    assert load_ckpt(tmp_path)["config"]["kl_weight"] == 0.1
    # less weight on the KL term: a larger KL term than the beta = 1 run of the same seed
    assert float(rows[-1]["val_kld"]) > float(read_log(run2)[-1]["val_kld"])


def test_kl_weight_must_be_a_finite_non_negative_number(tmp_path, capsys):
    for bad in ("-1", "inf", "nan", "x"):
        with pytest.raises(SystemExit) as e:
            vae_args(tmp_path, "--kl-weight", bad)
        assert e.value.code == 2
        assert "--kl-weight" in capsys.readouterr().err


def test_resume_without_a_checkpoint(tmp_path, capsys):
    assert run_main(main, vae_args(tmp_path, "--resume")) == 2
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and str(tmp_path / CKPT_NAME) in lines[0]
    assert "Traceback" not in err


def _raises(exc):
    def main_(_):
        raise exc
    return main_


@pytest.mark.parametrize("exc", [ValueError("bad value"), CheckpointError("bad checkpoint")])
def test_run_main_turns_user_errors_into_one_line(exc, capsys):
    assert run_main(_raises(exc), None) == 2
    assert capsys.readouterr().err == f"error: {exc}\n"


def test_run_main_lets_other_errors_and_debug_mode_through(monkeypatch):
    with pytest.raises(KeyError):
        run_main(_raises(KeyError("bug")), None)
    monkeypatch.setenv("VQG_DEBUG", "1")
    with pytest.raises(CheckpointError):
        run_main(_raises(CheckpointError("shown with its traceback")), None)


# ----------------------------------------------------------------------------- NaN guard

@pytest.fixture
def nan_decoder(monkeypatch):
    """VAE.decode returns NaN logits that still depend on the weights (so backward runs)."""
    decode = VAE.decode

    def nan_decode(self, z):
        return decode(self, z) * float("nan")

    def install():
        monkeypatch.setattr(VAE, "decode", nan_decode)
    return install


def test_nan_loss_stops_before_saving(copy_of_run2, nan_decoder):
    ckpt = copy_of_run2 / CKPT_NAME
    before = ckpt.read_bytes()
    nan_decoder()
    with pytest.raises(NonFiniteLossError, match="last good checkpoint") as info:
        main(vae_args(copy_of_run2, "--resume", epochs=3))
    assert "NaN" in str(info.value) and str(ckpt) in str(info.value)
    assert ckpt.read_bytes() == before
    ck = load_ckpt(copy_of_run2)
    assert ck["epoch"] == 2 and all(torch.isfinite(v).all() for v in ck["model"].values())
    assert [r["epoch"] for r in read_log(copy_of_run2)] == ["1", "2"]


def test_nan_loss_in_a_first_epoch_through_run_main(tmp_path, nan_decoder, capsys):
    nan_decoder()
    assert run_main(main, vae_args(tmp_path, epochs=1)) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "NaN" in lines[0] and "last good checkpoint: none yet" in lines[0]
    assert not (tmp_path / CKPT_NAME).exists()
    assert read_log(tmp_path) == []


# ----------------------------------------------------------------------------- run_epoch

def _mean_step(batch):
    (x,) = batch
    return x.sum(), {"v": x.mean(), "sq": (x ** 2).mean()}


def test_run_epoch_weights_batches_by_size():
    x = torch.arange(10, dtype=torch.float64)  # batches of 3, 3, 3, 1
    out = run_epoch(_mean_step, (x,), batch_size=3, progress=False)
    assert out["v"] == pytest.approx(4.5)  # the mean of 0..9, not the mean of batch means (5.25)
    assert out["sq"] == pytest.approx(28.5)


@pytest.mark.parametrize("bad_at", [0, 3])
def test_run_epoch_stops_on_a_non_finite_loss(bad_at):
    x = torch.arange(10, dtype=torch.float64)
    x[bad_at * 3] = float("inf")
    with pytest.raises(NonFiniteLossError, match="NaN/inf"):
        run_epoch(_mean_step, (x,), batch_size=3, progress=False, desc="epoch 1/1")


def test_run_epoch_trains_with_an_optimizer():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    x = torch.full((8,), 2.0)

    def step(batch):
        loss = ((w - batch[0]) ** 2).mean()
        return loss, {"loss": loss}
    first = run_epoch(step, (x,), batch_size=4, optimizer=opt, progress=False,
                      generator=torch.Generator().manual_seed(0))
    # two SGD steps on (w - 2)^2: w = 0 -> 0.4 -> 0.72; losses 4 and 2.56
    assert w.item() == pytest.approx(0.72)
    assert first["loss"] == pytest.approx((4 + 2.56) / 2)


# ----------------------------------------------------------------------------- as a script

def script(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "VQG_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"  # as in conftest: tiny models, shared cores
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("how", [["train/train_vae.py"], ["-m", "train.train_vae"]])
def test_script_help(how):
    r = script(*how, "--help")
    assert r.returncode == 0, r.stderr
    assert "--epochs" in r.stdout and "--resume" in r.stdout and "default" in r.stdout


@pytest.mark.parametrize("argv,needle", [(["--epochs", "0"], "--epochs"),
                                         (["--dataset", "nope"], "--dataset")])
def test_script_rejects_bad_arguments(argv, needle):
    r = script("train/train_vae.py", *argv)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_script_end_to_end_with_plots(tmp_path):
    r = script("train/train_vae.py", "--dataset", "mnist-5k", "--limit", "200", "--epochs", "1",
               "--batch-size", "50", "--out-dir", str(tmp_path), "--data-root", str(tmp_path / "data"),
               "--device", "cpu", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_log(tmp_path)
    assert len(rows) == 1 and rows[0]["dataset"] == "mnist-5k"
    assert load_ckpt(tmp_path)["epoch"] == 1
    for kind in ("curves", "reconstructions", "latents"):
        png = tmp_path / "plots" / f"vae_mnist-5k_{kind}.png"
        pdf = png.with_suffix(".pdf")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf


def test_plotted_curves_are_train_and_dashed_validation(run2, tmp_path, drawn_lines):
    from train.plot_run import plot_vae_run
    plot_vae_run(run2 / LOG_NAME, run2 / CKPT_NAME, tmp_path, run2 / "data")
    curves = drawn_lines[0]
    assert curves["-ELBO per image"] == [("train total_loss", "-"), ("validation total_loss", "--")]
    assert curves["BCE per image"] == [("train bce", "-"), ("validation bce", "--")]
    assert curves["KL per image"] == [("train kld", "-"), ("validation kld", "--")]


def test_plot_script_help():
    r = script("train/plot_run.py", "--help")
    assert r.returncode == 0, r.stderr
    assert "vae" in r.stdout


def test_plot_script_with_a_missing_log(tmp_path):
    missing = tmp_path / "no_log.csv"
    r = script("train/plot_run.py", "vae", "--log", str(missing))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(missing) in lines[0]


# ----------------------------------------------------------------------------- torchrun (DDP)

# The VAE draws its reparameterization noise on each rank, which no data-parallel run can
# make equal to one process's draws: with z = mu the model is deterministic, so that the
# comparison tests the sharding of the batches and the reduction of the gradients alone.
# loss_reduction = "sum" is the VAE's -ELBO (summed over the batch), see utils/distributed.py.
def deterministic_vae(VAE, tv):
    VAE.reparameterize = staticmethod(lambda mu, logvar: mu + 0 * logvar)
    make_step = tv.vae_step

    def vae_step(model, kl_weight=1.0):
        step = make_step(model, kl_weight)
        step.loss_reduction = "sum"
        return step
    tv.vae_step = vae_step


DDP_WRAPPER = """
import sys
from dataclasses import replace
import torch
from models.vae import VAE
import train.train_vae as tv
from tests.test_train_vae import deterministic_vae

deterministic_vae(VAE, tv)
torch.set_num_threads(1)
sys.exit(tv.run_main(tv.main, tv.parse_args(sys.argv[1:])))
"""


def test_torchrun_two_ranks_equal_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    import train.train_vae as tv
    # 33 does not divide 2: shares of 17 and 16, and a last batch of one image leaves rank 1
    # an empty share
    argv = ["--dataset", "mnist-5k", "--limit", "100", "--batch-size", "33", "--epochs", "2",
            "--device", "cpu", "--no-plots"]
    wrapper = tmp_path / "deterministic_vae.py"
    wrapper.write_text(DDP_WRAPPER)
    env = {k: v for k, v in os.environ.items() if k != "VQG_DEBUG"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    ddp = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2", str(wrapper), *argv, "--out-dir",
                            str(tmp_path / "ddp")], cwd=REPO_ROOT, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    monkeypatch.setattr(VAE, "reparameterize", VAE.__dict__["reparameterize"])  # undone after
    monkeypatch.setattr(tv, "vae_step", tv.vae_step)
    deterministic_vae(VAE, tv)
    tv.main(tv.parse_args(argv + ["--out-dir", str(tmp_path / "single")]))  # meanwhile, here
    err = ddp.communicate(timeout=300)[1]
    assert ddp.returncode == 0, err[-3000:]
    # rank 0 alone prints the epochs
    assert [ln[:7] for ln in err.splitlines() if ln.startswith("epoch ")] == ["epoch 1", "epoch 2"]
    one, two = (torch.load(tmp_path / n / CKPT_NAME, weights_only=True) for n in ("single", "ddp"))
    assert set(two["model"]) == set(one["model"])  # DDP's module: no "module." prefix
    for key, a in one["model"].items():
        torch.testing.assert_close(two["model"][key], a, rtol=1e-5, atol=1e-6, msg=key)
    steps = 2 * -(-len(load_dataset("mnist-5k", "train", limit=100).images) // 33)
    assert two["optimizer"]["state"][0]["step"].item() == steps
    assert one["optimizer"]["state"][0]["step"].item() == steps
    rows_one, rows_two = read_log(tmp_path / "single"), read_log(tmp_path / "ddp")
    assert [r["epoch"] for r in rows_two] == ["1", "2"]  # one writer: no duplicated rows
    for a, b in zip(rows_one, rows_two):
        for col in LOSSES:
            assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-5), col
    records = [json.loads((tmp_path / n / "logs" / "vae_mnist-5k_run.json").read_text())
               for n in ("single", "ddp")]
    assert [r["world_size"] for r in records] == [1, 2]
