"""The sentences of one verdict (report/verdicts.py), in the report's Markdown subset.

* what a verdict says, whichever way it falls: :func:`verdict_words` ('**yes** at
  K = 16, 64; no clear difference at K = 512'), :func:`describe` (better on, worse
  on, without a clear winner on, with how much), :func:`opponent_clause`;
* the finding of one (dataset, setting, rate) on page 2 (:func:`answer_item`) and
  its brief form for page 1 and the README (:func:`brief_item`), which the extra
  sections (generation, tuned, batch size, beta-VAE) reuse for their own verdicts;
* the detail sentences of a dataset's comparison: each metric's wins and losses
  at each K (:func:`metric_sentence`), where the proposal loses
  (:func:`losses_sentence`), the unmatched methods at their natural bits
  (:func:`natural_sentences`) and the cost of quantization (:func:`quantization_cost`).

report.formatting writes the numbers; report.layout lays the sentences out.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from report.formatting import (fmt_diff, fmt_k_list, fmt_k_range, fmt_pct, fmt_rel, join_words,
                               plural, run_label, span, unique_text)
from report.load import Results
from report.verdicts import (RECONSTRUCTION_METRICS, Contest, OpponentVerdict, RateVerdict,
                             active_contests, compare_methods, direction, rows_of,
                             unmatched_methods)
from utils import methods as M
from utils import metric_registry as R


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


def rate_phrase(contest: Contest) -> str:
    """'one code per image (log2 K bits)' or 'a 7x7 grid of codes (49 log2 K bits)'."""
    n = M.get(contest.proposal).codes_per_image
    if n == 1:
        return "one code per image (log2 K bits)"
    side = math.isqrt(n)
    shape = f"a {side}x{side} grid of codes" if side * side == n else f"{n} codes per image"
    return f"{shape} ({n} log2 K bits)"


def rate_short(contest: Contest) -> str:
    """'one code per image' or 'a 7x7 grid' (of codes per image)."""
    n = M.get(contest.proposal).codes_per_image
    side = math.isqrt(n)
    return ("one code per image" if n == 1 else f"a {side}x{side} grid" if side * side == n
            else f"{n} codes per image")


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


def opponent_clauses(v, brief: bool = False, of: str = "") -> list[str]:
    """One sentence per opponent of a SectionVerdict ``v``, its main opponent first:
    'Against vqvae-global<of>, geodesic-vae is better on MSE (...)'; with ``brief`` the
    others in a word each ('Against kmeans-vae<of>: **no**.'). ``of``: e.g. "'s codes"."""
    order = [v.main] + [b for b in v.against if b != v.main]
    out = []
    for i, b in enumerate(order):
        ov = v.against[b]
        if brief and i:
            out.append(f"Against {b}{of}: {verdict_words(ov, bold=False)}.")
        else:
            who = v.contest.proposal if i == 0 else "it"
            out.append(f"Against {b}{of}, {who} is {describe(ov, v.contest.proposal)}.")
    return out
