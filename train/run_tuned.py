"""The tuned protocol: every setting chosen on validation, then the chosen ones on every seed.

    python train/run_tuned.py --dataset mnist --rate image     # selection, rows, generation
    python train/run_tuned.py --dataset fashion-mnist --rate grid --stage select

The fixed-budget sweeps (run_comparison.py) train every model for a set number
of epochs with one setting per side. Here (docs/protocol.md, utils/protocol.py):

1. **Equal budget, to convergence.** Every model, fine-tuned decoder and prior
   trains up to the same epoch budget (``utils.protocol.MAX_EPOCHS``) with early
   stopping on the validation split (the same ``--patience``), keeping the
   best-validation weights.
2. **Selection on validation (seed 0, the same number of candidates a side).**
   The a-posteriori side chooses its VAE's KL weight by the validation MSE of
   the VAE's k-means codes at each K; the end-to-end side its VQ-VAE's
   commitment weight and learning rate by its own validation MSE at each K
   (on mnist-5k each candidate is crossed with two batch sizes). Then, at the
   chosen KL weight, every a-posteriori method chooses its cell (geodesic: edge
   lengths latent / decoder x medoid / refined code vectors; k-means: its
   centroids) by its validation MSE through a decoder fine-tuned on its codes.
   Every candidate is one row of ``<results-dir>/selection_<dataset>.csv``
   (``side``, ``family``, ``K``, ``candidate``, ``val_score``, ``chosen``). The
   test split is not read by this stage.
3. **Rows.** The chosen settings and cells on every seed, each a-posteriori cell
   with its fine-tuned and its frozen decoder, each VQ-VAE with its own decoder
   and with the same decoder fine-tuning on its frozen codes, into
   ``<results-dir>/comparison.csv`` with ``protocol = tuned``, ``epochs_trained``,
   ``best_epoch`` and the chosen settings.
4. **Generation.** At the generation K (``utils.protocol.GENERATION_K``; the quick
   form: the run's K), a prior over the codes of every chosen cell with its
   fine-tuned decoder (the verdict's cell; the VQ-VAEs' too), on every seed
   (train/train_prior.py through run_generation.py's helpers): a gated PixelCNN
   over 7x7 code maps, early-stopped on its validation NLL within the epoch
   budget, or the code histogram for one code per image. The PixelCNN's size is
   chosen first among ``utils.protocol.PRIOR_CANDIDATES`` on the validation NLL,
   once for every method (the lowest mean over the methods at ``PRIOR_K`` on the
   selection seed; family ``prior`` in the selection table; the test split is not
   read). Samples and reconstructions are decoded by the fine-tuned decoder, and
   the rows of ``<results-dir>/generation.csv`` (``protocol = tuned``) add the
   decoder's reconstruction NLL and the likelihood bound in bits per dimension.

5. **Figures.** Interpolations between test images through the latents of the VAE
   validation chose at the largest K (first seed): the straight line and the
   k-NN-graph geodesics with latent and decoder edge lengths; at the grid rate
   whole 7x7 latent grids are the graph's points (issue #31, item 4).

``--stage all`` runs selection, rows, generation and figures in turn; each stage reuses what
the earlier ones cached. ``--stage models`` trains only the selection's models (every
end-to-end candidate's VQ-VAE, then every a-posteriori candidate's VAE, last first) and fits
nothing: run it on a GPU machine into a copy of ``--work-dir`` while the CPUs run
``--stage select``, and copy its finished folders back (the device is not part of a
model's cache key). Everything is cached by config hash under ``--work-dir`` and
the CSVs are written row by row, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from argparse import ArgumentTypeError, Namespace
from copy import deepcopy
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from train import comparison_methods as cm
from train import run_comparison as rc
from train import run_generation as rg
from train import train_prior
from utils import metrics
from utils import methods as vocab
from utils import paths
from utils import protocol as P
from utils.cli import DEFAULT_BATCH_SIZE, non_negative_int, run_main, seed_int
from utils.csvlog import read_rows, write_rows
from utils.datasets import load_dataset
from utils.errors import UserError
from utils.results import (TUNED_GENERATION_COLUMNS, config_hash, read_results, recon_drift,
                           finished_generation_keys, finished_keys, record_generation_row,
                           record_row, row_key, write_generation_summary, write_summary)
from utils.runlock import run_lock
from utils.runtime import ensure_output_dirs, pick_device, write_run_record

STAGES = ("select", "rows", "generation", "figures", "all", "models")
SELECTION_COLUMNS = ["dataset", "dataset_used", "rate", "side", "family", "method", "K",
                     "candidate", "edge_length", "code_vectors", "decoder", "seed", "criterion",
                     "val_score", "epochs_trained", "best_epoch", "decoder_epochs_trained",
                     "decoder_best_epoch", "config_hash", "chosen"]
SELECTION_TEXT = ("dataset", "dataset_used", "rate", "side", "family", "method", "candidate",
                  "edge_length", "code_vectors", "decoder", "criterion", "config_hash", "chosen")
SELECTION_KEY = ("rate", "family", "method", "K", "candidate", "edge_length", "code_vectors",
                 "decoder", "seed")
QUICK_CANDIDATES = 2  # the quick form: the first two candidates of each side
HELP = {
    "--epochs": "the epoch budget of every model, fine-tuned decoder and prior (default: "
                "utils/protocol.py's MAX_EPOCHS of the dataset and rate)",
    "--quick": "the quick form: the first 2 candidates of each side, 2 epochs, patience 1, the "
               "first 600 images, K <= 64 (every one a generation K), 2 seeds, at most 1000 "
               "samples per FID; results under experiments/results/quick/tuned",
    "--results-dir": "selection_<dataset>.csv, comparison.csv, summary.csv, generation.csv and "
                     "generation_summary.csv go here (default: experiments/results/tuned, or "
                     "experiments/results/quick/tuned with --quick)",
}
# Families whose candidate is chosen once for every method: by its mean validation score over
# the methods, every row of the chosen candidate marked (the prior's size).
POOLED_FAMILIES = (P.PRIOR_FAMILY,)
# run_comparison.py's flags that this protocol decides (utils/protocol.py), at their start values
CHOSEN = {"methods": None, "conv_epochs": None, "finetune_epochs": None, "vae_kl_weight": 1.0,
          "vae_batch_size": DEFAULT_BATCH_SIZE, "vqvae_batch_size": [], "vqvae_beta": None,
          "vqvae_lr": None, "edge_lengths": ["latent"], "code_vectors": ["medoid"],
          "decoders": ["frozen"], "grid_fit_images": None}


def parse_args(argv=None):
    p = rc.sweep_parser(__doc__.splitlines()[0], chosen=CHOSEN)
    p.add_argument("--rate", choices=(vocab.IMAGE_RATE, vocab.GRID_RATE), default=vocab.IMAGE_RATE,
                   help="one code per image, or a 7x7 grid of codes")
    p.add_argument("--stage", choices=STAGES, default="all",
                   help="select: choose on validation; rows: run the choice on every seed; "
                        "generation: priors over the chosen cells' codes, decoded by their "
                        "fine-tuned decoders (the prior's size chosen on validation first); "
                        "figures: interpolations through the chosen VAE's latents; "
                        "all: the four in turn; models: only the selection's VAEs and "
                        "VQ-VAEs, trained and cached, no quantizer fitted (for a GPU machine)")
    p.add_argument("--library", action="store_true",
                   help="also the end-to-end methods built on vector-quantize-pytorch (FSQ, "
                        "rotation-trick VQ), each with its own candidates, chosen at K = "
                        f"{P.LIBRARY_SELECTION_K} and reused at the other K")
    p.add_argument("--grid-metric-max-images", type=non_negative_int, default=P.GRID_METRIC_MAX_IMAGES,
                   metavar="N",
                   help="at the grid rate, decoder edges (each vector's per-position pull-back "
                        "metric, about 22 images/s on 2 cores, kept on disk under --work-dir) "
                        "are a candidate cell when the training split has at most N images "
                        "(default: %(default)s; 0: never)")
    p.add_argument("--only", nargs="+", metavar="METHOD", default=None,
                   help="with --stage rows or generation: only these methods' rows, a part of "
                        "the protocol that fits a session (the report waits for every method's "
                        "rows at every planned K and seed; default: every method)")
    p.add_argument("--selection-seed", type=seed_int, default=None,
                   help="seed of the selection runs (default: the seed the selection table "
                        "already holds for this dataset and rate, so that a later --seeds 1 "
                        "reuses the choice; in a new table, the first of --seeds)")
    p.add_argument("--shard", type=shard, default=(0, 1), metavar="I/N",
                   help="with --stage models: train only every N-th model from the I-th (0-based), "
                        "so N processes share one GPU and one --work-dir (default: 0/1, all)")
    rc.add_cached_only(p)
    rg.add_sample_args(p)
    for flag, text in HELP.items():  # the sweep's flags, as this protocol uses them
        p._option_string_actions[flag].help = text
    p.set_defaults(codebook_sizes=[16, 64, 512], patience=P.PATIENCE, epochs=None, seeds=list(P.SEEDS))
    args = p.parse_args(argv)
    quick = args.quick
    args.quick = False  # the sweep's own quick setting does not apply; this one is below
    args = rc.finish_sweep_args(args)
    args.quick = quick
    if quick:  # tiny candidate lists, 2 epochs, a subset: make all's budget
        args.limit = args.limit or 600
        args.epochs, args.patience = args.epochs or 2, 1
        args.codebook_sizes = [K for K in args.codebook_sizes if K <= 64] or [16]
        args.seeds = args.seeds[:2]
        args.n_fid = min(args.n_fid, rg.QUICK["n_fid"])
    args.epochs = args.epochs or P.max_epochs(args.dataset, args.rate)
    # one budget for every model, fine-tuned decoder and prior
    args.conv_epochs = args.finetune_epochs = args.prior_epochs = args.epochs
    args.protocol = "tuned"
    if args.results_dir == paths.results_dir("full"):
        args.results_dir = paths.tuned_dir("quick" if quick else "full")
    args.candidate_limit = QUICK_CANDIDATES if quick else None
    return args


def shard(text: str) -> tuple[int, int]:
    """``I/N`` as (I, N), 0 <= I < N (argparse type)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ArgumentTypeError(f"expected I/N, e.g. 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return i, n


def vae_family(rate: str) -> str:
    """The selection family of the VAE whose latents the a-posteriori methods at ``rate``
    quantize: ``vae-mlp`` (one code per image) or ``vae-conv`` (the 7x7 grid)."""
    return "vae-" + cm.arch_of(vocab.quantizer_method("euclidean", rate).name)


def rate_methods(rate: str, family: str, library: bool = False) -> list[str]:
    """The methods of ``family`` at ``rate``: the classical ones, and with ``library``
    those built on vector-quantize-pytorch too (issue #27)."""
    return [m.name for m in vocab.methods(family=family, rate=rate)
            if library or not m.from_library]


def check_only(args) -> None:
    """A one-line error for a ``--only`` name that is not a method of this run's rate."""
    known = [m for family in (vocab.END_TO_END, vocab.CONTINUOUS, vocab.A_POSTERIORI)
             for m in rate_methods(args.rate, family, args.library)]
    unknown = [m for m in args.only or () if m not in known]
    if unknown:
        raise UserError(f"--only {' '.join(unknown)}: not a method of the {args.rate} rate "
                        f"(choose among {', '.join(known)})")
    if args.only and args.stage in ("select", "figures", "models"):
        warnings.warn(f"--only applies to the rows and generation stages; --stage {args.stage} "
                      "runs every method", stacklevel=2)


def wanted(args, method: str) -> bool:
    """Whether this run's rows and generation stages run ``method`` (``--only``)."""
    return args.only is None or method in args.only


def library_of(method: str) -> str | None:
    """The vector-quantize-pytorch quantizer of an end-to-end method ("fsq", "library-vq"),
    None for a classical one."""
    m = vocab.get(method)
    return m.options.get("quantizer") if m.from_library else None


def selection_ks(args, method: str) -> list[int]:
    """The K at which ``method``'s candidates are scored: every K, or for a library method
    one (utils.protocol.LIBRARY_SELECTION_K when the run has it, else its middle K), whose
    choice the other K reuse."""
    if library_of(method) is None:
        return list(args.codebook_sizes)
    ks = sorted(args.codebook_sizes)
    return [P.LIBRARY_SELECTION_K if P.LIBRARY_SELECTION_K in ks else ks[len(ks) // 2]]


def with_settings(args, settings: dict) -> Namespace:
    """A copy of the sweep's ``args`` with a candidate's settings (a batch size of a VQ-VAE
    given for every K)."""
    out = deepcopy(args)
    for name, value in settings.items():
        setattr(out, name, {"*": value} if name == "vqvae_batch_size" else value)
    return out


def candidate_text(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def val_score(run: cm.SeedRun, method: str, K: int, variant: dict) -> dict:
    """One cell scored on ``run.test`` (the validation split here): its MSE per pixel
    and how its models trained."""
    built = cm.evaluate(run, method, K, variant)
    with torch.no_grad():
        mse = metrics.reconstruction_errors(built.recon_logits, run.test.images)["mse"]
    return {"val_score": mse, **{k: built.training.get(k, float("nan"))
                                  for k in ("epochs_trained", "best_epoch",
                                            "decoder_epochs_trained", "decoder_best_epoch")}}


class Selection:
    """The selection table of one dataset: read at start (a rerun skips what it has),
    rewritten atomically after each candidate with ``chosen`` recomputed."""

    def __init__(self, path: Path, dataset: str):
        self.path, self.dataset = path, dataset
        self.rows = read_rows(path, SELECTION_COLUMNS, text=SELECTION_TEXT) if path.is_file() else []

    def key(self, row: dict) -> tuple:
        return tuple(str(row[k]) for k in SELECTION_KEY)

    def has(self, row: dict) -> bool:
        return any(self.key(r) == self.key(row) for r in self.rows)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.rows = mark_chosen(self.rows)
        write_rows(self.path, SELECTION_COLUMNS, self.rows)

    def chosen_rows(self, rate: str) -> list[dict]:
        """The chosen rows of this dataset at ``rate``."""
        return [r for r in self.rows if r["rate"] == rate and str(r["chosen"]) == "True"
                and r["dataset"] == self.dataset]

    def chosen(self, rate: str, family: str, K: int) -> dict:
        """The chosen row of (rate, family, K); a one-line error when there is none."""
        for r in self.chosen_rows(rate):
            if (r["family"], int(float(r["K"]))) == (family, K):
                return r
        raise UserError(f"{self.path} has no choice for {family} at K={K} ({rate} rate); "
                         f"run --stage select first")

    def chosen_ks(self, rate: str) -> set[int]:
        """Every K at which this table holds a choice of this dataset at ``rate``."""
        return {int(float(r["K"])) for r in self.chosen_rows(rate)}

    def seed(self, rate: str) -> int | None:
        """The seed this table's selection ran on at ``rate`` (the first one when several),
        or None when it has no row of this dataset and rate."""
        seeds = [int(float(r["seed"])) for r in self.rows
                 if r["dataset"] == self.dataset and r["rate"] == rate]
        return seeds[0] if seeds else None

    def settings(self, rate: str, family: str, K: int) -> dict:
        """The settings of the chosen candidate of (rate, family, K)."""
        return json.loads(self.chosen(rate, family, K)["candidate"])


def mark_chosen(rows: list[dict]) -> list[dict]:
    """``chosen`` = True for the lowest mean ``val_score`` over seeds per (dataset, rate,
    family, K); ties go to the earlier candidate (the table's order: the published setting
    first). In a family of :data:`POOLED_FAMILIES` a candidate is its settings alone,
    scored by the mean over its methods and cells, and all its rows are marked."""
    frame = pd.DataFrame(rows)
    frame["val_score"] = frame["val_score"].astype(float)
    frame["K"] = frame["K"].astype(float).astype(int)
    cand = ["candidate", "method", "edge_length", "code_vectors", "decoder"]
    frame.loc[frame["family"].isin(POOLED_FAMILIES), cand[1:]] = ""
    group = ["dataset", "rate", "family", "K"]
    means = frame.groupby(group + cand, sort=False)["val_score"].mean().reset_index()
    best = means.loc[means.groupby(group, sort=False)["val_score"].idxmin()]
    picked = {tuple(r) for r in best[group + cand].astype(str).itertuples(index=False)}
    for row, key in zip(rows, frame[group + cand].astype(str).itertuples(index=False)):
        row["chosen"] = tuple(key) in picked
    return rows


def selection_run(args, settings: dict, train, val, device) -> cm.SeedRun:
    """A run whose "test" split is the validation split: its scores are validation scores."""
    return cm.SeedRun(with_settings(args, settings), args.selection_seed, train, val, device, val=val)


def cell_options(args, train) -> dict:
    """The a-posteriori cells this run's selection scores (``utils.protocol.cell_options``):
    decoder edges at the grid rate only when the training split has at most
    ``--grid-metric-max-images`` images. ``train`` is a ``Data`` tuple, so its size is
    ``len(train.images)``, not ``len(train)`` (its 4 fields)."""
    return P.cell_options(args.rate, len(train.images), args.grid_metric_max_images)


def select(args, train, val, device, table: Selection) -> None:
    """Stage 1 (module docstring, item 2): every candidate of both sides at every K, then
    every a-posteriori cell at the chosen KL weight; each a row of the selection table."""
    seed, rate = args.selection_seed, args.rate
    kmeans = vocab.quantizer_method("euclidean", rate).name
    frozen = vocab.variants(kmeans)[0]
    sides = [(P.A_POSTERIORI_SIDE, kmeans, frozen, vae_family(rate))]
    sides += [(P.END_TO_END_SIDE, m, vocab.variants(m)[0], m)
              for m in rate_methods(rate, vocab.END_TO_END, args.library)]
    for side, method, variant, family in sides:
        for settings in P.candidates(side, args.dataset, args.candidate_limit, library_of(method)):
            for K in selection_ks(args, method):
                score(args, table, train, val, device, side, family, method, K, settings, variant)
    for method in rate_methods(rate, vocab.A_POSTERIORI):
        for K in args.codebook_sizes:
            settings = table.settings(args.rate, vae_family(rate), K)
            for variant in vocab.variants(method, decoders=(P.SELECTION_DECODER,),
                                          **cell_options(args, train)):
                score(args, table, train, val, device, P.A_POSTERIORI_SIDE, f"cell:{method}",
                      method, K, settings, variant)


def train_models(args) -> list[Path]:
    """Stage "models": the checkpoints of every model :func:`select` trains before it fits a
    quantizer, on the selection seed, trained (or resumed) when not cached: each end-to-end
    candidate's VQ-VAE at each of its K, then each a-posteriori candidate's VAE in reverse
    order (a CPU run of ``select`` starts from the first). No quantizer, no score, no table.
    With ``--shard I/N`` only every N-th of them from the I-th, so that N processes can share
    one GPU and one ``--work-dir`` without training the same model twice."""
    return [ckpt() for i, ckpt in enumerate(selection_models(args))
            if i % args.shard[1] == args.shard[0]]


def selection_models(args) -> list:
    """Deferred trainings (no-argument callables returning a checkpoint path) of every
    model :func:`train_models` names, in its order."""
    seed, out = args.selection_seed, []
    for method in rate_methods(args.rate, vocab.END_TO_END, args.library):
        options = vocab.get(method).options
        for settings in P.candidates(P.END_TO_END_SIDE, args.dataset, args.candidate_limit,
                                     library_of(method)):
            for K in selection_ks(args, method):
                out.append(partial(cm.vqvae_checkpoint, with_settings(args, settings),
                                   options["arch"], K, seed, options))
    arch = cm.arch_of(vocab.quantizer_method("euclidean", args.rate).name)
    for settings in reversed(P.candidates(P.A_POSTERIORI_SIDE, args.dataset, args.candidate_limit)):
        out.append(partial(cm.vae_checkpoint, with_settings(args, settings), seed, arch))
    return out


def score(args, table, train, val, device, side, family, method, K, settings, variant) -> None:
    """Score one candidate on validation unless the table has it."""
    row = {"dataset": args.dataset, "dataset_used": train.name, "rate": args.rate, "side": side,
           "family": family, "method": method, "K": K, "candidate": candidate_text(settings),
           **variant, "seed": args.selection_seed, "criterion": P.CRITERION}
    if table.has(row):
        return
    run = selection_run(args, settings, train, val, device)
    start = time.perf_counter()
    row.update(val_score(run, method, K, variant),
               config_hash=config_hash(cm.method_config(run.args, method, K, run.seed, variant)))
    table.add(row)
    print(f"[select {args.dataset} {args.rate}] {family:18s} K={K:<4d} {row['candidate']} "
          f"{'/'.join(v for v in variant.values() if v)}: val MSE {row['val_score']:.5f} "
          f"[{time.perf_counter() - start:.0f}s]", file=sys.stderr)


def chosen_cells(table: Selection, args, K: int) -> list[tuple[Namespace, str, dict]]:
    """(args with the chosen settings, method, cell) of every row of stage 3 at K."""
    rate = args.rate
    out = []
    for method in rate_methods(rate, vocab.END_TO_END, args.library):
        at = K if library_of(method) is None else selection_ks(args, method)[0]
        a = with_settings(args, table.settings(args.rate, method, at))
        out += [(a, method, v) for v in vocab.variants(method, decoders=vocab.DECODERS)]
    a = with_settings(args, table.settings(args.rate, vae_family(rate), K))
    for method in rate_methods(rate, vocab.CONTINUOUS):
        out.append((a, method, vocab.variants(method)[0]))
    for method in rate_methods(rate, vocab.A_POSTERIORI):
        cell = table.chosen(rate, f"cell:{method}", K)
        out += [(a, method, {"edge_length": cell["edge_length"], "code_vectors": cell["code_vectors"],
                             "decoder": d}) for d in vocab.DECODERS]
    return out


def seed_run(runs: dict, a: Namespace, seed: int, train, test, device, val=None) -> cm.SeedRun:
    """The run of settings ``a`` in ``runs`` (one per distinct setting: its VAE, its
    graph), made when first asked for."""
    key = json.dumps({k: str(v) for k, v in sorted(vars(a).items())})
    if key not in runs:
        runs[key] = cm.SeedRun(a, seed, train, test, device, val=val)
    return runs[key]


def planned_rows(args, table: Selection):
    """(args with the chosen settings, method, cell, row identity) of every row of stage 3,
    seed by seed and K by K: what the rows are keyed by (and what a published row's ids
    are recomputed from, tests/test_config_ids.py)."""
    for seed in args.seeds:
        for K in args.codebook_sizes:
            for a, method, variant in chosen_cells(table, args, K):
                continuous = vocab.get(method).family == vocab.CONTINUOUS
                yield a, method, variant, rc.row_identity(a, method, 0 if continuous else K, seed,
                                                          variant)


def rows(args, table: Selection, train, test, device, out: paths.ResultPaths) -> None:
    """Stage 3: the chosen settings and cells on every seed, one row each (and the
    summary rewritten with it, :func:`utils.results.record_row`)."""
    done = finished_keys(out.comparison)
    runs: dict[int, dict[str, cm.SeedRun]] = {}  # per seed: one run per distinct setting
    for a, method, variant, ident in planned_rows(args, table):
        seed = ident["seed"]
        if row_key(ident) in done or not wanted(args, method):
            continue
        run = seed_run(runs.setdefault(seed, {}), a, seed, train, test, device)
        row = rc.cell_row(run, ident)
        record_row(out.comparison, out.summary, row)
        done.add(row_key(ident))
        print(f"[tuned {args.dataset} seed {seed}] {method:14s} "
              f"{'/'.join(v for v in variant.values() if v):24s} K={ident['K']:<4d} "
              f"MSE {row['test_mse']:.4f} epochs {row['epochs_trained']:.0f} "
              f"(best {row['best_epoch']:.0f})", file=sys.stderr)


def generation_cells(table: Selection, args, K: int) -> list[tuple[Namespace, str, dict]]:
    """(args with the chosen settings, method, cell) of every generation row at K: the
    chosen cell of every method with codes, with its fine-tuned decoder (the verdict's)."""
    return [(a, m, v) for a, m, v in chosen_cells(table, args, K)
            if vocab.get(m).quantized and v["decoder"] == "finetuned"]


def cell_sources(run: cm.SeedRun, method: str, K: int, variant: dict) -> tuple[Path, Path]:
    """(codes_from, decoder_from) of train_prior.py for one cell: the method's VQ-VAE or
    its cell's quantizer, and the copy whose decoder was fine-tuned on those codes
    (comparison_methods.tuned_copy's file); each built first when missing."""
    source = rg.code_source(run.args, lambda: run, method, K, run.seed, variant)
    return source, cm.finetuned_decoder_file(run, method, K, variant)


def choose_prior(args, table: Selection, train, val, device, sizes: list[int]) -> dict:
    """The PixelCNN's size (utils.protocol.PRIOR_CANDIDATES), chosen on the validation
    NLL of the codes once for every method: each candidate's prior over the codes of
    every generation cell at ``utils.protocol.prior_k`` (K = 64 where the run or its
    selection table holds it) on the selection seed,
    early-stopped on validation, a row of the selection table (family ``prior``); the
    lowest mean over the methods wins. Reads the training and validation splits only.
    {} at one code per image, whose histogram prior has no size."""
    if args.rate != vocab.GRID_RATE:
        return {}
    K, seed = P.prior_k(sizes, table.chosen_ks(args.rate)), args.selection_seed
    runs: dict[str, cm.SeedRun] = {}
    for settings in P.PRIOR_CANDIDATES[:args.candidate_limit]:
        for a, method, variant in generation_cells(table, args, K):
            row = {"dataset": args.dataset, "dataset_used": train.name, "rate": args.rate,
                   "side": vocab.get(method).family, "family": P.PRIOR_FAMILY, "method": method,
                   "K": K, "candidate": candidate_text(settings), **variant, "seed": seed,
                   "criterion": P.PRIOR_CRITERION}
            if table.has(row):
                continue
            run = seed_run(runs, a, seed, train, val, device, val=val)  # its "test" is val
            source, decoder = cell_sources(run, method, K, variant)
            sized = with_settings(a, settings)
            ident = rg.row_identity(sized, method, K, seed, variant)
            run_dir = rg.prior_dir(sized, method, K, ident)  # the row's prior if this size wins
            fitted = train_prior.fit_prior(
                rg.prior_run_config(sized, source, method, seed, None, run_dir, decoder), run_dir)
            row.update(val_score=fitted.val_nll_bits, epochs_trained=fitted.epochs_trained,
                       best_epoch=fitted.best_epoch, decoder_epochs_trained=float("nan"),
                       decoder_best_epoch=float("nan"), config_hash=ident["config_hash"])
            table.add(row)
            print(f"[select {args.dataset} {args.rate}] prior {method:14s} K={K:<4d} "
                  f"{row['candidate']}: val NLL {fitted.val_nll_bits:.1f} bits/image "
                  f"(best epoch {fitted.best_epoch} of {fitted.epochs_trained})", file=sys.stderr)
    return chosen_prior(args, table, sizes)


def chosen_prior(args, table: Selection, sizes: list[int] | None = None) -> dict:
    """The PixelCNN size the table chose ({} at one code per image: a histogram)."""
    if args.rate != vocab.GRID_RATE:
        return {}
    sizes = P.generation_sizes(args.codebook_sizes, args.quick) if sizes is None else sizes
    return table.settings(args.rate, P.PRIOR_FAMILY, P.prior_k(sizes, table.chosen_ks(args.rate)))


def planned_generation(args, table: Selection, prior: dict, sizes: list[int]):
    """(args with the chosen settings, the same with the prior's size, method, cell, row
    identity) of every row of stage 4, seed by seed and K by K."""
    for seed in args.seeds:
        for K in sizes:
            for a, method, variant in generation_cells(table, args, K):
                sized = with_settings(a, prior)
                yield a, sized, method, variant, {
                    **rg.row_identity(sized, method, K, seed, variant), **variant,
                    "protocol": args.protocol}


def generation_rows(args, table: Selection, prior: dict, sizes: list[int], train, test, device,
                    out: paths.ResultPaths) -> None:
    """Stage 4's rows: every generation cell at ``sizes`` on every seed, its prior of the
    chosen size ``prior`` scored on the test split and sampled, decoded by the cell's
    fine-tuned decoder; one row of generation.csv each."""
    classifier = rg.classifier_checkpoint(args)
    accuracy = rg.classifier_accuracy(classifier, test, device)
    done = finished_generation_keys(out.generation)
    runs: dict[int, dict[str, cm.SeedRun]] = {}
    for a, sized, method, variant, ident in planned_generation(args, table, prior, sizes):
        seed, K = ident["seed"], ident["K"]
        if row_key(ident) in done or not wanted(args, method):
            continue
        run = seed_run(runs.setdefault(seed, {}), a, seed, train, test, device)
        source, decoder = cell_sources(run, method, K, variant)
        scored, seconds = rg.prior_metrics(sized, source, method, K, seed, classifier,
                                           rg.prior_dir(sized, method, K, ident), decoder)
        row = rg.generation_row(ident, method, K, scored, seconds, accuracy, train.name,
                                TUNED_GENERATION_COLUMNS)
        record_generation_row(out.generation, out.generation_summary, row)
        done.add(row_key(ident))
        warn_drift(row, out.comparison)
        if seed == args.selection_seed:  # the published seed, whatever seeds this chunk runs
            rg.publish_grid(scored, out.samples_figure(args.dataset, method, K,
                                                       args.setting))
        print(f"[tuned generation {args.dataset} seed {seed}] {method:14s} K={K:<4d} "
              f"{row['prior']:9s} NLL {row['prior_nll_bits']:.1f} bits (uniform "
              f"{row['bits_per_image']:.0f}), {row['bits_per_dim']:.4f} bits/dim, "
              f"FID samples {row['fid_samples']:.2f}", file=sys.stderr)


def warn_drift(row: dict, comparison: Path) -> None:
    """Warn when a generation row's model is not the one its comparison row measured
    (utils.results.recon_drift): a model retrained here that did not reproduce."""
    if not comparison.is_file():
        return
    for d in recon_drift(pd.DataFrame([row]), read_results(comparison)).itertuples():
        warnings.warn(f"{d.method} K={d.K} seed {d.seed}: its decoder's test NLL is "
                      f"{d.recon_nll_bits:.2f} bits per image, its row in {comparison} "
                      f"{d.comparison_bits:.2f}: the model was retrained here and did not "
                      f"reproduce (another machine's floating point?); this generation row "
                      f"describes the retrained model")


def generation(args, table: Selection, train, val, device, out: paths.ResultPaths) -> None:
    """Stage 4 (module docstring, item 4): the prior's size chosen on validation, then
    the rows; generation.csv and generation_summary.csv."""
    sizes = P.generation_sizes(args.codebook_sizes, args.quick)
    if not sizes:
        raise UserError(f"--codebook-sizes {' '.join(map(str, args.codebook_sizes))} holds none "
                        f"of the generation K {P.GENERATION_K}; add them")
    write_run_record(out.run_record(args.dataset, f"tuned-{args.rate}", "generation"), args,
                     keep_earlier=True, dataset=train.name, data_source=train.source,
                     splits=["train", "val", "test"], prior_size_splits=["train", "val"],
                     generation_k=sizes, device=str(device), torch_threads=torch.get_num_threads())
    prior = choose_prior(args, table, train, val, device, sizes)
    test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    generation_rows(args, table, prior, sizes, train, test, device, out)
    summary = write_generation_summary(out.generation, out.generation_summary)
    print(f"wrote {out.generation} and {out.generation_summary} ({len(summary)} groups)",
          file=sys.stderr)


def figures(args, table: Selection, train, test, device, out: paths.ResultPaths) -> list[Path]:
    """Stage 5: the interpolation figure of the VAE validation chose at the largest K, on
    the selection seed (train/comparison_figures.py: one code per image, or whole 7x7
    grids), the published seed whatever seeds a chunk runs; drawn from the cached models
    (it trains nothing the rows stage did not when that stage ran the selection seed)."""
    from train import comparison_figures as CF

    K = max(args.codebook_sizes)
    run = cm.SeedRun(with_settings(args, table.settings(args.rate, vae_family(args.rate), K)),
                     args.selection_seed, train, test, device)
    if args.rate == vocab.IMAGE_RATE:
        return CF.draw_interpolations(run, out.figure("interpolation", args.dataset, args.setting))
    return CF.draw_grid_interpolation(run, out.figure("interpolation_grid", args.dataset,
                                                      args.setting))


def resolve_selection_seed(args) -> int:
    """``--selection-seed``, else the seed the selection table already holds for this dataset
    and rate (so a later ``--seeds 1`` chunk reuses the choice instead of re-selecting on seed
    1), else the first of ``--seeds``."""
    if args.selection_seed is not None:
        return args.selection_seed
    path = Path(args.results_dir) / f"selection_{args.dataset}.csv"
    held = Selection(path, args.dataset).seed(args.rate)
    return args.seeds[0] if held is None else held


def main(args):
    args.selection_seed = resolve_selection_seed(args)
    check_only(args)
    if args.stage == "models":  # writes no results: no lock, shards run side by side
        for path in train_models(args):
            print(f"trained {path.parent.parent.name}", file=sys.stderr)
        return
    device = pick_device(args.device)
    out = Path(args.results_dir)
    ensure_output_dirs(out)
    results = paths.ResultPaths(out)
    table_path = out / f"selection_{args.dataset}.csv"
    with run_lock(results.comparison), cm.cached_only(args.cached_only):
        train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
        val = load_dataset(args.dataset, "val", args.data_root, limit=args.limit)
        table = Selection(table_path, args.dataset)
        if args.stage in ("select", "all"):
            write_run_record(out / f"selection_{args.dataset}_{args.rate}_run.json", args,
                             keep_earlier=True, dataset=train.name, data_source=train.source,
                             splits=["train", "val"], device=str(device))
            select(args, train, val, device, table)
            print(f"wrote {table_path}", file=sys.stderr)
        if args.stage in ("rows", "all"):
            test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
            write_run_record(results.run_record(args.dataset, f"tuned-{args.rate}"), args,
                             keep_earlier=True, dataset=train.name, data_source=train.source,
                             splits=["train", "val", "test"], device=str(device),
                             torch_threads=torch.get_num_threads())
            rows(args, table, train, test, device, results)
            summary = write_summary(results.comparison, results.summary)
            print(f"wrote {results.comparison} and {results.summary} ({len(summary)} groups)",
                  file=sys.stderr)
        if args.stage in ("generation", "all"):
            generation(args, table, train, val, device, results)
        if args.stage in ("figures", "all"):
            test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
            for path in figures(args, table, train, test, device, results):
                print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
