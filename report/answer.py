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
from report.sections import present_extras
from report.verdict_text import brief_item, name, rate_short
from report.verdicts import (ANSWER_METRICS, NO_DIFFERENCE, AblationVerdict, QuestionVerdict,
                             RateVerdict, all_ablations, answer_grid)
from utils import metric_registry as R


def fmt3(x: float) -> str:
    """Three significant digits, trailing zeros kept ('0.0500', '60.0', '112')."""
    return f"{x:#.3g}".rstrip(".") if np.isfinite(x) else "-"


class AnswerTable(NamedTuple):
    """Page 1's answer table as text (the Markdown subset; '\n' breaks a line in a
    cell): ``head`` and one row per question and rate, a column per dataset."""

    head: list
    rows: list


def question_label(q: QuestionVerdict) -> str:
    """'reconstruction (MSE)'."""
    return f"{q.section.name} ({name(q.section.answer_metrics[0])})"


def answer_cell(q: QuestionVerdict) -> str:
    """'**no**\n0.0303 vs 0.0262 (K = 256)': the verdict, with the K it rests on
    when fewer than all decide it, then both means at the largest of those K."""
    if q.verdict is None:
        return "n/a" if q.dataset_used else "not run"
    ov = q.verdict
    where = "" if len(ov.split) == 1 else f" at {fmt_k_list(ov.rests_on)}"
    tuned = ", tuned" if q.protocol == "tuned" else ""
    return f"**{ov.answer}**{where}\n{fmt3(q.mean_a)} vs {fmt3(q.mean_b)} (K = {q.k}{tuned})"


def group_labels(cells: list[QuestionVerdict]) -> dict[tuple, str]:
    """{(dataset, setting): its label as run}, in order of appearance; the data used
    as the rows of any question name it."""
    used = {}
    for q in cells:
        used.setdefault((q.dataset, q.setting), [])
        used[(q.dataset, q.setting)] += [u for u in q.dataset_used if u not in used[(q.dataset, q.setting)]]
    return {g: run_label(*g, u) for g, u in used.items()}


def answer_table(cells: list[QuestionVerdict]) -> AnswerTable:
    """The rows of report.verdicts.answer_grid: question and rate, then a cell per
    dataset (:func:`answer_cell`)."""
    labels = group_labels(cells)
    rows = {}
    for q in cells:
        key = (question_label(q), rate_short(q.contest))
        rows.setdefault(key, {})[(q.dataset, q.setting)] = answer_cell(q)
    return AnswerTable(["question", "rate", *labels.values()],
                       [[*key, *(by.get(g, "not run") for g in labels)] for key, by in rows.items()])


VERDICT_PHRASES = {"yes": "better", "no": "worse", "mixed": "mixed",
                   NO_DIFFERENCE: "without a clear difference"}


def datasets_phrase(groups, labels: dict) -> str:
    """'(both datasets)', '(every dataset)' or '(mnist-5k)'."""
    if len(groups) == len(labels) > 1:
        return "(both datasets)" if len(labels) == 2 else "(every dataset)"
    return f"({join_words(labels[g] for g in groups)})"


def questions_phrase(hits: list[QuestionVerdict], labels: dict) -> str:
    """'generation (both datasets) and on reconstruction and label agreement
    (mnist-5k)': each question with the datasets that give it, questions on the
    same datasets together."""
    datasets = {}
    for q in hits:
        datasets.setdefault(q.section.name, []).append((q.dataset, q.setting))
    together = {}
    for question, groups in datasets.items():
        together.setdefault(tuple(groups), []).append(question)
    return " and on ".join(f"{join_words(questions)} {datasets_phrase(groups, labels)}"
                           for groups, questions in together.items())


def answer_sentence(cells: list[QuestionVerdict]) -> str:
    """The answer in one sentence, from the cells of the answer table: for each
    verdict, at each rate, the questions and datasets that give it ('every
    question' when all of a rate's cells do)."""
    labels = group_labels(cells)
    decided = [q for q in cells if q.verdict is not None]
    if not decided:
        return "No question has an answer yet: these results hold no matched-bits contest."
    rates = list(dict.fromkeys(q.contest for q in decided))
    opponents = join_words(dict.fromkeys(c.question for c in rates))
    clauses = []
    for word, phrase in VERDICT_PHRASES.items():
        parts = []
        for contest in rates:
            mine = [q for q in decided if q.contest == contest]
            hits = [q for q in mine if q.verdict.answer == word]
            if len(hits) == len(mine):
                groups = list(dict.fromkeys((q.dataset, q.setting) for q in hits))
                parts.append(f"with {rate_short(contest)} on every question "
                             f"{datasets_phrase(groups, labels)}")
            elif hits:
                parts.append(f"with {rate_short(contest)} on {questions_phrase(hits, labels)}")
        if parts:
            clauses.append(f"{phrase} " + ", and ".join(parts))
    return (f"Against the end-to-end VQ-VAE at equal bits ({opponents}), geodesic k-medoids codes "
            f"of a trained VAE are " + "; ".join(clauses) + ".")


def table_note(cells: list[QuestionVerdict]) -> str:
    """How to read the answer table."""
    metrics = [R.get(s.answer_metrics[0]) for s in dict.fromkeys(q.section for q in cells)]
    directions = join_words(f"{m.label} {'higher' if m.higher_is_better else 'lower'}"
                            for m in metrics)
    tuned = any(q.protocol == "tuned" for q in cells)
    return (f"Each cell: the verdict (with the K it rests on when not all), then the means of "
            f"geodesic and of the VQ-VAE; {directions} is better."
            + (" 'tuned': equal budgets, settings chosen on validation (the others: fixed "
               "budgets)." if tuned else ""))


class ShortAnswer(NamedTuple):
    """The answer: one sentence and one table (page 1 and the README, from
    :func:`answer_sentence` and :func:`answer_table`), the note under the table,
    the findings (one item per (dataset, setting, rate) and extra section) and the
    note that says how their words are decided."""

    sentence: str
    table: AnswerTable
    table_note: str
    items: list
    note: str


def answer_note() -> str:
    """How better, worse, yes, no and the percentages are decided."""
    metrics = join_words(name(m) for m in ANSWER_METRICS)
    generation = join_words(m.label for m in R.metrics(table=R.GENERATION, role=R.PRIMARY))
    return (f"Each a-posteriori method is judged at its default cell ({default_cells_text()}); no "
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
    items += [item for _, frame, extra in present for item in extra.answer(results, frame)]
    cells = answer_grid(answer_tables(results, present), results.groups)
    return ShortAnswer(answer_sentence(cells), answer_table(cells), table_note(cells), items,
                       answer_note())
