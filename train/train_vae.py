"""Train a VAE: the fully connected one (stage 1) or the conv one of the grid rate.

    python train/train_vae.py --dataset mnist --epochs 10            # MLP, d = 20
    python train/train_vae.py --arch conv --dataset fashion-mnist    # 7x7 grid of D = 4

``--arch conv`` trains :class:`models.conv_vae.ConvVAE` (the conv VQ-VAE's
encoder and decoder with a Gaussian at each of the 7x7 positions) and writes
vae_conv_* files instead of vae_*.

Writes experiments/logs/vae_train_log.csv (per epoch, the loss per image on
the training part and, as val_*, on the validation part: the test split is
not looked at while training), experiments/checkpoints/vae_mnist.pt and the
plots. Other datasets put their name into the file names
(vae_fashion-mnist_train_log.csv, ...).
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from models.conv_vae import ConvVAE
from models.vae import VAE
from utils import distributed
from utils.cli import (TrainingConfig, add_data_args, add_training_args, make_parser,
                       non_negative_float, positive_int, run_main, with_out_dir)
from utils.metrics import elbo_loss
from utils.paths import stage_paths, vae_stage
from utils.training import TrainResult, fit, prefixed, prepare_training, run_epoch

COLUMNS = ["epoch", "total_loss", "bce", "kld", "val_total_loss", "val_bce", "val_kld",
           "seconds", "dataset"]
# Flags that must match the checkpoint for --resume to continue the same run.
RESUME_KEYS = ("dataset", "arch", "latent_dim", "kl_weight", "batch_size", "lr", "seed", "limit")
ARCHS = {"mlp": VAE, "conv": ConvVAE}
# Latent width per architecture: d of the one-code VAE; D per grid position of the conv VAE
# (benchmarks/bench_conv_vae.py, benchmarks/results/conv_vae_dim.csv).
DEFAULT_LATENT_DIM = {"mlp": 20, "conv": 4}


@dataclass
class VAEConfig(TrainingConfig):
    """Every setting of a run: the flags below, one field each (same names and
    defaults). ``latent_dim`` None means the architecture's DEFAULT_LATENT_DIM,
    filled in when the config is made (so build a conv config as
    ``VAEConfig(arch="conv")``, not by ``replace`` of an mlp one)."""

    arch: str = "mlp"
    latent_dim: int | None = None
    kl_weight: float = 1.0

    def __post_init__(self):
        if self.latent_dim is None:
            self.latent_dim = DEFAULT_LATENT_DIM[self.arch]


def parse_args(argv=None) -> VAEConfig:
    p = make_parser(__doc__.splitlines()[0])
    add_data_args(p)
    add_training_args(p, epochs=VAEConfig.epochs, batch_size=VAEConfig.batch_size, lr=VAEConfig.lr)
    p.add_argument("--arch", default="mlp", choices=tuple(ARCHS),
                   help="mlp: one latent vector per image; conv: a 7x7 grid of latents")
    p.add_argument("--latent-dim", type=positive_int, default=None,
                   help=f"latent width (default {DEFAULT_LATENT_DIM}: d per image for mlp, D per "
                        f"grid position for conv)")
    p.add_argument("--kl-weight", type=non_negative_float, default=1.0,
                   help="beta of the KL term (Higgins et al. 2017): 1 trains on the negative "
                        "ELBO; < 1 weighs reconstruction more, and the logged total_loss is "
                        "then the beta objective, not the -ELBO")
    return VAEConfig(**vars(p.parse_args(argv)))


def run_paths(out_dir: Path, dataset: str, arch: str = "mlp") -> dict[str, Path]:
    """experiments/logs/vae_train_log.csv, experiments/checkpoints/vae_mnist.pt, ...
    (vae_conv_* for the conv VAE)."""
    return stage_paths(out_dir, vae_stage(arch), dataset)


def vae_step(model: VAE | ConvVAE, kl_weight: float = 1.0):
    """The loss of one batch: the summed negative ELBO (its KL term weighted by
    ``kl_weight``), and its terms per image."""
    def step(batch):
        (x,) = batch
        out = model(x)
        total, bce, kld = elbo_loss(out.recon_logits, x, out.mu, out.logvar, kl_weight)
        b = len(x)
        return total, {"total_loss": total / b, "bce": bce / b, "kld": kld / b}
    step.loss_reduction = "sum"  # the loss is summed over the batch (DDP averages shares by size)
    return step


def train(args: VAEConfig, out_dir: Path | None = None) -> TrainResult:
    """Train (or with ``args.resume`` continue) the VAE of ``args`` into ``out_dir``
    (default ``args.out_dir``); returns its checkpoint and last epoch's metrics."""
    args = with_out_dir(args, out_dir)
    paths = run_paths(args.out_dir, args.dataset, args.arch)
    cls = ARCHS[args.arch]
    run = prepare_training(args, paths, lambda: cls(latent_dim=args.latent_dim), cls, RESUME_KEYS)
    model = run.model
    step = vae_step(model, args.kl_weight)  # evaluates (rank 0 alone)
    objective = "-ELBO" if args.kl_weight == 1 else f"BCE+{args.kl_weight:g}*KLD"
    val_images = run.val.images.to(run.device)
    result = fit(
        args=args, model=model, optimizer=run.optimizer, done=run.done, train_step=vae_step(distributed.wrap(model), args.kl_weight),
        evaluate=lambda: prefixed("val_", run_epoch(step, (val_images,), batch_size=1000,
                                                    desc="val")),
        train_images=run.train.images.to(run.device), data=run.train, paths=paths,
        columns=COLUMNS, model_args=asdict(model.config), monitor="val_total_loss",
        summary=lambda r: (f"train {objective} {r['total_loss']:.2f} (BCE {r['bce']:.2f}, "
                           f"KLD {r['kld']:.2f}) | val {objective} {r['val_total_loss']:.2f}"))
    if not args.no_plots and distributed.context().main:
        from train.plot_run import plot_vae_run
        for path in plot_vae_run(paths["log"], paths["checkpoint"], paths["plots"], args.data_root,
                                 cls=cls):
            print(f"wrote {path}", file=sys.stderr)
    return result


def main(args: VAEConfig) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
