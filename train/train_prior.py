"""Train a gated PixelCNN prior over the code maps of a quantized model, then sample it.

    python train/train_prior.py --codes-from experiments/checkpoints/vqvae_conv_fashion-mnist.pt \
        [--classifier experiments/checkpoints/classifier_fashion-mnist.pt]

The generative half of the comparison (van den Oord et al. 2017, section 4.2).
--codes-from is a VQ-VAE checkpoint of train/train_vqvae.py or a quantizer
cached by train/run_comparison.py (<work-dir>/<method>_K<K>-<hash>.pt, decoded
by the VAE it was fitted on). --decoder-from decodes those codes with a copy of
that model whose decoder was fine-tuned on them instead (a file
<work-dir>/<method>-decoder_K<K>-<hash>.pt of the comparison's fine-tuned
decoders; the codes still come from --codes-from). For 7x7 code maps:
the training part, validation part and test split of the data the quantized
model was trained on are encoded into code maps (:func:`code_maps`), a
PixelCNN (models/prior.py) learns p(map) by maximum likelihood on the training
maps, each epoch is evaluated on the validation maps (the log's val_* columns;
the test split is not looked at while training), and at the end the script
writes

* the test NLL in bits per image (-log2 p(map), the code length under the
  prior) and the prior's perplexity 2^(bits per position), next to the i.i.d.
  histogram baseline and the uniform 49 log2 K bits;
* the decoder's test reconstruction NLL (Bernoulli, summed over pixels) in bits
  per image and the likelihood bound in bits per dimension, (prior NLL +
  reconstruction NLL) / 784 (van den Oord et al. 2017);
* samples drawn in raster order at --temperature, decoded by the quantized
  model's decoder, as a PNG/PDF grid (and the sampled maps as a .pt);
* with --classifier (train/train_classifier.py): FID of the samples against
  the test images on the classifier's features, with, for scale, the FID of as
  many training images and of their reconstructions against the test images,
  and the class statistics of the samples;
* all numbers in prior_<method>_<dataset>_metrics.json.

For one code per image (vqvae-global, kmeans-vae, geodesic-vae) the prior is
the Laplace-smoothed code histogram (models.prior.HistogramPrior): nothing is
trained, and the same numbers are written, so NLLs compare across rates.

The per-epoch log is prior_<method>_<dataset>_train_log.csv and the
checkpoint prior_<method>_<dataset>.pt, with <method> e.g. vqvae_conv.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from models.prior import MIN_TEMPERATURE, GatedPixelCNN, HistogramPrior
from train import comparison_methods as cm
from train import train_vae
from utils import distributed
from utils import paths as project_paths
from utils.metrics import bce_sum, bits_per_dim, nats_to_bits
from utils.checkpoint import CheckpointError, load_checkpoint, rebuild, save_checkpoint
from utils.cli import (SEED_HELP, TrainingConfig, add_training_args, float_at_least, make_parser,
                       positive_int, run_main, seed_int, with_out_dir)
from utils.datasets import Data, load_dataset
from utils.errors import UserError
from utils.runlock import run_lock
from utils.runtime import atomic_file, ensure_output_dirs, pick_device
from utils.training import TrainResult, fit, prefixed, prepare_training, run_epoch

COLUMNS = ["epoch", "loss", "bits_per_image", "val_loss", "val_bits_per_image",
           "val_perplexity", "seconds", "dataset"]
RESUME_KEYS = ("codes_from", "dataset", "limit", "channels", "n_layers", "kernel_size",
               "class_conditional", "batch_size", "lr", "seed")
DEFAULT_CODES = Path("experiments/checkpoints/vqvae_conv_mnist.pt")


@dataclass
class PriorConfig(TrainingConfig):
    """Every setting of a run: the flags below, one field each (same names and
    defaults), and ``dataset``, which is not a flag: :func:`train` sets it to
    the dataset the codes' model was trained on (and ``limit`` to its limit
    when none is given), so the run records them like every run."""

    dataset: str | None = None
    codes_from: Path = DEFAULT_CODES
    decoder_from: Path | None = None
    epochs: int = 8
    channels: int = 64
    n_layers: int = 6
    kernel_size: int = 3
    class_conditional: bool = False
    temperature: float = 1.0
    n_samples: int = 64
    classifier: Path | None = None
    n_fid: int = 2000
    sample_batch_size: int = 1000


COVERED_SHARE = 0.01  # a class is covered when at least this share of the samples falls in it


class PriorMetrics(NamedTuple):
    """The numbers of one run, each under one name: the column it has in the
    comparison's generation.csv where it has one (train/run_generation.py
    copies them), and in the metrics JSON. Bits are per image unless named per
    code; the fidelity fields (FIDs against the test images, class statistics
    under the classifier) are None without --classifier."""

    prior: str  # "pixelcnn" (7x7 maps) or "histogram" (one code per image)
    method: str  # the code source in file names, e.g. vqvae_conv
    dataset: str  # the dataset actually used
    dataset_requested: str
    n_codes: int
    grid: list[int]  # the shape of one image's codes: [7, 7] or []
    class_conditional: bool
    n_train: int
    n_test: int
    prior_nll_bits: float  # test NLL, -log2 p(codes of an image)
    prior_bits_per_code: float
    prior_perplexity: float  # 2^(bits per code)
    histogram_nll_bits: float  # the Laplace-smoothed i.i.d. code histogram's test NLL
    histogram_perplexity: float
    uniform_bits_per_image: float  # codes per image * log2 K
    temperature: float
    n_sampled: int
    sample_seconds: float
    prior_epochs: int  # 0 for the histogram
    codes_from: str
    checkpoint: str | None  # the PixelCNN's (None for the histogram)
    samples: str  # the sampled code maps (.pt)
    classifier: str | None = None
    n_fid: int | None = None  # samples (and training images) per FID
    fid_samples: float | None = None
    fid_train: float | None = None  # as many training images: the floor
    fid_recon: float | None = None  # their reconstructions (decoded codes)
    sample_class_histogram: list[int] | None = None
    sample_classes_covered: int | None = None  # classes with >= COVERED_SHARE of the samples
    sample_class_entropy: float | None = None  # bits, of the histogram of predicted classes
    sample_conditional_entropy: float | None = None  # bits, mean of H(p(y | x))
    sample_inception_score: float | None = None
    test_class_entropy: float | None = None
    test_conditional_entropy: float | None = None
    test_inception_score: float | None = None
    sample_grid: tuple[str, ...] = ()  # the PNG and PDF of the samples (none with --no-plots)
    decoder_from: str | None = None  # the fine-tuned decoder's file, None: the model's own
    prior_channels: int | None = None  # the PixelCNN's size (None for the histogram)
    prior_layers: int | None = None
    prior_epochs_trained: int | None = None  # epochs run (early stopping: <= prior_epochs)
    prior_best_epoch: int | None = None  # the epoch whose weights were scored
    recon_nll_bits: float | None = None  # the decoder's test -log2 p(x | codes) per image
    bits_per_dim: float | None = None  # (prior_nll_bits + recon_nll_bits) / pixels
    kid_samples: float | None = None  # KID of the samples against the test images (unbiased)
    kid_samples_std: float | None = None  # its spread over the KID subsets
    kid_train: float | None = None  # as many training images: the floor

    @classmethod
    def read(cls, path: Path) -> "PriorMetrics":
        """The metrics JSON written by :func:`train` (a TypeError names a field
        it lacks or does not know)."""
        return cls(**json.loads(Path(path).read_text()))


class PriorResult(NamedTuple):
    """What :func:`train` returns: the PixelCNN's checkpoint (None for the
    histogram prior, which has none) and the run's metrics."""

    checkpoint: Path | None
    metrics: PriorMetrics


def parse_args(argv=None) -> PriorConfig:
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--codes-from", type=Path, default=DEFAULT_CODES,
                   help="checkpoint of the quantized model whose codes the prior learns (a "
                        "VQ-VAE of train/train_vqvae.py or a quantizer cached by "
                        "train/run_comparison.py)")
    p.add_argument("--decoder-from", type=Path, default=None,
                   help="decode the codes with this fine-tuned copy of the --codes-from model "
                        "(a decoder cached by train/run_comparison.py --decoders finetuned); "
                        "default: the model's own decoder")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="first N train/test images (default: the quantized model's own limit)")
    p.add_argument("--seed", type=seed_int, default=0, help=f"{SEED_HELP}; for training and sampling")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out-dir", type=Path, default=Path("experiments"),
                   help="where logs/, checkpoints/ and plots/ are written")
    add_training_args(p, epochs=PriorConfig.epochs, batch_size=PriorConfig.batch_size,
                      lr=PriorConfig.lr)
    p.add_argument("--channels", type=positive_int, default=64, help="width C of both stacks")
    p.add_argument("--n-layers", type=positive_int, default=6,
                   help="gated layers (6 of kernel 3 see the whole past of a 7x7 map)")
    p.add_argument("--kernel-size", type=positive_int, default=3, help="odd kernel size k")
    p.add_argument("--class-conditional", action="store_true",
                   help="condition the prior on the class label (eq. 4 of the gated PixelCNN "
                        "paper); samples are then drawn for labels 0, 1, 2, ... in turn")
    p.add_argument("--temperature", type=float_at_least(MIN_TEMPERATURE), default=1.0,
                   help=f"sampling temperature >= {MIN_TEMPERATURE:g} (1 samples the prior itself, "
                        f"{MIN_TEMPERATURE:g} is greedy decoding)")
    p.add_argument("--n-samples", type=positive_int, default=64, help="samples in the grid")
    p.add_argument("--classifier", type=Path, default=None,
                   help="classifier checkpoint (train/train_classifier.py) for FID and the class "
                        "statistics of samples; none: skip them")
    p.add_argument("--n-fid", type=positive_int, default=2000,
                   help="samples (and training images of the reference FIDs) compared with the "
                        "test set")
    p.add_argument("--sample-batch-size", type=positive_int, default=1000,
                   help="maps drawn in parallel")
    return PriorConfig(**vars(p.parse_args(argv)))


# ----------------------------------------------------------------------------- code maps

class CodeSplits(NamedTuple):
    """The data a quantized model was trained on: ``train``/``val``/``test``
    (utils.datasets.Data, the dataset actually used; ``test`` None when it was not
    read), ``requested`` (the dataset name asked for, which names the output
    files) and ``limit`` (the first-N limit applied, or None)."""

    train: Data
    val: Data
    test: Data | None
    requested: str
    limit: int | None

    @property
    def name(self) -> str:
        return self.train.name


class CodeMaps(NamedTuple):
    """What :func:`code_maps` returns.

    ``train_codes`` (N, H, W), ``val_codes`` (V, H, W) and ``test_codes``
    (M, H, W) long in [0, n_codes) (or (N,) / (V,) / (M,) for one code per
    image; ``test_codes`` None when the test split was not read); ``n_codes`` K;
    ``decode_logits``: codes (B, ...) -> Bernoulli logits (B, 1, 28, 28) on the
    CPU, batched, no grad (:meth:`decode`: the images, their sigmoid); ``dataset``:
    :class:`CodeSplits`; ``method``: the name of the code source in file names
    (``vqvae_conv``); ``decoder_from``: the fine-tuned decoder's file, or None for
    the model's own decoder.
    """

    train_codes: torch.Tensor
    val_codes: torch.Tensor
    test_codes: torch.Tensor | None
    n_codes: int
    decode_logits: Callable[[torch.Tensor], torch.Tensor]
    dataset: CodeSplits
    method: str
    decoder_from: Path | None = None

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, 28, 28) in [0, 1] decoded from codes (B, ...)."""
        return torch.sigmoid(self.decode_logits(codes))


def recorded_splits(ckpt: dict, path: Path, data_root, limit: int | None = None, *,
                    test: bool = True) -> CodeSplits:
    """The train/val/test parts of the data a checkpointed model was trained on:
    the dataset and limit in its config (``limit`` overrides the latter); an
    error when the requested dataset now loads other data than the recorded one.
    ``test=False`` leaves the test split unread (None)."""
    cfg = ckpt.get("config", {})
    requested = cfg.get("dataset", ckpt.get("dataset"))
    if requested is None:
        raise CheckpointError(f"{path} does not record the dataset it was trained on")
    limit = limit if limit is not None else cfg.get("limit")
    train = load_dataset(requested, "train", data_root, limit=limit)
    val = load_dataset(requested, "val", data_root, limit=limit)
    test_split = load_dataset(requested, "test", data_root, limit=limit) if test else None
    if train.name != ckpt.get("dataset", train.name):
        raise CheckpointError(f"{path} was trained on {ckpt.get('dataset')} but {requested} now "
                              f"loads {train.name}; retrain that model on this data")
    return CodeSplits(train, val, test_split, requested, limit)


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device,
            batch_size: int = 1000) -> torch.Tensor:
    """``fn`` over ``x`` in batches moved to ``device``; the results concatenated on the CPU."""
    return torch.cat([fn(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


PROBE_IMAGES = 64  # training images a fine-tuned copy must encode as its source does


@torch.no_grad()
def decoding_model(model, decoder_from: Path | None, device, probe: torch.Tensor,
                   encode: Callable):
    """The model whose decoder decodes the codes: ``model`` itself, or the fine-tuned
    copy of it in ``decoder_from`` (train/comparison_methods.tuned_copy's file: the
    same class and architecture, its decoder trained on ``model``'s frozen codes).
    Fine-tuning moves only the decoder, so the copy must encode the ``probe`` images
    (B, 1, 28, 28) as ``model`` does (``encode(m, images)``); else it is a copy of
    another model, a one-line CheckpointError."""
    if decoder_from is None:
        return model
    path = Path(decoder_from)
    ckpt = load_checkpoint(path, device, hint="the comparison fine-tunes it: train/run_tuned.py, "
                                              "or train/run_comparison.py --decoders finetuned")
    copy = rebuild(ckpt, type(model), device, path).eval()
    probe = probe.to(device)
    if not torch.equal(encode(model, probe), encode(copy, probe)):
        raise CheckpointError(f"{path} encodes images otherwise than the model whose codes the "
                              f"prior learns: it is a fine-tuned copy of another model")
    return copy


def vqvae_code_maps(ckpt: dict, path: Path, device, data_root, limit, *,
                    decoder_from: Path | None = None, test: bool = True) -> CodeMaps:
    """Codes of a VQ-VAE checkpoint (train/train_vqvae.py): its encoder's nearest
    codes, (N, 7, 7) for arch conv and (N,) for arch global, decoded by its decoder
    (or by that of its fine-tuned copy in ``decoder_from``)."""
    from models.vqvae import VQVAE

    model = rebuild(ckpt, VQVAE, device, path).eval()
    splits = recorded_splits(ckpt, path, data_root, limit, test=test)
    decoder = decoding_model(model, decoder_from, device, splits.train.images[:PROBE_IMAGES],
                             lambda m, x: m.encode(x))

    def decode_logits(codes: torch.Tensor) -> torch.Tensor:
        return batched(lambda c: decoder.decode_codes(decoder.quantizer.lookup(c)), codes, device)

    return CodeMaps(train_codes=batched(model.encode, splits.train.images, device),
                    val_codes=batched(model.encode, splits.val.images, device),
                    test_codes=batched(model.encode, splits.test.images, device) if test else None,
                    n_codes=model.n_codes, decode_logits=decode_logits, dataset=splits,
                    method=project_paths.vqvae_stage(model.arch), decoder_from=decoder_from)


def quantizer_code_maps(ckpt: dict, path: Path, device, data_root, limit, *,
                        decoder_from: Path | None = None, test: bool = True) -> CodeMaps:
    """Codes of an a-posteriori quantizer of the comparison (a file
    ``<work-dir>/<method>_K<K>-<hash>.pt`` of train/run_comparison.py): the
    latent means of its VAE quantized, (N,) for one code per image and
    (N, 7, 7) for a grid method (vector by vector, as the comparison does);
    decoded from the code vectors by the VAE (or by its copy in ``decoder_from``
    whose decoder was fine-tuned on these codes)."""
    vae_path = cm.cached_vae_checkpoint(path, ckpt)
    vae_ckpt = load_checkpoint(vae_path, device, hint="rerun train/run_comparison.py, which trains it")
    vae = rebuild(vae_ckpt, train_vae.ARCHS[vae_ckpt["config"].get("arch", "mlp")], device,
                  vae_path).eval()
    q = cm.load_quantizer(ckpt, decoder=vae.decode, device=str(device), source=path)
    splits = recorded_splits(vae_ckpt, vae_path, data_root, limit, test=test)
    decoder = decoding_model(vae, decoder_from, device, splits.train.images[:PROBE_IMAGES],
                             lambda m, x: m.latent_means(x))
    codebook = torch.as_tensor(q.codebook, dtype=torch.float32)

    def codes_of(images: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(cm.quantized_latents(q, vae.latent_means(images).numpy())[0]).long()

    def decode_logits(codes: torch.Tensor) -> torch.Tensor:
        vectors = codebook[codes]  # (B, D), or (B, 7, 7, D) for a map
        if vectors.dim() == 4:
            vectors = vectors.permute(0, 3, 1, 2).contiguous()
        return decoder.decode_logits(vectors)

    return CodeMaps(train_codes=codes_of(splits.train.images), val_codes=codes_of(splits.val.images),
                    test_codes=codes_of(splits.test.images) if test else None,
                    n_codes=int(ckpt["config"]["K"]), decode_logits=decode_logits, dataset=splits,
                    method=source_name(ckpt["config"]["stage"]), decoder_from=decoder_from)


def source_name(method: str) -> str:
    """The name of a comparison method's codes in this script's file names
    (``vqvae-conv`` -> ``vqvae_conv``, as paths.vqvae_stage names a VQ-VAE's)."""
    return method.replace("-", "_")


# The kinds of checkpoint whose codes a prior can learn. A new kind is one
# function with the signature of vqvae_code_maps, registered here and
# recognised in source_kind.
CODE_SOURCES: dict[str, Callable[..., CodeMaps]] = {"vqvae": vqvae_code_maps,
                                                    "quantizer": quantizer_code_maps}


def source_kind(ckpt: dict, path: Path) -> str:
    """Which entry of CODE_SOURCES reads ``ckpt``."""
    if ckpt.get("model_class") == "VQVAE" or "arch" in ckpt.get("model_args", {}):
        return "vqvae"
    if "quantizer" in ckpt and "stage" in ckpt.get("config", {}):
        return "quantizer"
    kind = ckpt.get("model_class") or ckpt.get("method") or "unknown"
    raise CheckpointError(f"{path} holds a {kind} model, whose codes this script cannot read; give "
                          f"a VQ-VAE checkpoint of train/train_vqvae.py or a cached quantizer of "
                          f"train/run_comparison.py")


def code_maps(checkpoint: str | Path, *, device="cpu", data_root="data",
              limit: int | None = None, decoder_from: str | Path | None = None,
              test: bool = True) -> CodeMaps:
    """Encode the training, validation and test parts of the model in ``checkpoint``
    (the dataset recorded there; ``limit`` defaults to the model's own), decoded by
    its decoder or, with ``decoder_from``, by its fine-tuned copy in that file.
    ``test=False`` leaves the test split unread (choosing on validation).

    Returns
    -------
    CodeMaps(train_codes, val_codes, test_codes, n_codes, decode_logits, dataset, method,
    decoder_from).
    """
    path = Path(checkpoint)
    ckpt = load_checkpoint(path, device, hint="train one first: python train/train_vqvae.py "
                                              "--arch conv")
    return CODE_SOURCES[source_kind(ckpt, path)](
        ckpt, path, device, data_root, limit, test=test,
        decoder_from=None if decoder_from is None else Path(decoder_from))


# --------------------------------------------------------------------------- the script

def run_paths(out_dir: Path, method: str, dataset: str) -> dict[str, Path]:
    """Every file of this script: the stage files of ``prior_<method>``
    (log, run record, checkpoint, plot folder), the metrics JSON, the sampled
    maps and the sample grid (without suffix; PNG and PDF)."""
    stage = f"prior_{method}"
    out = project_paths.stage_paths(out_dir, stage, dataset)
    out["metrics"] = Path(out_dir) / "logs" / f"{stage}_{dataset}_metrics.json"
    out["samples"] = Path(out_dir) / "logs" / f"{stage}_{dataset}_samples.pt"
    out["sample_grid"] = out["plots"] / f"{stage}_{dataset}_samples"
    return out


def prior_step(model: GatedPixelCNN, codes: torch.Tensor, labels: torch.Tensor | None):
    """The loss of one batch of row indices into ``codes`` (and ``labels``): the
    training loop shuffles the rows of one tensor, so it gets indices and the
    maps stay aligned with their labels."""
    def step(batch):
        (idx,) = batch
        out = model(codes[idx], None if labels is None else labels[idx])
        return out.loss, {"loss": out.loss, "bits_per_image": out.nll_bits_per_map.mean()}
    return step


def perplexity_of(bits_per_map: float, positions: int) -> float:
    """2^(bits per position): the number of equally likely codes that would
    give the same code length (K for a uniform prior)."""
    return 2.0 ** (bits_per_map / positions)


def sample_labels(n: int, n_classes: int) -> torch.Tensor:
    """Labels 0, 1, ..., n_classes-1, 0, 1, ... for class-conditional samples (n,)."""
    return torch.arange(n) % n_classes


def draw(prior, n: int, *, temperature: float, n_classes: int | None, seed: int,
         batch_size: int) -> torch.Tensor:
    """``n`` maps from ``prior`` in batches, from one generator seeded with ``seed``
    on the prior's device (CPU numbers are reproducible): (n, ...) long on the CPU."""
    device = next(iter(prior.parameters()), torch.zeros(())).device
    gen = torch.Generator(device=device).manual_seed(seed)
    labels = sample_labels(n, n_classes) if n_classes is not None else None
    out = []
    for i in range(0, n, batch_size):
        lab = None if labels is None else labels[i:i + batch_size].to(device)
        out.append(prior.sample(min(batch_size, n - i), temperature=temperature, labels=lab,
                                generator=gen).cpu())
    return torch.cat(out)


def fidelity_metrics(classifier, samples: torch.Tensor, codes: CodeMaps, n: int,
                     seed: int) -> dict:
    """FID and KID of ``samples`` (N, 1, 28, 28) against the test images, and for
    scale the FID (and KID) of ``n`` random training images and the FID of their
    reconstructions (decoded codes) against the same test images; class
    statistics of samples and test images. KID has no small-set bias, so it
    compares fairly on mnist-5k's 1,000 test images, where FID is biased upward."""
    from utils.fid import (FeatureExtractor, class_histogram, frechet_distance,
                           kernel_inception_distance, sample_class_entropy)

    feature = FeatureExtractor(classifier)
    test = codes.dataset.test.images
    pick = torch.randperm(len(codes.train_codes), generator=torch.Generator().manual_seed(seed))[:n]
    real = codes.dataset.train.images[pick]
    recon = codes.decode(codes.train_codes[pick])
    histogram = class_histogram(classifier, samples).tolist()
    stats = {"sample": sample_class_entropy(classifier, samples),
             "test": sample_class_entropy(classifier, test)}
    kid = kernel_inception_distance(test, samples, feature, seed=seed)
    return {
        "n_fid": len(samples), "n_test": len(test),
        "fid_samples": frechet_distance(test, samples, feature),
        "kid_samples": kid.mean, "kid_samples_std": kid.std,
        "kid_train": kernel_inception_distance(test, real, feature, seed=seed).mean,
        "fid_train": frechet_distance(test, real, feature),
        "fid_recon": frechet_distance(test, recon, feature),
        "sample_class_histogram": histogram,
        "sample_classes_covered": covered_classes(histogram),
        **{f"{which}_{name}": getattr(s, field) for which, s in stats.items()
           for name, field in (("class_entropy", "histogram_bits"),
                               ("conditional_entropy", "conditional_bits"),
                               ("inception_score", "inception_score"))},
    }


def covered_classes(histogram: list[int]) -> int:
    """Classes that receive at least COVERED_SHARE of the samples."""
    total = sum(histogram)
    return sum(1 for n in histogram if total and n / total >= COVERED_SHARE)


def evaluate_prior(prior, codes: CodeMaps, *, temperature: float, n_draw: int, seed: int,
                   batch_size: int = 1000, n_classes: int | None = None) -> tuple[dict, torch.Tensor]:
    """The numbers of a trained prior (a GatedPixelCNN over maps, or a
    HistogramPrior: anything with ``nll_bits`` and ``sample``) and ``n_draw``
    sampled code maps.

    Test NLL in bits per image and per position, perplexity 2^(bits per
    position), the same for the Laplace-smoothed histogram of the training
    codes (the i.i.d. baseline) and the uniform code length; the decoder's test
    reconstruction NLL and with it the likelihood bound in bits per dimension
    (:func:`utils.metrics.bits_per_dim`). A class-conditional
    prior is scored with the true test labels and sampled for labels 0, 1, ...
    Returns (metrics, sampled codes (n_draw, ...) long).
    """
    code_shape = tuple(codes.train_codes.shape[1:])
    positions = math.prod(code_shape)
    test_labels = codes.dataset.test.labels if n_classes is not None else None
    test_bits = float(prior.nll_bits(codes.test_codes, test_labels).mean())
    histogram = HistogramPrior(codes.n_codes, code_shape=code_shape).fit(codes.train_codes)
    histogram_bits = float(histogram.nll_bits(codes.test_codes).mean())
    recon_bits = reconstruction_nll_bits(codes)
    start = time.perf_counter()
    sampled = draw(prior, n_draw, temperature=temperature, n_classes=n_classes, seed=seed,
                   batch_size=batch_size)
    return {
        "method": codes.method, "dataset": codes.dataset.name,
        "dataset_requested": codes.dataset.requested, "n_codes": codes.n_codes,
        "grid": list(code_shape), "class_conditional": n_classes is not None,
        "n_train": len(codes.train_codes), "n_test": len(codes.test_codes),
        "prior_nll_bits": test_bits, "prior_bits_per_code": test_bits / positions,
        "prior_perplexity": perplexity_of(test_bits, positions),
        "histogram_nll_bits": histogram_bits,
        "histogram_perplexity": perplexity_of(histogram_bits, positions),
        "uniform_bits_per_image": positions * math.log2(codes.n_codes),
        "recon_nll_bits": recon_bits,
        "bits_per_dim": bits_per_dim(test_bits, recon_bits, codes.dataset.test.images[0].numel()),
        "temperature": temperature, "n_sampled": n_draw,
        "sample_seconds": time.perf_counter() - start,
    }, sampled


@torch.no_grad()
def reconstruction_nll_bits(codes: CodeMaps) -> float:
    """The decoder's reconstruction NLL of the test images from their codes,
    -log2 p(x | codes): the Bernoulli NLL summed over pixels, averaged over the
    test images, in bits per image."""
    images = codes.dataset.test.images
    return nats_to_bits(float(bce_sum(codes.decode_logits(codes.test_codes), images)) / len(images))


def load_classifier(path: Path, dataset: str, device):
    """The classifier of train/train_classifier.py, trained on ``dataset``."""
    from models.classifier import Classifier

    ckpt = load_checkpoint(path, device, hint="train one: python train/train_classifier.py")
    if ckpt.get("dataset") != dataset:
        raise CheckpointError(f"{path} was trained on {ckpt.get('dataset')}, the codes come from "
                              f"{dataset}; FID needs a classifier of the same data")
    return rebuild(ckpt, Classifier, device, path).eval()


def plot_samples(images: torch.Tensor, out: Path, title: str) -> list[Path]:
    """The sampled images (N, 1, 28, 28) as one grid, 8 per row (PNG and PDF)."""
    import matplotlib.pyplot as plt

    from utils.plot import image_grid, save_figure

    ncol = min(8, len(images))
    grid = image_grid(images, ncol)
    fig, ax = plt.subplots(figsize=(ncol * 0.8, 0.8 * -(-len(images) // ncol) + 0.4))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    return save_figure(fig, out)


def write_json(path: Path, record: dict) -> Path:
    with atomic_file(path, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    return path


def train_pixelcnn(args, codes: CodeMaps, paths: dict, n_classes: int | None
                   ) -> tuple[GatedPixelCNN, TrainResult]:
    """Train (or resume) the gated PixelCNN over the training maps, each epoch
    evaluated on the validation maps; returns it in eval mode (with the best
    validation weights under ``--patience``) and fit's result: the checkpoint of
    those weights, their epoch's validation numbers, epochs_trained and best_epoch."""
    height, width = codes.train_codes.shape[1:]
    build = lambda: GatedPixelCNN(n_codes=codes.n_codes, height=height, width=width,  # noqa: E731
                                  channels=args.channels, n_layers=args.n_layers,
                                  kernel_size=args.kernel_size, n_classes=n_classes)
    run = prepare_training(args, paths, build, GatedPixelCNN, RESUME_KEYS)
    model, device = run.model, run.device
    positions = height * width
    cond = n_classes is not None
    labels_train, labels_val = codes.dataset.train.labels, codes.dataset.val.labels
    train_step = prior_step(distributed.wrap(model), codes.train_codes.to(device),
                            labels_train.to(device) if cond else None)
    val_step = prior_step(model, codes.val_codes.to(device), labels_val.to(device) if cond else None)
    val_rows = torch.arange(len(codes.val_codes), device=device)

    def evaluate():
        row = prefixed("val_", run_epoch(val_step, (val_rows,), batch_size=1000, desc="val"))
        row["val_perplexity"] = perplexity_of(row["val_bits_per_image"], positions)
        return row

    print(f"PixelCNN prior over {len(codes.train_codes)} {height}x{width} maps of "
          f"{codes.method} codes (K={codes.n_codes}, uniform {positions * math.log2(codes.n_codes):.0f} "
          f"bits per image)", file=sys.stderr)
    result = fit(args=args, model=model, optimizer=run.optimizer, done=run.done, train_step=train_step,
        evaluate=evaluate, train_images=torch.arange(len(codes.train_codes), device=device),
        data=run.train, paths=paths, columns=COLUMNS, model_args=model.model_args, monitor="val_loss",
        summary=lambda r: (f"train {r['bits_per_image']:.1f} bits/image | val "
                           f"{r['val_bits_per_image']:.1f} bits/image, perplexity "
                           f"{r['val_perplexity']:.1f}"))
    return model.eval(), result


def fit_histogram(args, codes: CodeMaps, paths: dict) -> HistogramPrior:
    """The prior of one code per image: the Laplace-smoothed histogram of the
    training codes (nothing to train, so no log or checkpoint; the run's
    numbers are its metrics JSON, which is not replaced without --overwrite)."""
    if args.class_conditional:
        raise UserError(f"{args.codes_from} gives one code per image; its histogram prior is "
                        f"unconditional, drop --class-conditional")
    if paths["metrics"].exists() and not args.overwrite:
        raise UserError(f"{paths['metrics']} holds a finished run; pass --overwrite to replace it")
    print(f"histogram prior over {len(codes.train_codes)} {codes.method} codes (K={codes.n_codes}, "
          f"uniform {math.log2(codes.n_codes):.1f} bits per image)", file=sys.stderr)
    return HistogramPrior(codes.n_codes).fit(codes.train_codes)


class PriorFit(NamedTuple):
    """What :func:`fit_prior` returns: the PixelCNN's checkpoint (its best validation
    weights under --patience), their validation NLL in bits per image, the epochs
    run and the epoch of those weights."""

    checkpoint: Path
    val_nll_bits: float
    epochs_trained: int
    best_epoch: int


def prepared(args: PriorConfig, out_dir: Path | None, *, test: bool
             ) -> tuple[PriorConfig, CodeMaps, dict, int | None]:
    """What a run starts from: the config with its out_dir and the dataset and limit
    of the codes (recorded like every run's --dataset and --limit), the code maps
    (with the test split or without), this script's paths and the class count of a
    class-conditional prior (None otherwise)."""
    args = with_out_dir(args, out_dir)
    codes = code_maps(args.codes_from, device=pick_device(args.device), data_root=args.data_root,
                      limit=args.limit, decoder_from=args.decoder_from, test=test)
    args = replace(args, dataset=codes.dataset.requested, limit=codes.dataset.limit)
    splits = [s for s in (codes.dataset.train, codes.dataset.test) if s is not None]
    n_classes = (int(max(s.labels.max() for s in splits)) + 1 if args.class_conditional else None)
    return args, codes, run_paths(args.out_dir, codes.method, args.dataset), n_classes


def fit_prior(args: PriorConfig, out_dir: Path | None = None) -> PriorFit:
    """Train (or resume, or read back when finished) the PixelCNN of ``args`` over
    the training maps of ``args.codes_from``, early-stopped on the validation maps,
    without scoring or sampling it: the test split is not read (choosing a prior on
    validation). :func:`train` with the same config and ``out_dir`` then goes on
    from this checkpoint and only scores the prior."""
    args, codes, paths, n_classes = prepared(args, out_dir, test=False)
    if codes.train_codes.dim() != 3:
        raise UserError(f"{args.codes_from} gives one code per image: its histogram prior has "
                        f"nothing to fit on validation")
    _, result = train_pixelcnn(args, codes, paths, n_classes)
    return PriorFit(result.checkpoint, float(result.metrics["val_bits_per_image"]),
                    int(result.metrics["epochs_trained"]), int(result.metrics["best_epoch"]))


def train(args: PriorConfig, out_dir: Path | None = None) -> PriorResult:
    """Learn the prior of ``args.codes_from``'s codes into ``out_dir`` (default
    ``args.out_dir``), score it, sample it and write its metrics (see the module
    docstring); returns them with the PixelCNN's checkpoint."""
    args, codes, paths, n_classes = prepared(args, out_dir, test=True)
    classifier = (load_classifier(args.classifier, codes.dataset.name, pick_device(args.device))
                  if args.classifier is not None else None)
    if codes.train_codes.dim() == 3:
        prior, result = train_pixelcnn(args, codes, paths, n_classes)
        return PriorResult(result.checkpoint,
                           report(args, prior, "pixelcnn", codes, classifier, n_classes, paths,
                                  result.metrics))
    ensure_output_dirs(paths["metrics"].parent, *([] if args.no_plots else [paths["plots"]]))
    with run_lock(paths["metrics"]):  # one code per image: the histogram, fitted in a moment
        prior = fit_histogram(args, codes, paths)
        return PriorResult(None, report(args, prior, "histogram", codes, classifier, n_classes,
                                        paths))


def main(args: PriorConfig) -> None:
    train(args)


def report(args, prior, kind: str, codes: CodeMaps, classifier, n_classes: int | None,
           paths: dict, training: dict | None = None) -> PriorMetrics:
    """Score the trained ``prior`` on the test maps, sample it, decode the
    samples, measure their fidelity (with a classifier), draw the grid and
    write everything to the metrics JSON, which is returned (``training``: a
    PixelCNN's epochs_trained and best_epoch, from fit)."""
    n_draw = max(args.n_samples, args.n_fid if classifier is not None else 0)
    metrics, sampled = evaluate_prior(prior, codes, temperature=args.temperature, n_draw=n_draw,
                                      seed=args.seed, batch_size=args.sample_batch_size,
                                      n_classes=n_classes)
    images = codes.decode(sampled)
    save_checkpoint(paths["samples"], {"codes": sampled, "temperature": args.temperature,
                                       "seed": args.seed, "labels": None if n_classes is None
                                       else sample_labels(n_draw, n_classes)})
    metrics.update(prior=kind, codes_from=str(args.codes_from),
                   checkpoint=str(paths["checkpoint"]) if kind == "pixelcnn" else None,
                   prior_epochs=args.epochs if kind == "pixelcnn" else 0,
                   samples=str(paths["samples"]),
                   decoder_from=None if codes.decoder_from is None else str(codes.decoder_from))
    if kind == "pixelcnn":
        training = training or {}
        metrics.update(prior_channels=args.channels, prior_layers=args.n_layers,
                       prior_epochs_trained=training.get("epochs_trained"),
                       prior_best_epoch=training.get("best_epoch"))
    if classifier is not None:
        metrics["classifier"] = str(args.classifier)
        metrics.update(fidelity_metrics(classifier, images[:args.n_fid], codes, args.n_fid,
                                        args.seed))
    if not args.no_plots:
        title = (f"{'PixelCNN' if kind == 'pixelcnn' else 'histogram'} prior samples of "
                 f"{codes.method} codes, {codes.dataset.name}, T={args.temperature:g}")
        shown = plot_samples(images[:args.n_samples], paths["sample_grid"], title)
        metrics["sample_grid"] = [str(p) for p in shown]
    result = PriorMetrics(**metrics)
    write_json(paths["metrics"], result._asdict())
    fid = (f", FID samples {result.fid_samples:.2f} (train images {result.fid_train:.2f})"
           if classifier is not None else "")
    print(f"test NLL {result.prior_nll_bits:.1f} bits/image (histogram "
          f"{result.histogram_nll_bits:.1f}, uniform {result.uniform_bits_per_image:.0f}), "
          f"perplexity {result.prior_perplexity:.1f}, bound {result.bits_per_dim:.4f} bits/dim"
          f"{fid}; wrote {paths['metrics']}",
          file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
