"""The tuned protocol's settings and candidates, declared as data (docs/protocol.md).

``train/run_tuned.py`` reads this table: which settings each side may choose
among on the validation split, with the same number of candidates per side;
the epoch budget of every model, decoder and prior per dataset and rate; the
early-stopping patience shared by all; the a-posteriori cells that are
candidates too (issue #31); and the generation stage's K and prior sizes.
Adding a candidate is one entry here.
"""
from __future__ import annotations

from typing import NamedTuple

A_POSTERIORI_SIDE = "a-posteriori"
END_TO_END_SIDE = "end-to-end"
SIDES = (A_POSTERIORI_SIDE, END_TO_END_SIDE)

# The seeds every chosen setting runs on (run_tuned.py's default --seeds). A run may land them
# one at a time (make tuned SEEDS=0, then 1, then 2); the report's verdicts wait for all of them,
# whatever seeds the last chunk's run record names (report.tuned.planned_runs).
SEEDS = (0, 1, 2)

PATIENCE = 5  # epochs without a better validation loss before a model stops; the same for all

# The epoch budget (the most a model may train before early stopping ends it), per dataset and
# rate: the same for the VAE, the VQ-VAE, the fine-tuned decoders and the priors of a cell.
MAX_EPOCHS = {("mnist", "image"): 100, ("mnist", "grid"): 100,
              ("mnist-5k", "image"): 100, ("mnist-5k", "grid"): 100,
              ("fashion-mnist", "image"): 100, ("fashion-mnist", "grid"): 30}


class Candidate(NamedTuple):
    """One candidate setting of a side: sweep flags (run_comparison.py's names) and values."""

    side: str
    settings: dict


# The a-posteriori side: the VAE's KL weight beta (1 is the VAE of the fixed rows; smaller
# betas trade the prior match for reconstruction). The end-to-end side: the VQ-VAE's
# commitment weight and learning rate (the paper's 0.25 and 1e-3 among them). Four each.
CANDIDATES = (
    *(Candidate(A_POSTERIORI_SIDE, {"vae_kl_weight": b}) for b in (1.0, 0.3, 0.1, 0.01)),
    *(Candidate(END_TO_END_SIDE, {"vqvae_beta": c, "vqvae_lr": lr})
      for c in (0.25, 1.0) for lr in (1e-3, 3e-4)),
)

# The end-to-end methods built on vector-quantize-pytorch (issue #27) get candidates of their
# own quantizer's knobs, as many as the classical VQ-VAE's (FSQ has no commitment term, so its
# four are learning rates), chosen at one K and reused at the others to save CPU time.
LIBRARY_CANDIDATES = {
    "fsq": tuple({"vqvae_lr": lr} for lr in (2e-3, 1e-3, 5e-4, 2.5e-4)),
    "library-vq": tuple({"vqvae_beta": c, "vqvae_lr": lr} for c in (0.25, 1.0) for lr in (1e-3, 3e-4)),
}
LIBRARY_SELECTION_K = 64

# On the small data every candidate is crossed with these batch sizes (a side's batch-size flag):
# 3,600 training images leave 29 steps an epoch at 128 (make batch-size's finding).
SMALL_DATA_BATCH_SIZES = {"mnist": (32, 128)}
BATCH_SIZE_FLAG = {A_POSTERIORI_SIDE: "vae_batch_size", END_TO_END_SIDE: "vqvae_batch_size"}

# The a-posteriori cells chosen on validation at each K (issue #31), each decoded through a
# decoder fine-tuned on its codes (the frozen decoder is reported beside it).
CELL_OPTIONS = {"edge_lengths": ("latent", "decoder"), "code_vectors": ("medoid", "refined")}
# Decoder edges at the grid rate need every grid's per-position pull-back metric: 49 D
# Jacobian-vector products an image, 22 images/s on 2 idle cores at D = 4 through a trained
# Fashion-MNIST conv VAE (docs/protocol.md), so about 45 min per VAE for Fashion-MNIST's 60,000
# training and validation grids, kept on disk under --work-dir for later stages and chunks, and
# minutes for mnist-5k's. They are a candidate cell where the training split has at most this many
# images: both datasets.
GRID_METRIC_MAX_IMAGES = 60_000


def cell_options(rate: str, n_train: int, max_images: int = GRID_METRIC_MAX_IMAGES) -> dict:
    """The a-posteriori cell options chosen on validation (``CELL_OPTIONS``) for a run of
    ``rate`` on ``n_train`` training images: the grid's decoder edges only within
    ``max_images``."""
    if rate == "grid" and n_train > max_images:
        return {**CELL_OPTIONS, "edge_lengths": CELL_OPTIONS["edge_lengths"][:1]}
    return CELL_OPTIONS
SELECTION_DECODER = "finetuned"

# What a candidate is scored by: the validation MSE per pixel of its reconstructions (of the
# k-means codes of the VAE for the a-posteriori side, so neither quantizer is favoured).
CRITERION = "val_mse"


# The generation stage (priors over the codes of the chosen cells, each decoded by its
# fine-tuned decoder): at these K; the quick form at whatever K its run has.
GENERATION_K = (64, 512)

# The prior over a 7x7 code map is a gated PixelCNN whose size (run_generation.py's
# --prior-channels / --prior-layers) is chosen on the validation NLL of the codes, once for
# every method: the candidate of lowest mean validation NLL over the methods at PRIOR_K on the
# selection seed, whichever generation K a part of the sweep runs (a run that never selected
# at PRIOR_K, such as the quick form, at its first generation K). The first candidate is the
# fixed generation rows' prior; the second is train_prior.py's default width. One code per
# image has a histogram prior, with nothing to choose.
PRIOR_FAMILY = "prior"
PRIOR_CANDIDATES = ({"prior_channels": 32, "prior_layers": 6},
                    {"prior_channels": 64, "prior_layers": 6})
PRIOR_K = 64
PRIOR_CRITERION = "val_nll_bits"


def generation_sizes(sizes, quick: bool = False) -> list[int]:
    """The K of the generation stage among a run's codebook ``sizes``: those of
    :data:`GENERATION_K`, or every one in the quick form."""
    return list(sizes) if quick else [K for K in sizes if K in GENERATION_K]


def prior_k(sizes, selected=()) -> int:
    """The K at which the prior's size is chosen: :data:`PRIOR_K` when the run's generation K
    ``sizes`` or the K its selection table ``selected`` cells at hold it, so that a part of the
    sweep run with ``--codebook-sizes 512`` reuses the choice made at K = 64 rather than
    choosing anew at 512; otherwise (a run that never selected at PRIOR_K, the quick form's
    free K) the first of ``sizes``."""
    return PRIOR_K if PRIOR_K in sizes or PRIOR_K in selected else sizes[0]


def candidates(side: str, dataset: str, limit: int | None = None,
               library: str | None = None) -> list[dict]:
    """The settings of ``side``'s candidates on ``dataset`` (its batch sizes crossed in on
    the small data), the first ``limit`` of them when given (the quick form); with
    ``library`` (an end-to-end method's quantizer option, "fsq" or "library-vq"), those of
    :data:`LIBRARY_CANDIDATES` instead."""
    base = (LIBRARY_CANDIDATES[library] if library else
            [c.settings for c in CANDIDATES if c.side == side])
    sizes = SMALL_DATA_BATCH_SIZES.get(dataset, (None,))
    out = [{**settings, **({BATCH_SIZE_FLAG[side]: b} if b else {})}
           for settings in base for b in sizes]
    return out[:limit] if limit else out


def max_epochs(dataset: str, rate: str) -> int:
    """The epoch budget of ``dataset`` at ``rate`` (:data:`MAX_EPOCHS`)."""
    try:
        return MAX_EPOCHS[(dataset, rate)]
    except KeyError:
        raise ValueError(f"no epoch budget for {dataset!r} at rate {rate!r}; "
                         f"declared: {sorted(MAX_EPOCHS)}") from None
