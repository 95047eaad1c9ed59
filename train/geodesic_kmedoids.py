"""Geodesic k-medoids codes for any set of vectors (your own latents), from the command line.

    geodesic-kmedoids latents.npy -K 512 -k 10 -o codes.npz
    python train/geodesic_kmedoids.py latents.npz --key z -K 64 --weights counts.npy

Reads an (N, d) array from .npy, .npz or .pt (a tensor, or a dict / archive of
arrays picked by --key), fits :class:`models.geodesic_kmedoids.GeodesicKMedoids`
(geodesic k-medoids on the repaired k-NN graph, per-row weights optional) and
writes one .npz: ``indices`` (N,) int64 the code of every row, ``medoids``
(K, d) the code vectors (rows of the input), ``medoid_indices`` (K,) their
rows, ``distances`` (N,) the geodesic distance of every row to its medoid,
and ``inertia`` (the weighted sum of those distances) with the settings.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.geodesic_kmedoids import GeodesicKMedoids
from utils.cli import SEED_HELP, make_parser, non_negative_float, non_negative_int, positive_int, run_main, seed_int
from utils.errors import UserError
from utils.runtime import atomic_file

SUFFIXES = (".npy", ".npz", ".pt")


@dataclass(frozen=True)
class Config:
    """Everything one run reads; ``vars`` of it is written beside the codes."""

    latents: Path
    output: Path
    n_clusters: int = 512
    n_neighbors: int = 10
    key: str | None = None
    weights: Path | None = None
    weights_key: str | None = None
    seed: int = 0
    swap_budget: float | None = None
    init: str = "k-medoids++"
    alternating_steps: int = 3
    device: str = "cpu"
    progress: bool = False


def parse_args(argv=None) -> Config:
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("latents", type=Path, help="the (N, d) vectors: a .npy, .npz or .pt file")
    p.add_argument("-K", "--n-clusters", type=positive_int, default=512,
                   help="number of codes (medoids) K, at most N")
    p.add_argument("-k", "--n-neighbors", type=positive_int, default=10,
                   help="k of the k-NN graph whose shortest paths are the geodesics")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="the .npz written; none: <latents>_codes.npz beside the input")
    p.add_argument("--key", default=None,
                   help="the array to read from a .npz or from a dict saved in a .pt; "
                        "none: the only one there")
    p.add_argument("--weights", type=Path, default=None,
                   help="(N,) non-negative per-row weights (.npy, .npz or .pt); a row of weight w "
                        "counts as w copies, weight 0 as absent; none: all 1")
    p.add_argument("--weights-key", default=None, help="the array of --weights to read, as --key")
    p.add_argument("--seed", type=seed_int, default=0, help=SEED_HELP)
    p.add_argument("--swap-budget", type=non_negative_float, default=None,
                   help="cap the swap phase at this many node visits per row (max_swap_visits = "
                        "budget x N): 32 fits 300,000 vectors about 3x faster for ~2%% more loss "
                        "(docs/benchmarks.md); 0 skips the swaps; none: geodesic_kmedoids's auto cap")
    p.add_argument("--init", choices=("k-medoids++", "k-means"), default="k-medoids++",
                   help="the start: geodesic k-medoids++, or faiss k-means centroids snapped to "
                        "the nearest vectors")
    p.add_argument("--alternating-steps", type=non_negative_int, default=3,
                   help="Voronoi steps before the swaps. For 2.94M vectors at K = 512, "
                        "'--init k-means --swap-budget 16 --alternating-steps 1' fits in 127 s "
                        "(graph + fit 209 s) for 0.1%% more loss than 3 steps (docs/benchmarks.md)")
    p.add_argument("--device", default="cpu", help="torch device of the k-medoids swap step")
    p.add_argument("--progress", action="store_true", default=sys.stderr.isatty(),
                   help="print the stages and their times on stderr (the default on a terminal)")
    args = p.parse_args(argv)
    output = args.output or args.latents.with_name(args.latents.stem + "_codes.npz")
    return Config(latents=args.latents, output=output, n_clusters=args.n_clusters,
                  n_neighbors=args.n_neighbors, key=args.key, weights=args.weights,
                  weights_key=args.weights_key, seed=args.seed, swap_budget=args.swap_budget,
                  init=args.init, alternating_steps=args.alternating_steps, device=args.device,
                  progress=args.progress)


# ----------------------------------------------------------------------------- reading

def _pick(arrays: dict, key: str | None, path: Path):
    if key is not None:
        if key not in arrays:
            raise UserError(f"{path}: no array {key!r}; it holds {sorted(arrays)}")
        return arrays[key]
    if len(arrays) != 1:
        raise UserError(f"{path}: holds {len(arrays)} arrays {sorted(arrays)}; choose one with --key")
    return next(iter(arrays.values()))


def read_array(path: Path, key: str | None = None) -> np.ndarray:
    """The array stored in a .npy, .npz or .pt file (``key``: which one of several)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"{path}: expected a {', '.join(SUFFIXES)} file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix == ".pt":
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = _pick(obj, key, path)
            value = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                value = _pick({k: archive[k] for k in archive.files}, key, path)
        else:
            value = np.load(path, allow_pickle=False)
    except UserError:
        raise
    except Exception as err:  # a truncated or foreign file: say which, in one line
        raise UserError(f"{path}: cannot be read as {path.suffix} ({type(err).__name__}: {err})") from None
    if value.dtype.kind not in "biuf":
        raise UserError(f"{path}: holds {value.dtype} values, expected numbers")
    return value


def read_latents(path: Path, key: str | None = None) -> np.ndarray:
    """(N, d) finite float vectors, N >= 1 and d >= 1; float32 stays float32."""
    Z = read_array(path, key)
    if Z.ndim != 2:
        raise UserError(f"{path}: expected an (N, d) array of vectors, got shape {Z.shape}"
                        + ("; reshape it to (N, d) first" if Z.ndim > 2 else ""))
    if Z.size == 0:
        raise UserError(f"{path}: is empty, shape {Z.shape}")
    Z = Z if Z.dtype in (np.float32, np.float64) else Z.astype(np.float64)
    finite = np.isfinite(Z).all(axis=1)
    if not finite.all():
        raise UserError(f"{path}: {int((~finite).sum())} of {len(Z)} rows hold NaN or inf "
                        f"(first: row {int(np.flatnonzero(~finite)[0])})")
    return Z


def read_weights(path: Path, n_rows: int, key: str | None = None) -> np.ndarray:
    """(N,) finite non-negative weights with a positive sum."""
    w = read_array(path, key)
    if w.shape != (n_rows,):
        raise UserError(f"{path}: expected ({n_rows},) weights, one per row of the latents, "
                        f"got shape {w.shape}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise UserError(f"{path}: weights must be finite and >= 0 with a positive sum")
    return w


# ----------------------------------------------------------------------------- the run

def quantize_file(cfg: Config) -> dict:
    """Read, fit, write ``cfg.output``; returns what was written."""
    def say(msg: str) -> None:
        if cfg.progress:
            print(f"[{time.perf_counter() - start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    Z = read_latents(cfg.latents, cfg.key)
    weights = None if cfg.weights is None else read_weights(cfg.weights, len(Z), cfg.weights_key)
    if cfg.n_clusters > len(Z):
        raise UserError(f"{cfg.latents}: -K {cfg.n_clusters} is more than its {len(Z)} rows; lower -K")
    if cfg.output.suffix != ".npz":
        raise UserError(f"{cfg.output}: the output is a .npz file")
    say(f"read {Z.shape[0]} x {Z.shape[1]} {Z.dtype} vectors from {cfg.latents}; "
        f"k-NN graph (k = {cfg.n_neighbors}) and geodesic k-medoids (K = {cfg.n_clusters})")
    cap = "auto" if cfg.swap_budget is None else int(cfg.swap_budget * len(Z))
    km = GeodesicKMedoids(cfg.n_clusters, n_neighbors=cfg.n_neighbors, random_state=cfg.seed,
                          max_swap_visits=cap, init=cfg.init, max_iter=cfg.alternating_steps,
                          device=cfg.device).fit(Z, sample_weight=weights)
    say(f"fitted: {len(km.nodes_)} distinct vectors, inertia {km.inertia_:.6g}; assigning every row")
    labels, distances = km.assign(Z)  # labels == km.labels_: every row is a node, or weight 0
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                if k != "progress" and v is not None}
    out = {"indices": labels, "medoids": km.cluster_centers_,
           "medoid_indices": km.medoid_indices_, "distances": distances.astype(np.float32),
           "inertia": np.float64(km.inertia_), **{f"config_{k}": np.asarray(v) for k, v in settings.items()}}
    with atomic_file(cfg.output) as f:
        np.savez(f, **out)
    say(f"wrote {cfg.output}")
    return out


def main(cfg: Config) -> dict:
    out = quantize_file(cfg)
    print(f"wrote {cfg.output}: {len(out['indices'])} codes in [0, {cfg.n_clusters}), "
          f"{len(np.unique(out['indices']))} used, inertia {float(out['inertia']):.6g}")
    return out


def cli(argv=None) -> int:
    """The ``geodesic-kmedoids`` console entry point (pyproject ``[project.scripts]``)."""
    return run_main(main, parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
