"""Cross-check of our vector quantizer against vector-quantize-pytorch's (issue #27).

    python benchmarks/bench_vq_library.py [--dataset fashion-mnist] [--ks 512]
        [--seeds 0 1 2] [--epochs 10] [--settings ours library ours-rotation library-rotation]
        [--device cpu] [--append]

models/quantizer.py writes the EMA codebook, dead-code restarts, k-means
initialisation and the rotation trick by hand. Each row here is one run of
``train/train_vqvae.py --arch conv`` (vqvae-conv's backbone) with our quantizer or
the library's ``VectorQuantize`` (``--quantizer library-vq``) at matched settings:
the same EMA decay (``--decay``, default 0.99), commitment weight (``--beta``,
default 0.25 for conv) and k-means option (off for conv), first without the
rotation trick, then both with it (see SETTINGS; ``fsq`` adds the library's FSQ on
the same backbone). Each quantizer keeps its own dead-code rule (ours: usage EMA
below half the fair share, restarted on the worst-quantized outputs; the library:
EMA cluster size below 2, replaced by random outputs).

Writes benchmarks/results/vq_library.csv, rewritten atomically after every run;
``--append`` keeps the rows already there and skips their runs, so an interrupted
benchmark resumes. Columns: ``val_*`` are the last epoch's validation numbers
from the training log (settings are compared on them), ``test_*`` the checkpoint's
on the test split (train_vqvae.evaluate_vqvae, the same metric code for every
quantizer): recon BCE per image, MSE per pixel, usage (fraction of the K codes
used), perplexity of code usage; ``*_unused_codes`` the codes no vector of that
split was assigned to; ``dead_codes`` the codes the quantizer's own rule calls
dead at the end of training (0 for FSQ, which has none); ``seconds_per_epoch``
the training + validation time of an epoch, averaged over the run's epochs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from bench_vq_usage import flags_of, train_and_test
from utils.cli import make_parser, positive_int, run_main, seed_int
from utils.csvlog import read_rows, write_rows
from utils.datasets import load_dataset

ARCH = "conv"
# Training-config fields per setting: only the quantizer (and the rotation trick, in
# both) differs, everything else is train_vqvae's default.
SETTINGS = {
    "ours": {},
    "library": {"quantizer": "library-vq"},
    "ours-rotation": {"rotation_trick": True},
    "library-rotation": {"quantizer": "library-vq", "rotation_trick": True},
    "fsq": {"quantizer": "fsq"},
}
DEFAULT_SETTINGS = ["ours", "library", "ours-rotation", "library-rotation"]
COLUMNS = ["dataset", "K", "setting", "seed", "epochs", "limit",
           "val_recon_bce", "val_recon_mse", "val_usage", "val_perplexity", "val_unused_codes",
           "test_recon_bce", "test_recon_mse", "test_usage", "test_perplexity",
           "test_unused_codes", "dead_codes", "seconds_per_epoch", "flags"]
TEXT = ["dataset", "setting", "flags"]


def parse_args(argv=None):
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist", help="dataset to train on")
    p.add_argument("--ks", nargs="+", type=positive_int, default=[512], help="codebook sizes K")
    p.add_argument("--seeds", nargs="+", type=seed_int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="training epochs per run (the comparison's default for vqvae-conv)")
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=SETTINGS,
                   help="quantizers to train (see SETTINGS in this file)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="only the first N training and test images (a quick check)")
    p.add_argument("--device", default="cpu",
                   help="where the runs train (cpu, cuda, auto); evaluation is on the CPU")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/vq_library.csv"),
                   help="CSV output")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in --out and skip their runs (resume)")
    return p.parse_args(argv)


def _key(row: dict) -> tuple:
    """What one row measures: a run with the same key is not repeated with --append."""
    return tuple(str(row[c]) for c in ("dataset", "K", "setting", "seed", "epochs", "limit"))


def _order(row: dict) -> tuple:
    return (row["dataset"], int(row["K"]), list(SETTINGS).index(row["setting"]),
            int(row["seed"]), int(row["epochs"]))


def unused_codes(usage: float, n_codes: int) -> int:
    """Codes no vector of a split was assigned to, from that split's usage."""
    return round(n_codes * (1.0 - float(usage)))


def main(args):
    torch.set_num_threads(args.threads)
    rows = []
    if args.append and args.out.is_file():  # checked: header, field counts, a torn last row
        rows = read_rows(args.out, COLUMNS, text=TEXT)
    done = {_key(r) for r in rows}
    test_images = load_dataset(args.dataset, "test", args.data_root, limit=args.limit).images
    limit = {"limit": args.limit} if args.limit else {}
    for k in args.ks:
        for setting in args.settings:
            for seed in args.seeds:
                row = {"dataset": args.dataset, "K": k, "setting": setting, "seed": seed,
                       "epochs": args.epochs, "limit": args.limit or ""}
                if _key(row) in done:
                    continue
                fields = SETTINGS[setting] | limit
                log, test = train_and_test(
                    args.dataset, ARCH, k, fields | {"device": args.device}, seed,
                    args.data_root, test_images,
                    epochs=args.epochs,
                    inspect=lambda model: {"dead_codes": model.quantizer.dead_codes().numel()})
                row |= {"val_recon_bce": log["val_recon_bce"],
                        "val_recon_mse": log["val_recon_mse"], "val_usage": log["val_usage"],
                        "val_perplexity": log["val_perplexity"],
                        "val_unused_codes": unused_codes(log["val_usage"], k),
                        "test_recon_bce": test["recon_bce"], "test_recon_mse": test["recon_mse"],
                        "test_usage": test["usage"], "test_perplexity": test["perplexity"],
                        "test_unused_codes": unused_codes(test["usage"], k),
                        "dead_codes": test["dead_codes"],
                        "seconds_per_epoch": round(test["seconds_per_epoch"], 2),
                        "flags": " ".join(flags_of(fields))}
                rows = sorted([r for r in rows if _key(r) != _key(row)] + [row], key=_order)
                done.add(_key(row))
                write_rows(args.out, COLUMNS, rows)
                print(f"{args.dataset} K={k} {setting} seed {seed}: val BCE "
                      f"{float(log['val_recon_bce']):.2f}, test BCE {test['recon_bce']:.2f}, "
                      f"test usage {test['usage']:.3f}, perplexity {test['perplexity']:.1f}, "
                      f"{test['dead_codes']} dead, {test['seconds_per_epoch']:.1f} s/epoch",
                      flush=True)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
