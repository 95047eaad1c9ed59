"""Page 1's answer table on hand-made tables: a row per dataset and rate, a column per
opponent (the strongest end-to-end quantizer, the classical VQ-VAE, k-means on the same
latents), each cell the verdict over the questions and each question's means."""
from __future__ import annotations

import pandas as pd
import pytest

from report import answer as AN
from report import verdicts as V
from utils import metric_registry as R

KS = (16, 64)
P, KM, VQ, FSQ, ROT = "geodesic-conv", "kmeans-conv", "vqvae-conv", "fsq-conv", "rotvq-conv"


def rows(method, mse, *, seeds=(0, 1, 2), ks=KS):
    out = []
    for K in ks:
        for s in seeds:
            row = {c: 0.5 for c in R.columns(table=R.COMPARISON)}
            row.update(dataset="mnist", setting="full", dataset_used="mnist-5k", method=method,
                       K=K, seed=s, config_id="c", protocol="fixed",
                       test_mse=mse + 0.0001 * s, ari=float("nan"))
            out.append(row)
    return out


def frame(*parts):
    return pd.DataFrame([r for part in parts for r in part])


def test_the_strongest_end_to_end_is_the_lowest_mean_at_the_largest_shared_k():
    f = frame(rows(VQ, 0.010), rows(FSQ, 0.008), rows(ROT, 0.009, ks=(16,)), rows(P, 0.02))
    # rotvq-conv has K = 16 only: the largest K all three share is 16, where fsq is lowest
    assert V.strongest_end_to_end(f, "grid", R.MSE.column) == FSQ
    # by brute force over the methods' means at K = 16
    at = f[(f["K"] == 16) & f["method"].isin([VQ, FSQ, ROT])]
    assert at.groupby("method")["test_mse"].mean().idxmin() == FSQ
    assert V.strongest_end_to_end(frame(rows(P, 0.02)), "grid", R.MSE.column) is None
    # a higher-is-better metric picks the largest mean
    g = f.assign(ari=f["test_mse"])
    assert V.strongest_end_to_end(g, "grid", R.ARI.column) == VQ


@pytest.mark.parametrize("answers, word", [
    (["yes", "no clear difference"], "yes"), (["no", "no"], "no"), (["yes", "no"], "mixed"),
    (["mixed", "yes"], "mixed"), (["no clear difference"] * 2, "no clear difference")])
def test_the_verdict_over_questions(answers, word):
    assert V.combined_answer(answers) == word


def test_each_column_compares_with_its_own_opponent():
    f = frame(rows(P, 0.020), rows(KM, 0.020), rows(VQ, 0.010), rows(FSQ, 0.030))
    tables, groups = {R.COMPARISON: f}, [("mnist", "full")]
    columns = {role: V.answer_grid(tables, groups, role) for role in V.OPPONENT_ROLES}
    table = AN.answer_table(columns)
    assert table.head[2:] == [AN.ROLE_HEADS[r] for r in V.OPPONENT_ROLES]
    [row] = [r for r in table.rows if r[1].startswith("a 7x7 grid")]
    best, classical, kmeans = row[2:]
    # the classical VQ-VAE is the strongest end-to-end one here: the column says so
    assert best == "= classical"
    assert classical == "**no**\nMSE 0.0201/0.0101"
    assert kmeans == "**no clear difference**\nMSE 0.0201/0.0201"


def test_a_stronger_library_quantizer_is_named_in_the_best_column():
    f = frame(rows(P, 0.020), rows(KM, 0.020), rows(VQ, 0.010), rows(FSQ, 0.005))
    tables, groups = {R.COMPARISON: f}, [("mnist", "full")]
    [q] = [q for q in V.answer_grid(tables, groups, V.BEST_END_TO_END) if q.verdict is not None]
    assert q.opponent == FSQ and q.mean_b == pytest.approx(0.0051)
    assert AN.answer_cell([q], q.k, V.BEST_END_TO_END) == f"**no** vs {FSQ}\nMSE 0.0201/0.00510"


def test_the_sentence_marks_a_dataset_whose_verdict_rests_on_fixed_budgets_only():
    """Where other verdicts read tuned rows, a dataset judged on fixed-budget rows only is
    marked (issue #26: budgets decide those); with no tuned rows at all nothing is marked."""
    def dataset(rows_, name, used, protocol):
        return [dict(r, dataset=name, dataset_used=used, protocol=protocol) for r in rows_]

    def sentence_note_table(fashion_protocol, mnist_protocol):
        parts = [dataset(rows(m, mse), "fashion-mnist", "fashion-mnist", fashion_protocol)
                 for m, mse in ((P, 0.02), (KM, 0.02), (VQ, 0.01))]
        parts += [dataset(rows(m, mse), "mnist", "mnist-5k", mnist_protocol)
                  for m, mse in ((P, 0.02), (KM, 0.02), (VQ, 0.01))]
        tables = {R.COMPARISON: frame(*parts)}
        groups = [("fashion-mnist", "full"), ("mnist", "full")]
        columns = {role: V.answer_grid(tables, groups, role) for role in V.OPPONENT_ROLES}
        return (AN.answer_sentence(columns[V.CLASSICAL]), AN.table_note(columns),
                AN.answer_table(columns).rows)

    sentence, note, table = sentence_note_table("fixed", "tuned")
    assert f"(fashion-mnist{AN.FIXED_MARK} and mnist-5k)" in sentence
    # the table marks the fixed-budget dataset's numbers, not the tuned one's, and its rate
    # labels carry no protocol (one row may read both: the next test)
    assert [r[1].split("\n")[1] for r in table] == ["K = 64", "K = 64"]
    assert [AN.FIXED_MARK in "".join(r[2:]) for r in table] == [True, False]
    assert f"unless marked {AN.FIXED_MARK} (fixed budgets)" in note and "Tuned" in note
    sentence, note, table = sentence_note_table("fixed", "fixed")
    assert "(both datasets)" in sentence and AN.FIXED_MARK not in sentence + note
    assert all(AN.FIXED_MARK not in "".join(r) for r in table)
    sentence, note, table = sentence_note_table("tuned", "tuned")
    assert "(both datasets)" in sentence and AN.FIXED_MARK not in sentence + note
    assert "Tuned" in note and all(AN.FIXED_MARK not in "".join(r) for r in table)


def test_a_row_marks_the_question_read_on_fixed_budgets_not_the_tuned_one():
    """One row, two questions: reconstruction read on tuned rows, generation on fixed-budget
    ones (its priors not yet on every seed). Only generation's numbers carry the mark."""
    mse = V.answer_grid({R.COMPARISON: frame(rows(P, 0.02), rows(VQ, 0.01))},
                        [("mnist", "full")], V.CLASSICAL)
    [q] = [q for q in mse if q.verdict is not None]
    tuned, fixed = q._replace(protocol="tuned"), q._replace(protocol="fixed")
    line = AN.question_line(fixed, q.k, None, mark=True)
    assert line.startswith(f"MSE 0.0201/0.0101{AN.FIXED_MARK}")
    assert AN.FIXED_MARK not in AN.question_line(tuned, q.k, None, mark=True)
    assert AN.FIXED_MARK not in AN.question_line(fixed, q.k, None, mark=False)
    cell = AN.answer_cell([tuned, fixed], q.k, V.CLASSICAL, mark=True)
    assert cell.count(AN.FIXED_MARK) == 1 and cell.endswith(f"0.0101{AN.FIXED_MARK}")
    assert AN.row_label([tuned, fixed]).split("\n")[1] == f"K = {q.k}"


def test_the_answer_is_one_sentence_per_question_with_each_verdicts_datasets():
    """Page 1's answer (issue #28): one sentence per decided question, each verdict of
    that question followed by the rate and the datasets that give it."""
    def dataset(rows_, name, used):
        return [dict(r, dataset=name, dataset_used=used, protocol="tuned") for r in rows_]

    parts = [dataset(rows(m, mse), "fashion-mnist", "fashion-mnist")
             for m, mse in ((P, 0.02), (KM, 0.02), (VQ, 0.01))]
    parts += [dataset(rows(m, 0.01), "mnist", "mnist-5k") for m in (P, KM, VQ)]
    tables = {R.COMPARISON: frame(*parts)}
    groups = [("fashion-mnist", "full"), ("mnist", "full")]
    cells = V.answer_grid(tables, groups, V.CLASSICAL)
    decided = [q for q in cells if q.verdict is not None]
    # the verdicts themselves, by brute force: fashion's geodesic mean is twice the VQ-VAE's
    assert {(q.dataset, q.verdict.answer) for q in decided} == {
        ("fashion-mnist", "no"), ("mnist", V.NO_DIFFERENCE)}
    sentence = AN.answer_sentence(cells)
    assert sentence == ("Against the end-to-end VQ-VAE, geodesic codes on reconstruction are "
                        "worse with a 7x7 grid (fashion-mnist); not clearly different with a "
                        "7x7 grid (mnist-5k).")
    assert sentence.count(". ") + 1 == len({q.section.name for q in decided})


def test_a_question_whose_k_point_both_ways_says_which_way_at_which_k():
    """No clear difference because geodesic is better at one K and worse at another: the
    cell names both directions with their K, not 'no clear difference at every K'."""
    f = frame(rows(P, 0.010, ks=(16,)), rows(P, 0.030, ks=(64,)), rows(VQ, 0.020))
    [q] = [q for q in V.answer_grid({R.COMPARISON: f}, [("mnist", "full")], V.CLASSICAL)
           if q.verdict is not None]
    assert q.verdict.answer == V.NO_DIFFERENCE
    assert q.verdict.by_k == {16: "yes", 64: "no"}  # lower MSE at 16, higher at 64
    assert AN.question_line(q, 64, "mixed") == "MSE 0.0301/0.0201 yes at K = 16; no at K = 64"


def test_the_best_column_says_when_no_other_end_to_end_quantizer_ran():
    """'= classical' claims the VQ-VAE beat the others; where none of them has rows the
    cell says the classical one ran alone."""
    alone = frame(rows(P, 0.020), rows(KM, 0.020), rows(VQ, 0.010))
    beaten = frame(rows(P, 0.020), rows(KM, 0.020), rows(VQ, 0.010), rows(FSQ, 0.030))
    cells = {}
    for label, f in (("alone", alone), ("beaten", beaten)):
        columns = {role: V.answer_grid({R.COMPARISON: f}, [("mnist", "full")], role)
                   for role in V.OPPONENT_ROLES}
        [row] = [r for r in AN.answer_table(columns).rows if r[1].startswith("a 7x7 grid")]
        cells[label] = row[2]
    assert cells == {"alone": AN.ONLY_CLASSICAL, "beaten": "= classical"}
