"""The published rows stay addressable: recomputing their config ids with today's code.

A row's ``config_id`` hashes every flag of the training scripts its models came
from (train/comparison_methods.py). A flag added later changes every id unless it
is listed, with the value that trains what came before it, in
``utils.training.LATER_FLAGS``; then rerunning the published command (to add seeds
or K) would start a new group instead of extending the published one. This test
recomputes, from the newest run record of each published comparison, the ids of
the rows that run wrote and checks they are the ones in comparison.csv; the same
for the published generation rows and batch-size candidates. The training
scripts' configs (train/train_*.py) are their flags: the cache key of a config
built in code is that of the same command line.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from train import comparison_methods as cm
from train import run_comparison as rc
from utils.results import config_hash
from utils.training import LATER_FLAGS

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
RECORDS = sorted(RESULTS.glob("comparison_*_full_run.json"))
CELL = ("edge_length", "code_vectors", "decoder")


def published_rows(dataset: str) -> list[dict]:
    with open(RESULTS / "comparison.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["dataset"] == dataset and r["setting"] == "full"]


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_the_newest_published_run_recomputes_its_config_ids(record):
    argv = json.loads(record.read_text())["argv"][1:]
    args = rc.parse_args(argv)
    rows = published_rows(args.dataset)
    checked = 0
    for method, K, cell in rc.sweep_cells(args):
        ident = rc.row_identity(args, method, K, 0, cell or None)
        ours = [r for r in rows if r["method"] == method and int(r["K"]) == K
                and all(r[c] == ident[c] for c in CELL if c in ident)]
        if not ours:
            continue  # a row that run has not written (yet)
        assert ident["config_id"] in {r["config_id"] for r in ours}, (method, K, cell)
        checked += 1
    assert checked > 0


def test_a_later_flag_at_its_neutral_value_is_not_part_of_the_key():
    from train import train_vae

    plain = cm.script_config(train_vae.VAEConfig(dataset="mnist", arch="conv"))
    assert set(LATER_FLAGS).isdisjoint(plain)
    beta = cm.script_config(train_vae.VAEConfig(dataset="mnist", arch="conv", kl_weight=0.5))
    assert beta["kl_weight"] == 0.5
    assert {k: v for k, v in beta.items() if k != "kl_weight"} == plain


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


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_adopted_rows_carry_todays_ids_and_no_earlier_one_is_left(record):
    """A run that gave published rows today's config ids (run_comparison.adopt_earlier_rows)
    names them in its record; comparison.csv must hold the new hashes, not the old."""
    newest = json.loads(record.read_text())
    dataset = rc.parse_args(newest["argv"][1:]).dataset
    hashes = {r["config_hash"] for r in published_rows(dataset)}
    for run in [newest, *newest.get("earlier", [])]:
        adopted = run.get("adopted_config_hashes", {})
        assert set(adopted.values()) <= hashes
        assert not set(adopted) & hashes


GENERATION_RECORDS = sorted(RESULTS.glob("**/generation_*_full_run.json"))


@pytest.mark.parametrize("record", GENERATION_RECORDS,
                         ids=lambda p: str(p.relative_to(RESULTS)))
def test_the_published_generation_runs_recompute_their_row_hashes(record):
    """The generation rows' hashes cover the classifier's and the prior's training
    configs (train_classifier.ClassifierConfig, train_prior.PriorConfig): every
    run recorded beside a generation.csv recomputes the hashes of its rows."""
    from train import run_generation as rg

    with open(record.parent / "generation.csv", newline="") as f:
        published = {(r["dataset"], r["setting"], r["method"], int(r["K"]), int(r["seed"])):
                     r["config_hash"] for r in csv.DictReader(f)}
    newest = json.loads(record.read_text())
    checked = 0
    for run in [newest, *newest.get("earlier", [])]:
        args = rg.parse_args(run["argv"][1:])
        for seed in args.seeds:
            for method in args.methods:
                for K in args.codebook_sizes:
                    ident = rg.row_identity(args, method, K, seed)
                    key = (ident["dataset"], ident["setting"], method, K, seed)
                    if key in published:
                        assert ident["config_hash"] == published[key], key
                        checked += 1
    assert checked > 0


SCRIPT_CONFIGS = [("train_vae", "VAEConfig"), ("train_vqvae", "VQVAETrainConfig"),
                  ("train_classifier", "ClassifierConfig"), ("train_geodesic", "GeodesicConfig"),
                  ("train_prior", "PriorConfig")]


@pytest.mark.parametrize("script, name", SCRIPT_CONFIGS)
def test_a_scripts_config_is_its_flags(script, name, capsys):
    """Every field of a training script's config is one of its flags with the same
    default (so a config built in code trains what the command line trains, and
    its cache key is that of the same command line), except the fields the
    script sets itself (train_prior's dataset, from its codes)."""
    import dataclasses
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
