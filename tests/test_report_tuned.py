"""report/tuned.py and the answer table's use of the tuned rows, on hand-made tables:
the verdict reads each method's fine-tuned-decoder cell of the newest configuration, the tuned
rows of a (dataset, method) replace its fixed-budget rows and nothing else, the cell says
'tuned', and what validation chose is tabulated per K."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from report import tables
from report import answer as AN
from report import tuned as TU
from report import verdicts as V
from report.load import replace_rows
from utils import metric_registry as R

KS = (16, 64)
P, B = "geodesic-vae", "vqvae-global"


def rows(method, mse, *, dataset="mnist", cell=("", "", ""), protocol="tuned", config="c1",
         seeds=(0, 1, 2)):
    """One row per K and seed; ``mse`` at every K, metric columns filled so that only MSE
    and ARI (higher for lower MSE) differ between methods."""
    edge, vectors, decoder = cell
    out = []
    for K in KS:
        for s in seeds:
            row = {c: 0.5 for c in R.columns(table=R.COMPARISON)}
            row.update(dataset=dataset, setting="full", dataset_used="mnist-5k", method=method, K=K,
                       seed=s, edge_length=edge, code_vectors=vectors, decoder=decoder,
                       config_id=config, protocol=protocol, epochs_trained=30 + s, best_epoch=25 + s,
                       test_mse=mse + 0.0001 * s, ari=0.5 - mse + 0.001 * s)
            out.append(row)
    return out


def frame(*parts) -> pd.DataFrame:
    return pd.DataFrame([r for part in parts for r in part])


GEO_TUNED = ("latent", "refined", "finetuned")
GEO_FROZEN = ("latent", "refined", "frozen")


def test_verdict_rows_are_the_finetuned_cells_and_the_reference_of_the_newest_configuration():
    f = frame(rows(P, 0.9, cell=GEO_TUNED, config="old"), rows(P, 0.03, cell=GEO_TUNED, config="new"),
              rows(P, 0.04, cell=GEO_FROZEN), rows(B, 0.05), rows(B, 0.045, cell=("", "", "finetuned")),
              rows("vae-continuous", 0.02))
    kept = TU.verdict_rows(f)
    assert set(zip(kept["method"], kept["decoder"])) == {(P, "finetuned"), (B, "finetuned"),
                                                         ("vae-continuous", "")}
    assert set(kept.loc[kept["method"] == P, "config_id"]) == {"new"}


def test_tuned_rows_replace_the_fixed_rows_of_their_dataset_and_method_only():
    fixed = frame(rows(P, 0.06, protocol="fixed"), rows(B, 0.04, protocol="fixed"),
                  rows(P, 0.06, dataset="fashion-mnist", protocol="fixed"))
    tuned = frame(rows(P, 0.03))
    out = replace_rows(fixed, tuned)
    by = out.groupby(["dataset", "method"])["protocol"].agg(set).to_dict()
    assert by == {("mnist", P): {"tuned"}, ("mnist", B): {"fixed"},
                  ("fashion-mnist", P): {"fixed"}}
    assert len(out) == len(fixed)  # one (dataset, method) swapped for as many rows


def test_the_answer_cell_turns_with_the_tuned_rows_and_says_so():
    """Fixed budgets: the proposal loses on MSE; tuned: it wins. The answer table reads
    the tuned rows in place of the fixed ones, and its cell says 'tuned'."""
    fixed = frame(rows(P, 0.06, protocol="fixed"), rows(B, 0.04, protocol="fixed"))
    tuned = frame(rows(P, 0.03, cell=GEO_TUNED), rows(P, 0.05, cell=GEO_FROZEN),
                  rows(B, 0.04, cell=("", "", "finetuned")), rows(B, 0.045))
    groups = [("mnist", "full")]
    before = V.answer_grid({R.COMPARISON: fixed}, groups)[0]
    assert (before.verdict.answer, before.protocol) == ("no", "fixed")
    merged = replace_rows(fixed, TU.verdict_rows(tuned))
    after = V.answer_grid({R.COMPARISON: merged}, groups)[0]
    assert (after.verdict.answer, after.protocol) == ("yes", "tuned")
    assert after.mean_a == pytest.approx(0.0301) and after.mean_b == pytest.approx(0.0401)
    assert AN.row_label([after]).endswith("K = 64")
    assert AN.answer_cell([after], 64) == "**yes**\nMSE 0.0301/0.0401"
    # beside a tuned row, the fixed one's numbers carry the mark; the tuned one's do not
    assert AN.answer_cell([before], 64, mark=True).endswith(AN.FIXED_MARK)
    assert AN.FIXED_MARK not in AN.answer_cell([after], 64, mark=True)


def test_tuned_verdicts_per_rate():
    tuned = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")))
    [v] = TU.tuned_verdicts(tuned)
    assert v.against[B].answer == "yes" and v.ks == KS and v.n_seeds == 3


def test_choices_tabulate_what_validation_chose_per_k():
    sel = pd.DataFrame([
        {"rate": "image", "family": "vae-mlp", "K": 16, "candidate": json.dumps({"vae_kl_weight": 1.0}),
         "edge_length": "", "code_vectors": "", "chosen": True},
        {"rate": "image", "family": "vae-mlp", "K": 16, "candidate": json.dumps({"vae_kl_weight": 0.1}),
         "edge_length": "", "code_vectors": "", "chosen": False},
        {"rate": "image", "family": "vae-mlp", "K": 64, "candidate": json.dumps({"vae_kl_weight": 0.3}),
         "edge_length": "", "code_vectors": "", "chosen": True},
        {"rate": "image", "family": f"cell:{P}", "K": 64, "candidate": "{}", "edge_length": "decoder",
         "code_vectors": "refined", "chosen": True},
        {"rate": "grid", "family": "vae-conv", "K": 16, "candidate": json.dumps({"vae_kl_weight": 1.0}),
         "edge_length": "", "code_vectors": "", "chosen": True},
    ])
    assert TU.choices(sel, "image") == [["chosen on validation, one code per image", "K = 16",
                                         "K = 64"],
                                        ["vae-mlp", "β 1", "β 0.3"],
                                        [f"{P} cell", "-", "decoder/refined"]]
    sel["dataset"] = "fashion-mnist"  # 4 candidates a side there: 2 scored at K = 16, 1 at 64
    assert TU.choices(sel, "image")[1] == ["vae-mlp", "pending (2 of 4 scored)",
                                           "pending (1 of 4 scored)"]
    assert TU.choices(sel, "grid")[1] == ["vae-conv", "pending (1 of 4 scored)"]


def test_counts_print_their_range_over_seeds():
    assert tables.cell_text(pd.Series([30.0, 33.0, 31.0]), "epochs_trained") == "30-33"
    assert tables.cell_text(pd.Series([12.0, 12.0]), "best_epoch") == "12"
    assert tables.cell_text(pd.Series([float("nan")]), "decoder_best_epoch") == "-"


def test_the_headline_figure_plots_the_rows_page_one_reads(monkeypatch):
    """Page 1's figure draws the tuned rows where they replace fixed ones: each point is
    the mean over seeds of the merged per-seed rows, and the reference line the tuned VAE's."""
    from report import figures as FG

    fixed = frame(rows(P, 0.06, protocol="fixed"), rows(B, 0.04, protocol="fixed"),
                  rows("vae-continuous", 0.03, protocol="fixed"))
    tuned = frame(rows(P, 0.02, cell=GEO_TUNED), rows(P, 0.05, cell=GEO_FROZEN),
                  rows("vae-continuous", 0.01))
    for part in (fixed, tuned):
        part["bits_per_image"] = np.log2(part["K"].astype(float))
    merged = replace_rows(fixed, TU.verdict_rows(tuned))
    drawn, lines = {}, []
    monkeypatch.setattr(FG, "errorbar", lambda ax, m, x, mean, std, shift=1.0:
                        drawn.setdefault(m, list(mean)))
    monkeypatch.setattr(FG.plt.Axes, "hlines", lambda ax, y, lo, hi, **kw: lines.append((y, lo, hi)))
    figures = []
    monkeypatch.setattr(FG.plt, "close", figures.append)
    FG.plot_headline(merged, [("mnist", "full", "mnist")], [V.contest_for("image")])
    [mse_axes] = figures[0].axes  # no generation rows: the MSE panel alone, on a log scale
    assert mse_axes.get_yscale() == "log" and "log scale" in mse_axes.get_ylabel()
    # seeds add 0, 1e-4, 2e-4: the mean over seeds is mse + 1e-4 at every K
    assert drawn[P] == pytest.approx([0.0201] * len(KS))
    assert drawn[B] == pytest.approx([0.0401] * len(KS))
    # the reference spans its rate's bits only: log2 16 = 4 to log2 64 = 6, widened 1.25x
    [line] = lines
    assert line == pytest.approx((0.0101, 4 / 1.25, 6 * 1.25))


def test_the_bound_sentence_appears_only_when_the_vae_itself_loses_beyond_the_spread():
    """The a-posteriori codes at K = 64 (β = 0.1) against the VQ-VAE: the sentence names the
    VAE of the codes' own β, and is absent when that VAE reconstructs as well as the VQ-VAE."""
    def with_beta(part, beta):
        return [dict(r, kl_weight=beta) for r in part]

    geo = with_beta(rows(P, 0.030, cell=GEO_TUNED), 0.1)
    vq = rows(B, 0.020, cell=("", "", "finetuned"))
    worse_vae = with_beta(rows("vae-continuous", 0.025), 0.1)
    other_beta = with_beta(rows("vae-continuous", 0.010), 1.0)
    [v] = TU.tuned_verdicts(frame(geo, vq, worse_vae, other_beta))
    text = TU.bound_sentence(TU.verdict_rows(frame(geo, vq, worse_vae, other_beta)), v)
    # means over seeds 0, 1, 2 of mse + 0.0001 s: 0.0251, 0.0201, 0.0301 (K = 64)
    assert text.startswith("At K = 64 the gap is the VAE's")
    assert "vae-continuous validation chose (β = 0.1)" in text and "0.0251 ± 0.0001" in text
    assert "(0.0201 ± 0.0001)" in text and "+20% from that VAE" in text
    good_vae = with_beta(rows("vae-continuous", 0.015), 0.1)
    [v] = TU.tuned_verdicts(frame(geo, vq, good_vae))
    assert TU.bound_sentence(TU.verdict_rows(frame(geo, vq, good_vae)), v) is None


def test_the_answer_item_gives_the_range_of_epochs_run():
    [v] = TU.tuned_verdicts(frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned"))))
    # epochs_trained = 30 + seed over seeds 0, 1, 2
    assert "(epochs run: 30 to 32)" in TU.answer_item(frame(rows(P, 0.03, cell=GEO_TUNED),
                                                            rows(B, 0.04, cell=("", "", "finetuned"))), v)


def budgeted(part, budget):
    """``part`` with its epoch budget (``epochs``) set."""
    return [dict(r, epochs=budget) for r in part]


def test_equal_budgets_that_bind_are_not_told_as_convergence():
    """epochs_trained = 30 + seed, best_epoch = 25 + seed: under a 100-epoch budget early
    stopping ended every model (convergence); under a 31-epoch budget the seed-1 and seed-2
    models (4 rows of each method, 8 of 12) ran it to the end, none with its best epoch
    within one of the last (best 26, 27 against 31, 32)."""
    geo, vq = rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned"))
    [v] = TU.tuned_verdicts(frame(geo, vq))
    loose = TU.answer_item(frame(budgeted(geo, 100), budgeted(vq, 100)), v)
    assert "trained to convergence with early stopping on validation (epochs run: 30 to 32)" in loose
    tight = TU.answer_item(frame(budgeted(geo, 31), budgeted(vq, 31)), v)
    assert "convergence with" not in tight
    assert ("up to an equal 31-epoch budget; the models of 8 of 12 rows ran all of it (best "
            "epoch within one of the last in 0), so the budget, not convergence, ended them") in tight
    near = [dict(r, best_epoch=r["epochs_trained"] - 1) for r in budgeted(geo, 30)]
    assert "of 12 of 12 rows ran all of it (best epoch within one of the last in 6)" in \
        TU.answer_item(frame(near, budgeted(vq, 30)), v)


def test_the_answer_item_reads_only_the_epochs_of_its_own_rate():
    """A grid-rate method's rows (epochs 90 + seed) in the same dataset do not enter the
    one-code verdict's range of epochs run."""
    geo, vq = rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned"))
    grid = [dict(r, epochs_trained=90 + r["seed"]) for r in rows("vae-conv", 0.01)]
    [v] = TU.tuned_verdicts(frame(geo, vq))
    assert "(epochs run: 30 to 32)" in TU.answer_item(frame(geo, vq, grid), v)


# --- a run in progress decides nothing --------------------------------------------------------

def record(root, runner="comparison", sizes=KS, seeds=(0, 1, 2), rate="image", quick=False):
    path = root / f"{runner}_mnist_tuned-{rate}_run.json"
    path.write_text(json.dumps({"config": {"codebook_sizes": list(sizes), "seeds": list(seeds),
                                           "quick": quick}}))


def test_a_method_missing_a_planned_seed_keeps_its_whole_rate_out_of_the_verdicts(tmp_path):
    """B lacks seeds 1 and 2, the reference seed 2: both are incomplete, and P, complete
    itself, waits with them (the rate's verdict needs both sides)."""
    from utils.paths import ResultPaths
    record(tmp_path)
    f = frame(rows(P, 0.03, cell=GEO_TUNED), rows(P, 0.03, cell=GEO_FROZEN),
              rows(B, 0.04, cell=("", "", "finetuned"), seeds=(0,)),
              rows("vae-continuous", 0.02, seeds=(0, 1)))
    marked = TU.mark_complete(f, ResultPaths(tmp_path), "comparison")
    by = marked.groupby("method")["method_complete"].agg(set).to_dict()
    assert by == {P: {True}, B: {False}, "vae-continuous": {False}}
    assert not marked["complete"].any()
    assert TU.verdict_rows(marked).empty and TU.tuned_verdicts(marked) == []
    text = TU.pending(marked, "mnist", "full")
    running, waiting = text.split("appendix.")
    assert B in running and "vae-continuous" in running and P not in running
    assert P in waiting and "no verdict pairs tuned rows with fixed-budget ones" in waiting
    # the frozen cell of P does not count: only the verdict's cells are checked
    only_frozen = frame(rows(P, 0.03, cell=GEO_FROZEN), rows(B, 0.04, cell=("", "", "finetuned")))
    marked = TU.mark_complete(only_frozen, ResultPaths(tmp_path), "comparison")
    assert marked["complete"].all()  # P has no verdict cell, so nothing is judged incomplete


def test_another_rate_or_dataset_does_not_wait(tmp_path):
    """An incomplete grid-rate method leaves the image rate's rows complete, and an
    incomplete fashion-mnist method leaves mnist's."""
    from utils.paths import ResultPaths
    record(tmp_path)
    record(tmp_path, rate="grid")
    f = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")),
              rows("geodesic-conv", 0.02, cell=GEO_TUNED),
              rows("vqvae-conv", 0.02, cell=("", "", "finetuned"), seeds=(0,)),
              rows(B, 0.04, cell=("", "", "finetuned"), dataset="fashion-mnist", seeds=(0,)))
    marked = TU.mark_complete(f, ResultPaths(tmp_path), "comparison")
    done = marked.groupby(["dataset", "method"])["complete"].agg(set).to_dict()
    assert done == {("mnist", P): {True}, ("mnist", B): {True}, ("mnist", "geodesic-conv"): {False},
                    ("mnist", "vqvae-conv"): {False}, ("fashion-mnist", B): {True}}
    # fashion-mnist has no record here, so nothing says what it planned


def test_a_reference_with_two_kl_weights_needs_every_seed_of_each(tmp_path):
    """The grid's vae-conv runs one VAE per KL weight validation chose (the bound of its own
    K). With one of them on every seed and the other on seed 0 alone, the reference is not
    complete, and the pending sentence lists it among those still running."""
    from utils.paths import ResultPaths
    record(tmp_path)
    ref = [dict(r, K=0) for r in rows("vae-continuous", 0.02) if r["K"] == KS[0]]
    other = [dict(r, config_id="c2", kl_weight=0.1) for r in ref if r["seed"] == 0]
    f = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")), ref, other)
    marked = TU.mark_complete(f, ResultPaths(tmp_path), "comparison")
    assert not marked["complete"].any()
    assert "vae-continuous (4 runs)" in TU.pending(marked, "mnist", "full")
    rest = [dict(r, seed=s) for r in other for s in (1, 2)]
    marked = TU.mark_complete(frame(f.to_dict("records"), rest), ResultPaths(tmp_path), "comparison")
    assert marked["complete"].all()


def test_every_planned_run_present_or_no_record_means_complete(tmp_path):
    from utils.paths import ResultPaths
    f = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned"), seeds=(0,)))
    assert TU.mark_complete(f, ResultPaths(tmp_path), "comparison")["complete"].all()
    record(tmp_path, seeds=(0,), quick=True)
    marked = TU.mark_complete(f, ResultPaths(tmp_path), "comparison")
    assert marked["complete"].all() and TU.pending(marked, "mnist", "full") is None
    [v] = TU.tuned_verdicts(marked)
    assert v.n_seeds == 1


def test_a_one_seed_chunk_plans_every_protocol_seed(tmp_path):
    """make tuned SEEDS=0 writes a record naming seed 0 alone; the full protocol's seeds
    (utils.protocol.SEEDS) are still planned, so seed-0 rows decide nothing until seeds
    1 and 2 land; the quick form plans only its record's seeds."""
    from utils import protocol as PR
    from utils.paths import ResultPaths
    assert PR.SEEDS == (0, 1, 2)
    record(tmp_path, seeds=(0,))
    assert TU.planned_runs(tmp_path / "comparison_mnist_tuned-image_run.json",
                           "comparison") == ([16, 64], [0, 1, 2])
    seed0 = frame(rows(P, 0.03, cell=GEO_TUNED, seeds=(0,)),
                  rows(B, 0.04, cell=("", "", "finetuned"), seeds=(0,)))
    marked = TU.mark_complete(seed0, ResultPaths(tmp_path), "comparison")
    assert not marked["complete"].any() and TU.tuned_verdicts(marked) == []
    record(tmp_path, seeds=(1,))  # the next chunk's record: seeds 0 and 2 still planned
    all3 = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")))
    assert TU.mark_complete(all3, ResultPaths(tmp_path), "comparison")["complete"].all()


def test_a_k_chunk_after_a_full_run_still_plans_every_k(tmp_path):
    """A chunk of the rows at one K (``--codebook-sizes 16 --seeds 1 2``) writes a record naming
    K = 16 alone and keeps the full run's record in ``earlier`` (the runner's own
    write_run_record): K = 64 still plans seeds 1 and 2, so the chunk's rows complete nothing
    until the other K land; a quick record in ``earlier`` plans nothing for the full form."""
    from argparse import Namespace
    from utils.paths import ResultPaths
    from utils.runtime import write_run_record
    path = tmp_path / "comparison_mnist_tuned-image_run.json"
    write_run_record(path, Namespace(codebook_sizes=[256], seeds=[0], quick=True))
    write_run_record(path, Namespace(codebook_sizes=list(KS), seeds=[0], quick=False),
                     keep_earlier=True)
    write_run_record(path, Namespace(codebook_sizes=[16], seeds=[1, 2], quick=False),
                     keep_earlier=True)
    assert TU.planned_runs(path, "comparison") == (list(KS), [0, 1, 2])
    k16 = [r for r in rows(P, 0.03, cell=GEO_TUNED) + rows(B, 0.04, cell=("", "", "finetuned"))
           if r["K"] == 16 or r["seed"] == 0]
    marked = TU.mark_complete(frame(k16), ResultPaths(tmp_path), "comparison")
    assert not marked["complete"].any() and TU.tuned_verdicts(marked) == []
    full = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")))
    assert TU.mark_complete(full, ResultPaths(tmp_path), "comparison")["complete"].all()


def test_page_one_never_pairs_one_sides_tuned_rows_with_the_others_fixed_rows(tmp_path):
    """B's tuned rows are complete, P's lack K = 64: page 1 keeps both methods' fixed
    rows (the group says 'fixed'), where a per-method swap would have put tuned B against
    fixed P."""
    from utils.paths import ResultPaths
    record(tmp_path)
    fixed = frame(rows(P, 0.06, protocol="fixed"), rows(B, 0.05, protocol="fixed"))
    tuned = frame([r for r in rows(P, 0.03, cell=GEO_TUNED) if r["K"] == 16],
                  rows(B, 0.02, cell=("", "", "finetuned")))
    marked = TU.mark_complete(tuned, ResultPaths(tmp_path), "comparison")
    merged = replace_rows(fixed, TU.verdict_rows(marked))
    assert set(merged["protocol"]) == {"fixed"}
    cells = V.answer_grid({R.COMPARISON: merged}, [("mnist", "full")])
    assert {q.protocol for q in cells if q.verdict is not None} == {"fixed"}
    # once P's K = 64 lands, both sides' tuned rows replace both sides' fixed rows
    marked = TU.mark_complete(frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.02, cell=("", "", "finetuned"))),
                              ResultPaths(tmp_path), "comparison")
    merged = replace_rows(fixed, TU.verdict_rows(marked))
    assert set(merged["protocol"]) == {"tuned"}


def test_generation_plans_only_the_generation_k(tmp_path):
    """The generation record lists every K of the run; only utils.protocol.GENERATION_K
    (64, 512) among them are planned, so rows at K = 64 alone are complete for K 16, 64."""
    from utils import protocol as PR
    from utils.paths import ResultPaths
    assert PR.generation_sizes([16, 64]) == [64]
    record(tmp_path, runner="generation")
    g = pd.DataFrame([{"dataset": "mnist", "setting": "full", "method": m, "K": 64, "seed": s,
                       "config_id": "c", "fid_samples": 1.0} for m in (P, B) for s in (0, 1, 2)])
    assert TU.mark_complete(g, ResultPaths(tmp_path), "generation")["complete"].all()
    marked = TU.mark_complete(g[g["seed"] < 2], ResultPaths(tmp_path), "generation")
    assert not marked["complete"].any()


# --- only the cell validation chose decides ---------------------------------------------------

def selection(root, chosen: dict):
    """root/tuned/selection_mnist.csv with P's cells at every K, ``chosen`` {K: edge_length}
    marked."""
    out = []
    for K in KS:
        for edge in ("latent", "decoder"):
            out.append({"rate": "image", "family": f"cell:{P}", "method": P, "K": K,
                        "candidate": "{}", "edge_length": edge, "code_vectors": "refined",
                        "decoder": "finetuned", "val_score": 0.1, "chosen": chosen.get(K) == edge})
    (root / "tuned").mkdir(exist_ok=True)
    pd.DataFrame(out).to_csv(root / "tuned" / "selection_mnist.csv", index=False)


def test_rows_of_a_cell_validation_did_not_choose_decide_nothing(tmp_path):
    from utils.paths import ResultPaths
    record(tmp_path)
    DEC = ("decoder", "refined", "finetuned")
    both = frame(rows(P, 0.03, cell=GEO_TUNED), rows(P, 0.02, cell=DEC), rows(B, 0.04, cell=("", "", "finetuned")))
    selection(tmp_path, {16: "decoder", 64: "latent"})
    marked = TU.mark_complete(TU.mark_chosen_cells(both, tmp_path), ResultPaths(tmp_path), "comparison")
    kept = TU.verdict_rows(marked)
    geo = kept[kept["method"] == P]
    assert set(zip(geo["K"], geo["edge_length"])) == {(16, "decoder"), (64, "latent")}
    assert len(geo) == 6 and marked["complete"].all()
    # the chosen cell's rows not run yet: the method waits, and says so
    only_latent = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")))
    marked = TU.mark_complete(TU.mark_chosen_cells(only_latent, tmp_path), ResultPaths(tmp_path),
                              "comparison")
    assert not marked.loc[marked["method"] == P, "method_complete"].any()
    assert marked.loc[marked["method"] == B, "method_complete"].all()
    assert not marked["complete"].any()
    assert P not in set(TU.verdict_rows(marked)["method"])
    assert P in TU.pending(marked, "mnist", "full")
    # without a selection table every row counts as chosen
    assert TU.mark_chosen_cells(both, tmp_path / "nowhere")["chosen_cell"].all()


def test_rows_without_tuned_rows_are_named_among_the_tuned_findings():
    """mnist has tuned rows, fashion-mnist only fixed ones: the tuned findings name the
    fashion-mnist row and say page 1 gives its fixed-budget verdict, marked."""
    fixed = frame(*(rows(m, mse, dataset=d, protocol="fixed") for d in ("mnist", "fashion-mnist")
                    for m, mse in ((P, 0.06), (B, 0.04))))
    fixed.loc[fixed["dataset"] == "fashion-mnist", "dataset_used"] = "fashion-mnist"
    tuned = frame(rows(P, 0.03, cell=GEO_TUNED), rows(B, 0.04, cell=("", "", "finetuned")))
    merged = replace_rows(fixed, TU.verdict_rows(tuned))
    cells = V.answer_grid({R.COMPARISON: merged}, [("mnist", "full"), ("fashion-mnist", "full")])
    assert {(q.dataset, q.protocol) for q in cells if q.verdict is not None} == {
        ("mnist", "tuned"), ("fashion-mnist", "fixed")}
    [item] = AN.untuned_items(cells)
    assert item.startswith("**fashion-mnist**, one code per image: " + AN.NOT_TUNED_YET + " for "
                           "reconstruction and label agreement")
    assert AN.FIXED_MARK in item and "mnist-5k" not in item
    assert AN.untuned_items(V.answer_grid({R.COMPARISON: merged}, [("mnist", "full")])) == []


def test_pending_counts_every_run_of_a_method_with_two_kl_weights(tmp_path):
    """The grid's vae-conv runs one VAE per chosen β: two configurations of one (method, K
    = 0). The pending sentence counts both seed-0 runs, not the newest configuration's one."""
    from utils.paths import ResultPaths
    record(tmp_path, rate="grid")
    f = frame([dict(r, kl_weight=0.3) for r in rows("vae-conv", 0.02, seeds=(0,), config="b03")
               if r["K"] == 16],
              [dict(r, kl_weight=0.1) for r in rows("vae-conv", 0.01, seeds=(0,), config="b01")
               if r["K"] == 16],
              rows("geodesic-conv", 0.03, cell=GEO_TUNED, seeds=(0,)))
    f.loc[f["method"] == "vae-conv", "K"] = 0
    marked = TU.mark_complete(f, ResultPaths(tmp_path), "comparison")
    text = TU.pending(marked, "mnist", "full")
    assert "vae-conv (2 runs)" in text and "geodesic-conv (2 runs)" in text


def two_bound_frame():
    """The grid's tuned rows when validation chose β = 1 at K = 16 and β = 0.1 at K = 64: the
    a-posteriori codes of each K from its own VAE, and vae-conv (K = 0) once per β."""
    def at(part, K, beta):
        return [dict(r, kl_weight=beta) for r in part if r["K"] == K]

    geo = at(rows("geodesic-conv", 0.030, cell=GEO_TUNED, config="g16"), 16, 1.0) + at(
        rows("geodesic-conv", 0.020, cell=GEO_TUNED, config="g64"), 64, 0.1)
    vae = at(rows("vae-conv", 0.025, config="b1"), 16, 1.0) + at(
        rows("vae-conv", 0.005, config="b01"), 64, 0.1)
    vq = rows("vqvae-conv", 0.010, cell=("", "", "finetuned"))
    f = frame(geo, vae, vq)
    f.loc[f["method"] == "vae-conv", "K"] = 0
    f["bits_per_image"] = 49 * np.log2(f["K"].clip(lower=1).astype(float))
    return f


def test_an_unquantized_reference_keeps_one_configuration_per_kl_weight():
    """newest keeps the newest configuration of each (method, cell, K), but both bounds of a
    reference whose β was chosen per K, which a mean over them would mix."""
    from report.load import newest, newest_configs
    f = two_bound_frame()
    stale = frame([dict(r, kl_weight=1.0) for r in rows("geodesic-conv", 0.9, cell=GEO_TUNED,
                                                         config="stale") if r["K"] == 16])
    f = pd.concat([stale, f], ignore_index=True)
    for kept in (newest(f), newest_configs(f)[0]):
        vae = kept[kept["method"] == "vae-conv"]
        assert sorted(set(vae["kl_weight"])) == [0.1, 1.0] and len(vae) == 6
        assert "stale" not in set(kept["config_id"])


def test_the_bound_at_each_k_is_the_vae_of_the_beta_its_codes_used():
    """The quantization cost compares each K's codes with the VAE they came from:
    K = 16 with β = 1 (mean 0.0251), K = 64 with β = 0.1 (mean 0.0051)."""
    f = TU.verdict_rows(two_bound_frame())
    table = V.compare_methods(f, "mnist", "full", "geodesic-conv", "vae-conv", R.MSE.column)
    assert list(table["K"]) == [16, 64]
    assert list(table["mean_b"]) == pytest.approx([0.0251, 0.0051])
    assert list(table["n_b"]) == [3, 3]
    # one β recorded, or none: the reference's rows bound every K, as before
    one = f[~((f["method"] == "vae-conv") & (f["kl_weight"] == 1.0))]
    assert V.bound_weights(one, "vae-conv", [16, 64]) == {}
    table = V.compare_methods(one, "mnist", "full", "geodesic-conv", "vae-conv", R.MSE.column)
    assert list(table["mean_b"]) == pytest.approx([0.0051, 0.0051])


def test_the_appendix_lists_each_bound_on_its_own_row():
    f = two_bound_frame().assign(decoder_best_epoch=np.nan)
    body = [r for r in TU.table_rows(TU.newest(f)) if r[0] == "vae-conv"]
    assert [r[1] for r in body] == ["β = 0.1", "β = 1"]


def test_the_headline_figure_draws_each_k_its_own_bound(monkeypatch):
    """Two bounds: K = 16 (196 bits) at the β = 1 VAE's mean, K = 64 (294 bits) at the β =
    0.1 one's, meeting at the geometric midpoint of their bits."""
    from report import figures as FG

    lines = []
    monkeypatch.setattr(FG.plt.Axes, "hlines", lambda ax, y, lo, hi, **kw: lines.append((y, lo, hi)))
    monkeypatch.setattr(FG.plt, "close", lambda fig: None)
    FG.plot_headline(TU.verdict_rows(two_bound_frame()), [("mnist", "full", "mnist")],
                     [V.contest_for("grid")])
    mid = np.sqrt(196.0 * 294.0)
    assert lines == [pytest.approx((0.0251, 196 / 1.25, mid)), pytest.approx((0.0051, mid, 294 * 1.25))]


def test_the_prior_size_is_pending_until_every_candidate_is_scored():
    """utils.protocol.PRIOR_CANDIDATES holds 2 sizes: with one scored, no size is 'chosen'."""
    def prior(channels, chosen):
        return {"dataset": "fashion-mnist", "rate": "grid", "family": "prior", "K": 64,
                "candidate": json.dumps({"prior_channels": channels, "prior_layers": 6}),
                "edge_length": "", "code_vectors": "", "chosen": chosen}

    one = pd.DataFrame([prior(32, True)])
    assert TU.choices(one, "grid")[1] == ["prior", "pending (1 of 2 scored)"]
    # both sizes scored for the VQ-VAE's codes, one for k-means': still pending
    part = pd.DataFrame([dict(prior(32, False), method="vqvae-conv"),
                         dict(prior(64, True), method="vqvae-conv"),
                         dict(prior(32, False), method="kmeans-conv")])
    assert TU.choices(part, "grid")[1] == ["prior", "pending (1 of 2 scored)"]
    both = pd.DataFrame([prior(32, False), prior(64, True)])
    assert TU.choices(both, "grid")[1] == ["prior", "channels 64, layers 6"]


def test_the_drift_sentence_names_each_prior_whose_model_did_not_reproduce():
    """report.tuned.drift_sentence over utils.results.recon_drift's frame: nothing to say
    without drift; else each row with both NLLs and the signed difference."""
    assert TU.drift_sentence(pd.DataFrame(columns=["method"])) is None
    one = pd.DataFrame([dict(method="vqvae-conv", K=64, seed=2, recon_nll_bits=292.64,
                             comparison_bits=291.71, drift_bits=0.93)])
    text = TU.drift_sentence(one)
    assert text.startswith("The prior of vqvae-conv at K = 64, seed 2 models the codes of a model")
    assert "292.6 bits per image against 291.7 (+0.9). This row describes" in text
    two = pd.concat([one, one.assign(method="kmeans-conv", drift_bits=-0.25)])
    assert "The priors of vqvae-conv at K = 64, seed 2 and kmeans-conv" in TU.drift_sentence(two)
    assert "(-0.2). These rows describe" in TU.drift_sentence(two)
