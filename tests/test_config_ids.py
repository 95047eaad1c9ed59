"""The published rows stay addressable: recomputing their config ids with today's code.

A row's ``config_id`` hashes every flag of the training scripts its models came
from (train/comparison_methods.py). A flag added later changes every id unless it
is listed, with the value that trains what came before it, in
``utils.training.LATER_FLAGS``; then rerunning the published command (to add seeds
or K) would start a new group instead of extending the published one. This test
recomputes, from the newest run record of each published comparison, the ids of
the rows that run wrote and checks they are the ones in comparison.csv.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from train import comparison_methods as cm
from train import run_comparison as rc
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

    argv = ["--dataset", "mnist", "--arch", "conv"]
    plain = cm.script_config(train_vae, argv)
    assert set(LATER_FLAGS).isdisjoint(plain)
    beta = cm.script_config(train_vae, argv + ["--kl-weight", "0.5"])
    assert beta["kl_weight"] == 0.5
    assert {k: v for k, v in beta.items() if k != "kl_weight"} == plain


def test_the_sweeps_vae_kl_weight_reaches_the_vae_and_its_rows():
    base = "--dataset fashion-mnist --methods vae-conv geodesic-conv --codebook-sizes 64".split()
    one = rc.parse_args(base)
    tenth = rc.parse_args(base + ["--vae-kl-weight", "0.1"])
    assert "--kl-weight" not in cm.vae_argv(one, 0, "conv")
    assert cm.vae_argv(tenth, 0, "conv")[-2:] == ["--kl-weight", "0.1"]
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
