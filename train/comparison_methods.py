"""How the comparison obtains each method's codes and reconstructions.

One builder per way of building (``utils.methods.Method.build``): a function
``(run, method, K, seed) -> Evaluated`` that trains or reuses the models it
needs (cached by config hash under ``--work-dir``) and returns everything the
shared evaluation (:func:`utils.metrics.evaluate_codes`) needs. Adding a
method that is built like an existing one is one entry in utils/methods.py;
a new way of building is one function here and one line in :data:`BUILDERS`.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from models.conv_net import grid_vectors, vectors_to_grid
from models.geodesic_vq import GeodesicQuantizer, make_quantizer
from models.vae import VAE
from models.vqvae import VQVAE
from utils import methods as vocab
from utils import paths
from utils.checkpoint import load_checkpoint, rebuild, save_checkpoint
from train import train_vae, train_vqvae
from utils.cli import DEFAULT_BATCH_SIZE, changed_values, config_key, config_mismatches
from utils.errors import UserError
from utils.results import config_hash
from utils.runtime import atomic_file, plain_config
from utils.training import counting_checkpoint, finished
from train.finetune import finetune, vae_decode, vqvae_decode


class Evaluated(NamedTuple):
    """What one method produced for the test split (inputs of evaluate_codes)."""

    recon_logits: torch.Tensor  # (N_test, 1, 28, 28)
    bits: float
    test_codes: np.ndarray | None  # (N_test,) or (N_test, 7, 7)
    train_codes: np.ndarray | None  # (N_train,) for label votes, else None
    latent: dict | None  # geometry inputs of evaluate_codes
    fit_seconds: float
    # how the models behind the row trained: epochs_trained / best_epoch of the VQ-VAE or
    # VAE, decoder_epochs_trained / decoder_best_epoch of a fine-tuned decoder, its settings
    training: dict = {}


class SeedRun:
    """What the builders of one seed share: each VAE architecture's model and latents,
    and the k-NN graphs of those latents (each computed once, when first needed).

    ``arch`` is a method's ``options["vae"]``: "mlp" (one latent per image) or
    "conv" (a 7x7 grid of latents per image, quantized vector by vector).
    """

    def __init__(self, args, seed: int, train, test, device, val=None):
        self.args, self.seed, self.train, self.test, self.device = args, seed, train, test, device
        self._val = val
        self._vaes: dict[str, object] = {}
        self.vae_files: dict[str, Path] = {}  # the checkpoint behind each VAE
        self._z: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._graphs: dict[tuple[str, str], object] = {}
        self.vae_seconds: dict[str, float] = {}
        self.graph_seconds: dict[tuple[str, str], float] = {}
        global METRICS_DIR
        work = getattr(args, "work_dir", None)
        METRICS_DIR = None if work is None else Path(work) / "grid_metrics"

    def vae_for(self, arch: str = "mlp"):
        """The seed's trained VAE of ``arch`` (its latent means of both splits computed once)."""
        if arch not in self._vaes:
            start = time.perf_counter()
            vae = vae_for_seed(self.args, self.seed, self.device, arch)
            self.vae_files[arch] = vae_checkpoint(self.args, self.seed, arch)
            self._z[arch] = (vae.latent_means(self.train.images).numpy(),
                             vae.latent_means(self.test.images).numpy())
            self._vaes[arch] = vae
            self.vae_seconds[arch] = time.perf_counter() - start
        return self._vaes[arch]

    @property
    def val(self):
        """The validation part of the training split (early stopping of fine-tuned
        decoders), loaded when first needed."""
        if self._val is None:
            from utils.datasets import load_dataset

            self._val = load_dataset(self.args.dataset, "val", self.args.data_root,
                                     limit=self.args.limit)
        return self._val

    @property
    def vae(self) -> VAE:
        return self.vae_for("mlp")

    def latents(self, arch: str = "mlp") -> tuple[np.ndarray, np.ndarray]:
        """Latent means of the training and test splits: (N, d) for "mlp",
        (N, D, 7, 7) for "conv"."""
        self.vae_for(arch)
        return self._z[arch]

    @property
    def z_train(self) -> np.ndarray:
        """(N_train, d) VAE latent means of the training split."""
        return self.latents("mlp")[0]

    @property
    def z_test(self) -> np.ndarray:
        """(N_test, d) VAE latent means of the test split."""
        return self.latents("mlp")[1]

    def fit_vectors(self, arch: str) -> np.ndarray:
        """What a quantizer of ``arch``'s latents is fitted on: the (N, d) latents,
        or every grid vector (49 per image, image-major) of the training images
        (of the first ``--grid-fit-images`` of them when that flag is given)."""
        z = self.latents(arch)[0]
        if arch == "mlp":
            return z
        return grid_vectors(torch.from_numpy(self._fit_grids(arch))).numpy()

    def _fit_grids(self, arch: str) -> np.ndarray:
        """The training grids a grid quantizer is fitted on (the first --grid-fit-images)."""
        z = self.latents(arch)[0]
        return z[:self.args.grid_fit_images or len(z)]

    def fit_metrics(self, arch: str) -> np.ndarray:
        """(N H W, D, D) per-position pull-back metrics of :meth:`fit_vectors` (grid
        methods' decoder edges: :func:`grid_metrics`)."""
        return grid_metrics(self.vae_for(arch).decode, self._fit_grids(arch))

    @property
    def graph(self):
        """The repaired k-NN graph of ``z_train`` with latent edge lengths (sparse, N x N:
        VAE latent means have no duplicate rows, so its nodes are the rows)."""
        return self.graph_for("latent").graph

    def graph_for(self, edge_length: str, arch: str = "mlp"):
        """The k-NN graph of :meth:`fit_vectors` with ``edge_length`` edges and its
        neighbour index (a ``NodeGraph``, built once per seed; decoder lengths
        re-measure the latent graph's edges through the VAE decoder)."""
        key = (arch, edge_length)
        if key not in self._graphs:
            start = time.perf_counter()
            latent = None if edge_length == "latent" else self.graph_for("latent", arch)
            rate = vocab.IMAGE_RATE if arch == "mlp" else vocab.GRID_RATE
            q = make_quantizer(vocab.quantizer_method("geodesic", rate).name, 1, seed=self.seed,
                                     n_neighbors=self.args.n_neighbors, decoder=self.vae_for(arch).decode,
                                     variant={"edge_length": edge_length})
            self._graphs[key] = q.graph_for(self.fit_vectors(arch), latent_graph=latent,
                                            **metrics_of(q, lambda: self.fit_metrics(arch)))
            # a decoder graph's time includes the latent graph it re-measures
            self.graph_seconds[key] = (time.perf_counter() - start
                                       + (self.graph_seconds[(arch, "latent")] if latent is not None else 0.0))
        return self._graphs[key]


# --- training or reusing models ----------------------------------------------------

def cached_checkpoint(kind: str, work_dir, config: dict, ckpt_name: str) -> Path:
    """Where :func:`trained_checkpoint` keeps the model of ``config``:
    work_dir/<kind>-<hash>/checkpoints/<ckpt_name>."""
    return paths.cache_dir(work_dir, kind, config_hash(config)) / "checkpoints" / ckpt_name


def trained_checkpoint(kind: str, train, cfg, work_dir, config: dict, ckpt_name: str):
    """Train ``cfg`` with a script's ``train(cfg, out_dir)`` into
    work_dir/<kind>-<hash>/ unless a finished checkpoint for this config is
    there; a partial one is resumed."""
    ckpt = cached_checkpoint(kind, work_dir, config, ckpt_name)
    run_dir = ckpt.parent.parent
    resume = False
    if ckpt.is_file():
        stored = load_checkpoint(ckpt)
        # epochs may differ for a partial run (resumed below); anything else is another model
        differ = {k: v for k, v in config_mismatches(cfg, stored.get("config", {})).items()
                  if k != "epochs"}
        if differ:
            said = ", ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in sorted(differ.items()))
            raise UserError(f"{ckpt} holds a model of the same cache key trained otherwise ({said}): "
                            f"a declared default changed since; move that cache folder away")
        if finished(stored, cfg.epochs):
            return counting_checkpoint(ckpt, stored, cfg.patience)
        resume = True
    refuse_miss(f"{kind} of seed {cfg.seed}", ckpt)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(train(replace(cfg, resume=resume, no_plots=True), run_dir).checkpoint)


def common_fields(args, seed: int, epochs: int) -> dict:
    """The fields every training run of a sweep shares (its data, seed, epochs, early
    stopping patience, device)."""
    return {"dataset": args.dataset, "seed": seed, "epochs": epochs, "device": args.device,
            "data_root": Path(args.data_root), "limit": args.limit or None,
            "patience": getattr(args, "patience", None)}


def vqvae_batch_size(args, K: int) -> int:
    """The batch size of the sweep's VQ-VAE at codebook size K: --vqvae-batch-size
    as {"K": B, "*": B of every other K}, else DEFAULT_BATCH_SIZE."""
    sizes = args.vqvae_batch_size
    return sizes.get(str(K), sizes.get("*", DEFAULT_BATCH_SIZE))


def vae_train_config(args, seed, arch: str = "mlp") -> train_vae.VAEConfig:
    """The training config of the comparison's VAE of one seed and architecture: the
    conv VAE trains for --conv-epochs, as the conv VQ-VAE it is compared with; every
    VAE with the sweep's --vae-kl-weight and --vae-batch-size."""
    epochs = args.epochs if arch == "mlp" else args.conv_epochs
    return train_vae.VAEConfig(**common_fields(args, seed, epochs), arch=arch,
                               batch_size=args.vae_batch_size, kl_weight=args.vae_kl_weight)


def vae_config(args, seed, arch: str = "mlp") -> dict:
    """The config that identifies the comparison's VAE of one seed and architecture."""
    return {"stage": paths.vae_stage(arch).replace("_", "-"),
            **config_key(vae_train_config(args, seed, arch))}


def method_fields(options: dict | None) -> dict:
    """The VQ-VAE training-config fields of a method's options other than its arch,
    e.g. {"arch": "conv", "quantizer": "fsq"} -> {"quantizer": "fsq"}."""
    return {k: v for k, v in (options or {}).items() if k != "arch"}


def vqvae_train_config(args, arch: str, K: int, seed, options: dict | None = None
                       ) -> train_vqvae.VQVAETrainConfig:
    """The training config of the comparison's VQ-VAE of one architecture, K and seed
    (``options``: the method's, e.g. its quantizer)."""
    epochs = args.conv_epochs if arch == "conv" else args.epochs
    tuned = {k: v for k, v in (("beta", getattr(args, "vqvae_beta", None)),
                               ("lr", getattr(args, "vqvae_lr", None))) if v is not None}
    return train_vqvae.VQVAETrainConfig(**common_fields(args, seed, epochs), arch=arch,
                                        codebook_size=K, batch_size=vqvae_batch_size(args, K),
                                        **method_fields(options), **tuned)


def vqvae_config(args, arch: str, K: int, seed, options: dict | None = None) -> dict:
    """The config that identifies a VQ-VAE of the comparison."""
    return {"stage": f"vqvae-{arch}",
            **config_key(vqvae_train_config(args, arch, K, seed, options))}


def variants(args, name: str) -> list[dict]:
    """The ablation cells the runner's flags ask for, for method ``name``."""
    return vocab.variants(name, edge_lengths=args.edge_lengths, code_vectors=args.code_vectors,
                          decoders=args.decoders)


def constructor_defaults(cls) -> dict:
    """The defaults of ``cls``'s keyword arguments, as plain values."""
    return plain_config({k: p.default for k, p in inspect.signature(cls).parameters.items()
                         if p.default is not inspect.Parameter.empty})


def quantizer_config(args, method: str, K: int, seed, variant: dict) -> dict:
    """The config that identifies a fitted a-posteriori quantizer: its VAE, K,
    every quantizer parameter not at its constructor's default (the cache-key
    rule of utils.cli.config_key; the device, which changes no result, left out),
    for grid methods the images it was fitted on and, for a fine-tuned decoder,
    its epochs."""
    arch = vocab.get(method).options.get("vae", "mlp")
    q = make_quantizer(method, K, seed=seed, n_neighbors=args.n_neighbors, variant=variant)
    params = changed_values({k: v for k, v in q.get_params().items() if k != "device"},
                            constructor_defaults(type(q)))
    config = {"stage": method, "vae": config_hash(vae_config(args, seed, arch)), "K": K, "quantizer": params}
    if arch != "mlp" and args.grid_fit_images:
        config["fit_images"] = args.grid_fit_images
    if variant.get("decoder") == "finetuned":
        config.update(finetune_fields(args))
    return config


def finetune_fields(args) -> dict:
    """What identifies a decoder fine-tuning: its epochs, and its early-stopping
    patience when the sweep has one (then the epochs are the budget)."""
    patience = getattr(args, "patience", None)
    return {"finetune_epochs": args.finetune_epochs, **({"finetune_patience": patience}
                                                        if patience else {})}


def vae_cache_key(args, seed: int, arch: str = "mlp") -> tuple[str, dict, str]:
    """(kind, config, checkpoint name) under which the VAE of one seed and
    architecture is cached (:func:`cached_checkpoint`)."""
    return (paths.vae_stage(arch).replace("_", "-"), vae_config(args, seed, arch),
            paths.vae_checkpoint(".", args.dataset, arch).name)


def vae_checkpoint(args, seed: int, arch: str = "mlp") -> Path:
    """The checkpoint of the comparison's VAE of one seed and architecture,
    trained (or resumed) when it is not finished yet."""
    kind, config, name = vae_cache_key(args, seed, arch)
    return trained_checkpoint(kind, train_vae.train, vae_train_config(args, seed, arch),
                              args.work_dir, config, name)


def vae_for_seed(args, seed: int, device, arch: str = "mlp"):
    """The comparison's VAE of one seed and architecture (trained once, then cached)."""
    ckpt = vae_checkpoint(args, seed, arch)
    return rebuild(load_checkpoint(ckpt, device), train_vae.ARCHS[arch], device, ckpt).eval()


def vqvae_cache_key(args, arch: str, K: int, seed: int, options: dict | None = None
                    ) -> tuple[str, dict, str]:
    """(kind, config, checkpoint name) under which a VQ-VAE of the comparison is cached."""
    stage = paths.vqvae_stage(arch)
    return (f"{stage}_K{K}", vqvae_config(args, arch, K, seed, options),
            paths.stage_paths(".", stage, args.dataset)["checkpoint"].name)


def vqvae_checkpoint(args, arch: str, K: int, seed: int, options: dict | None = None) -> Path:
    """The checkpoint of the comparison's VQ-VAE of one architecture, K, seed (and
    method ``options``), trained (or resumed) when it is not finished yet."""
    kind, config, name = vqvae_cache_key(args, arch, K, seed, options)
    return trained_checkpoint(kind, train_vqvae.train, vqvae_train_config(args, arch, K, seed, options),
                              args.work_dir, config, name)


def vqvae_for(args, arch: str, K: int, seed: int, device, options: dict | None = None) -> VQVAE:
    """The comparison's VQ-VAE of one architecture, K, seed (and method ``options``)."""
    ckpt = vqvae_checkpoint(args, arch, K, seed, options)
    return rebuild(load_checkpoint(ckpt, device), VQVAE, device, ckpt).eval()


def arch_of(method: str) -> str:
    """The VAE architecture whose latents a method uses ("mlp" or "conv")."""
    return vocab.get(method).options.get("vae", "mlp")


def quantizer_path(args, method: str, K: int, seed: int, variant: dict) -> Path:
    """Where :func:`quantizer_for` caches the fitted quantizer of one cell (the
    decoder column does not refit, so it is not part of the key)."""
    cell = {k: v for k, v in variant.items() if k != "decoder"}
    return paths.cached_quantizer(args.work_dir, method, K,
                                  config_hash(quantizer_config(args, method, K, seed, cell)))


def load_quantizer(ckpt: dict, decoder=None, device: str = "cpu", *, source=None):
    """The fitted quantizer in a file of :func:`quantizer_for` (``decoder``: the
    VAE's latents -> logits, which a geodesic quantizer needs for decoder edges;
    ``source``: that file, named when its quantizer is corrupt)."""
    config = ckpt["config"]
    q = make_quantizer(config["stage"], config["K"], seed=0, device=device)
    extra = {"decoder": decoder} if isinstance(q, GeodesicQuantizer) else {}
    return type(q).from_state_dict(ckpt["quantizer"], source=source, **extra)


def cached_vae_checkpoint(quantizer_file: Path, ckpt: dict) -> Path:
    """The VAE a cached quantizer was fitted on: the checkpoint the file records
    (relative to its folder), or, in files written before that was recorded, the
    one checkpoint in the work folder's VAE run of the recorded config hash."""
    folder = Path(quantizer_file).parent
    if ckpt.get("vae_checkpoint"):
        return folder / ckpt["vae_checkpoint"]
    config = ckpt["config"]
    kind = paths.vae_stage(arch_of(config["stage"])).replace("_", "-")
    found = sorted((paths.cache_dir(folder, kind, config["vae"]) / "checkpoints").glob("*.pt"))
    if len(found) != 1:
        raise FileNotFoundError(f"{quantizer_file}: its VAE ({kind}-{config['vae']}) is not in {folder}")
    return found[0]


def quantizer_for(run: SeedRun, method: str, K: int, variant: dict):
    """Fit (or load) an a-posteriori quantizer on the seed's VAE latents (every grid
    vector, for a grid method); returns it and its fit seconds (the graph's included)."""
    args, arch = run.args, arch_of(method)
    cell = {k: v for k, v in variant.items() if k != "decoder"}  # the decoder does not refit
    config = quantizer_config(args, method, K, run.seed, cell)
    path = quantizer_path(args, method, K, run.seed, variant)
    decoder = run.vae_for(arch).decode
    q = make_quantizer(method, K, seed=run.seed, n_neighbors=args.n_neighbors,
                             device=str(run.device), variant=cell, decoder=decoder)
    if path.is_file():
        ckpt = load_checkpoint(path)
        return load_quantizer(ckpt, decoder, str(run.device), source=path), ckpt["fit_seconds"]
    refuse_miss(f"{method} K={K}", path)
    vectors = run.fit_vectors(arch)
    if isinstance(q, GeodesicQuantizer):
        graph = run.graph_for(q.edge_length, arch)
        start = time.perf_counter()
        q.fit(vectors, graph=graph, images=run.train.images if q.code_vectors == "refined" else None,
              **metrics_of(q, lambda: run.fit_metrics(arch)))
        seconds = time.perf_counter() - start + run.graph_seconds[(arch, q.edge_length)]
    else:
        start = time.perf_counter()
        q.fit(vectors)
        seconds = time.perf_counter() - start
    vae_file = vae_checkpoint(args, run.seed, arch).resolve()
    save_checkpoint(path, {"quantizer": q.state_dict(), "config": config, "fit_seconds": seconds,
                           "vae_checkpoint": str(vae_file.relative_to(path.parent.resolve()))})
    return q, seconds


# Per-position metrics of grid latents, kept for the few latents a process quantizes again
# and again (a seed's training, validation and test grids: the fit, every fine-tuned
# decoder's codes and every split's codes read them); (VAE, sha1 of the latents) -> metrics.
_METRICS: dict[tuple[int, str], tuple[object, np.ndarray]] = {}
_METRICS_KEPT = 6
# Where :func:`grid_metrics` also keeps them on disk (SeedRun sets <--work-dir>/grid_metrics),
# so that a later process (the rows stage after the selection, the next one-seed chunk, a
# resumed run) reads a VAE's metrics instead of recomputing them: about 45 min per conv VAE
# for Fashion-MNIST's 60,000 training and validation grids on 2 cores. None: memory only.
METRICS_DIR: Path | None = None


def weights_digest(module: torch.nn.Module) -> str:
    """sha1 of a module's parameters and buffers (names, dtypes, shapes and values): the
    key of its grid metrics on disk, the same for the same weights in any process."""
    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


METRICS_CHUNK = 4096  # grids per file on disk: a stopped run loses at most one chunk's work


def _digest(z: np.ndarray) -> str:
    return hashlib.sha1(f"{z.shape}".encode() + z.tobytes()).hexdigest()


def _chunk_metrics(owner, decoder: Callable, z: np.ndarray, weights: str | None) -> np.ndarray:
    """(n H W, D, D) metrics of the grids ``z`` (n, D, H, W): read from their file under
    :data:`METRICS_DIR` (``weights``: the VAE's :func:`weights_digest`; None: no file), or
    computed, logged and written there atomically."""
    from geodesic.decoder_metric import bernoulli_mean_decoder
    from geodesic.position_metric import row_metrics

    n, D, H, W = z.shape
    file = None if weights is None else Path(METRICS_DIR) / f"{weights[:20]}-{_digest(z)[:20]}.npy"
    if file is not None and file.is_file():
        metrics = np.load(file)
        if metrics.shape == (n * H * W, D, D) and metrics.dtype == np.float32:
            return metrics
        warnings.warn(f"{file}: metrics of shape {metrics.shape}, not {(n * H * W, D, D)}: "
                      "recomputed")
    mean = (bernoulli_mean_decoder(owner) if isinstance(owner, torch.nn.Module)
            else lambda x: torch.sigmoid(decoder(x)))
    start = time.perf_counter()
    metrics = row_metrics(mean, torch.from_numpy(z))
    seconds = time.perf_counter() - start
    print(f"[grid metrics] {n} grids in {seconds:.0f} s ({n / max(seconds, 1e-9):.1f} images/s)"
          f"{f' -> {file}' if file is not None else ''}", flush=True)
    if file is not None:
        with atomic_file(file) as f:
            np.save(f, metrics)
    return metrics


def grid_metrics(decoder: Callable, z: np.ndarray) -> np.ndarray:
    """The pull-back metric of every vector of the grids ``z`` (N, D, H, W) in its own
    image's context (geodesic/position_metric.py), through ``decoder`` (a VAE's
    latents -> logits; the metric is that of its Bernoulli mean, sigmoid of the logits):
    (N H W, D, D) float32 in :func:`models.conv_net.grid_vectors` row order. Computed once
    per (VAE, latents) in a process. With :data:`METRICS_DIR` set, computed in chunks of
    :data:`METRICS_CHUNK` grids, each written atomically to its own file (keyed by the VAE's
    weights and the chunk's grids), and read back by any later process of the same VAE and
    grids: a stopped run resumes at the chunk it was in. A file of the wrong shape is
    recomputed, with a warning."""
    owner = getattr(decoder, "__self__", decoder)  # the VAE of a bound ``vae.decode``
    z = np.ascontiguousarray(z, dtype=np.float32)
    key = (id(owner), _digest(z))
    if key not in _METRICS:
        on_disk = METRICS_DIR is not None and isinstance(owner, torch.nn.Module)
        weights = weights_digest(owner) if on_disk else None
        step = METRICS_CHUNK if on_disk else max(len(z), 1)
        parts = [_chunk_metrics(owner, decoder, z[i:i + step], weights)
                 for i in range(0, len(z), step)] or [_chunk_metrics(owner, decoder, z, None)]
        metrics = parts[0] if len(parts) == 1 else np.concatenate(parts)
        while len(_METRICS) >= _METRICS_KEPT:
            _METRICS.pop(next(iter(_METRICS)))
        _METRICS[key] = (owner, metrics)  # the owner kept alive, so its id is not reused
    return _METRICS[key][1]


def metrics_of(q, metrics: Callable[[], np.ndarray]) -> dict:
    """{"metrics": metrics()} for a quantizer with per-row metrics (a grid method's
    decoder edges), else {}: the keyword its fit, graph_for and quantize then need."""
    return {"metrics": metrics()} if getattr(q, "edge_length", None) == "metric" else {}


def quantized_latents(q, z: np.ndarray):
    """Codes of latents ``z`` ((N, d), or (N, D, 7, 7) grids quantized vector by vector,
    each with its position's metric when ``q`` has decoder edges): (indices (N,) or
    (N, 7, 7), code vectors shaped like z)."""
    if z.ndim == 2:
        out = q.quantize(z)
        return out.indices.numpy(), out.codes
    n, _, h, w = z.shape
    out = q.quantize(grid_vectors(torch.from_numpy(z)).numpy(), batch_size=65_536,
                     **metrics_of(q, lambda: grid_metrics(q.decoder, z)))
    return out.indices.numpy().reshape(n, h, w), vectors_to_grid(out.codes, n, h)


def decoder_path(args, method: str, K: int, seed: int, variant: dict) -> Path:
    """Where :func:`decoder_for` caches the decoder fine-tuned on one cell's codes."""
    config = quantizer_config(args, method, K, seed, variant)
    return paths.cached_quantizer(args.work_dir, f"{method}-decoder", K, config_hash(config))


def decoder_for(run: SeedRun, method: str, K: int, variant: dict, q):
    """The VAE whose decoder decodes this cell's codes: the VAE itself, or a copy
    whose decoder was fine-tuned on the quantized training latents (cached).
    Returns it, the seconds it took and how the fine-tuning went (:func:`tuned_copy`)."""
    arch = arch_of(method)
    vae = run.vae_for(arch)
    if variant.get("decoder") != "finetuned":
        return vae, 0.0, {}

    def codes(images):
        z = run.latents(arch)[0] if images is run.train.images else \
            vae.latent_means(images).numpy()
        return quantized_latents(q, z)[1]

    return tuned_copy(run, vae, codes, vae_decode, asdict(vae.config),
                      quantizer_config(run.args, method, K, run.seed, variant),
                      decoder_path(run.args, method, K, run.seed, variant),
                      f"{method} K={K} fine-tuned decoder")


def tuned_copy(run: SeedRun, model, codes, decode, model_args: dict, config: dict, path: Path,
               what: str):
    """A copy of ``model`` whose decoder is fine-tuned on its frozen codes
    (``codes(images)`` -> code vectors of those images) for --finetune-epochs, with early
    stopping on the validation split when the sweep has a --patience; cached at ``path``.
    Returns (the copy, fit seconds, {decoder_epochs_trained, decoder_best_epoch})."""
    if path.is_file():
        ckpt = load_checkpoint(path, run.device)
        return (rebuild(ckpt, type(model), run.device, path).eval(), ckpt["fit_seconds"],
                ckpt.get("training", {}))
    refuse_miss(what, path)
    patience = getattr(run.args, "patience", None)
    start = time.perf_counter()
    val = (codes(run.val.images), run.val.images) if patience else None
    out = finetune(model, codes(run.train.images), run.train.images,
                   epochs=run.args.finetune_epochs, seed=run.seed, decode=decode, val=val,
                   patience=patience)
    seconds = time.perf_counter() - start
    training = {"decoder_epochs_trained": out.epochs_trained, "decoder_best_epoch": out.best_epoch}
    save_checkpoint(path, {"model": out.model.state_dict(), "model_class": type(model).__name__,
                           "model_args": model_args, "config": config, "fit_seconds": seconds,
                           "training": training})
    return out.model, seconds, training


def training_info(ckpt: Path) -> dict:
    """How the model of checkpoint ``ckpt`` trained: ``epochs_trained``, ``best_epoch``
    (the epoch of its weights: under early stopping ``ckpt`` is the best-validation file
    and the run's last epoch is in its last-epoch checkpoint) and the settings the tuned
    protocol chooses (``kl_weight`` of a VAE, ``beta`` of a VQ-VAE, ``lr``, ``batch_size``)."""
    ckpt = Path(ckpt)
    stored = load_checkpoint(ckpt)
    last = stored
    if ckpt.stem.endswith("_best"):
        last = load_checkpoint(ckpt.with_name(ckpt.name.replace("_best", "")))
    config = stored.get("config", {})
    return {"epochs_trained": int(last["epoch"]), "best_epoch": int(stored["epoch"]),
            **{k: config.get(k, float("nan")) for k in ("kl_weight", "beta", "lr", "batch_size")}}


# --- the builders -------------------------------------------------------------------

def batched(fn, images: torch.Tensor, device, batch_size: int = 1000) -> list:
    """``fn`` on the images in batches on ``device``; outputs on the CPU."""
    return [fn(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]


@torch.no_grad()
def build_vae(run: SeedRun, method: vocab.Method, K: int, variant: dict) -> Evaluated:
    """The unquantized VAE: decode the test latent means."""
    arch = arch_of(method.name)
    vae = run.vae_for(arch)
    return Evaluated(vae.decode_logits(torch.from_numpy(run.latents(arch)[1])), method.bits(K), None,
                     None, None, run.vae_seconds[arch], training_info(run.vae_files[arch]))


@torch.no_grad()
def build_vqvae(run: SeedRun, method: vocab.Method, K: int, variant: dict) -> Evaluated:
    """An end-to-end VQ-VAE: its own encoder, codebook and decoder."""
    start = time.perf_counter()
    arch = method.options["arch"]
    ckpt = vqvae_checkpoint(run.args, arch, K, run.seed, method.options)
    model = rebuild(load_checkpoint(ckpt, run.device), VQVAE, run.device, ckpt).eval()
    training = training_info(ckpt)
    fit_seconds = time.perf_counter() - start
    if variant.get("decoder") == "finetuned":  # the same decoder treatment as a-posteriori codes
        model, seconds, tuned = finetuned_vqvae(run, method, K, model)
        fit_seconds += seconds
        training = {**training, **tuned}
    out = batched(model, run.test.images, run.device)
    logits = torch.cat([o.recon_logits.cpu() for o in out])
    test_codes = torch.cat([o.indices.cpu() for o in out]).numpy()
    # the training split's codes: its dead codes, and with one code per image the label votes
    train_codes = torch.cat([c.cpu() for c in batched(model.encode, run.train.images,
                                                      run.device)]).numpy()
    latent = {"z_test": run.z_test} if method.codes_per_image == 1 else None
    return Evaluated(logits, model.bits_per_image, test_codes, train_codes, latent, fit_seconds,
                     training)


def vqvae_decoder_config(args, method: vocab.Method, K: int, seed: int) -> dict:
    """What identifies a VQ-VAE's copy whose decoder was fine-tuned on its frozen codes."""
    return {**vqvae_config(args, method.options["arch"], K, seed, method.options),
            "decoder": "finetuned", **finetune_fields(args)}


def vqvae_decoder_path(args, method: vocab.Method, K: int, seed: int) -> Path:
    """Where :func:`finetuned_vqvae` caches that copy."""
    return paths.cached_quantizer(args.work_dir, f"{method.name}-decoder", K,
                                  config_hash(vqvae_decoder_config(args, method, K, seed)))


def finetuned_vqvae(run: SeedRun, method: vocab.Method, K: int, model: VQVAE):
    """The copy of the run's VQ-VAE ``model`` whose decoder is fine-tuned on its own
    frozen codes (cached; :func:`tuned_copy`'s return)."""
    def codes(images):
        return torch.cat([model.quantizer.lookup(model.encode(b)).cpu()
                          for b in batched(lambda x: x, images, run.device)])

    return tuned_copy(run, model, codes, vqvae_decode, model.model_args,
                      vqvae_decoder_config(run.args, method, K, run.seed),
                      vqvae_decoder_path(run.args, method, K, run.seed),
                      f"{method.name} K={K} fine-tuned decoder")


def finetuned_decoder_file(run: SeedRun, name: str, K: int, variant: dict) -> Path:
    """The cached file of the copy whose decoder was fine-tuned on the codes of method
    ``name``'s cell (:func:`tuned_copy`'s: a VQ-VAE's, or an a-posteriori cell's VAE),
    fine-tuned first when it is not cached."""
    method = vocab.get(name)
    if method.build == "vqvae":
        path = vqvae_decoder_path(run.args, method, K, run.seed)
        if not path.is_file():
            model = vqvae_for(run.args, method.options["arch"], K, run.seed, run.device,
                              method.options)
            finetuned_vqvae(run, method, K, model)
        return path
    path = decoder_path(run.args, name, K, run.seed, variant)
    if not path.is_file():
        decoder_for(run, name, K, variant, quantizer_for(run, name, K, variant)[0])
    return path


@torch.no_grad()
def build_quantizer(run: SeedRun, method: vocab.Method, K: int, variant: dict) -> Evaluated:
    """An a-posteriori quantizer on the VAE's latent means, decoded by the VAE
    (or by its decoder fine-tuned on the codes). A grid method quantizes each of
    an image's 49 latent vectors and decodes the 7x7 map of code vectors; its
    codes carry no one-code label votes or latent geometry, as vqvae-conv's."""
    arch = arch_of(method.name)
    q, fit_seconds = quantizer_for(run, method.name, K, variant)
    vae, tune_seconds, tuned = decoder_for(run, method.name, K, variant, q)
    z_train, z_test = run.latents(arch)
    test_codes, test_vectors = quantized_latents(q, z_test)
    train_codes, latent = None, None
    if arch == "mlp":
        train_codes = quantized_latents(q, z_train)[0]
        latent = {"graph": run.graph, "z_train": z_train, "z_test": z_test,
                  "codebook": q.codebook.numpy(), "n_neighbors": run.args.n_neighbors}
    return Evaluated(vae.decode_logits(test_vectors), method.bits(K), test_codes, train_codes, latent,
                     fit_seconds + tune_seconds, {**training_info(run.vae_files[arch]), **tuned})


class Builder(NamedTuple):
    """How one kind of method is built: ``config(args, method, K, seed)`` is cheap
    (no training) and identifies the model; ``build(run, method, K)`` makes it."""

    config: Callable[..., dict]
    build: Callable[[SeedRun, vocab.Method, int, dict], Evaluated]


BUILDERS: dict[str, Builder] = {
    "vae": Builder(lambda args, m, K, seed, v: vae_config(args, seed), build_vae),
    "vqvae": Builder(lambda args, m, K, seed, v: (
        vqvae_decoder_config(args, m, K, seed) if v.get("decoder") == "finetuned"
        else vqvae_config(args, m.options["arch"], K, seed, m.options)), build_vqvae),
    "quantizer": Builder(lambda args, m, K, seed, v: quantizer_config(args, m.name, K, seed, v),
                         build_quantizer),
}


def method_config(args, name: str, K: int, seed: int, variant: dict) -> dict:
    """What identifies the row of method ``name`` at K, ``seed`` and ablation cell."""
    method = vocab.get(name)
    return {"method": name, "K": K, **BUILDERS[method.build].config(args, method, K, seed, variant)}


def evaluate(run: SeedRun, name: str, K: int, variant: dict) -> Evaluated:
    """Build method ``name`` at codebook size K and ablation cell ``variant`` for the run's seed."""
    method = vocab.get(name)
    return BUILDERS[method.build].build(run, method, K, variant)


# --- cached models only: evaluating what a sweep trained, never training ---------------

class CacheMiss(UserError):
    """A model asked for under :func:`cached_only` is not in the work folder."""


_CACHED_ONLY = [False]  # set by cached_only(); read where a miss would train or fit


@contextmanager
def cached_only(on: bool = True):
    """Within the block, a model that is not cached yet raises :class:`CacheMiss`
    (one line: what and where) instead of being trained, fitted or fine-tuned, so
    nothing is written into the work folder."""
    before = _CACHED_ONLY[0]
    _CACHED_ONLY[0] = on
    try:
        yield
    finally:
        _CACHED_ONLY[0] = before


def refuse_miss(what: str, path: Path) -> None:
    """Raise :class:`CacheMiss` for ``what`` (not cached at ``path``) under :func:`cached_only`."""
    if _CACHED_ONLY[0]:
        raise CacheMiss(f"{what} is not cached ({path} is missing or unfinished); pass the flags "
                        f"of the sweep that trained it (index.csv in the work folder lists what is "
                        f"cached), or drop --cached-only to train it")


def cell_files(args, method: str, K: int, seed: int, variant: dict) -> dict[str, tuple[str, Path]]:
    """The cached files one row is built from, computed from configs alone (nothing
    is trained): {part: (its config hash, its path)}, parts among "vae", "vqvae",
    "quantizer" and "decoder" (a fine-tuned one)."""
    m = vocab.get(method)
    if m.build == "vqvae":
        kind, config, name = vqvae_cache_key(args, m.options["arch"], K, seed, m.options)
        files = {"vqvae": (config_hash(config), cached_checkpoint(kind, args.work_dir, config, name))}
        if variant.get("decoder") == "finetuned":
            files["decoder"] = (config_hash(vqvae_decoder_config(args, m, K, seed)),
                                vqvae_decoder_path(args, m, K, seed))
        return files
    kind, config, name = vae_cache_key(args, seed, arch_of(method))
    files = {"vae": (config_hash(config), cached_checkpoint(kind, args.work_dir, config, name))}
    if m.build == "quantizer":
        cell = {k: v for k, v in variant.items() if k != "decoder"}
        files["quantizer"] = (config_hash(quantizer_config(args, method, K, seed, cell)),
                              quantizer_path(args, method, K, seed, variant))
        if variant.get("decoder") == "finetuned":
            files["decoder"] = (config_hash(quantizer_config(args, method, K, seed, variant)),
                                decoder_path(args, method, K, seed, variant))
    return files
