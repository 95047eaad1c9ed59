"""Batch size of each side of the comparison, chosen on the validation split.

    python train/select_batch_size.py --dataset mnist --batch-sizes 8 16 32 64 128
    python train/run_comparison.py --dataset mnist <the flags it prints> \
        --results-dir experiments/results/batch_size

The sweep trains every model for a fixed number of epochs at batch size 128,
which on a small training split (mnist-5k: 3,600 images, 29 steps an epoch)
leaves both sides short of steps. This script gives each side the batch size its
own validation loss prefers, so neither is compared in a regime chosen for it:

* the comparison's VAE of each architecture the methods use (one VAE serves
  every a-posteriori method and K), scored by what the a-posteriori methods
  make of it: the validation reconstruction BCE per image through k-means codes
  (``val_kmeans_bce``: k-means with the sweep's seed fitted to the training
  latent means at each of the sweep's K, the validation means replaced by their
  nearest centroid and decoded; the mean over K). Its own objective, the
  validation negative ELBO per image (``val_total_loss``), is written beside it
  as family ``vae-<arch>-elbo`` and shown, not used: a VAE that is better as a
  VAE need not give better codes;
* each VQ-VAE the methods name, at every K, scored by its validation
  reconstruction BCE per image (``val_recon_bce``; the commitment term is a
  training aid, not part of the model's fit).

Every candidate is trained by the comparison's own code
(``train/comparison_methods``) with the sweep's flags, so it lands in the
comparison's model cache and the rerun at the chosen sizes reuses the models of
the selection seeds. Models train for the sweep's epochs and are scored at
their last epoch (the sweep uses last-epoch models). Only the validation part
of the training split is scored; the test split is not read.

Writes ``<results-dir>/batch_size_<dataset>.csv`` (one row per family, K,
batch size and seed; rewritten atomically after each candidate) and a run
record beside it, and prints the run_comparison flags of the choice
(:func:`choose`: the lowest mean criterion over the selection seeds) as the one
line of its standard output.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F

from train import comparison_methods as cm
from train import train_vae
from train.run_comparison import finish_sweep_args, sweep_parser
from utils import methods as vocab
from utils import paths
from utils.checkpoint import load_checkpoint, rebuild
from utils.cli import positive_int, run_main
from utils.csvlog import read_rows, write_rows
from utils.datasets import load_dataset
from utils.errors import UserError
from utils.results import config_hash
from utils.runlock import run_lock
from utils.runtime import ensure_output_dirs, write_run_record
from utils.selection import ELBO_SUFFIX, choose

COLUMNS = ["dataset", "dataset_used", "family", "K", "batch_size", "seed", "epochs",
           "criterion", "value", "config_hash"]


def classical(name: str) -> bool:
    """False for an end-to-end method whose VQ-VAE differs from its arch's classical one
    (e.g. fsq-global): the runner's --vqvae-batch-size is one size per K for every VQ-VAE of
    an arch, so a selection here would choose for two models at once."""
    return not vocab.get(name).from_library


# The one-code-per-image methods: the unquantized reference, the a-posteriori ones, the
# classical end-to-end one.
METHODS = [name for family in (vocab.CONTINUOUS, vocab.A_POSTERIORI, vocab.END_TO_END)
           for name in vocab.names(family=family, rate=vocab.IMAGE_RATE) if classical(name)]


class Family(NamedTuple):
    """Models that share one batch-size choice: ``kind`` "vae" or "vqvae",
    ``arch`` the VAE's ("mlp", "conv") or VQ-VAE's ("global", "conv")."""

    kind: str
    arch: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.arch}"

    @property
    def criterion(self) -> str:
        return "val_kmeans_bce" if self.kind == "vae" else "val_recon_bce"


def kmeans_bce(ckpt: Path, arch: str, Ks, seed: int, train, val) -> float:
    """Mean over ``Ks`` of the validation BCE per image of the VAE's decoder on
    the k-means code (fitted to the training latent means) of each validation image."""
    from models.geodesic_vq import EuclideanQuantizer

    model = rebuild(load_checkpoint(ckpt), train_vae.ARCHS[arch], "cpu", ckpt).eval()
    z_train, z_val = model.latent_means(train.images), model.latent_means(val.images)
    values = []
    for K in Ks:
        codes = EuclideanQuantizer(K, seed).fit(z_train).quantize(z_val).codes
        with torch.no_grad():
            logits = model.decode(codes.to(z_val.dtype))
        values.append(float(F.binary_cross_entropy_with_logits(logits, val.images, reduction="sum"))
                      / len(val.images))
    return sum(values) / len(values)


def families(methods) -> list[Family]:
    """The families the methods train: a VQ-VAE per end-to-end method, the VAE of
    every a-posteriori method and reference."""
    out = []
    for name in methods:
        m = vocab.get(name)
        if not classical(name):
            raise UserError(f"{name}: batch sizes are chosen for the classical VQ-VAE of each arch "
                            f"only (the runner's --vqvae-batch-size applies to every VQ-VAE of it)")
        family = (Family("vqvae", m.options["arch"]) if "arch" in m.options
                  else Family("vae", m.options.get("vae", "mlp")))
        if family not in out:
            out.append(family)
    return out


def parse_args(argv=None):
    p = sweep_parser(__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[8, 16, 32, 64, 128],
                   help="the candidates")
    p.set_defaults(seeds=[0], methods=METHODS)
    args = p.parse_args(argv)
    if args.results_dir is None:
        args.results_dir = paths.results_dir("quick" if args.quick else "full") / paths.BATCH_SIZE_DIR
    return finish_sweep_args(args)


def candidate(args, family: Family, K: int, batch_size: int, seed: int) -> tuple[Path, str]:
    """Train (or reuse) one candidate; returns its checkpoint and config hash."""
    if family.kind == "vae":
        args.vae_batch_size = batch_size
        return (cm.vae_checkpoint(args, seed, family.arch),
                config_hash(cm.vae_config(args, seed, family.arch)))
    args.vqvae_batch_size = {str(K): batch_size}
    return (cm.vqvae_checkpoint(args, family.arch, K, seed),
            config_hash(cm.vqvae_config(args, family.arch, K, seed)))


def comparison_flags(chosen: pd.DataFrame) -> list[str]:
    """run_comparison.py flags that train every family at its chosen batch size."""
    flags = []
    picked = chosen[chosen["chosen"] & ~chosen["family"].str.endswith(ELBO_SUFFIX)]
    vae = picked.loc[picked["family"].str.startswith("vae-"), "batch_size"].astype(int).unique()
    if len(vae) > 1:
        raise UserError(f"the VAE architectures chose different batch sizes {sorted(vae)} but the "
                        f"runner takes one --vae-batch-size; select and run them separately")
    if len(vae):
        flags += ["--vae-batch-size", str(vae[0])]
    for family, rows in picked.groupby("family", sort=False):
        if not family.startswith("vae-"):
            sizes = rows["batch_size"].astype(int).tolist()
            flags += ["--vqvae-batch-size"] + ([str(sizes[0])] if len(set(sizes)) == 1 else
                                               [f"{int(k)}:{b}" for k, b in zip(rows["K"], sizes)])
    return flags


def main(args):
    train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
    val = load_dataset(args.dataset, "val", args.data_root, limit=args.limit)
    out = Path(args.results_dir)
    ensure_output_dirs(out)
    csv = out / f"batch_size_{args.dataset}.csv"
    with run_lock(csv):
        write_run_record(out / f"batch_size_{args.dataset}_run.json", args, dataset=val.name,
                         data_source=val.source)
        rows = [r for r in (read_rows(csv) if csv.is_file() else [])
                if r["dataset"] != args.dataset]
        for family in families(args.methods):
            for K in ([0] if family.kind == "vae" else args.codebook_sizes):
                for batch_size in args.batch_sizes:
                    for seed in args.seeds:
                        ckpt, chash = candidate(args, family, K, batch_size, seed)
                        ck = load_checkpoint(ckpt)
                        scores = {family.name: (family.criterion, ck["metrics"].get("val_recon_bce"))}
                        if family.kind == "vae":
                            scores = {family.name: (family.criterion, kmeans_bce(
                                          ckpt, family.arch, args.codebook_sizes, seed, train, val)),
                                      family.name + ELBO_SUFFIX: ("val_total_loss",
                                                                  ck["metrics"]["val_total_loss"])}
                        for name, (criterion, value) in scores.items():
                            rows.append({"dataset": args.dataset, "dataset_used": ck["dataset"],
                                         "family": name, "K": K, "batch_size": batch_size,
                                         "seed": seed, "epochs": ck["epoch"], "criterion": criterion,
                                         "value": value, "config_hash": chash})
                            print(f"[{args.dataset}] {name} K={K} batch {batch_size} seed {seed}: "
                                  f"{criterion} {value:.3f}", file=sys.stderr)
                        write_rows(csv, COLUMNS, rows)
    frame = pd.DataFrame([r for r in rows if r["dataset"] == args.dataset])
    chosen = choose(frame.astype({"value": float}))
    print(chosen.to_string(index=False), file=sys.stderr)
    flags = " ".join(comparison_flags(chosen))
    print(f"wrote {csv}; rerun with train/run_comparison.py --dataset {args.dataset} {flags} "
          f"--results-dir {out}", file=sys.stderr)
    print(flags)  # stdout: the flags alone, for make batch-size


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
