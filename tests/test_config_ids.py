"""The published rows stay addressable: recomputing their config ids with today's code.

A row's ``config_id`` hashes the configs of the models it came from
(train/comparison_methods.py), each by one rule (utils.cli.config_key): every
field of a training script's config dataclass that is not run-only and not at
its declared default (a quantizer's parameters: not at its constructor's
default). A flag added later with a default that trains what came before it is
then absent from every earlier key, so rerunning the published command (to add
seeds or K) extends the published rows instead of starting new ones. These tests
recompute, from every run recorded beside the published results, the ids of
every published row; the training scripts' configs (train/train_*.py) are their
flags: the cache key of a config built in code is that of the same command line.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from train import comparison_methods as cm
from train import run_comparison as rc
from utils import paths
from utils.cli import config_key, run_only
from utils.results import config_hash, row_key

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
# v1/ is archived as it was published, with the ids of the rule of its day.
# the tuned protocol's folders (train/run_tuned.py) key their rows by its selection table too
TUNED = sorted(p for p in RESULTS.glob(f"**/{paths.TUNED_DIR}") if p.is_dir())
FOLDERS = sorted({p.parent for p in RESULTS.glob("**/comparison.csv")} - {RESULTS / "v1", *TUNED})
CELL = ("edge_length", "code_vectors", "decoder")


def recorded_runs(record: Path) -> list[list[str]]:
    """The argv (without the script) of every run a record names, newest first."""
    newest = json.loads(record.read_text())
    return [run["argv"][1:] for run in [newest, *newest.get("earlier", [])]]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)) or "results")
def test_every_published_comparison_row_recomputes_its_config_ids(folder):
    """Every row of a comparison.csv has the ids a run recorded beside it computes
    today for its cell (so rerunning that command finds it done)."""
    ours = {}
    for record in folder.glob("comparison_*_run.json"):
        for argv in recorded_runs(record):
            args = rc.parse_args(argv)
            for seed in args.seeds:
                for method, K, cell in rc.sweep_cells(args):
                    ident = rc.row_identity(args, method, K, seed, cell or None)
                    key = (ident["dataset"], ident["setting"], method, K, seed,
                           *(ident.get(c, "") for c in CELL))
                    ours.setdefault(key, set()).add((ident["config_hash"], ident["config_id"]))
    rows = read_rows(folder / "comparison.csv")
    for r in rows:
        key = (r["dataset"], r["setting"], r["method"], int(r["K"]), int(r["seed"]), *(r[c] for c in CELL))
        assert (r["config_hash"], r["config_id"]) in ours.get(key, set()), key
    assert rows


def test_a_field_at_its_declared_default_is_not_part_of_the_key():
    from train import train_vae

    plain = config_key(train_vae.VAEConfig(dataset="mnist", arch="conv"))
    assert "kl_weight" not in plain and "resume" not in plain
    beta = config_key(train_vae.VAEConfig(dataset="mnist", arch="conv", kl_weight=0.5))
    assert beta["kl_weight"] == 0.5
    assert {k: v for k, v in beta.items() if k != "kl_weight"} == plain


def test_a_field_added_later_at_a_neutral_default_leaves_the_key_unchanged():
    """The rule itself keeps old ids: a config class that gained a field (at the
    default that does what came before) keys an old config as before, and a new
    value of that field gets a new key."""
    from train import train_vqvae

    old = train_vqvae.VQVAETrainConfig(dataset="fashion-mnist", codebook_size=64, epochs=3)
    Later = dataclasses.make_dataclass("Later", [("new_trick", float, dataclasses.field(default=0.0)),
                                                 ("new_out", str, run_only("x"))],
                                       bases=(train_vqvae.VQVAETrainConfig,))
    later = Later(dataset="fashion-mnist", codebook_size=64, epochs=3)
    assert config_hash(config_key(later)) == config_hash(config_key(old))
    assert config_hash(config_key(dataclasses.replace(later, new_out="y"))) == config_hash(config_key(old))
    assert config_key(dataclasses.replace(later, new_trick=0.5)) == {**config_key(old), "new_trick": 0.5}


def test_a_cache_hit_trained_under_another_default_is_refused(tmp_path, monkeypatch):
    """The key leaves defaults out, so a changed declared default (here the learning rate)
    keeps the key: the cached model's stored config then disagrees, and the runner says so
    in one line instead of silently reusing a model trained otherwise."""
    from train import train_vae
    from utils.checkpoint import save_checkpoint
    from utils.cli import config_mismatches
    from utils.errors import UserError
    from utils.runtime import plain_config

    cfg = train_vae.VAEConfig(dataset="mnist", seed=0, epochs=1)
    stored = {**plain_config(dataclasses.asdict(cfg)), "lr": 3e-4}  # as fit() stores it
    stored.pop("kl_weight")  # a field the old checkpoint lacks counts as its declared default
    assert config_mismatches(cfg, stored) == {"lr": (3e-4, cfg.lr)}
    assert config_mismatches(cfg, {**plain_config(dataclasses.asdict(cfg)), "out_dir": "x"}) == {}
    ckpt = cm.cached_checkpoint("vae", tmp_path, config_key(cfg), "vae.pt")
    save_checkpoint(ckpt, {"epoch": 1, "config": stored})
    monkeypatch.setattr(train_vae, "train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(UserError, match=r"lr=0\.0003 there, 0\.001 here"):
        cm.trained_checkpoint("vae", train_vae.train, cfg, tmp_path, config_key(cfg), "vae.pt")
    save_checkpoint(ckpt, {"epoch": 1, "config": plain_config(dataclasses.asdict(cfg))})
    assert cm.trained_checkpoint("vae", train_vae.train, cfg, tmp_path, config_key(cfg),
                                 "vae.pt") == ckpt


def test_a_quantizer_parameter_at_its_constructor_default_is_not_part_of_the_key():
    args = rc.parse_args("--dataset mnist --methods geodesic-vae kmeans-vae".split())
    for method in ("geodesic-vae", "kmeans-vae"):
        cell = cm.variants(args, method)[0]
        params = cm.quantizer_config(args, method, 64, 0, cell)["quantizer"]
        q = cm.make_quantizer(method, 64, seed=0, n_neighbors=args.n_neighbors, variant=cell)
        defaults = cm.constructor_defaults(type(q))
        assert params and all(params[k] != defaults.get(k) for k in params), method
        assert "device" not in params


def test_the_sweeps_vae_kl_weight_reaches_the_vae_and_its_rows():
    base = "--dataset fashion-mnist --methods vae-conv geodesic-conv --codebook-sizes 64".split()
    one = rc.parse_args(base)
    tenth = rc.parse_args(base + ["--vae-kl-weight", "0.1"])
    assert cm.vae_train_config(one, 0, "conv").kl_weight == 1.0
    assert cm.vae_train_config(tenth, 0, "conv").kl_weight == 0.1
    for method, K in (("vae-conv", 0), ("geodesic-conv", 64)):
        cell = (cm.variants(one, method) or [{}])[0] or None
        assert (rc.row_identity(one, method, K, 0, cell)["config_id"]
                != rc.row_identity(tenth, method, K, 0, cell)["config_id"])


SUMMARIES = sorted(p for p in RESULTS.glob("**/*summary.csv") if p.parent != RESULTS / "v1")


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_a_summarys_config_ids_are_those_of_its_rows(path):
    rows = path.parent / {"summary.csv": "comparison.csv", "generation_summary.csv": "generation.csv"}[path.name]
    ids = {r["config_id"] for r in read_rows(path)}
    assert ids and ids == {r["config_id"] for r in read_rows(rows)}


GENERATION_FOLDERS = sorted({p.parent for p in RESULTS.glob("**/generation.csv")} - set(TUNED))


def tuned_runs(folder: Path, runner: str):
    """(args, selection table) of every tuned run recorded in ``folder`` by ``runner``
    ("comparison" or "generation")."""
    from train import run_tuned as rt

    for record in folder.glob(f"{runner}_*_tuned-*_run.json"):
        for argv in recorded_runs(record):
            args = rt.parse_args(argv)
            yield args, rt.Selection(folder / f"selection_{args.dataset}.csv", args.dataset)


@pytest.mark.parametrize("folder", TUNED, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_tuned_row_recomputes_its_config_ids(folder):
    """The tuned rows' ids come from the recorded runs and the selection table beside them
    (run_tuned.planned_rows / planned_generation), so rerunning finds every row done."""
    from train import run_tuned as rt

    ours, generated = set(), set()
    for args, table in tuned_runs(folder, "comparison"):
        ours |= {row_key(ident) for *_, ident in rt.planned_rows(args, table)}
    for args, table in tuned_runs(folder, "generation"):
        prior = rt.chosen_prior(args, table)
        sizes = rt.P.generation_sizes(args.codebook_sizes, args.quick)
        generated |= {row_key(ident) for *_, ident in rt.planned_generation(args, table, prior, sizes)}
    rows = read_rows(folder / "comparison.csv")
    assert rows and all(row_key(r) in ours for r in rows)
    if (folder / "generation.csv").is_file():
        assert all(row_key(r) in generated for r in read_rows(folder / "generation.csv"))


@pytest.mark.parametrize("folder", GENERATION_FOLDERS,
                         ids=lambda p: str(p.relative_to(RESULTS)) or "results")
def test_every_published_generation_row_recomputes_its_config_ids(folder):
    """The generation rows' ids cover the classifier's and the prior's training
    configs (train_classifier.ClassifierConfig, train_prior.PriorConfig): the runs
    recorded beside a generation.csv recompute the ids of every row."""
    from train import run_generation as rg

    ours = {}
    for record in folder.glob("generation_*_full_run.json"):
        for argv in recorded_runs(record):
            args = rg.parse_args(argv)
            for seed in args.seeds:
                for method in args.methods:
                    for K in args.codebook_sizes:
                        ident = rg.row_identity(args, method, K, seed)
                        key = (ident["dataset"], ident["setting"], method, K, seed)
                        ours.setdefault(key, set()).add((ident["config_hash"], ident["config_id"]))
    rows = read_rows(folder / "generation.csv")
    for r in rows:
        key = (r["dataset"], r["setting"], r["method"], int(r["K"]), int(r["seed"]))
        assert (r["config_hash"], r["config_id"]) in ours.get(key, set()), key
    assert rows


SCRIPT_CONFIGS = [("train_vae", "VAEConfig"), ("train_vqvae", "VQVAETrainConfig"),
                  ("train_classifier", "ClassifierConfig"), ("train_geodesic", "GeodesicConfig"),
                  ("train_prior", "PriorConfig")]


@pytest.mark.parametrize("script, name", SCRIPT_CONFIGS)
def test_a_scripts_config_is_its_flags(script, name, capsys):
    """Every field of a training script's config is one of its flags with the same
    default (so a config built in code trains what the command line trains, and
    its cache key is that of the same command line), except the fields the
    script sets itself (train_prior's dataset, from its codes)."""
    import importlib

    module = importlib.import_module(f"train.{script}")
    cls = getattr(module, name)
    assert module.parse_args([]) == cls()
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    shown = capsys.readouterr().out
    derived = {"dataset"} if script == "train_prior" else set()
    for f in dataclasses.fields(cls):
        if f.name not in derived:
            assert f"--{f.name.replace('_', '-')}" in shown, f.name


def test_the_published_batch_size_selection_recomputes_its_candidates_hashes():
    """Every candidate of the published selection (train/select_batch_size.py) keeps
    the config hash of its model: the VAE and VQ-VAE training configs at each batch size."""
    from train import select_batch_size as sb

    folder = RESULTS / "batch_size"
    args = sb.parse_args(json.loads((folder / "batch_size_mnist_run.json").read_text())["argv"][1:])
    with open(folder / "batch_size_mnist.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        kind, arch = r["family"].removesuffix("-elbo").split("-", 1)
        K, batch_size, seed = int(r["K"]), int(r["batch_size"]), int(r["seed"])
        if kind == "vae":
            args.vae_batch_size = batch_size
            ours = cm.vae_config(args, seed, arch)
        else:
            args.vqvae_batch_size = {str(K): batch_size}
            ours = cm.vqvae_config(args, arch, K, seed)
        assert config_hash(ours) == r["config_hash"], (r["family"], K, batch_size, seed)
    assert rows


# The commit before the results were re-keyed to the one cache rule (utils.cli.config_key):
# every re-keyed file must hold the same rows with the same numbers, only other ids.
BEFORE_REKEY = "9826ff0"
ID_COLUMNS = ("config_hash", "config_id")


def _rows_at(commit: str, path: Path) -> list[list[str]] | None:
    import subprocess

    rel = path.relative_to(RESULTS.parents[1]).as_posix()
    shown = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=RESULTS.parents[1],
                           capture_output=True, text=True)
    return list(csv.reader(shown.stdout.splitlines())) if shown.returncode == 0 else None


REKEYED = sorted(p for p in RESULTS.glob("**/*.csv") if "v1" not in p.relative_to(RESULTS).parts
                 and set(ID_COLUMNS) & set(next(csv.reader(open(p)))))


@pytest.mark.parametrize("path", REKEYED, ids=lambda p: str(p.relative_to(RESULTS)))
def test_the_rekey_changed_only_the_ids_and_one_to_one(path):
    before = _rows_at(BEFORE_REKEY, path)
    if before is None:
        pytest.skip(f"{BEFORE_REKEY} is not in this clone's history")
    with open(path, newline="") as f:
        after = list(csv.reader(f))
    assert after[0] == before[0] and len(after) == len(before)
    ids = [i for i, c in enumerate(after[0]) if c in ID_COLUMNS]
    for old, new in zip(before[1:], after[1:]):
        assert [v for i, v in enumerate(old) if i not in ids] == \
            [v for i, v in enumerate(new) if i not in ids]
    for i in ids:
        pairs = {(old[i], new[i]) for old, new in zip(before[1:], after[1:])}
        assert len({o for o, _ in pairs}) == len({n for _, n in pairs}) == len(pairs), after[0][i]
        assert not {o for o, _ in pairs} & {n for _, n in pairs}, after[0][i]
