"""report/batch_size.py on hand-made result folders: the choice is the lowest mean
validation criterion, the rerun is judged by the main rows' rule, and the item
puts its verdict next to the main rows'."""
from __future__ import annotations

import pandas as pd
import pytest

from report import batch_size as BS
from report import build_report as br
from report import load as L
from report import answer as AN
from report import verdict_text as VT
from report import verdicts as V
from tests.test_report import ABL, E2E, P, REF, pdf_pages, squash, synthetic_rows, write_results
from train.select_batch_size import COLUMNS
from utils.paths import BATCH_SIZE_DIR

METHODS = (E2E, ABL, P, REF)
# (family, K, batch size) -> criterion per seed
SELECTION = {("vae-mlp", 0, 16): [120.0, 122.0], ("vae-mlp", 0, 128): [144.0, 145.0],
             ("vae-mlp-elbo", 0, 16): [99.0, 99.0], ("vae-mlp-elbo", 0, 128): [98.0, 98.0],
             ("vqvae-global", 16, 16): [167.0, 168.0], ("vqvae-global", 16, 128): [170.0, 171.0],
             ("vqvae-global", 64, 16): [151.0, 150.0], ("vqvae-global", 64, 128): [149.0, 150.0]}


def write_selection(folder):
    rows = [{"dataset": "mnist", "dataset_used": "mnist-5k", "family": f, "K": K, "batch_size": b,
             "seed": s, "epochs": 10,
             "criterion": {"vae-mlp": "val_kmeans_bce", "vae-mlp-elbo": "val_total_loss"}.get(
                 f, "val_recon_bce"),
             "value": v, "config_hash": f"h{f}{K}{b}{s}"}
            for (f, K, b), values in SELECTION.items() for s, v in enumerate(values)]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "batch_size_mnist.csv", index=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bs") / "results"
    main = write_results(root, synthetic_rows("mnist", "full", "mnist-5k", methods=METHODS),
                         [("mnist", "full")])
    # at the chosen batch sizes the proposal's MSE doubles: worse than the VQ-VAE
    rerun = write_results(root / BATCH_SIZE_DIR, synthetic_rows("mnist", "full", "mnist-5k",
                                                                 methods=METHODS, scale={P: 2.0}),
                          [("mnist", "full")])
    write_selection(rerun.root)
    return main, rerun


def test_the_choice_is_the_lowest_mean_per_model_and_k(folders):
    _, rerun = folders
    selection = BS.read_selection(rerun.root)
    assert len(selection) == 16
    assert BS.chosen_text(selection, "mnist") == (
        "VAE (mlp) 16 (its own -ELBO would choose 128); vqvae-global 16 at K = 16, 128 at K = 64")


def test_the_item_puts_the_rerun_verdict_next_to_the_main_one(folders):
    main, rerun = folders
    results = L.load_results(main.root)
    selection = BS.read_selection(rerun.root)
    main_v = next(v for v in V.all_verdicts(results) if v.against)
    rerun_v = next(v for v in V.all_verdicts(L.load_results(rerun.root)) if v.against)
    assert BS.answer(results, selection) == []  # the rerun's item goes after its group
    (item,) = BS.group_answer(results, selection, ("mnist", "full"))
    assert BS.group_answer(results, selection, ("fashion-mnist", "full")) == []
    label = "mnist-5k, each side at the batch size chosen on validation"  # the data as run
    assert item.startswith(VT.brief_item(rerun_v, label))
    # the design: the proposal's MSE is lower than the VQ-VAE's in the main rows, higher in the rerun
    assert "MSE (" in item and "higher" in item.split("MSE (")[1].split(")")[0]
    assert VT.brief_item(main_v, label) != VT.brief_item(rerun_v, label)
    # the main rows' batch sizes are read from their run record (the runner's default there)
    assert item.endswith(f"At the main rows' batch sizes (VAE 128, VQ-VAE 128) the answer is "
                         f"**{main_v.answer}**.")


def test_without_the_rerun_the_item_says_so(folders, tmp_path):
    main, rerun = folders
    write_selection(tmp_path)
    selection = BS.read_selection(tmp_path)
    results = L.load_results(main.root)
    results = results._replace(root=tmp_path.parent / "elsewhere")  # no batch_size/comparison.csv
    (item,) = BS.answer(results, selection)
    assert "has not been run" in item and "VAE (mlp) 16 " in item


def test_the_mse_table_holds_the_means_of_both_folders(folders):
    main, rerun = folders
    results = L.load_results(main.root)
    v = next(v for v, _ in BS.pairs(results, BS.read_selection(rerun.root)))
    cells = BS.mse_table_data(results, v)
    got = {(r[0], r[1]): r[2] for r in cells[1:]}  # K = 16
    for name, folder in (("main rows", main), ("chosen", rerun)):
        frame = pd.read_csv(folder.comparison)
        x = frame[(frame["method"] == P) & (frame["K"] == 16)]["test_mse"]
        assert got[(P, name)].startswith(f"{x.mean():#.3g}")


def test_the_report_has_the_section_and_the_findings_the_item(folders, tmp_path):
    main, _ = folders
    out = tmp_path / "r.pdf"
    br.main(br.parse_args(["--results-dir", str(main.root), "--out", str(out)]))
    pages = pdf_pages(out)
    assert any("Batch size chosen on the validation split" in p for p in pages[1:])
    results = L.load_results(main.root)
    (item,) = BS.group_answer(results, BS.read_selection(main.root / BATCH_SIZE_DIR), ("mnist", "full"))
    assert squash(item)[:60] in " ".join(" ".join(p.split()) for p in pages[1:3])  # the findings
    # right after the mnist group's own item
    answer = AN.short_answer(results, V.all_verdicts(results), br.EXTRAS)
    mine = answer.items.index(item)
    assert answer.items[mine - 1].startswith("**mnist-5k**") or "ablation" in answer.items[mine - 1]
