"""Batch-size selection on the validation split: the criterion is the model's own
validation loss recomputed here from the checkpoint, the choice is the lowest
mean, and the printed flags make the comparison reuse the chosen models."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from utils.errors import UserError
import torch

from train import comparison_methods as cm
from train import run_comparison as rc
from train import select_batch_size as sb
from train.train_vae import ARCHS
from utils import methods as vocab
from utils.checkpoint import load_checkpoint, rebuild
from models.geodesic_vq import EuclideanQuantizer
from utils.datasets import load_dataset
from utils.metrics import elbo_loss
from utils.results import config_hash

ARGV = ["--dataset", "mnist-5k", "--limit", "240", "--epochs", "1", "--codebook-sizes", "4",
        "--batch-sizes", "16", "64"]


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    args = sb.parse_args(ARGV + ["--work-dir", str(root / "work"), "--results-dir", str(root / "res")])
    sb.main(args)
    return root, pd.read_csv(root / "res" / "batch_size_mnist-5k.csv")


def test_one_row_per_family_k_and_batch_size(selection):
    _, frame = selection
    assert list(frame.columns) == sb.COLUMNS
    got = sorted(zip(frame["family"], frame["K"], frame["batch_size"]))
    assert got == [("vae-mlp", 0, 16), ("vae-mlp", 0, 64), ("vae-mlp-elbo", 0, 16), ("vae-mlp-elbo", 0, 64),
                   ("vqvae-global", 4, 16), ("vqvae-global", 4, 64)]
    assert set(frame["dataset_used"]) == {"mnist-5k"} and set(frame["epochs"]) == {1}


def vae_of(root, batch_size):
    args = rc.parse_args(["--dataset", "mnist-5k", "--limit", "240", "--epochs", "1",
                          "--work-dir", str(root / "work"), "--vae-batch-size", str(batch_size)])
    ckpt = cm.cached_checkpoint("vae", args.work_dir, cm.vae_config(args, 0), "vae_mnist-5k.pt")
    return rebuild(load_checkpoint(ckpt), ARCHS["mlp"], "cpu", ckpt).eval()


def test_the_vae_is_chosen_by_the_bce_of_its_k_means_codes(selection):
    root, frame = selection
    train = load_dataset("mnist-5k", "train", limit=240)
    val = load_dataset("mnist-5k", "val", limit=240)
    for _, row in frame[frame["family"] == "vae-mlp"].iterrows():
        assert row["criterion"] == "val_kmeans_bce"
        model = vae_of(root, row["batch_size"])
        with torch.no_grad():
            z_train, z_val = model.latent_means(train.images), model.latent_means(val.images)
            codes = EuclideanQuantizer(4, 0).fit(z_train).quantize(z_val).codes
            p = torch.sigmoid(model.decode(codes.float())).clamp(1e-7, 1 - 1e-7).double()
            x = val.images.double()
            bce = -(x * p.log() + (1 - x) * (1 - p).log()).sum() / len(x)  # Bernoulli NLL by hand
        assert math.isclose(row["value"], float(bce), rel_tol=1e-3)


def test_the_vae_s_own_negative_elbo_is_written_beside_it(selection):
    root, frame = selection
    val = load_dataset("mnist-5k", "val", limit=240)
    for _, row in frame[frame["family"] == "vae-mlp-elbo"].iterrows():
        args = rc.parse_args(["--dataset", "mnist-5k", "--limit", "240", "--epochs", "1",
                              "--work-dir", str(root / "work"), "--vae-batch-size", str(row["batch_size"])])
        ckpt = cm.cached_checkpoint("vae", args.work_dir, cm.vae_config(args, 0), "vae_mnist-5k.pt")
        assert config_hash(cm.vae_config(args, 0)) == row["config_hash"]
        model = rebuild(load_checkpoint(ckpt), ARCHS["mlp"], "cpu", ckpt).eval()
        torch.manual_seed(1)
        with torch.no_grad():  # the logged value is a one-sample estimate: compare with 200 draws
            draws = torch.tensor([float(elbo_loss(o.recon_logits, val.images, o.mu, o.logvar)[0])
                                  for o in (model(val.images) for _ in range(200))]) / len(val.images)
        assert abs(row["value"] - draws.mean()) < 4 * draws.std()
        assert draws.std() < 0.02 * draws.mean()  # and the estimate is tight enough to rank by


def test_the_printed_flags_make_the_comparison_reuse_the_chosen_models(selection):
    root, frame = selection
    chosen = sb.choose(frame)
    flags = sb.comparison_flags(chosen)
    args = rc.parse_args(["--dataset", "mnist-5k", "--limit", "240", "--epochs", "1",
                          "--codebook-sizes", "4", "--work-dir", str(root / "work"), *flags])
    picked = chosen[chosen["chosen"]].set_index("family")["batch_size"]
    rows = frame.set_index(["family", "batch_size"])["config_hash"]
    assert config_hash(cm.vae_config(args, 0)) == rows["vae-mlp", picked["vae-mlp"]]
    assert config_hash(cm.vqvae_config(args, "global", 4, 0)) == rows["vqvae-global", picked["vqvae-global"]]


def test_choose_takes_the_lowest_mean_and_the_larger_batch_on_a_tie():
    frame = pd.DataFrame({"family": ["vae-mlp"] * 4 + ["vqvae-global"] * 4,
                          "K": [0] * 4 + [8] * 4,
                          "batch_size": [16, 16, 32, 32, 16, 16, 32, 32],
                          "seed": [0, 1] * 4,
                          "value": [3.0, 5.0, 4.5, 4.5, 2.0, 2.0, 1.0, 3.0]})
    chosen = sb.choose(frame)
    assert chosen.loc[chosen["chosen"], ["family", "batch_size"]].values.tolist() == [
        ["vae-mlp", 16], ["vqvae-global", 32]]
    vae16 = chosen[(chosen["family"] == "vae-mlp") & (chosen["batch_size"] == 16)].iloc[0]
    assert vae16["mean"] == 4.0 and math.isclose(vae16["std"], math.sqrt(2.0))


def test_flags_name_each_k_only_when_the_choices_differ():
    def picked(sizes):
        return pd.DataFrame({"family": ["vae-mlp"] + ["vqvae-global"] * len(sizes),
                             "K": [0, *sizes], "batch_size": [32, *sizes.values()], "chosen": True})
    assert sb.comparison_flags(picked({16: 32, 64: 32})) == [
        "--vae-batch-size", "32", "--vqvae-batch-size", "32"]
    flags = sb.comparison_flags(picked({16: 64, 64: 16}))
    assert flags == ["--vae-batch-size", "32", "--vqvae-batch-size", "16:64", "64:16"]
    args = rc.parse_args(flags)
    assert [cm.vqvae_batch_size(args, k) for k in (16, 64, 256)] == [64, 16, 128]


def test_an_explicit_batch_size_of_128_keeps_the_published_ids():
    plain = rc.parse_args(["--dataset", "mnist"])
    explicit = rc.parse_args(["--dataset", "mnist", "--vae-batch-size", "128", "--vqvae-batch-size", "128"])
    for args in (plain, explicit):
        assert cm.vae_train_config(args, 0).batch_size == 128
    assert cm.vae_config(plain, 0) == cm.vae_config(explicit, 0)
    assert cm.vqvae_config(plain, "global", 64, 0) == cm.vqvae_config(explicit, "global", 64, 0)


def test_a_malformed_batch_size_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exc:
        rc.parse_args(["--vqvae-batch-size", "64:zero"])
    assert exc.value.code == 2
    assert "expected B or K:B" in capsys.readouterr().err


def test_the_default_methods_are_the_registrys_and_those_of_the_published_run():
    """METHODS is a filter over utils/methods.py (the one-code-per-image methods),
    in the order of the published selection, which gave no --methods."""
    assert sorted(sb.METHODS) == sorted(n for n in vocab.names(rate=vocab.IMAGE_RATE)
                                        if vocab.get(n).family != vocab.END_TO_END
                                        or vocab.get(n).options == {"arch": "global"})
    with pytest.raises(UserError, match="fsq-global"):
        sb.families(["fsq-global"])
    record = (Path(__file__).resolve().parents[1] / "experiments" / "results" / "batch_size"
              / "batch_size_mnist_run.json")
    run = json.loads(record.read_text())
    assert "--methods" not in run["argv"]
    assert sb.parse_args(run["argv"][1:]).methods == run["config"]["methods"]
