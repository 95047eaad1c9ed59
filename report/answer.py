"""Page 1's answer, shared with the README: one sentence, one table and their notes.

:func:`short_answer` computes it from the results: report.verdicts.answer_grid
(one verdict per question, rate and dataset, on the rows of :func:`answer_tables`)
gives the table (:func:`answer_table`, cells by :func:`answer_cell`) and the
sentence (:func:`answer_sentence`); the findings of page 2 follow, one item per
verdict (report.verdict_text.brief_item), per group's ablation
(report.ablation_text.brief_ablation_item) and per report.sections.Extra whose
CSV is present. report.readme writes the sentence, the table and the note into
the README between ``<!-- short-answer:start -->`` and ``<!-- short-answer:end -->``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from report.ablation_text import brief_ablation_item, default_cells_text
from report.formatting import fmt_k_list, join_words, run_label
from report.load import Results, replace_rows
from report.sections import TUNED, present_extras
from report.verdict_text import brief_item, name, rate_short
from report import verdicts as V
from report.verdicts import (ANSWER_METRICS, NO_DIFFERENCE, AblationVerdict, QuestionVerdict,
                             RateVerdict, all_ablations, answer_grid)
from utils import metric_registry as R


def fmt3(x: float) -> str:
    """Three significant digits, trailing zeros kept ('0.0500', '60.0', '112')."""
    return f"{x:#.3g}".rstrip(".") if np.isfinite(x) else "-"


class AnswerTable(NamedTuple):
    """Page 1's answer table as text (the Markdown subset; '\n' breaks a line in a
    cell): ``head`` and one row per dataset and rate, a column per opponent
    (report.verdicts.OPPONENT_ROLES)."""

    head: list
    rows: list


# The best end-to-end cell where no other end-to-end quantizer has rows; it explains
# itself, so the table note (page 1 counts words) need not.
ONLY_CLASSICAL = "only classical run"

ROLE_HEADS = {V.BEST_END_TO_END: "vs the best end-to-end quantizer",
              V.CLASSICAL: "vs the classical VQ-VAE",
              V.KMEANS: "vs k-means on the same latents"}


def question_line(q: QuestionVerdict, k: int | None = None, word: str | None = None,
                  mark: bool = False) -> str:
    """'MSE 0.0303/0.0262', then the question's verdict when it is not the cell's
    ``word``, the K it rests on when fewer than all decide it, and the K of the means
    (the largest of those K) when it is not the row's ``k``: 'ARI 0.0500/0.0576 no
    at K = 64, 256'. The means are the proposal's and the opponent's over seeds; with
    ``mark`` (:func:`marks_fixed`) they carry :data:`FIXED_MARK` when the question reads
    fixed-budget rows, so that a row whose reconstruction is tuned and whose generation is
    not yet says which is which."""
    ov = q.verdict
    said = "" if ov.answer == word else f" {ov.answer}"
    where = "" if len(ov.split) == 1 else f" at {fmt_k_list(ov.rests_on)}"
    if ov.answer == NO_DIFFERENCE and all(a != NO_DIFFERENCE for a, _ in ov.split):
        # no K is level, they point both ways: say which way at which K
        said, where = "", " " + "; ".join(f"{a} at {fmt_k_list(ks)}" for a, ks in ov.split)
    at = "" if q.k == k or where else f" (K = {q.k})"
    fixed = FIXED_MARK if mark and q.protocol != TUNED else ""
    return (f"{name(q.section.answer_metrics[0])} {fmt3(q.mean_a)}/{fmt3(q.mean_b)}{fixed}"
            f"{said}{where}{at}")


def answer_cell(questions: list[QuestionVerdict], k: int | None = None,
                role: str = V.CLASSICAL, mark: bool = False) -> str:
    """One opponent's cell of a row: the verdict over the row's questions
    (report.verdicts.combined_answer), then a :func:`question_line` per question the
    rows decide (``mark``: its fixed-budget means marked); in the best end-to-end column,
    '= classical' (the VQ-VAE) when that is the strongest on every question,
    :data:`ONLY_CLASSICAL` when no other end-to-end quantizer has rows there, else the
    opponents named; 'not run' without rows."""
    decided = [q for q in questions if q.verdict is not None]
    if not decided:
        return "not run" if any(not q.dataset_used for q in questions) else "n/a"
    opponents = list(dict.fromkeys(q.opponent for q in decided))
    classical = opponents == [decided[0].contest.question]
    if role == V.BEST_END_TO_END and classical:
        alone = all(set(q.rivals) <= {q.contest.question} for q in decided)
        return ONLY_CLASSICAL if alone else "= classical"
    word = V.combined_answer(q.verdict.answer for q in decided)
    who = f" vs {join_words(opponents)}" if role == V.BEST_END_TO_END else ""
    return "\n".join([f"**{word}**{who}", *(question_line(q, k, word, mark) for q in decided)])


def row_k(questions: list[QuestionVerdict]) -> int | None:
    """The K a row's cells are read at: the one most of its decided questions rest on
    at their largest (the larger on a tie); None when none is decided."""
    ks = [q.k for q in questions if q.verdict is not None]
    return max(set(ks), key=lambda k: (ks.count(k), k)) if ks else None


def row_label(questions: list[QuestionVerdict]) -> str:
    """'one code per image\nK = 256': the rate and the row's K (:func:`row_k`). Which
    protocol each number reads is marked on the number (:func:`question_line`), since one
    row may read tuned rows for one question and fixed-budget ones for another."""
    parts = [rate_short(questions[0].contest)]
    if any(q.verdict is not None for q in questions):
        parts.append(f"K = {row_k(questions)}")
    return "\n".join(parts)


def group_labels(cells: list[QuestionVerdict]) -> dict[tuple, str]:
    """{(dataset, setting): its label as run}, in order of appearance; the data used
    as the rows of any question name it."""
    used = {}
    for q in cells:
        used.setdefault((q.dataset, q.setting), [])
        used[(q.dataset, q.setting)] += [u for u in q.dataset_used if u not in used[(q.dataset, q.setting)]]
    return {g: run_label(*g, u) for g, u in used.items()}


def answer_table(columns: dict[str, list[QuestionVerdict]]) -> AnswerTable:
    """Rows: dataset and rate; a column per opponent role of ``columns`` ({role: its
    report.verdicts.answer_grid}), each cell an :func:`answer_cell` over the questions."""
    every_cell = [q for cells in columns.values() for q in cells]
    labels, mark = group_labels(every_cell), marks_fixed(every_cell)
    keys = list(dict.fromkeys((q.dataset, q.setting, q.contest) for q in every_cell))
    rows = []
    for dataset, setting, contest in keys:
        by_role = {role: [q for q in cells if (q.dataset, q.setting, q.contest)
                          == (dataset, setting, contest)] for role, cells in columns.items()}
        every = [q for qs in by_role.values() for q in qs]
        k = row_k(every)
        rows.append([labels[(dataset, setting)], row_label(every),
                     *(answer_cell(qs, k, role, mark) for role, qs in by_role.items())])
    return AnswerTable(["data", "rate", *(ROLE_HEADS[r] for r in columns)], rows)


VERDICT_PHRASES = {"yes": "better", "no": "worse", "mixed": "mixed",
                   NO_DIFFERENCE: "not clearly different"}


# after a dataset (the answer) or a number (the table) that rests on fixed-budget rows only
FIXED_MARK = "\u2020"
TUNED_NOTE = "Tuned (equal budgets, settings chosen on validation)"


def datasets_phrase(groups, labels: dict, fixed: set = frozenset()) -> str:
    """'(both datasets)', '(every dataset)' or '(mnist-5k)'; a group of ``fixed`` (its
    verdict rests on fixed-budget rows) is named, with :data:`FIXED_MARK`."""
    if len(groups) == len(labels) > 1 and not fixed & set(groups):
        return "(both datasets)" if len(labels) == 2 else "(every dataset)"
    return f"({join_words(labels[g] + (FIXED_MARK if g in fixed else '') for g in groups)})"


def marks_fixed(cells: list[QuestionVerdict]) -> bool:
    """Whether page 1 marks verdicts that rest on fixed-budget rows (:data:`FIXED_MARK`):
    when some decided cells read tuned rows and some do not."""
    protocols = {q.protocol == TUNED for q in cells if q.verdict is not None}
    return protocols == {True, False}


def verdict_clause(word: str, hits: list[QuestionVerdict], rates: list, labels: dict,
                   mark: bool) -> str:
    """'worse with one code per image (fashion-mnist) and a 7x7 grid (both
    datasets)': one verdict of one question, at each rate of ``rates`` the datasets
    that give it; a dataset judged on fixed-budget rows only carries
    :data:`FIXED_MARK` when ``mark``."""
    parts = []
    for contest in rates:
        mine = [q for q in hits if q.contest == contest]
        if mine:
            groups = list(dict.fromkeys((q.dataset, q.setting) for q in mine))
            fixed = {(q.dataset, q.setting) for q in mine if mark and q.protocol != TUNED}
            parts.append(f"{rate_short(contest)} {datasets_phrase(groups, labels, fixed)}")
    return f"{VERDICT_PHRASES[word]} with " + " and ".join(parts)


def answer_sentence(cells: list[QuestionVerdict]) -> str:
    """The answer in one sentence per question (at most three), from the cells of the
    answer table: on the question's primary metric, each verdict with the rates and
    datasets that give it, in the order of :data:`VERDICT_PHRASES`. Where other verdicts
    read tuned rows, a dataset whose verdict rests on fixed-budget rows (no tuned rows
    yet) is marked :data:`FIXED_MARK`, as the table's note says: budgets decide those as
    much as the quantizers do."""
    labels = group_labels(cells)
    decided = [q for q in cells if q.verdict is not None]
    if not decided:
        return "No question has an answer yet: these results hold no matched-bits contest."
    mark = marks_fixed(cells)
    sentences = []
    for question in dict.fromkeys(q.section.name for q in decided):
        mine = [q for q in decided if q.section.name == question]
        rates = list(dict.fromkeys(q.contest for q in mine))
        clauses = [verdict_clause(word, [q for q in mine if q.verdict.answer == word], rates,
                                  labels, mark)
                   for word in VERDICT_PHRASES if any(q.verdict.answer == word for q in mine)]
        lead = ("Against the end-to-end VQ-VAE, geodesic codes on" if not sentences else "On")
        they = "are" if not sentences else "they are"
        sentences.append(f"{lead} {question} {they} " + "; ".join(clauses) + ".")
    return " ".join(sentences)


def table_note(columns: dict[str, list[QuestionVerdict]]) -> str:
    """How to read the answer table."""
    cells = [q for qs in columns.values() for q in qs]
    best = {q.opponent for q in columns.get(V.BEST_END_TO_END, []) if q.verdict is not None}
    classical = {q.contest.question for q in cells}
    tuned = any(q.protocol == TUNED for q in cells)
    fixed = marks_fixed(cells)
    return ("Cells: verdict; per question, geodesic's mean/opponent's, and its verdict where "
            "different. "
            + ("'= classical': the VQ-VAE's mean is best." if best <= classical
               else "Best end-to-end: the best mean per question.")
            + (f" {TUNED_NOTE} unless marked {FIXED_MARK} (fixed budgets)." if fixed
               else f" {TUNED_NOTE}." if tuned else ""))


class ShortAnswer(NamedTuple):
    """The answer: one sentence and one table (page 1 and the README, from
    :func:`answer_sentence` and :func:`answer_table`), the note under the table,
    the findings and the note that says how their words are decided. ``tuned_items``:
    the findings of the tuned protocol, which page 1 reads (one item per tuned verdict,
    and one per page-1 row still without tuned rows); ``items``: the fixed-budget
    findings, the sensitivity check (one item per (dataset, setting, rate), ablation
    and extra section)."""

    sentence: str
    table: AnswerTable
    table_note: str
    items: list
    note: str
    tuned_items: list = []


def answer_note(tuned: bool = False) -> str:
    """How better, worse, yes, no and the percentages are decided; ``tuned``: whether
    tuned findings come first (their cells are chosen on validation)."""
    metrics = join_words(name(m) for m in ANSWER_METRICS)
    generation = join_words(m.label for m in R.metrics(table=R.GENERATION, role=R.PRIMARY))
    cells = (f"In the tuned rows each a-posteriori method's cell is chosen on validation at each "
             f"K; in the fixed-budget rows it is judged at its default cell" if tuned else
             f"Each a-posteriori method is judged at its default cell")
    return (f"{cells} ({default_cells_text()}); no "
            f"cell is chosen on the test split. *Better* on a metric: beyond the seed spread "
            f"(|mean_A - mean_B| > std_A + std_B) at half the K or more and never worse beyond "
            f"it; only the primary metrics vote ({metrics}; generation: {generation}), the "
            f"others are reported; *yes*: better on one of them or more and worse on none, *no* "
            f"the reverse, *mixed* both. Brackets: the proposal's mean against the opponent's "
            f"where decided.")


def answer_tables(results: Results, present) -> dict[str, pd.DataFrame]:
    """{table name: rows} the answer table reads: comparison.csv's newest default
    cells and the rows (``Extra.rows``) of every present extra that declares a
    SectionData, by its table (generation.csv)."""
    tables = {R.COMPARISON: results.comparison}
    for _, frame, extra in present:
        if extra.data is not None:
            rows = extra.rows(frame)
            have = tables.get(extra.data.table)
            tables[extra.data.table] = rows if have is None else replace_rows(have, rows)
    return tables


def short_answer(results: Results, verdicts: list[RateVerdict], extras=(),
                 ablations: list[AblationVerdict] | None = None) -> ShortAnswer:
    """The answer computed from ``results``: the sentence and table of
    report.verdicts.answer_grid on the rows of :func:`answer_tables`; the
    findings: one item per verdict, each group's ablation item after its verdicts
    (``ablations``, default :func:`report.verdicts.all_ablations`), then the items
    of every report.sections.Extra of ``extras`` whose CSV is present."""
    ablations = {(a.dataset, a.setting): a
                 for a in (all_ablations(results) if ablations is None else ablations)}
    items = []
    present = present_extras(results, extras)
    for group in results.groups:
        items += [brief_item(v) for v in verdicts if (v.dataset, v.setting) == group]
        if group in ablations:
            items.append(brief_ablation_item(ablations[group]))
        items += [item for _, frame, extra in present if extra.group_answer is not None
                  for item in extra.group_answer(results, frame, group)]
    items = items or ["no verdict: these results hold none of the methods compared at matched "
                      "bits."]
    tuned = [item for _, frame, extra in present if extra.protocol == TUNED
             for item in extra.answer(results, frame)]
    items += [item for _, frame, extra in present if extra.protocol != TUNED
              for item in extra.answer(results, frame)]
    tables = answer_tables(results, present)
    columns = {role: answer_grid(tables, results.groups, role) for role in V.OPPONENT_ROLES}
    cells = columns[V.CLASSICAL]
    if tuned:
        tuned += untuned_items(cells)
    return ShortAnswer(answer_sentence(cells), answer_table(columns), table_note(columns), items,
                       answer_note(bool(tuned)), tuned)


# the tuned protocol lands seed by seed; a verdict reads only rows complete on every seed
NOT_TUNED_YET = "no tuned rows complete on every seed yet"


def untuned_items(cells: list[QuestionVerdict]) -> list[str]:
    """One finding per page-1 row (dataset and rate) with a decided question that reads
    no tuned rows (none, or not yet on every seed: report.tuned.mark_complete): page 1
    shows its fixed-budget verdict, marked :data:`FIXED_MARK`."""
    labels = group_labels(cells)
    rows = {}
    for q in cells:
        if q.verdict is not None and q.protocol != TUNED:
            rows.setdefault((q.dataset, q.setting, q.contest), []).append(q.section.name)
    return [f"**{labels[(dataset, setting)]}**, {rate_short(contest)}: {NOT_TUNED_YET} for "
            f"{join_words(dict.fromkeys(questions))} (any part-way rows are in the appendix), so "
            f"page 1 gives the fixed-budget verdict there ({FIXED_MARK}; the sensitivity findings "
            f"below)."
            for (dataset, setting, contest), questions in rows.items()]
