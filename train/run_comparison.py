"""The comparison: discrete representations, one evaluation, many seeds.

    python train/run_comparison.py --dataset fashion-mnist --codebook-sizes 16 32 64 128 256 512 \
        --seeds 0 1 2

For every dataset x method x K x seed, trains or reuses (by config hash) the
models and evaluates on the held-out test split through one function
(:func:`utils.metrics.evaluate_codes`). The methods are the entries of
``utils/methods.py`` (end-to-end VQ-VAEs, a-posteriori quantizers of the VAE's
latents, and the unquantized VAE as the reference, K = 0); how each is built
is in ``train/comparison_methods.py``, its figures in ``train/comparison_figures.py``.

Rows are appended to <results-dir>/comparison.csv as each finishes (a rerun
skips finished rows, a torn last row is redone); <results-dir>/summary.csv
holds mean and std over seeds per configuration.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from train import comparison_methods as cm
from utils import cache_index, metrics
from utils import methods as vocab
from utils import paths
from utils.cli import (DEFAULT_BATCH_SIZE, SEED_HELP, keyed_positive_int, make_parser,
                       non_negative_float, positive_float, positive_int, run_main, seed_int)
from utils.datasets import DATASETS, load_dataset
from utils.results import (COLUMNS, KEY, PROTOCOL_COLUMNS, append_row, config_hash,  # noqa: F401
                           finished_keys, record_row, row_key, write_summary)
from utils.runlock import run_lock, waiting_lock
from utils.runtime import ensure_output_dirs, pick_device, write_run_record

QUICK = {"codebook_sizes": [16, 64, 256], "seeds": [0, 1, 2], "epochs": 5, "grid_fit_images": 1000}


def sweep_parser(description: str, quick: dict = QUICK, chosen: dict | None = None):
    """The flags that say which models a sweep trains and where: this runner's,
    and run_generation.py's, whose priors reuse the same cached models (the
    same flags give the same config hashes). ``chosen``: {dest: value} of the
    settings a caller decides itself (train/run_tuned.py chooses them on
    validation), left out of its flags and set to ``value``."""
    p = make_parser(description)
    chosen = chosen or {}
    p.set_defaults(**chosen)
    add = p.add_argument

    def add_argument(*flags, **kwargs):
        if flags[0].lstrip("-").replace("-", "_") not in chosen:
            add(*flags, **kwargs)

    p.add_argument = add_argument
    p.add_argument("--dataset", default="mnist", choices=DATASETS,
                   help="dataset; mnist falls back to mnist-5k offline")
    p.add_argument("--codebook-sizes", type=positive_int, nargs="+",
                   default=[16, 32, 64, 128, 256, 512], help="codebook sizes K")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2],
                   help=f"seeds, each a {SEED_HELP}")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="training epochs of the VAE and of both VQ-VAEs")
    p.add_argument("--conv-epochs", type=positive_int, default=None,
                   help="epochs of vqvae-conv (default: --epochs)")
    p.add_argument("--methods", nargs="+", default=None, choices=vocab.METHOD_NAMES,
                   help="methods to run (default: every method of utils/methods.py; with --quick "
                        "those built without vector-quantize-pytorch, to keep make all short)")
    p.add_argument("--vae-kl-weight", type=non_negative_float, default=1.0,
                   help="beta of the KL term of every VAE the sweep trains (train_vae.py "
                        "--kl-weight); 1 is the VAE of the published rows")
    p.add_argument("--vae-batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help="batch size of every VAE the sweep trains (train_vae.py --batch-size); "
                        "train/select_batch_size.py chooses it on the validation split")
    p.add_argument("--vqvae-batch-size", type=keyed_positive_int, nargs="+", default=[],
                   metavar="[K:]B",
                   help=f"batch size of the VQ-VAEs: B for every K, or K:B pairs (K not named: "
                        f"{DEFAULT_BATCH_SIZE}); train/select_batch_size.py chooses them on the "
                        f"validation split")
    p.add_argument("--vqvae-beta", type=non_negative_float, default=None,
                   help="commitment weight of every VQ-VAE (default: its arch's, 0.25 conv, 1 global)")
    p.add_argument("--vqvae-lr", type=positive_float, default=None,
                   help="Adam learning rate of every VQ-VAE (default: train_vqvae.py's, 1e-3)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping of every model and fine-tuned decoder: stop this many "
                        "epochs after the best validation loss and keep that epoch's weights; "
                        "--epochs (and --finetune-epochs) are then the budget (None: train every "
                        "epoch and use the last)")
    p.add_argument("--n-neighbors", type=positive_int, default=10, help="k of the k-NN graph")
    p.add_argument("--edge-lengths", nargs="+", default=["latent"], choices=vocab.EDGE_LENGTHS,
                   help="ablation: geodesic edges measured in latent space or through the decoder")
    p.add_argument("--code-vectors", nargs="+", default=["medoid"],
                   choices=sorted({v for vs in vocab.CODE_VECTORS.values() for v in vs}),
                   help="ablation: geodesic codes as medoids or refined through the decoder "
                        "(k-means always uses its centroids)")
    p.add_argument("--decoders", nargs="+", default=["frozen"], choices=vocab.DECODERS,
                   help="ablation: decode a-posteriori codes with the VAE decoder as trained, "
                        "or with a copy fine-tuned on the codes")
    p.add_argument("--finetune-epochs", type=positive_int, default=3,
                   help="epochs of decoder fine-tuning for --decoders finetuned")
    p.add_argument("--grid-fit-images", type=positive_int, default=None,
                   help="fit the grid-rate quantizers on the 49 latent vectors of the first N "
                        "training images only (default: all of them, about 2.6M vectors on "
                        "Fashion-MNIST); every image is still quantized and decoded")
    p.add_argument("--quick", action="store_true",
                   help=f"quick setting: K {quick['codebook_sizes']}, seeds {quick['seeds']}, "
                        f"{quick['epochs']} epochs, grid quantizers fitted on "
                        f"{quick['grid_fit_images']} images (overrides those flags); results go to "
                        f"{paths.results_dir('quick')} unless --results-dir is given")
    p.add_argument("--limit", type=positive_int, default=None, help="first N train/test images")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    p.add_argument("--work-dir", type=Path, default=paths.WORK,
                   help="trained models, cached by config hash")
    p.add_argument("--results-dir", type=Path, default=None,
                   help=f"comparison.csv and summary.csv go here (default: "
                        f"{paths.results_dir('full')}, or {paths.results_dir('quick')} with --quick)")
    p.add_argument = add
    return p


def finish_sweep_args(args, quick: dict = QUICK, methods=vocab.METHOD_NAMES):
    """The setting (``quick`` overrides its flags), the default ``methods`` (in the quick
    setting less those from vector-quantize-pytorch), --conv-epochs and --results-dir defaults."""
    args.setting = "quick" if args.quick else "full"
    if args.methods is None:
        args.methods = [m for m in methods if not (args.quick and vocab.get(m).from_library)]
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value if name != "grid_fit_images" else args.grid_fit_images or value)
    args.conv_epochs = args.conv_epochs or args.epochs
    # {"K": B, "*": B for every other K}: plain JSON in the run record
    args.vqvae_batch_size = {("*" if k is None else str(k)): b for k, b in args.vqvae_batch_size}
    if args.results_dir is None:
        args.results_dir = paths.results_dir(args.setting)
    return args


def parse_args(argv=None):
    p = sweep_parser(__doc__.splitlines()[0])
    p.add_argument("--figure-k", type=positive_int, default=64,
                   help="codebook size shown in the image figures (else the middle K)")
    p.add_argument("--no-figures", action="store_true", help="skip the image figures")
    add_cached_only(p)
    return finish_sweep_args(p.parse_args(argv))


def add_cached_only(p) -> None:
    """The --cached-only flag (:func:`train.comparison_methods.cached_only`)."""
    p.add_argument("--cached-only", action="store_true",
                   help="evaluate only models already cached under --work-dir: a missing one is "
                        "a one-line error, never trained (default: train what is missing)")


def row_identity(args, method: str, K: int, seed: int, variant: dict | None = None) -> dict:
    """The key columns of a row: its ablation cell, its configuration's hash
    (seed included) and ``config_id``, the same hash for seed 0, which every
    seed of that configuration shares (so summaries never merge settings)."""
    variant = variant or cm.variants(args, method)[0]
    return {"dataset": args.dataset, "setting": args.setting, "method": method, "K": K,
            "seed": seed, **variant,
            "config_hash": config_hash(cm.method_config(args, method, K, seed, variant)),
            "config_id": config_hash(cm.method_config(args, method, K, 0, variant))}


def sweep_cells(args):
    """(method, K, ablation cell) of every row the sweep asks for, per seed."""
    for m in args.methods:
        for K in vocab.get(m).codebook_sizes(args.codebook_sizes):
            for v in cm.variants(args, m):
                yield m, K, v


def epochs_of(args, method: str) -> float:
    """Training epochs behind a method's row (of the VQ-VAE, else of the VAE): the
    conv models, end to end or not, train for --conv-epochs."""
    m = vocab.get(method)
    conv = m.options.get("arch", m.options.get("vae")) == "conv"
    return args.conv_epochs if conv else args.epochs


def evaluate_cell(run: cm.SeedRun, method: str, K: int, variant: dict,
                  test_labels=None) -> tuple[dict, dict]:
    """The comparison's metrics (:func:`utils.metrics.evaluate_codes`) of one cell on
    ``run.test.images``, with its fit and evaluation seconds; label metrics need
    ``test_labels`` ((N_test,) integers), else they are NaN. Also returns how the
    cell's models trained (``Evaluated.training``)."""
    built = cm.evaluate(run, method, K, variant)
    start = time.perf_counter()
    labels = {} if test_labels is None else {"train_labels": run.train.labels.numpy(),
                                             "test_labels": test_labels}
    with torch.no_grad():
        row = metrics.evaluate_codes(recon_logits=built.recon_logits, x_test=run.test.images,
                                     bits=built.bits, test_codes=built.test_codes,
                                     train_codes=built.train_codes,
                                     n_codes=K if K else None, latent=built.latent, **labels)
    row.update(fit_seconds=built.fit_seconds, eval_seconds=time.perf_counter() - start)
    return row, built.training


def index_seed(args, seed: int, cells=None) -> None:
    """Name every cached model of this sweep's cells (or of ``cells``, (method, K,
    variant) triples) of ``seed`` in ``<work-dir>/index.csv`` (:mod:`utils.cache_index`);
    files not cached are left out."""
    entries = []
    for m, K, v in (sweep_cells(args) if cells is None else cells):
        ident = row_identity(args, m, K, seed, v)
        for part, (digest, path) in cm.cell_files(args, m, K, seed, v).items():
            if path.is_file():
                entries.append({**{k: ident[k] for k in ("dataset", "method", "K", "seed",
                                                         *vocab.VARIANT_COLUMNS)},
                                "row_hash": ident["config_hash"], "part": part,
                                "config_hash": digest, "path": path})
    if entries:
        cache_index.record(args.work_dir, entries)


def cell_row(run: cm.SeedRun, ident: dict) -> dict:
    """The row of comparison.csv of the cell ``ident`` (:func:`row_identity`), built
    and evaluated on the run's test split."""
    args, method = run.args, ident["method"]
    variant = {c: ident[c] for c in vocab.VARIANT_COLUMNS}
    row, training = evaluate_cell(run, method, ident["K"], variant, run.test.labels.numpy())
    row.update(ident, dataset_used=run.train.name, epochs=epochs_of(args, method),
               n_neighbors=args.n_neighbors, n_train=len(run.train.labels),
               n_test=len(run.test.labels))
    if getattr(args, "protocol", None):  # a tuned sweep's row says how its models trained
        row.update({c: float("nan") for c in PROTOCOL_COLUMNS})
        row.update(training, protocol=args.protocol)
    row["wall_seconds"] = row["fit_seconds"] + row["eval_seconds"]
    return row


def run_cell(args, method: str, K: int, seed: int, variant: dict) -> bool:
    """One cell of the sweep as a job of its own (train/submit_sweep.py): the code
    path of :func:`run_seed` for this cell alone, without the results folder's
    one-runner lock, so that jobs run side by side. Jobs of one seed train its VAE
    once: the first holds a lock beside its checkpoint while the others wait for
    it. Returns True when this job wrote the row, False when it was there already."""
    out = paths.ResultPaths(args.results_dir)
    ident = row_identity(args, method, K, seed, variant)
    if row_key(ident) in finished_keys(out.comparison):
        return False
    train, test = sweep_data(args)
    run = cm.SeedRun(args, seed, train, test, pick_device(args.device))
    with cm.cached_only(args.cached_only):
        if vocab.get(method).build != "vqvae" and not args.cached_only:
            kind, config, name = cm.vae_cache_key(args, seed, cm.arch_of(method))
            vae = cm.cached_checkpoint(kind, args.work_dir, config, name)
            with waiting_lock(vae.with_name(vae.name + ".cell")):
                run.vae_for(cm.arch_of(method))
        row = cell_row(run, ident)
    written = record_row(out.comparison, out.summary, row)
    index_seed(args, seed, [(method, K, variant)])
    return written


def run_seed(args, seed: int, train, test, device, done: set, out: paths.ResultPaths) -> None:
    """Every method and K for one seed; records each finished row and its summary."""
    todo = [row_identity(args, m, K, seed, v) for m, K, v in sweep_cells(args)]
    todo = [r for r in todo if row_key(r) not in done]
    if not todo:
        return
    run = cm.SeedRun(args, seed, train, test, device)
    for ident in todo:
        method, K = ident["method"], ident["K"]
        variant = {c: ident[c] for c in vocab.VARIANT_COLUMNS}
        row = cell_row(run, ident)
        record_row(out.comparison, out.summary, row)
        done.add(row_key(ident))
        cell = "/".join(v for v in variant.values() if v)
        print(f"[{args.dataset} seed {seed}] {method:14s} {cell:24s} K={K:<4d} bits={row['bits_per_image']:<6.4g} "
              f"MSE {row['test_mse']:.4f} NMI {row['nmi']:.3f} acc {row['code_to_label_accuracy']:.3f}",
              file=sys.stderr)


def sweep_data(args):
    """The training part and test split of a sweep's dataset; an error when a
    requested K exceeds the training images."""
    train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
    test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    too_big = [K for K in args.codebook_sizes if K > len(train.labels)]
    if too_big:
        raise ValueError(f"--codebook-sizes {too_big} exceed the {len(train.labels)} training "
                         f"images; use K <= N")
    return train, test


def main(args):
    device = pick_device(args.device)
    out = paths.ResultPaths(args.results_dir)
    ensure_output_dirs(out.root)
    with run_lock(out.comparison), cm.cached_only(args.cached_only):  # one runner per results folder
        run(args, device, out)


def run(args, device, out: paths.ResultPaths) -> None:
    """The sweep of ``main``, under the results folder's lock."""
    train, test = sweep_data(args)
    done = finished_keys(out.comparison)
    record = out.run_record(args.dataset, args.setting)
    write_run_record(record, args, keep_earlier=True, dataset=train.name, data_source=train.source,
                     device=str(device), torch_threads=torch.get_num_threads())
    print(f"comparison {args.dataset} ({train.name}), {args.setting}: methods "
          f"{' '.join(args.methods)}, K {args.codebook_sizes}, seeds {args.seeds}, "
          f"{args.epochs} epochs; config in {record}", file=sys.stderr)
    for seed in args.seeds:
        run_seed(args, seed, train, test, device, done, out)
        index_seed(args, seed)
    summary = write_summary(out.comparison, out.summary)
    if not args.no_figures:
        from train.comparison_figures import draw_figures

        K = args.figure_k if args.figure_k in args.codebook_sizes else sorted(args.codebook_sizes)[
            len(args.codebook_sizes) // 2]
        for path in draw_figures(args, train, test, device, K, args.seeds[0]):
            print(f"wrote {path}", file=sys.stderr)
    print(f"wrote {out.comparison} and {out.summary} ({len(summary)} groups)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
