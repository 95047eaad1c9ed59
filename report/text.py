"""The sentences of the report, computed from the verdicts (report/verdicts.py).

Every sentence is written once, in a small subset of Markdown (``**bold**``,
``*italic*``, ```code```), so that the README and the PDF say the same words:
:func:`short_answer` gives page 1's one-sentence answer (:func:`answer_sentence`)
and answer table (:func:`answer_table`), which are also the README block between
``<!-- short-answer:start -->`` and ``<!-- short-answer:end -->``
(report.readme), and the findings of page 2 (one item per verdict and extra
section); report.formatting.to_markup turns the Markdown into reportlab's
paragraph markup.

The ablation of the a-posteriori methods' cells (:func:`ablation_item`,
:func:`ablation_sentences`) adds one finding and one section per dataset whose
results hold cells other than the default ones.

Sections beyond comparison.csv (e.g. generation) plug in as report.sections.Extra
entries (build_report.EXTRAS): each names its CSV and gives its findings and its
sections, and adds nothing, silently, while its CSV is absent.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from report.formatting import (fmt_diff, fmt_k_list, fmt_k_range, fmt_pct, fmt_rel, fmt_seconds,
                               fmt_share, join_words, plural, run_label, span, unique_text)
from report.load import Results, all_cells, replace_rows
from report.sections import present_extras
from report.verdicts import (ABLATION_METRIC, ANSWER_METRICS, NO_DIFFERENCE,
                             RECONSTRUCTION_METRICS, AblationVerdict, Cell, Contest, Factor,
                             OpponentVerdict, QuestionVerdict, RateVerdict, active_contests,
                             all_ablations, answer_grid, collapsed_codebooks, compare_methods, contests,
                             direction, has_ablation, rows_of, unmatched_methods)
from utils import methods as M
from utils import metric_registry as R
from utils.cli import DEFAULT_BATCH_SIZE
from utils.paths import ResultPaths

# The results files by the names utils/paths.py gives them, for the sentences.
COMPARISON_CSV = ResultPaths(Path()).comparison.name
SUMMARY_CSV = ResultPaths(Path()).summary.name


def run_commits(records: dict) -> str:
    """The short git commits of run records ({key: record}), distinct, in order."""
    return unique_text(r["git"].get("commit", "")[:10] for r in records.values() if r.get("git"))


def name(metric: str) -> str:
    """The short name of a metric column ('MSE')."""
    return R.get(metric).label


def gap_text(table: pd.DataFrame) -> str:
    """'difference of means -0.01, -22.2%', or its range over the rows
    (smallest to largest in absolute value); no % where the reference mean is 0."""
    order = table.reindex(table["diff"].abs().sort_values().index)
    lo, hi = order.iloc[0], order.iloc[-1]
    diffs = span(f"{lo['diff']:+.3g}", f"{hi['diff']:+.3g}")
    rels = span(fmt_rel(lo["rel_pct"]), fmt_rel(hi["rel_pct"]))
    noun = "difference" if " to " not in diffs else "differences"
    return f"{noun} of means {diffs}" + ("" if rels == "n/a" else f", {rels}")


# --- the short answer (page 1 and the README) -----------------------------------------

def rate_phrase(contest: Contest) -> str:
    """'one code per image (log2 K bits)' or 'a 7x7 grid of codes (49 log2 K bits)'."""
    n = M.get(contest.proposal).codes_per_image
    if n == 1:
        return "one code per image (log2 K bits)"
    side = math.isqrt(n)
    shape = f"a {side}x{side} grid of codes" if side * side == n else f"{n} codes per image"
    return f"{shape} ({n} log2 K bits)"


def how_much(decided: pd.DataFrame) -> str:
    """'26.2% to 39.8% higher': the relative differences of the means (proposal
    against opponent) at the K decided beyond the spread, which all point one way;
    '' when the opponent's mean is 0."""
    rel = decided["rel_pct"][np.isfinite(decided["rel_pct"])]
    if not len(rel):
        return ""
    size = span(fmt_pct(rel.abs().min()), fmt_pct(rel.abs().max()))
    return f"{size} {'higher' if rel.iloc[0] > 0 else 'lower'}"


def where_decided(table: pd.DataFrame, a: str, b: str) -> str:
    """'better at K = 16, 32, worse at K = 256': the K decided beyond the spread
    of a metric without a clear winner overall ('' when none is)."""
    parts = [f"{word} at {fmt_k_list(table[table['winner'] == who]['K'])}"
             for who, word in ((a, "better"), (b, "worse")) if (table["winner"] == who).any()]
    return ", ".join(parts)


def metric_list(ov: OpponentVerdict, key: str, proposal: str, *, numbers: bool) -> str:
    """'MSE (26.2% to 39.8% higher) and BCE (...)': the metrics of one verdict
    group, each with how much it differs where it is decided beyond the spread
    or, without a clear winner, where either side wins."""
    parts = []
    for metric in ov.groups[key]:
        table = ov.tables[metric]
        if key == "unclear":
            detail = where_decided(table, proposal, ov.opponent)
        else:
            winner = proposal if key == "better" else ov.opponent
            detail = how_much(table[table["winner"] == winner])
        parts.append(name(metric) + (f" ({detail})" if numbers and detail else ""))
    return join_words(parts)


def describe(ov: OpponentVerdict, proposal: str, *, numbers: bool = True) -> str:
    """'better on NMI (1.2% to 13.8% higher), worse on MSE (...) and without a
    clear winner on usage'."""
    words = (("better", "better on"), ("worse", "worse on"), ("unclear", "without a clear winner on"))
    parts = [f"{word} {metric_list(ov, key, proposal, numbers=numbers)}"
             for key, word in words if ov.groups[key]]
    return join_words(parts) if parts else "not comparable on any metric"


ABLATION_MEANING = {"yes": "the geodesic distances add a gain of their own",
                    "no": "the geodesic distances cost rather than help",
                    "mixed": "the geodesic distances trade one metric for another",
                    "no clear difference": "the geodesic distances themselves make no clear "
                                           "difference"}


def verdict_words(ov: OpponentVerdict, *, bold: bool = True) -> str:
    """'**yes**' when every K says the same; else the K the answer rests on and
    what the others say: '**yes** at K = 16, 64; no clear difference at K = 512',
    or '**no clear difference** (yes at K = 16; no at K = 64)' when no K alone
    gives the answer (report.verdicts.OpponentVerdict.split)."""
    word = f"**{ov.answer}**" if bold else ov.answer
    split = ov.split
    if len(split) <= 1:
        return word
    parts = [f"{a} at {fmt_k_list(ks)}" for a, ks in split]
    if split[0][0] == ov.answer:
        return f"{word} at {fmt_k_list(split[0][1])}; " + "; ".join(parts[1:])
    return f"{word} ({'; '.join(parts)})"


def opponent_clause(ov: OpponentVerdict, proposal: str, first: bool) -> str:
    """'Against vqvae-global, trained end to end, geodesic-vae is ...' or, for an
    a-posteriori opponent, the ablation's clause and what it means."""
    family = M.get(ov.opponent).family
    who = proposal if first else "it"
    if family == M.A_POSTERIORI:
        return (f"Against the {ov.opponent} ablation (the same latents, another quantizer) "
                f"{who} is {describe(ov, proposal)}: {ABLATION_MEANING[ov.answer]}.")
    how = "trained end to end" if family == M.END_TO_END else M.get(ov.opponent).description
    return f"Against {ov.opponent}, {how}, {who} is {describe(ov, proposal)}."


def verdict_label(v) -> str:
    """The dataset of a verdict (anything with dataset, setting and dataset_used) as run."""
    return run_label(v.dataset, v.setting, v.dataset_used)


def group_label(results: Results, dataset: str, setting: str) -> str:
    """A (dataset, setting) of ``results`` as run ('mnist-5k' for mnist's rows)."""
    rows = rows_of(results.cells, dataset, setting)
    return run_label(dataset, setting, dict.fromkeys(rows["dataset_used"]))


def data_phrase(v: RateVerdict) -> str:
    """'4000 / 1000 images, 3 seeds'."""
    return f"{unique_text(v.n_train)} / {unique_text(v.n_test)} images, {plural(v.n_seeds, 'seed')}"


def collapse_caveat(v: RateVerdict, where_more: str = "") -> str:
    """' Caveat: the codebook of ... collapsed to about one code.' ('' when none did)."""
    if not v.collapsed:
        return ""
    where = join_words(f"{m} at {fmt_k_list(ks)}" for m, ks in v.collapsed.items())
    return f" Caveat: the codebook of {where} collapsed to about one code{where_more}."


def answer_item(v: RateVerdict, label: str | None = None) -> str:
    """The answer of one (dataset, setting, rate), whichever way it falls: the
    question's opponent first, then the ablations; ``label`` replaces the
    dataset's name at the head."""
    proposal = v.contest.proposal
    head = (f"**{label or verdict_label(v)}** ({data_phrase(v)}), {rate_phrase(v.contest)}, "
            f"{fmt_k_range(v.ks)}: ")
    if not v.against:
        return head + f"no answer: {proposal} has no matched-bits opponent in these results."
    text = head + f"{verdict_words(v.against[v.main])}."
    if v.n_seeds < 2:
        text += " (1 seed: no difference can be called beyond the spread.)"
    order = [v.main] + [b for b in v.against if b != v.main]
    text += " " + " ".join(opponent_clause(v.against[b], proposal, i == 0)
                           for i, b in enumerate(order))
    return text + collapse_caveat(v, " (see Limitations)")


def brief_item(v: RateVerdict, label: str | None = None) -> str:
    """Page 1's (and the README's) item of one (dataset, setting, rate): the verdict
    against the question's opponent with its numbers, the ablations' verdicts in a
    word each (their sentences are in the details); ``label`` replaces the
    dataset's name at the head."""
    if not v.against:
        return answer_item(v, label)
    proposal = v.contest.proposal
    text = (f"**{label or verdict_label(v)}**, {rate_phrase(v.contest)} ({plural(v.n_seeds, 'seed')}, "
            f"{fmt_k_range(v.ks)}): "
            f"{verdict_words(v.against[v.main])}. "
            f"{opponent_clause(v.against[v.main], proposal, True)}")
    if v.n_seeds < 2:
        text += " (1 seed: no difference can be called beyond the spread.)"
    others = [b for b in v.against if b != v.main]
    if others:
        text += " " + " ".join(f"Against the {b} ablation: {verdict_words(v.against[b], bold=False)} "
                               f"({ABLATION_MEANING[v.against[b].answer]})." for b in others)
    return text + collapse_caveat(v)


# --- page 1 and the README: one sentence and one table ----------------------------------

def rate_short(contest: Contest) -> str:
    """'one code per image' or 'a 7x7 grid' (of codes per image)."""
    n = M.get(contest.proposal).codes_per_image
    side = math.isqrt(n)
    return ("one code per image" if n == 1 else f"a {side}x{side} grid" if side * side == n
            else f"{n} codes per image")


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


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


# --- detail sentences ---------------------------------------------------------------------

def question_text() -> str:
    """The research question in two sentences: the proposals of every rate, and the
    primary metric of each question (utils.metric_registry.questions)."""
    proposals = ", ".join(f"**{c.proposal}**" for c in contests())
    measures = join_words(f"{m.question} ({m.label})" for m in R.questions())
    return (f"Do geodesic k-medoids on a k-NN graph of a trained VAE's latents ({proposals}) give "
            f"better discrete codes than a VQ-VAE trained end to end (van den Oord et al., 2017) "
            f"at equal bits? One metric per question, on held-out test images: {measures}.")


RULE = (f"A method *beats* another beyond the spread at a codebook size K when the difference of "
        f"their means over seeds exceeds the sum of their standard deviations over seeds, "
        f"|mean_A - mean_B| > std_A + std_B (sample std, as in {SUMMARY_CSV}); otherwise, or with "
        f"a single seed, there is *no clear winner*. The number of seeds on which one method is "
        f"better, paired by seed in {COMPARISON_CSV}, is given alongside. A verdict holds at half "
        f"the K or more; when fewer than all K decide it, it names the K it rests on and what the "
        f"others say (*yes at K = 16, 64; no clear difference at K = 512*).")


def epochs_text(rows: pd.DataFrame) -> str:
    """'10' when every row trained as long, else '10 (vqvae-global, kmeans-vae);
    3 (vqvae-conv)': the epochs column of the rows themselves, by method."""
    rows = rows.dropna(subset=["epochs"])
    by_epochs = {}
    for method, e in zip(rows["method"], rows["epochs"].astype(int)):
        by_epochs.setdefault(e, [])
        if method not in by_epochs[e]:
            by_epochs[e].append(method)
    if len(by_epochs) <= 1:
        return unique_text(by_epochs) if by_epochs else "not recorded"
    return "; ".join(f"{e} ({', '.join(ms)})" for e, ms in by_epochs.items())


def sizes_by_k(sizes: dict) -> str:
    """'32 at K = 16, 32; 64 at K = 64' from {K: batch size} ('*' for every K)."""
    by_size = {}
    for k, b in sizes.items():
        by_size.setdefault(int(b), []).append(k)
    return "; ".join(f"{b} at every K" if ks == ["*"] else f"{b} at {fmt_k_list(ks)}"
                     for b, ks in by_size.items())


def batch_sizes(record: dict) -> str:
    """'VAE 128, VQ-VAE 128' (or the VQ-VAE's per K) from a run record's config; a
    record without them ran before they were flags, at utils.cli.DEFAULT_BATCH_SIZE."""
    config = record.get("config", {})
    if not config:
        return "not recorded"
    vae = config.get("vae_batch_size") or DEFAULT_BATCH_SIZE
    vqvae = config.get("vqvae_batch_size") or {"*": DEFAULT_BATCH_SIZE}
    vq_text = (str(next(iter(vqvae.values()))) if len(set(vqvae.values())) == 1
               else sizes_by_k(vqvae))
    return f"VAE {vae}, VQ-VAE {vq_text}"


def group_intro(results: Results, dataset: str, setting: str) -> str:
    """What one dataset's rows are, read from the rows: the data used, images,
    seeds, K and epochs; the batch sizes from its run record."""
    rows = rows_of(results.cells, dataset, setting)
    record = results.records.get((dataset, setting), {})
    used = unique_text(rows["dataset_used"])
    asked = "" if used == dataset else f" ({dataset} was asked)"
    return (f"Ran on {used}{asked}: {unique_text(rows['n_train'].astype(int))} train / "
            f"{unique_text(rows['n_test'].astype(int))} test images, "
            f"{plural(rows['seed'].nunique(), 'seed')}, "
            f"{fmt_k_list(sorted(int(k) for k in rows['K'].unique() if k > 0))}. Training epochs "
            f"(from the rows): {epochs_text(rows)}. Batch sizes (from the run record): "
            f"{batch_sizes(record)}. Per-K tables of every metric, the comparisons at each K and "
            f"the further figures are in the appendix.")


def count_clause(table: pd.DataFrame, winner: str, loser: str, metric: str) -> str:
    """'<winner> beats <loser> on <metric> at 2 of 6 K (K = 16, 32; by ...)'."""
    won = table[table["winner"] == winner]
    text = f"{winner} beats {loser} on {name(metric)} at {len(won)} of {len(table)} K"
    if len(won):
        where = "" if len(won) == len(table) else f"{fmt_k_list(won['K'])}; "
        text += f" ({where}{gap_text(won)})"
    return text


def metric_clauses(table: pd.DataFrame, a: str, b: str, metric: str) -> str:
    """Counts of clear wins, clear losses and no clear winner of ``a`` against ``b``;
    differences are always mean of ``a`` minus mean of ``b``."""
    parts = [count_clause(table, a, b, metric)]
    if (table["winner"] == b).any():
        parts.append(count_clause(table, b, a, metric))
    none = table[table["winner"] == "none"]
    if len(none):
        leaning = none["better"].value_counts()
        lean = ", ".join(f"{m} better on average at {n}" for m, n in leaning.items() if m != "tie")
        parts.append(f"no clear winner at {len(none)} of {len(table)} K ({fmt_k_list(none['K'])}"
                     + (f"; {lean}" if lean else "") + ")")
    return "; ".join(parts)


def metric_sentence(table: pd.DataFrame, a: str, b: str, metric: str) -> str:
    """'**MSE** (lower is better): ' and the metric_clauses, as one sentence."""
    return f"**{name(metric)}** ({direction(metric)}): {metric_clauses(table, a, b, metric)}."


def losses_sentence(v: RateVerdict) -> str:
    """Where the proposal loses beyond the spread, stated plainly."""
    items = []
    for b, ov in v.against.items():
        for metric, table in ov.tables.items():
            lost = table[table["winner"] == b]
            if len(lost):
                items.append(f"to {b} on {name(metric)} at {fmt_k_list(lost['K'])} "
                             f"({gap_text(lost)})")
    head = f"**Where {v.contest.proposal} loses:**"
    if not items:
        return f"{head} nowhere beyond the seed spread at matched bits."
    return f"{head} it loses " + "; ".join(items) + "."


def natural_sentences(results: Results, dataset: str, setting: str) -> list[str]:
    """Each method of a rate without a contest (today the 7x7-grid VQ-VAE), at its
    natural bits, against the contests' methods on reconstruction."""
    rows = rows_of(results.comparison, dataset, setting)
    present = set(rows["method"])
    contest_methods = [n for c in active_contests(present)
                       for n in (c.proposal, *c.opponents, *([c.reference] if c.reference else []))]
    out = []
    for u in unmatched_methods(present):
        bits = rows[rows["method"] == u][R.BITS.column].dropna()
        if not len(bits):
            continue
        matched = rows[rows["method"].isin(M.matched(M.get(M.PROPOSAL).rate))][R.BITS.column]
        matched = matched.dropna()
        n = M.get(u).codes_per_image
        out.append(f"{u} spends {bits.min():g}-{bits.max():g} bits per image ({n} log2 K)"
                   + (f", against {matched.min():g}-{matched.max():g} for the one-code methods: "
                      f"{n} times the budget, so this is not a matched comparison."
                      if len(matched) else "."))
        for metric in RECONSTRUCTION_METRICS:
            clauses = [metric_clauses(t, u, b, metric) for b in dict.fromkeys(contest_methods)
                       if len(t := compare_methods(results.comparison, dataset, setting, u, b,
                                                   metric))]
            if clauses:
                out.append(f"**{name(metric)}** ({direction(metric)}, differences are {u} minus "
                           f"the other): " + "; ".join(clauses) + ".")
    return out


def quantization_cost(results: Results, v: RateVerdict) -> list[str]:
    """MSE of each a-posteriori method of the contest above the unquantized
    reference it decodes through."""
    ref = v.contest.reference
    if ref is None:
        return []
    out = []
    for a in (*v.contest.ablations, v.contest.proposal):
        table = compare_methods(results.comparison, v.dataset, v.setting, a, ref, R.MSE.column)
        if len(table):
            cells = ", ".join(f"{fmt_diff(r['diff'], r['rel_pct'])} at K = {r['K']}"
                              for _, r in table.iterrows())
            out.append(f"Cost of quantization: the MSE of {a} minus that of {ref} (its bound) "
                       f"is {cells}.")
    return out


def ignored_text(results: Results, dataset: str, setting: str) -> str:
    """'none', or which older configurations were present and left out."""
    old = rows_of(results.ignored, dataset, setting)
    if not len(old):
        return "none"
    by_method = "; ".join(f"{m} ({fmt_k_list(sorted(g['K'].unique()))})"
                          for m, g in old.groupby("method", sort=False))
    return (f"{plural(int(old['n_rows'].sum()), 'row')} of "
            f"{plural(old['config_id'].nunique(), 'older configuration')} ignored: {by_method}; "
            f"each method and K uses its newest configuration (its last row)")


def setup_facts(results: Results, dataset: str, setting: str) -> dict[str, str]:
    """The set-up of one dataset and setting, as label -> text (every ablation cell)."""
    rows = rows_of(results.cells, dataset, setting)
    record = results.records.get((dataset, setting), {})
    config = record.get("config", {})
    source = record.get("data_source")
    git = record.get("git", {})
    configs = [c for c in dict.fromkeys(rows["config_id"]) if c]
    return {
        "dataset asked": dataset,
        "dataset used": unique_text(rows["dataset_used"]) + (f" (source: {source})" if source else ""),
        "train / test images": f"{unique_text(rows['n_train'].astype(int))} / "
                               f"{unique_text(rows['n_test'].astype(int))}"
                               + (f" (--limit {config['limit']})" if config.get("limit") else ""),
        "seeds": unique_text(sorted(rows["seed"].unique())),
        "epochs (from the rows)": epochs_text(rows),
        "batch sizes (run record)": batch_sizes(record),
        "codebook sizes K": unique_text(sorted(int(k) for k in rows["K"].unique() if k > 0)),
        "k-NN neighbours": unique_text(rows["n_neighbors"].dropna().astype(int)),
        "configurations (config_id)": (f"{len(configs)}: {', '.join(configs)}" if configs
                                       else "not recorded (one configuration assumed)"),
        "older configurations": ignored_text(results, dataset, setting),
        "device": str(record.get("device", "not recorded")),
        "torch threads": str(record.get("torch_threads", "not recorded")),
        "torch / python": f"{record.get('torch', '?')} / {record.get('python', '?')}",
        "git commit of the last run": (f"{git.get('commit', '?')[:10]}"
                                       + (" (dirty)" if git.get("dirty") else ""))
                                      if git else "not recorded (every row's: Provenance)",
        "wall time (sum of wall_seconds)": fmt_seconds(rows["wall_seconds"].sum()),
    }


def methods_rows(results: Results) -> list[tuple[str, str, str, str]]:
    """(method, what it is, bits per image, role) of every method in the results."""
    present = set(results.comparison["method"])
    roles = {}
    for c in active_contests(present):
        roles[c.proposal] = "the proposal"
        for b in c.ablations:
            roles[b] = "ablation: a posteriori, not geodesic"
        if c.question:
            roles[c.question] = "the end-to-end baseline at matched bits"
        if c.reference:
            roles[c.reference] = "the bound of the a-posteriori methods"
    for u in unmatched_methods(present):
        roles[u] = "the classical setting: natural bits, not matched"
    out = []
    for m in M.METHODS.values():
        if m.name in present:
            bits = ("log2 K" if m.codes_per_image == 1 else f"{m.codes_per_image} log2 K"
                    if m.quantized else "-")
            out.append((m.name, m.description, bits, roles.get(m.name, "")))
    return out


def ks_as_run(results: Results) -> str:
    """'fashion-mnist: K = 16, 64, 256 (one code per image), K = 16 to 512 (a 7x7
    grid); mnist-5k: ...': the K of each group and rate, as its rows hold them."""
    parts = []
    for dataset, setting in results.groups:
        rows = rows_of(results.comparison, dataset, setting)
        by_rate = []
        for contest in active_contests(set(rows["method"])):
            ks = rows.loc[rows["method"].isin(M.matched(contest.rate)) & (rows["K"] > 0), "K"]
            if len(ks):
                by_rate.append(f"{fmt_k_range(sorted(set(ks)))} ({rate_short(contest)})")
        parts.append(f"{group_label(results, dataset, setting)}: {', '.join(by_rate) or 'none'}")
    return "; ".join(parts)


def methods_text(results: Results) -> str:
    """The bit budgets, in a sentence."""
    one = [n for n in M.matched(M.get(M.PROPOSAL).rate) if n in set(results.comparison["method"])]
    return (f"K as run: {ks_as_run(results)}. The one-code-per-image methods "
            f"({join_words(one) if one else 'none here'}) spend exactly log2 K bits per image, so "
            f"at equal K they are compared at matched bits; methods with more codes per image are "
            f"reported at their natural budget. Bits count the code indices only (no entropy "
            f"coding). {cells_rule(results)}")


def limitation_facts(results: Results) -> list[str]:
    """Computed caveats per group: seeds, epochs, dataset fallbacks, limits, collapse."""
    out = []
    for dataset, setting in results.groups:
        rows = rows_of(results.comparison, dataset, setting)
        config = results.records.get((dataset, setting), {}).get("config", {})
        seeds = sorted(rows["seed"].unique())
        used = list(dict.fromkeys(rows["dataset_used"]))
        spread = (f"{len(seeds)} seeds, so the spread is estimated from {len(seeds)} values"
                  if len(seeds) > 1 else "1 seed, so the spread cannot be estimated and no "
                                         "difference is called beyond it")
        text = (f"{run_label(dataset, setting, used)}: {spread}; training epochs "
                f"{epochs_text(rows)}")
        if used != [dataset]:
            text += (f"; {dataset} was asked and the run used {', '.join(map(str, used))} "
                     f"({unique_text(rows['n_train'].astype(int))} train / "
                     f"{unique_text(rows['n_test'].astype(int))} test images)")
        if config.get("limit"):
            text += f"; only the first {config['limit']} images of each split (--limit)"
        collapsed = [f"{m} (perplexity < 2 at {fmt_k_list(ks)})" for m, ks in
                     collapsed_codebooks(results.summary, dataset, setting).items()]
        if collapsed:
            text += (f"; codebook collapse: {join_words(collapsed)}, so those numbers describe a "
                     f"collapsed model, not a trained VQ-VAE")
        out.append(text + ".")
    return out


def fixed_limitations(results: Results) -> list[str]:
    """The caveats that hold for every run."""
    n_neighbors = unique_text(results.comparison["n_neighbors"].dropna().astype(int))
    ablations = join_words(dict.fromkeys(b for c in contests() for b in c.ablations)) or "k-means"
    present = set(results.comparison["method"])
    multi = [m for m in M.methods(quantized=True) if m.codes_per_image > 1 and m.name in present]
    out = [
        "Intra- and inter-cluster distances (and their ratio) are Euclidean distances in the VAE "
        "latent space, for every method, the VQ-VAEs' codes included.",
        f"Geodesic distortion is measured on the same k-NN graph (k = {n_neighbors}) whose "
        f"geodesics {M.PROPOSAL}'s k-medoids minimise, so it favours {M.PROPOSAL} by construction; "
        f"Euclidean distortion likewise favours {ablations}. Neither applies to the VQ-VAEs.",
    ]
    for m in multi:
        out.append(f"{m.name} has {m.codes_per_image} codes per image, so the label metrics (NMI, "
                   f"ARI, purity, code-to-label accuracy) and the intra/inter distances do not "
                   f"apply to it.")
    return out + [
        "'Beyond the spread' (|difference of means| > sum of stds) is a heuristic on few seeds, "
        "not a significance test; seeds are paired (the a-posteriori methods of one seed share "
        "that seed's VAE), and the paired counts are given beside it.",
        f"In the main verdicts the a-posteriori codebooks decode through a decoder trained on "
        f"continuous latents and never fine-tuned to the codes (their default cells); the "
        f"VQ-VAEs train theirs end to end. "
        + ("The ablation's fine-tuned cells fine-tune a copy of the decoder on the codes."
           if (results.cells["decoder"] == "finetuned").any() else
           "These results hold no fine-tuned cell."),
        "Bits per image count the code indices only; no entropy coding (perplexity shows the "
        "effective number of codes).",
        f"Hyper-parameters (latent size, k, learning rates, epochs) are shared, not tuned per "
        f"method; fit times include cache loads, and {M.PROPOSAL}'s include building the graph.",
    ]


# --- the ablation of the a-posteriori cells ----------------------------------------------

# How each value of a variant column (utils.methods.VARIANT_COLUMNS) is said.
CELL_WORDS = {
    "edge_length": {"latent": "latent edge lengths", "decoder": "decoder edge lengths"},
    "code_vectors": {"medoid": "medoid code vectors", "refined": "refined code vectors",
                     "centroid": "centroid code vectors"},
    "decoder": {"frozen": "the frozen decoder", "finetuned": "a fine-tuned decoder"},
}
# What switching a factor does, for the ablation section.
FACTOR_MEANING = {
    "edge_length": "the k-NN graph's edges measured through the decoder (the length of the "
                   "decoded segment, geodesic/decoder_metric.py) instead of in latent space",
    "code_vectors": "each code's vector moved from its medoid to the latent that decodes best "
                    "for its members (geodesic/refinement.py)",
    "decoder": "a copy of the VAE's decoder fine-tuned on the codes (train/finetune.py) instead "
               "of the frozen one",
}


def cell_words(cell: Cell) -> str:
    """'latent edge lengths, medoid code vectors and the frozen decoder'."""
    return join_words(CELL_WORDS[c][v] for c, v in cell.values.items() if v)


def factor_name(factor: Factor) -> str:
    """'decoder edge lengths', 'refined code vectors', 'a fine-tuned decoder'."""
    return CELL_WORDS[factor.column][factor.value]


def default_cells_text() -> str:
    """'geodesic-vae with latent edge lengths, ...; kmeans-vae with ...'."""
    names = sorted(M.names(family=M.A_POSTERIORI), key=lambda n: n != M.PROPOSAL)
    return "; ".join(f"{n} with {cell_words(Cell.default(n))}" for n in names)


def cells_rule(results: Results) -> str:
    """Which cell the main verdicts use, and where the others are shown."""
    text = (f"The main verdicts (page 1, the README's short answer and each dataset's "
            f"matched-bits comparisons) use each a-posteriori method's default cell: "
            f"{default_cells_text()}. These cells were fixed before any run, not chosen on the "
            f"test split; nothing is tuned on test.")
    groups = [group_label(results, d, s) for d, s in results.groups
              if has_ablation(results.cells, d, s)]
    if groups:
        text += (f" The ablation of {join_words(groups)} shows the other cells, each factor "
                 f"switched alone from the default.")
    return text


def share_range(values) -> str:
    """'20% to 40%' over the finite values ('n/a' when none)."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "n/a"
    return span(fmt_share(min(values)), fmt_share(max(values)))


def where_clear(table: pd.DataFrame, column: str = "clear") -> str:
    """'at every K', 'at K = 16, 64' or 'at no K': where ``column`` is True."""
    clear = table[table[column].fillna(False).astype(bool)]
    if not len(clear):
        return "at no K"
    return "at every K" if len(clear) == len(table) else f"at {fmt_k_list(clear['K'])}"


def only_at(table: pd.DataFrame, ks) -> str:
    """'at K = 16 only; ' when ``table`` lacks some of ``ks``, else ''."""
    have = sorted(int(k) for k in table["K"])
    return "" if set(have) >= set(ks) else f"at {fmt_k_list(have)} only; "


def gap_phrase(gap: pd.DataFrame, a: str, b: str) -> str:
    """"geodesic-vae's MSE is 8.4% to 22.8% higher than kmeans-vae's": the
    relative gap of two cells' means over K, whichever way it points."""
    rel = gap["rel_pct"][np.isfinite(gap["rel_pct"])]
    metric = name(ABLATION_METRIC)
    if not len(rel):
        diffs = span(f"{gap['diff'].min():+.3g}", f"{gap['diff'].max():+.3g}")
        return f"{a}'s {metric} minus {b}'s is {diffs}"
    if (rel > 0).all() or (rel < 0).all():
        size = span(fmt_pct(rel.abs().min()), fmt_pct(rel.abs().max()))
        return f"{a}'s {metric} is {size} {'higher' if rel.iloc[0] > 0 else 'lower'} than {b}'s"
    return f"{a}'s {metric} differs from {b}'s by {fmt_rel(rel.min())} to {fmt_rel(rel.max())}"


def spread_tag(table: pd.DataFrame, column: str) -> str:
    """'beyond the spread', 'within the spread' or 'beyond the spread at K = 16':
    where ``column`` of ``table`` holds."""
    where = where_clear(table, column)
    return {"at every K": "beyond the spread", "at no K": "within the spread"}.get(
        where, f"beyond the spread {where}")


def factor_phrase(factor: Factor, av: AblationVerdict) -> str:
    """'refined code vectors 30% (beyond the spread)': the share of the gap a
    factor closes and whether its MSE change is beyond the spread; with the
    share when the opponent gets the same help."""
    t = factor.table
    text = (f"{factor_name(factor)} {share_range(t['closed_pct'])} "
            f"({only_at(t, av.ks)}{spread_tag(t, 'change_clear')})")
    if factor.opponent is not None:
        both = t[np.isfinite(t["closed_pct_both"].astype(float))]
        text += (f", {share_range(both['closed_pct_both'])} once {av.opponent.method} gets it "
                 f"too (gap left {spread_tag(both, 'remaining_clear')})" if len(both) else
                 f", not yet measured against {factor.opponent.label}")
    return text


def most_sentence(av: AblationVerdict) -> str:
    """Which factor explains most of the gap, or why none does."""
    if not av.factors:
        return (f"No cell of {av.proposal.method} other than the default has results yet, so no "
                f"factor is measured.")
    if not av.gap["clear"].any():
        return "The gap is nowhere beyond the spread, so no factor is credited with closing it."
    if not any(np.isfinite(f.explained_mean) for f in av.factors):
        ks = sorted({int(k) for f in av.factors for k in f.table["K"]})
        return (f"The factors are measured at {fmt_k_list(ks) if ks else 'no K'} only, where the "
                f"gap is not beyond the spread, so none is credited with closing it.")
    most = av.most
    if most is None:
        return ("No factor closes any of the gap on average over the K where it is beyond the "
                "spread.")
    fair = " (both sides fine-tuned)" if most.opponent is not None else ""
    share = fmt_share(most.explained_mean)
    if most.explained_mean > 100:  # more than closed: the gap turns the other way
        return (f"The largest share is explained by {factor_name(most)}{fair}: it more than "
                f"closes the gap ({share} of it on average over the K where the gap is beyond the "
                f"spread): with it, {most.cell.method} ends ahead of "
                f"{(most.opponent or av.opponent).label}.")
    return (f"The largest share is explained by {factor_name(most)}{fair}: {share} on average "
            f"over the K where the gap is beyond the spread.")


def labels_sentence(av: AblationVerdict) -> str:
    """Whether decoder-aware geodesics (decoder edge lengths against latent ones,
    the rest of the default cell kept) change NMI and code-to-label accuracy
    beyond the spread, and where ('' without that cell)."""
    edges = next((f for f in av.factors if f.column == "edge_length"), None)
    if edges is None or not edges.labels:
        return ""
    base = Cell.default(edges.cell.method).label
    changed, same = [], []
    for metric, table in edges.labels.items():
        where = where_decided(table, edges.cell.label, base)
        (changed if where else same).append(f"{name(metric)} ({where})" if where else name(metric))
    head = f"Decoder-aware geodesics ({factor_name(edges)} against latent ones) change "
    if not changed:
        return head + f"neither {' nor '.join(same)} beyond the spread."
    return head + join_words(changed) + " beyond the spread" + (
        f", not {join_words(same)}" if same else "") + "."


def best_phrase(best: pd.DataFrame, method: str) -> str:
    """'geodesic-vae latent/refined/finetuned (every K)' or one cell per K group."""
    by_cell = {}
    for _, r in best.iterrows():
        by_cell.setdefault(r["cell"].name, []).append(r["K"])
    if len(by_cell) == 1:
        return f"{method} {next(iter(by_cell))}"
    return f"{method} " + ", ".join(f"{c} at {fmt_k_list(ks)}" for c, ks in by_cell.items())


def best_sentence(av: AblationVerdict) -> str:
    """The best cell of each side on reconstruction, and their gap; reported only."""
    a, b = av.proposal.method, av.opponent.method
    if not len(av.best_gap):
        return ""
    gap = av.best_gap
    return (f"Best cells on {name(ABLATION_METRIC)} (picked on the test split, so reported, not "
            f"used for any verdict): {best_phrase(av.best[a], a)} and "
            f"{best_phrase(av.best[b], b)}; between them {gap_phrase(gap, a, b)}, beyond the "
            f"spread {where_clear(gap)}.")


def seeds_phrase(av: AblationVerdict) -> str:
    """'3 seeds per cell' or '1 to 3 seeds per cell and K'."""
    lo, hi = av.n_seeds
    return f"{plural(hi, 'seed')} per cell" if lo == hi else f"{lo} to {hi} seeds per cell and K"


def cells_phrase(av: AblationVerdict) -> str:
    """'8 of 8 geodesic-vae cells and 2 of 2 kmeans-vae cells'."""
    return join_words(f"{len(cells)} of {len(all_cells(m))} {m} cells"
                      for m, cells in av.cells.items())


def ablation_item(av: AblationVerdict, brief: bool = False) -> str:
    """The short-answer item of one group's ablation: the gap at the default
    cells, the share each factor closes, which explains most, and the label
    metrics under decoder-aware geodesics (the best cells are in the section).
    ``brief`` (page 1, the README) leaves out the setting, the cell counts and
    each factor's share (those stay in the ablation section)."""
    a, b = av.proposal.method, av.opponent.method
    where = "" if brief else f"{cells_phrase(av)}, "
    text = (f"**{verdict_label(av)}, ablation** ({where}{fmt_k_range(av.ks)}, {seeds_phrase(av)}): at the "
            f"default cells {gap_phrase(av.gap, a, b)} (beyond the spread {where_clear(av.gap)}).")
    if av.factors and not brief:
        text += (" Switched alone, each factor closes this share of that gap: "
                 + "; ".join(factor_phrase(f, av) for f in av.factors) + ".")
    text += " " + most_sentence(av)
    labels = labels_sentence(av)
    return text + (" " + labels if labels else "")


def brief_ablation_item(av: AblationVerdict) -> str:
    """Page 1's item of one group's ablation (:func:`ablation_item`, brief)."""
    return ablation_item(av, brief=True)


def ablation_intro(av: AblationVerdict, record: dict) -> str:
    """What the cells are and how they are read."""
    a, b = av.proposal.method, av.opponent.method
    epochs = record.get("config", {}).get("finetune_epochs")
    meaning = "; ".join(f"*{CELL_WORDS[c][v]}*: {FACTOR_MEANING[c]}"
                        + (f" ({plural(epochs, 'epoch')})" if c == "decoder" and epochs else "")
                        for c, v in (("edge_length", "decoder"), ("code_vectors", "refined"),
                                     ("decoder", "finetuned")))
    return (f"The main verdict uses the default cells, {a} with {cell_words(av.proposal)} and "
            f"{b} with {cell_words(av.opponent)}. Here each factor is switched alone from "
            f"{a}'s default: {meaning}. The gap is {a}'s {name(ABLATION_METRIC)} minus {b}'s; a "
            f"factor closes the share (gap - gap left) / gap of it (100%: closed, 0%: unchanged, "
            f"below 0: widened), and where the factor applies to {b} too (a fine-tuned decoder) "
            f"the gap left is also measured against {b} with the same help. 'Beyond the spread' "
            f"is the rule of the main verdict. Cells are not chosen on the test split: the best "
            f"cells are reported, never used for a verdict. Results so far: {cells_phrase(av)}, "
            f"{seeds_phrase(av)}.")


def factor_sentence(factor: Factor, av: AblationVerdict) -> str:
    """Per K: the factor's MSE change, its share of the gap, and the gap left."""
    parts = []
    for _, r in factor.table.iterrows():
        part = (f"K = {r['K']}: change {r['change']:+.3g}"
                f"{' (beyond the spread)' if r['change_clear'] else ''}, closes "
                f"{fmt_share(r['closed_pct'])}")
        if factor.opponent is not None and np.isfinite(r["closed_pct_both"]):
            part += (f", against {factor.opponent.name} {fmt_share(r['closed_pct_both'])} (gap "
                     f"left {r['remaining']:+.3g}"
                     f"{', beyond the spread' if r['remaining_clear'] else ''})")
        parts.append(part)
    return (f"**{factor_name(factor).capitalize()}** ({factor.cell.label}; changes are its "
            f"{name(ABLATION_METRIC)} minus the default's): " + "; ".join(parts) + ".")


def ablation_sentences(av: AblationVerdict) -> list[str]:
    """The computed sentences of one group's ablation section."""
    a, b = av.proposal, av.opponent
    gap = "; ".join(f"{fmt_diff(r['diff'], r['rel_pct'])} at K = {r['K']}"
                    for _, r in av.gap.iterrows())
    out = [f"**Gap at the default cells** ({name(ABLATION_METRIC)}, {a.label} minus {b.label}): "
           f"{gap}; beyond the spread {where_clear(av.gap)}."]
    out += [factor_sentence(f, av) for f in av.factors]
    out.append(most_sentence(av))
    edges = next((f for f in av.factors if f.column == "edge_length"), None)
    if edges is not None:
        out += [metric_sentence(t, edges.cell.label, Cell.default(edges.cell.method).label, m)
                for m, t in edges.labels.items()]
    out += [s for s in (labels_sentence(av), best_sentence(av)) if s]
    return out
