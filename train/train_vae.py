"""Train the fully connected VAE (stage 1 of the pipeline).

    python train/train_vae.py --dataset mnist --epochs 10

Writes experiments/logs/vae_train_log.csv (per-epoch train and test loss per
image), experiments/checkpoints/vae_mnist.pt and the plots. The dataset's
name goes into the file names for datasets other than mnist's log.
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import torch

from models.vae import VAE
from utils.checkpoint import CheckpointError, load_checkpoint, rebuild, save_checkpoint
from utils.cli import add_data_args, add_training_args, make_parser, positive_int, run_main
from utils.csvlog import CSVLogger
from utils.datasets import load_dataset
from utils.metrics import elbo_loss
from utils.runtime import pick_device, plain_config, print_args, seed_everything, write_run_record
from utils.training import NonFiniteLossError, train_epochs

COLUMNS = ["epoch", "total_loss", "bce", "kld", "test_total_loss", "test_bce", "test_kld",
           "seconds", "dataset"]
# Flags that must match the checkpoint for --resume to continue the same run.
RESUME_KEYS = ("dataset", "latent_dim", "batch_size", "lr", "seed", "limit")


def parse_args(argv=None):
    p = make_parser(__doc__.splitlines()[0])
    add_data_args(p)
    add_training_args(p, epochs=10, batch_size=128, lr=1e-3)
    p.add_argument("--latent-dim", type=positive_int, default=20, help="latent dimension d")
    return p.parse_args(argv)


def run_paths(out_dir: Path, dataset: str) -> dict[str, Path]:
    """Where this run's files go (the requested dataset's name, not the fallback's)."""
    log_name = "vae_train_log.csv" if dataset == "mnist" else f"vae_{dataset}_train_log.csv"
    return {"log": out_dir / "logs" / log_name,
            "record": out_dir / "logs" / f"vae_{dataset}_run.json",
            "checkpoint": out_dir / "checkpoints" / f"vae_{dataset}.pt",
            "plots": out_dir / "plots"}


def vae_step(model: VAE):
    """The loss of one batch: the summed negative ELBO, and its terms per image."""
    def step(batch):
        (x,) = batch
        out = model(x)
        total, bce, kld = elbo_loss(out.recon_logits, x, out.mu, out.logvar)
        b = len(x)
        return total, {"total_loss": total / b, "bce": bce / b, "kld": kld / b}
    return step


def resume_state(path: Path, args, dataset_used: str, device):
    """Model, optimizer state and last epoch from ``path``, after checking the
    checkpoint was made by the same settings."""
    ckpt = load_checkpoint(path, device, hint="train without --resume first")
    stored = ckpt.get("config", {})
    for key in RESUME_KEYS:
        if stored.get(key) != getattr(args, key):
            raise CheckpointError(f"{path} was trained with {key}={stored.get(key)!r} but this run "
                                  f"has {key}={getattr(args, key)!r}; match it or drop --resume")
    if ckpt.get("dataset") != dataset_used:
        raise CheckpointError(f"{path} was trained on {ckpt.get('dataset')} but this run loads "
                              f"{dataset_used}; drop --resume to start anew")
    return rebuild(ckpt, VAE, device, path), ckpt["optimizer"], ckpt["epoch"]


def main(args):
    print_args(args)
    device = pick_device(args.device)
    paths = run_paths(args.out_dir, args.dataset)
    train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
    test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    seed_everything(args.seed)

    if args.resume:
        model, opt_state, done = resume_state(paths["checkpoint"], args, train.name, device)
    else:
        model, opt_state, done = VAE(latent_dim=args.latent_dim).to(device), None, 0
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    write_run_record(paths["record"], args, dataset=train.name, data_source=train.source,
                     device=str(device), checkpoint=str(paths["checkpoint"]))
    logger = CSVLogger(paths["log"], COLUMNS, resume_after=done if args.resume else None)
    config = plain_config(args)

    def on_epoch_end(epoch, row):
        row["dataset"] = train.name
        logger.log(row)
        save_checkpoint(paths["checkpoint"], {
            "model": model.state_dict(), "model_args": asdict(model.config),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "config": config,
            "dataset": train.name, "data_source": train.source,
            "metrics": {k: v for k, v in row.items() if k != "dataset"}})
        print(f"epoch {epoch}: train -ELBO {row['total_loss']:.2f} (BCE {row['bce']:.2f}, "
              f"KLD {row['kld']:.2f}) | test -ELBO {row['test_total_loss']:.2f} "
              f"[{row['seconds']:.1f}s]", file=sys.stderr)

    if done >= args.epochs:
        print(f"{paths['checkpoint']} already has {done} epochs (--epochs {args.epochs})",
              file=sys.stderr)
    step = vae_step(model)
    try:
        train_epochs(train_step=step, eval_step=step, model=model, optimizer=optimizer,
                     train_tensors=(train.images.to(device),),
                     test_tensors=(test.images.to(device),),
                     batch_size=args.batch_size, seed=args.seed, start_epoch=done + 1,
                     epochs=args.epochs, on_epoch_end=on_epoch_end)
    except NonFiniteLossError as err:
        kept = paths["checkpoint"] if paths["checkpoint"].is_file() else "none yet"
        raise NonFiniteLossError(f"{err}; last good checkpoint: {kept}") from None
    print(f"wrote {paths['log']} and {paths['checkpoint']}", file=sys.stderr)
    if not args.no_plots:
        from utils.plot import plot_vae_run
        for path in plot_vae_run(paths["log"], paths["checkpoint"], paths["plots"], args.data_root):
            print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
