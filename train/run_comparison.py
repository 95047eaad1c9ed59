"""The comparison: four discrete representations, one evaluation, many seeds.

    python train/run_comparison.py --dataset fashion-mnist --codebook-sizes 16 32 64 128 256 512 \
        --seeds 0 1 2

For every dataset x K x seed, trains or reuses (by config hash) and evaluates
on the held-out test split, through one function (:func:`utils.metrics.evaluate_codes`):

* ``vqvae-global``: end-to-end VQ-VAE, one code per image (log2 K bits);
* ``vqvae-conv``:   end-to-end VQ-VAE on a 7x7 grid (49 log2 K bits);
* ``kmeans-vae``:   k-means on the VAE's latent means (log2 K bits), the ablation;
* ``geodesic-vae``: geodesic k-medoids on the VAE's latent means (log2 K bits);
* ``vae-continuous``: the VAE itself, unquantized (K = 0), the reference that
  bounds both a-posteriori methods, which decode through its decoder.

Rows are appended to <results-dir>/comparison.csv as each finishes (a rerun
skips finished rows); <results-dir>/summary.csv holds mean and std over seeds.
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.geodesic_vq import EuclideanQuantizer, GeodesicQuantizer
from models.vae import VAE
from models.vqvae import VQVAE
from utils import metrics
from utils.checkpoint import load_checkpoint, rebuild, save_checkpoint
from utils.cli import make_parser, positive_int, run_main
from utils.datasets import DATASETS, load_dataset
from utils.runtime import pick_device, print_args, write_run_record

METHODS = ("vqvae-global", "vqvae-conv", "kmeans-vae", "geodesic-vae", "vae-continuous")
KEY = ["dataset", "setting", "method", "K", "seed", "config_hash"]
METRICS = metrics.CODE_METRICS
COLUMNS = KEY + ["dataset_used"] + METRICS + ["epochs", "n_neighbors", "n_train", "n_test",
                                               "fit_seconds", "eval_seconds", "wall_seconds"]
QUICK = {"codebook_sizes": [16, 64, 256], "seeds": [0, 1, 2], "epochs": 5}


def parse_args(argv=None):
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=DATASETS,
                   help="dataset; mnist falls back to mnist-5k offline")
    p.add_argument("--codebook-sizes", type=positive_int, nargs="+",
                   default=[16, 32, 64, 128, 256, 512], help="codebook sizes K")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="training epochs of the VAE and of both VQ-VAEs")
    p.add_argument("--conv-epochs", type=positive_int, default=None,
                   help="epochs of vqvae-conv (default: --epochs)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="methods to run")
    p.add_argument("--n-neighbors", type=positive_int, default=10, help="k of the k-NN graph")
    p.add_argument("--quick", action="store_true",
                   help=f"quick setting: K {QUICK['codebook_sizes']}, seeds {QUICK['seeds']}, "
                        f"{QUICK['epochs']} epochs (overrides those flags)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N train/test images")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="dataset folder")
    p.add_argument("--work-dir", type=Path, default=Path("experiments/comparison"),
                   help="trained models, cached by config hash")
    p.add_argument("--results-dir", type=Path, default=Path("experiments/results"),
                   help="comparison.csv and summary.csv go here")
    p.add_argument("--figure-k", type=positive_int, default=64,
                   help="codebook size shown in the image figures (else the middle K)")
    p.add_argument("--no-figures", action="store_true", help="skip the image figures")
    args = p.parse_args(argv)
    args.setting = "quick" if args.quick else "full"
    if args.quick:
        args.codebook_sizes, args.seeds, args.epochs = (QUICK["codebook_sizes"], QUICK["seeds"],
                                                        QUICK["epochs"])
    args.conv_epochs = args.conv_epochs or args.epochs
    return args


def config_hash(config: dict) -> str:
    """Short stable hash of a config of plain values."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


# --- results file -------------------------------------------------------------------

def finished_keys(path: Path) -> set[tuple]:
    """Keys of the rows already in comparison.csv."""
    if not path.is_file():
        return set()
    df = pd.read_csv(path, dtype=str)
    return {tuple(r) for r in df[KEY].itertuples(index=False)}


def append_row(path: Path, row: dict) -> None:
    """Append one row (header first when the file is new), flushed at once."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def write_summary(results: Path, out: Path) -> pd.DataFrame:
    """Mean and std over seeds of every metric, per dataset, setting, method and K."""
    df = pd.read_csv(results)
    group = ["dataset", "dataset_used", "setting", "method", "K"]
    agg = df.groupby(group)[METRICS + ["fit_seconds"]].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg.insert(0, "n_seeds", df.groupby(group)["seed"].nunique())
    agg = agg.reset_index()
    agg.to_csv(out, index=False, float_format="%.6g")
    return agg


# --- training or reusing models ----------------------------------------------------

def trained_checkpoint(kind: str, script, argv: list[str], work_dir: Path, config: dict,
                       ckpt_name: str) -> Path:
    """Train with ``script.main`` into work_dir/<kind>-<hash>/ unless a
    finished checkpoint for this config is there; a partial one is resumed."""
    run_dir = work_dir / f"{kind}-{config_hash(config)}"
    ckpt = run_dir / "checkpoints" / ckpt_name
    if ckpt.is_file():
        if load_checkpoint(ckpt)["epoch"] >= config["epochs"]:
            return ckpt
        argv = argv + ["--resume"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    script.main(script.parse_args(argv + ["--out-dir", str(run_dir), "--no-plots"]))
    return ckpt


def common_argv(args, seed: int, epochs: int) -> list[str]:
    argv = ["--dataset", args.dataset, "--seed", str(seed), "--epochs", str(epochs),
            "--device", args.device, "--data-root", str(args.data_root)]
    return argv + (["--limit", str(args.limit)] if args.limit else [])


def vae_for_seed(args, seed: int, device) -> VAE:
    from train import train_vae

    config = {"stage": "vae", "dataset": args.dataset, "seed": seed, "epochs": args.epochs,
              "limit": args.limit, "latent_dim": 20}
    ckpt = trained_checkpoint("vae", train_vae, common_argv(args, seed, args.epochs),
                              args.work_dir, config, f"vae_{args.dataset}.pt")
    return rebuild(load_checkpoint(ckpt, device), VAE, device, ckpt).eval()


def vqvae_for(args, arch: str, K: int, seed: int, device) -> VQVAE:
    from train import train_vqvae

    epochs = args.conv_epochs if arch == "conv" else args.epochs
    config = {"stage": f"vqvae-{arch}", "dataset": args.dataset, "seed": seed, "epochs": epochs,
              "limit": args.limit, "K": K}
    argv = common_argv(args, seed, epochs) + ["--arch", arch, "--codebook-size", str(K)]
    ckpt = trained_checkpoint(f"vqvae_{arch}_K{K}", train_vqvae, argv, args.work_dir, config,
                              f"vqvae_{arch}_{args.dataset}.pt")
    return rebuild(load_checkpoint(ckpt, device), VQVAE, device, ckpt).eval()


def quantizer_for(args, method: str, K: int, seed: int, z_train, graph, device):
    """Fit (or load) an a-posteriori quantizer; returns it and its fit seconds."""
    config = {"stage": method, "dataset": args.dataset, "seed": seed, "epochs": args.epochs,
              "limit": args.limit, "K": K, "n_neighbors": args.n_neighbors}
    path = args.work_dir / f"{method}_K{K}-{config_hash(config)}.pt"
    cls = GeodesicQuantizer if method == "geodesic-vae" else EuclideanQuantizer
    if path.is_file():
        ckpt = load_checkpoint(path)
        return cls.from_state_dict(ckpt["quantizer"]), ckpt["fit_seconds"]
    start = time.perf_counter()
    if cls is GeodesicQuantizer:
        q = GeodesicQuantizer(K, args.n_neighbors, seed, device=str(device)).fit(z_train, graph=graph)
    else:
        q = EuclideanQuantizer(K, seed).fit(z_train)
    seconds = time.perf_counter() - start
    save_checkpoint(path, {"quantizer": q.state_dict(), "config": config, "fit_seconds": seconds})
    return q, seconds


# --- the sweep ---------------------------------------------------------------------

@torch.no_grad()
def run_seed(args, seed: int, train, test, device, done: set, results: Path) -> None:
    """Every method and K for one seed; appends each finished row."""
    def key(method, K):
        cfg = {"dataset": args.dataset, "method": method, "K": K, "seed": seed,
               "epochs": args.conv_epochs if method == "vqvae-conv" else args.epochs,
               "limit": args.limit, "n_neighbors": args.n_neighbors}
        return cfg, (args.dataset, args.setting, method, str(K), str(seed), config_hash(cfg))

    def record(method, K, cfg, k, fit_seconds, eval_start, row):
        row.update(dataset=args.dataset, setting=args.setting, method=method, K=K, seed=seed,
                   config_hash=k[-1], dataset_used=train.name, epochs=cfg["epochs"],
                   n_neighbors=args.n_neighbors, n_train=len(train.labels), n_test=len(test.labels),
                   fit_seconds=fit_seconds, eval_seconds=time.perf_counter() - eval_start)
        row["wall_seconds"] = row["fit_seconds"] + row["eval_seconds"]
        append_row(results, row)
        done.add(k)
        print(f"[{args.dataset} seed {seed}] {method:14s} K={K:<4d} bits={row['bits_per_image']:<6.4g} "
              f"MSE {row['test_mse']:.4f} NMI {row['nmi']:.3f} acc {row['code_to_label_accuracy']:.3f}",
              file=sys.stderr)

    labels = {"train_labels": train.labels.numpy(), "test_labels": test.labels.numpy()}
    todo = [(m, K) for m in args.methods for K in ([0] if m == "vae-continuous" else args.codebook_sizes)
            if key(m, K)[1] not in done]
    if not todo:
        return
    vae_start = time.perf_counter()
    vae = vae_for_seed(args, seed, device)
    vae_seconds = time.perf_counter() - vae_start
    z_train = vae.latent_means(train.images).numpy()
    z_test = vae.latent_means(test.images).numpy()
    graph, graph_seconds = None, 0.0
    for method, K in todo:
        cfg, k = key(method, K)
        start = time.perf_counter()
        if method == "vae-continuous":
            row = metrics.evaluate_codes(recon_logits=vae.decode_logits(torch.from_numpy(z_test)),
                                 x_test=test.images, bits=float("nan"))
            record(method, K, cfg, k, vae_seconds, start, row)
        elif method.startswith("vqvae"):
            arch = method.split("-")[1]
            model = vqvae_for(args, arch, K, seed, device)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            out = [model(test.images[i:i + 1000].to(device)) for i in range(0, len(test.images), 1000)]
            logits = torch.cat([o.recon_logits.cpu() for o in out])
            test_codes = torch.cat([o.indices.cpu() for o in out]).numpy()
            train_codes = None  # label votes need one code per image (global only)
            if arch == "global":
                train_codes = torch.cat([model.encode(train.images[i:i + 1000].to(device)).cpu()
                                         for i in range(0, len(train.images), 1000)]).numpy()
            row = metrics.evaluate_codes(recon_logits=logits, x_test=test.images, bits=model.bits_per_image,
                                 test_codes=test_codes, train_codes=train_codes, n_codes=K,
                                 latent={"z_test": z_test}, **labels)
            record(method, K, cfg, k, fit_seconds, start, row)
        else:
            if graph is None:
                g_start = time.perf_counter()
                graph = GeodesicQuantizer.build_graph(z_train, args.n_neighbors)
                graph_seconds = time.perf_counter() - g_start
            q, fit_seconds = quantizer_for(args, method, K, seed, z_train, graph, device)
            if method == "geodesic-vae":
                fit_seconds += graph_seconds
            start = time.perf_counter()
            qt = q.quantize(z_test)
            row = metrics.evaluate_codes(recon_logits=vae.decode_logits(qt.codes), x_test=test.images,
                                 bits=float(np.log2(K)), test_codes=qt.indices.numpy(),
                                 train_codes=q.quantize(z_train).indices.numpy(), n_codes=K,
                                 latent={"graph": graph, "z_train": z_train, "z_test": z_test,
                                         "codebook": q.codebook.numpy(),
                                         "n_neighbors": args.n_neighbors}, **labels)
            record(method, K, cfg, k, fit_seconds, start, row)


@torch.no_grad()
def draw_figures(args, train, test, device, K: int, seed: int) -> list[Path]:
    """Figures that need the models (seed ``seed``, codebook size K, all cached):
    decoded codebooks side by side, the same test images through every method,
    the latent map with geodesic medoids and k-means centroids, code usage."""
    from utils import plot

    fig_dir = args.results_dir / "figures"
    tag = f"{args.dataset}_{args.setting}"
    vae = vae_for_seed(args, seed, device)
    z_train = vae.latent_means(train.images).numpy()
    graph = GeodesicQuantizer.build_graph(z_train, args.n_neighbors)
    x = test.images[:16]
    z = vae.latent_means(x)
    rows = {"VAE (continuous)": torch.sigmoid(vae.decode_logits(z))}
    codebooks, usage, markers = {}, {}, {}
    for method in args.methods:
        if method.startswith("vqvae"):
            arch = method.split("-")[1]
            model = vqvae_for(args, arch, K, seed, device)
            rows[method] = torch.sigmoid(model(x.to(device)).recon_logits.cpu())
            codes = torch.cat([model.encode(test.images[i:i + 1000].to(device)).cpu()
                               for i in range(0, len(test.images), 1000)])
            usage[method] = metrics.code_counts(codes, K)
            if arch == "global":
                codebooks[f"{method} codes"] = model.decode_indices(torch.arange(K, device=device)).cpu()
        elif method in ("kmeans-vae", "geodesic-vae"):
            q, _ = quantizer_for(args, method, K, seed, z_train, graph, device)
            rows[method] = torch.sigmoid(vae.decode_logits(q.quantize(z.numpy()).codes))
            usage[method] = metrics.code_counts(q.quantize(vae.latent_means(test.images).numpy()).indices, K)
            name = "k-means centroids" if method == "kmeans-vae" else "geodesic medoids"
            codebooks[f"{method}: {name}"] = torch.sigmoid(vae.decode_logits(q.codebook))
            markers[name] = q.codebook.numpy()
    where = f"{train.name}, K={K}, seed {seed}"
    paths = plot.plot_codebooks_side_by_side(codebooks, fig_dir / f"codebooks_{tag}",
                                             title=f"decoded codebooks ({where}; first 64 codes)")
    paths += plot.plot_reconstructions(x, None, fig_dir / f"reconstructions_{tag}", n=16, rows=rows,
                                       title=f"the same test images through every method ({where})")
    paths += plot.plot_latent_graph(z_train, train.labels.numpy(), graph,
                                    fig_dir / f"latent_map_{tag}", markers=markers,
                                    title=f"VAE latents of {train.name} (PCA), k-NN graph, codes (K={K})")
    paths += plot.plot_usage_panels(usage, fig_dir / f"usage_{tag}",
                                    title=f"code usage on the test split ({where})")
    return paths


def main(args):
    print_args(args)
    device = pick_device(args.device)
    results = args.results_dir / "comparison.csv"
    train = load_dataset(args.dataset, "train", args.data_root, limit=args.limit)
    test = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    too_big = [K for K in args.codebook_sizes if K > len(train.labels)]
    if too_big:
        raise ValueError(f"--codebook-sizes {too_big} exceed the {len(train.labels)} training "
                         f"images; use K <= N")
    write_run_record(args.results_dir / f"comparison_{args.dataset}_{args.setting}_run.json", args,
                     dataset=train.name, data_source=train.source, device=str(device),
                     torch_threads=torch.get_num_threads())
    done = finished_keys(results)
    for seed in args.seeds:
        run_seed(args, seed, train, test, device, done, results)
    summary = write_summary(results, args.results_dir / "summary.csv")
    if not args.no_figures:
        K = args.figure_k if args.figure_k in args.codebook_sizes else sorted(args.codebook_sizes)[
            len(args.codebook_sizes) // 2]
        for path in draw_figures(args, train, test, device, K, args.seeds[0]):
            print(f"wrote {path}", file=sys.stderr)
    print(f"wrote {results} and {args.results_dir / 'summary.csv'} ({len(summary)} groups)",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
