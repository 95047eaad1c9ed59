"""The generative half of the comparison: a prior over each method's codes, its samples, their fidelity.

    python train/run_generation.py --dataset fashion-mnist --codebook-sizes 64 512 --seeds 0 1 2

For every method x K x seed, the method's codes come from the comparison's own
models: the same flags as train/run_comparison.py give the same config hashes,
so a model the comparison trained (under --work-dir) is reused, and one it has
not trained yet is trained here the same way. Over those codes:

* the prior (train/train_prior.py): a gated PixelCNN over the 7x7 code maps of
  a grid method, the Laplace-smoothed code histogram for one code per image;
  its test NLL in bits per image (the rate an entropy coder driven by the
  prior needs) and its perplexity 2^(bits per code);
* samples at --temperature (1.0 samples the prior itself), decoded by the
  method's decoder;
* sample fidelity on the features of a small CNN classifier trained on the same
  data (train/train_classifier.py, once per dataset; Inception weights cannot
  be downloaded here): FID of the samples against the test images, of the
  reconstructions of training images, and of training images themselves (the
  floor), and the class statistics of the samples under the classifier.

Rows are appended to <results-dir>/generation.csv as each finishes (a rerun
skips finished rows; a torn last row is redone), with
<results-dir>/generation_summary.csv (mean and std over seeds per
configuration) and the first seed's sample grids in <results-dir>/figures/.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from models.prior import MIN_TEMPERATURE
from train import comparison_methods as cm
from train import run_comparison as rc
from train import train_classifier, train_prior
from utils import methods as vocab
from utils import paths
from utils.checkpoint import load_checkpoint, rebuild
from utils.cli import config_key, float_at_least, positive_int, run_main
from utils.errors import UserError
from utils.results import (GENERATION_COLUMNS, config_hash,
                           finished_generation_keys, record_generation_row, row_key,
                           write_generation_summary)
from utils.runlock import run_lock
from utils.runtime import atomic_file, ensure_output_dirs, pick_device, write_run_record

QUANTIZED = list(vocab.names(quantized=True))
# Every method with codes, the grid rate's first (the priors that take longest).
DEFAULT_METHODS = [*vocab.names(rate=vocab.GRID_RATE, quantized=True),
                   *vocab.names(rate=vocab.IMAGE_RATE, quantized=True)]
# The quick setting trains the comparison's quick models (same epochs and fit images, so
# make all's comparison has trained them already) and one small prior per method.
QUICK = {**rc.QUICK, "codebook_sizes": [64], "seeds": [0], "prior_epochs": 3, "n_fid": 1000}


def parse_args(argv=None):
    p = rc.sweep_parser(__doc__.splitlines()[0], QUICK)
    p.set_defaults(codebook_sizes=[64, 512])
    for action in p._actions:  # only methods with codes have a prior
        if action.dest == "methods":
            action.choices = QUANTIZED
    p.add_argument("--prior-epochs", type=positive_int, default=8, help="PixelCNN training epochs")
    # 32, not train_prior.py's 64: a sweep trains 18 priors per dataset on 2 CPU cores (about
    # 25 s an epoch at 64 channels on 3,600 maps, a quarter of that at 32).
    p.add_argument("--prior-channels", type=positive_int, default=32, help="PixelCNN width")
    p.add_argument("--prior-layers", type=positive_int, default=6, help="PixelCNN gated layers")
    add_sample_args(p)
    return rc.finish_sweep_args(p.parse_args(argv), QUICK, DEFAULT_METHODS)


def add_sample_args(p) -> None:
    """The flags of sampling and of sample fidelity, shared with train/run_tuned.py's
    generation stage: --temperature, --n-fid, --classifier-epochs."""
    p.add_argument("--temperature", type=float_at_least(MIN_TEMPERATURE), default=1.0,
                   help=f"sampling temperature >= {MIN_TEMPERATURE:g} (the reported numbers use 1.0)")
    p.add_argument("--n-fid", type=positive_int, default=2000,
                   help="samples (and training images, for the reference FIDs) per FID")
    p.add_argument("--classifier-epochs", type=positive_int, default=5,
                   help="epochs of the feature classifier")


# --- the models behind a row ----------------------------------------------------------

def classifier_train_config(args) -> train_classifier.ClassifierConfig:
    """The training config of the dataset's feature classifier (seed 0). It is the
    instrument of every FID, not a model compared, so it trains its --classifier-epochs
    without early stopping in either protocol: the fixed and tuned rows share it."""
    return train_classifier.ClassifierConfig(**{**cm.common_fields(args, 0, args.classifier_epochs),
                                                "patience": None})


def classifier_config(args) -> dict:
    return {"stage": "classifier", **config_key(classifier_train_config(args))}


def classifier_checkpoint(args) -> Path:
    """The feature classifier of the dataset (trained once, then cached)."""
    return cm.trained_checkpoint("classifier", train_classifier.train, classifier_train_config(args),
                                 args.work_dir, classifier_config(args),
                                 train_classifier.run_paths(".", args.dataset)["checkpoint"].name)


@torch.no_grad()
def classifier_accuracy(path: Path, test, device) -> float:
    """Test accuracy of the classifier whose features the FIDs use."""
    from models.classifier import Classifier

    model = rebuild(load_checkpoint(path, device), Classifier, device, path).eval()
    hits = sum(int((model(x.to(device)).logits.argmax(1).cpu() == y).sum())
               for x, y in zip(test.images.split(1000), test.labels.split(1000)))
    return hits / len(test.labels)


def code_source(args, seed_run, method: str, K: int, seed: int, variant: dict | None = None) -> Path:
    """The checkpoint whose codes the prior learns (train_prior.py --codes-from):
    the method's VQ-VAE, or the cached quantizer of its cell (``variant``, default the
    sweep's first; fitted first when missing)."""
    m = vocab.get(method)
    if m.build == "vqvae":
        return cm.vqvae_checkpoint(args, m.options["arch"], K, seed, m.options)
    variant = variant or cm.variants(args, method)[0]
    path = cm.quantizer_path(args, method, K, seed, variant)
    if not path.is_file():
        cm.quantizer_for(seed_run(), method, K, variant)
    return path


def prior_train_config(args, method: str, seed: int) -> train_prior.PriorConfig:
    """train_prior.py's config for one row (its codes_from and classifier not set yet)."""
    pixelcnn = {}
    if vocab.get(method).codes_per_image > 1:  # early-stopped on validation under --patience
        pixelcnn = {"epochs": args.prior_epochs, "channels": args.prior_channels,
                    "n_layers": args.prior_layers, "patience": getattr(args, "patience", None)}
    return train_prior.PriorConfig(seed=seed, device=args.device, data_root=Path(args.data_root),
                                   temperature=args.temperature, n_fid=args.n_fid, **pixelcnn)


def prior_config(args, method: str, seed: int) -> dict:
    """What identifies a row's prior: train_prior.py's config (utils.cli.config_key: a
    histogram's PixelCNN fields are at their defaults, so left out), with the
    classifier's config hash for the FID features."""
    cfg = config_key(prior_train_config(args, method, seed))
    return {**cfg, "classifier": config_hash(classifier_config(args))}


def row_identity(args, method: str, K: int, seed: int, variant: dict | None = None) -> dict:
    """Key columns of a generation row: the comparison's config of the method's codes
    (of its cell ``variant``, default the sweep's first) and the prior's config, hashed
    with the seed (config_hash) and for seed 0 (config_id, shared by the seeds of one
    configuration)."""
    variant = variant or cm.variants(args, method)[0]

    def hashed(s):
        return config_hash({"codes": cm.method_config(args, method, K, s, variant),
                            "prior": prior_config(args, method, s)})

    return {"dataset": args.dataset, "setting": args.setting, "method": method, "K": K, "seed": seed,
            "config_hash": hashed(seed), "config_id": hashed(0)}


def prior_dir(args, method: str, K: int, ident: dict) -> Path:
    """Where the prior of the row ``ident`` (:func:`row_identity`) is trained and scored."""
    return paths.cache_dir(args.work_dir, f"prior-{method}_K{K}", ident["config_hash"])


def prior_run_config(args, source: Path, method: str, seed: int, classifier: Path | None,
                     run_dir: Path, decoder: Path | None = None) -> train_prior.PriorConfig:
    """train_prior.py's config of the prior in ``run_dir`` over ``source``'s codes (decoded
    by ``decoder``, a fine-tuned copy, when given): resumed when a partial run is there."""
    resume = bool(list(run_dir.glob("checkpoints/*.pt")))
    return replace(prior_train_config(args, method, seed), codes_from=Path(source),
                   decoder_from=None if decoder is None else Path(decoder),
                   classifier=None if classifier is None else Path(classifier), resume=resume,
                   overwrite=not resume)


def prior_metrics(args, source: Path, method: str, K: int, seed: int, classifier: Path,
                  run_dir: Path, decoder: Path | None = None
                  ) -> tuple[train_prior.PriorMetrics, float]:
    """Run train_prior.py on ``source`` (with the fine-tuned ``decoder``, when given)
    into ``run_dir`` (resumed when a partial run is there, read back when it
    finished); its metrics and wall seconds (NaN when read back)."""
    finished = train_prior.run_paths(run_dir, train_prior.source_name(method), args.dataset)["metrics"]
    if finished.is_file():
        try:
            read = train_prior.PriorMetrics.read(finished)
            # a tuned row needs what an older version did not measure (KID): score it again
            if decoder is None or read.kid_samples is not None:
                return read, float("nan")
        except (TypeError, ValueError):  # written by an older version: score the prior again
            pass
    cfg = prior_run_config(args, source, method, seed, classifier, run_dir, decoder)
    start = time.perf_counter()
    metrics = train_prior.train(cfg, run_dir).metrics
    return metrics, time.perf_counter() - start


def generation_row(ident: dict, method: str, K: int, metrics: train_prior.PriorMetrics,
                   seconds: float, accuracy: float, dataset_used: str,
                   columns=GENERATION_COLUMNS) -> dict:
    """One row of generation.csv (``columns``): its identity, the method's bits, the
    classifier's accuracy, the prior's wall seconds and train_prior.py's metrics of
    the same names."""
    row = {**ident, "dataset_used": dataset_used, "bits_per_image": vocab.get(method).bits(K),
           "classifier_accuracy": accuracy, "prior_seconds": seconds}
    prior = metrics._asdict()
    return {c: row[c] if c in row else prior[c] for c in columns}


def publish_grid(metrics: train_prior.PriorMetrics, target: Path) -> None:
    """Copy the prior's sample grid (PNG and PDF) to the results figures."""
    for shown in metrics.sample_grid:
        src = Path(shown)
        with atomic_file(target.with_suffix(src.suffix), "wb") as f:
            f.write(src.read_bytes())


# --- the sweep ---------------------------------------------------------------------------

def main(args):
    if args.decoders != ["frozen"]:
        raise UserError("--decoders: these priors decode with the VAE decoder as trained; the "
                        "tuned protocol's priors decode with the fine-tuned decoders "
                        "(train/run_tuned.py --stage generation)")
    device = pick_device(args.device)
    out = paths.ResultPaths(args.results_dir)
    ensure_output_dirs(out.root, out.figures)
    with run_lock(out.generation):  # one runner per results folder
        run(args, device, out)


def run(args, device, out: paths.ResultPaths) -> None:
    """The sweep of ``main``, under the results folder's lock."""
    train, test = rc.sweep_data(args)
    record = out.run_record(args.dataset, args.setting, "generation")
    write_run_record(record, args, keep_earlier=True, dataset=train.name, data_source=train.source,
                     device=str(device), torch_threads=torch.get_num_threads())
    print(f"generation {args.dataset} ({train.name}), {args.setting}: methods {' '.join(args.methods)}, "
          f"K {args.codebook_sizes}, seeds {args.seeds}; config in {record}", file=sys.stderr)
    classifier = classifier_checkpoint(args)
    accuracy = classifier_accuracy(classifier, test, device)
    done = finished_generation_keys(out.generation)
    for seed in args.seeds:
        cache: dict[str, cm.SeedRun] = {}

        def seed_run(seed=seed):
            return cache.setdefault("run", cm.SeedRun(args, seed, train, test, device))

        for method in args.methods:
            for K in vocab.get(method).codebook_sizes(args.codebook_sizes):
                ident = row_identity(args, method, K, seed)
                if row_key(ident) in done:
                    continue
                source = code_source(args, seed_run, method, K, seed)
                metrics, seconds = prior_metrics(args, source, method, K, seed, classifier,
                                                 prior_dir(args, method, K, ident))
                row = generation_row(ident, method, K, metrics, seconds, accuracy, train.name)
                record_generation_row(out.generation, out.generation_summary, row)
                done.add(row_key(ident))
                if seed == args.seeds[0]:
                    publish_grid(metrics, out.samples_figure(args.dataset, method, K, args.setting))
                print(f"[{args.dataset} seed {seed}] {method:14s} K={K:<4d} {row['prior']:9s} "
                      f"NLL {row['prior_nll_bits']:.1f} bits (uniform {row['bits_per_image']:.0f}), "
                      f"FID samples {row['fid_samples']:.2f}, recon {row['fid_recon']:.2f}, "
                      f"train {row['fid_train']:.2f}, classes {row['sample_classes_covered']}",
                      file=sys.stderr)
    summary = write_generation_summary(out.generation, out.generation_summary)
    print(f"wrote {out.generation} and {out.generation_summary} ({len(summary)} groups); classifier "
          f"test accuracy {accuracy:.4f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
