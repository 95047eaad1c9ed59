"""Who beats whom beyond the seed spread: the statistics of the report, without text.

A method A *beats* B on a metric at a codebook size K when the difference of
their means over seeds exceeds the sum of their standard deviations over seeds,

    |mean_A - mean_B| > std_A + std_B        (sample std, ddof = 1, as summary.csv),

both with at least two seeds; otherwise there is no clear winner. Seeds are
also paired (the a-posteriori methods of one seed share that seed's VAE) and
the number of seeds on which A is better is counted beside the rule.

The a-posteriori methods come in ablation cells (utils.methods.VARIANT_COLUMNS:
edge lengths, code vectors, decoder). Configurations are kept per (dataset,
setting, method, cell, K) (:data:`GROUP_KEYS`); the main verdicts use each
method's *default* cell (``utils.methods.variants(name)[0]``), fixed in advance,
and :func:`ablation_verdict` measures what the other cells change (how much of
the reconstruction gap between the proposal and k-means each factor closes).

Verdicts are computed per (dataset, setting, rate) by :func:`rate_verdict`, for
the :class:`Contest` of that rate: the proposal against the other quantized
methods of the same rate in :data:`utils.methods.METHODS`, among those a section
declares (:func:`section_contests`, report.sections.SectionData.methods). A new rate (the 7x7
grid) needs no code here: once its a-posteriori geodesic method is an entry of
METHODS, :func:`contests` returns its contest and every verdict, sentence and
table follows.

    >>> results = report.load.load_results(Path("experiments/results"))
    >>> [v.answer for v in all_verdicts(results)]
    ['mixed', 'yes']
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from report.load import CELL_COLUMNS, Results, all_cells, default_cell, is_default
from report.sections import COMPARISON, QUESTIONS, SectionData
from utils import methods as M
from utils import metric_registry as R

DETAIL_METRICS = COMPARISON.detail_metrics
ANSWER_METRICS = COMPARISON.answer_metrics
RECONSTRUCTION_METRICS = (R.MSE.column, R.BCE.column)
# An end-to-end codebook whose perplexity is below this used about one code.
COLLAPSE_PERPLEXITY = 2.0


def direction(metric: str) -> str:
    """'higher is better' or 'lower is better' (utils/metric_registry.py)."""
    return R.get(metric).direction


def rows_of(frame: pd.DataFrame, dataset: str, setting: str) -> pd.DataFrame:
    """Rows of one dataset and setting."""
    return frame[(frame["dataset"] == dataset) & (frame["setting"] == setting)]


# --- two methods on one metric --------------------------------------------------------

COMPARE_COLUMNS = ["K", "mean_a", "std_a", "mean_b", "std_b", "n_a", "n_b", "diff", "rel_pct",
                   "better", "clear", "winner", "seeds_a_better", "n_paired"]


def values_by_k_seed(rows: pd.DataFrame, method: str, metric: str, ks) -> pd.DataFrame:
    """Finite values of one method as columns K, seed, value; an unquantized
    reference (K = 0, no codebook) is repeated at every K in ``ks``."""
    if metric not in rows:
        return pd.DataFrame(columns=["K", "seed", "value"])
    own = rows[rows["method"] == method]
    sub = own[["K", "seed", metric]].rename(columns={metric: "value"})
    finite = np.isfinite(sub["value"].astype(float)).to_numpy()
    sub = sub[finite]
    if method in M.METHODS and not M.get(method).quantized and len(sub):
        weights = bound_weights(rows, method, ks)
        beta = own["kl_weight"][finite] if "kl_weight" in own else None
        sub = pd.concat([(sub if weights.get(k) is None else sub[(beta == weights[k]).to_numpy()])
                         .assign(K=k) for k in ks], ignore_index=True)
    return sub


def bound_weights(rows: pd.DataFrame, reference: str, ks) -> dict:
    """{K: the KL weight whose rows of the unquantized ``reference`` bound the codes at K}.

    The tuned protocol chooses the VAE's β per K, so one rate can hold a bound per β
    (report.load keeps one configuration per KL weight): at each K the bound is the
    reference at the β its a-posteriori methods' rows used there, and the newest β
    (the last row's) where they used none or several. Empty when the reference has one
    β or records none (its rows are then the bound at every K)."""
    if "kl_weight" not in rows:
        return {}
    own = rows[rows["method"] == reference]["kl_weight"].dropna()
    if own.nunique() < 2:
        return {}
    rate = M.get(reference).rate
    coded = rows[rows["method"].map(lambda m: m in M.METHODS and M.get(m).rate == rate
                                    and M.get(m).family == M.A_POSTERIORI)]
    out = {}
    for k in ks:
        used = coded.loc[coded["K"] == k, "kl_weight"].dropna().unique()
        out[k] = used[0] if len(used) == 1 and used[0] in set(own) else own.iloc[-1]
    return out


def clear_difference(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float,
                     n_b: int) -> bool:
    """The report's rule: ``|mean_a - mean_b| > std_a + std_b``, with >= 2 seeds each."""
    return bool(n_a >= 2 and n_b >= 2 and abs(mean_a - mean_b) > std_a + std_b)


def compare_at_k(xa: pd.DataFrame, xb: pd.DataFrame, a: str, b: str, higher: bool) -> dict:
    """Two methods' per-seed values (columns seed, value) at one K: the means,
    the stds, the rule ``clear = |diff| > std_a + std_b`` (>= 2 seeds each) and
    the count of paired seeds on which ``a`` is better."""
    mean_a, mean_b = xa["value"].mean(), xb["value"].mean()
    std_a, std_b = xa["value"].std(), xb["value"].std()  # ddof=1, as summary.csv
    diff = mean_a - mean_b
    sign = 1 if higher else -1
    better = a if sign * diff > 0 else b if sign * diff < 0 else "tie"
    clear = clear_difference(mean_a, std_a, len(xa), mean_b, std_b, len(xb))
    paired = xa.merge(xb, on="seed", suffixes=("_a", "_b"))
    return {"mean_a": mean_a, "std_a": std_a, "mean_b": mean_b, "std_b": std_b,
            "n_a": len(xa), "n_b": len(xb), "diff": diff,
            "rel_pct": 100 * diff / abs(mean_b) if mean_b != 0 else math.nan,
            "better": better, "clear": clear,
            "winner": better if clear and better != "tie" else "none",
            "seeds_a_better": int((sign * (paired["value_a"] - paired["value_b"]) > 0).sum()),
            "n_paired": len(paired)}


def compare_methods(comparison: pd.DataFrame, dataset: str, setting: str, a: str, b: str,
                    metric: str) -> pd.DataFrame:
    """Method ``a`` against ``b`` on ``metric`` at every K where both have values.

    Returns one row per K (columns :data:`COMPARE_COLUMNS`): mean_a, std_a,
    mean_b, std_b, n_a, n_b (seeds), diff (mean_a - mean_b), rel_pct (diff
    relative to |mean_b|), better (a, b or 'tie' by the means), clear (beyond
    the spread), winner (a, b or 'none' by that rule), seeds_a_better and
    n_paired (seeds present for both).
    """
    rows = rows_of(comparison, dataset, setting)
    ks = sorted(k for k in rows["K"].unique() if k > 0)
    va, vb = (values_by_k_seed(rows, m, metric, ks) for m in (a, b))
    return compare_values(va, vb, a, b, metric)


def compare_values(va: pd.DataFrame, vb: pd.DataFrame, a: str, b: str,
                   metric: str) -> pd.DataFrame:
    """:func:`compare_at_k` at every K of both value frames (columns K, seed,
    value), as :func:`compare_methods` returns it."""
    higher = R.get(metric).higher_is_better
    out = [compare_at_k(va[va["K"] == k], vb[vb["K"] == k], a, b, higher) | {"K": int(k)}
           for k in sorted(set(va["K"]) & set(vb["K"]))]
    return pd.DataFrame(out, columns=COMPARE_COLUMNS)


def metric_verdict(table: pd.DataFrame, a: str, b: str) -> str:
    """'better' when ``a`` wins beyond the spread at half the K or more and never
    loses beyond it, 'worse' the other way round, else 'unclear'."""
    wins, losses = (table["winner"] == a).sum(), (table["winner"] == b).sum()
    if wins and not losses and 2 * wins >= len(table):
        return "better"
    if losses and not wins and 2 * losses >= len(table):
        return "worse"
    return "unclear"


NO_DIFFERENCE = "no clear difference"


def overall(groups: dict[str, list[str]]) -> str:
    """'yes' (better somewhere, worse nowhere), 'no' (the reverse), 'mixed' or
    'no clear difference', from metric_verdict groups."""
    if groups["better"] and not groups["worse"]:
        return "yes"
    if groups["worse"] and not groups["better"]:
        return "no"
    return "mixed" if groups["better"] else NO_DIFFERENCE


# --- contests and verdicts ------------------------------------------------------------

class Contest(NamedTuple):
    """What is compared at one rate: the proposal against the other quantized
    methods of that rate (a-posteriori ablations first, then end to end), and
    the unquantized reference that bounds the a-posteriori methods (or None)."""

    rate: str
    proposal: str
    opponents: tuple[str, ...]
    reference: str | None

    @property
    def question(self) -> str | None:
        """The opponent the research question is about: the first end-to-end one."""
        return next((b for b in self.opponents if M.get(b).family == M.END_TO_END), None)

    @property
    def ablations(self) -> tuple[str, ...]:
        """The a-posteriori opponents: same latents, another quantizer."""
        return tuple(b for b in self.opponents if M.get(b).family == M.A_POSTERIORI)


def rates() -> tuple[str, ...]:
    """The rates of utils/methods.py, in METHODS order."""
    return tuple(dict.fromkeys(m.rate for m in M.methods(quantized=True)))


def contest_for(rate: str) -> Contest | None:
    """The contest at ``rate``: utils.methods.PROPOSAL and OPPONENTS at the
    proposal's rate; at another rate, the method built like the proposal (same
    builder and quantizer kind) against the other quantized
    methods of that rate. None when the rate has no such method."""
    proposal = M.get(M.PROPOSAL)
    if rate == proposal.rate:
        return Contest(rate, proposal.name, tuple(M.OPPONENTS), M.reference(rate))
    kind = proposal.options.get("quantizer")
    same = [m.name for m in M.methods(rate=rate, quantized=True)
            if m.build == proposal.build and m.options.get("quantizer") == kind]
    if not same:
        return None
    # the ablations first, then the end-to-end baselines, as OPPONENTS orders them
    others = sorted((n for n in M.matched(rate) if n != same[0]),
                    key=lambda n: M.get(n).family != M.A_POSTERIORI)
    return Contest(rate, same[0], tuple(others), M.reference(rate))


def contests() -> list[Contest]:
    """Every rate's contest, in rate order (rates without a proposal are skipped)."""
    return [c for c in map(contest_for, rates()) if c is not None]


def narrowed(contest: Contest, methods) -> Contest | None:
    """``contest`` among ``methods`` only: its opponents and reference that are
    among them; None when its proposal is not."""
    if contest.proposal not in methods:
        return None
    return contest._replace(opponents=tuple(b for b in contest.opponents if b in methods),
                            reference=contest.reference if contest.reference in methods else None)


def section_contests(section: SectionData = COMPARISON) -> list[Contest]:
    """The contests a section holds: :func:`contests` narrowed to the methods it
    declares (report.sections.SectionData.methods), in rate order."""
    return [n for c in contests() if (n := narrowed(c, set(section.methods))) is not None]


def active_contests(present=None, section: SectionData = COMPARISON) -> list[Contest]:
    """The contests of ``section`` whose proposal is among the ``present`` methods (all
    when None): results from before a rate had its proposal hold no contest at that rate."""
    return [c for c in section_contests(section) if present is None or c.proposal in present]


def unmatched_methods(present=None) -> tuple[str, ...]:
    """Quantized methods of rates without an (active) contest, reported at their natural bits."""
    matched_rates = {c.rate for c in active_contests(present)}
    return tuple(m.name for m in M.methods(quantized=True) if m.rate not in matched_rates)


class OpponentVerdict(NamedTuple):
    """The proposal against one opponent: answer (overall of groups), groups
    ({'better'|'worse'|'unclear': [answer metric columns]}), tables
    ({metric: compare_methods table}, DETAIL_METRICS that apply to both) and
    by_k ({K: the answer at that K alone}, :func:`answers_by_k`)."""

    opponent: str
    answer: str
    groups: dict
    tables: dict
    by_k: dict = {}

    @property
    def rests_on(self) -> tuple[int, ...]:
        """The K the answer rests on (:func:`resting_ks`)."""
        return resting_ks(self.answer, self.by_k)

    @property
    def split(self) -> list[tuple[str, tuple[int, ...]]]:
        """[(answer, K)]: the K grouped by their own answer, the overall answer's
        first; one entry when every K says the same (:func:`split_by_answer`)."""
        return split_by_answer(self.answer, self.by_k)


class RateVerdict(NamedTuple):
    """The verdict of one (dataset, setting, rate).

    against : {opponent: OpponentVerdict}, contest order, opponents present only.
    collapsed : {end-to-end method: [K with perplexity < 2]} of this group.
    """

    dataset: str
    setting: str
    contest: Contest
    dataset_used: tuple
    n_seeds: int
    n_train: tuple
    n_test: tuple
    ks: tuple
    against: dict
    collapsed: dict

    main = property(lambda self: main_opponent(self.contest, self.against))
    answer = property(lambda self: stated_answer(self.contest, self.against))


def main_opponent(contest: Contest, against: dict) -> str | None:
    """The opponent an answer is stated against: the question's, else the first present."""
    q = contest.question
    return q if q in against else next(iter(against), None)


def stated_answer(contest: Contest, against: dict) -> str:
    """yes, no, mixed, no clear difference, or 'no answer' without an opponent."""
    main = main_opponent(contest, against)
    return against[main].answer if main else "no answer"


def opponent_verdict(rows: pd.DataFrame, a: str, b: str,
                     section: SectionData = COMPARISON) -> OpponentVerdict | None:
    """``a`` against ``b`` on every detail metric of ``section`` in ``rows`` (one
    dataset and setting of its table), the answer decided on its answer metrics;
    None when no metric applies to both. The one verdict path of every section."""
    ks = sorted(k for k in rows["K"].unique() if k > 0)
    tables = {m: compare_values(values_by_k_seed(rows, a, m, ks), values_by_k_seed(rows, b, m, ks),
                                a, b, m) for m in section.detail_metrics}
    return verdict_of_tables(tables, a, b, section.answer_metrics)


def verdict_of_tables(tables: dict, a: str, b: str, answer_metrics) -> OpponentVerdict | None:
    """The OpponentVerdict of per-metric comparison tables ({metric: compare_values
    table}): each of ``answer_metrics`` grouped by :func:`metric_verdict`, the answer
    by :func:`overall`; None when no table has a row."""
    tables = {m: t for m, t in tables.items() if len(t)}
    if not tables:
        return None
    groups = {"better": [], "worse": [], "unclear": []}
    for metric in answer_metrics:
        if metric in tables:
            groups[metric_verdict(tables[metric], a, b)].append(metric)
    return OpponentVerdict(b, overall(groups), groups, tables,
                           answers_by_k(tables, a, b, answer_metrics))


def answers_by_k(tables: dict, a: str, b: str, answer_metrics) -> dict[int, str]:
    """{K: the answer at that K alone}: :func:`overall` of the answer metrics,
    each better (``a`` wins beyond the spread at K), worse (``b`` does) or
    unclear there; K in increasing order."""
    voting = [tables[m] for m in answer_metrics if m in tables]
    out = {}
    for k in sorted({int(k) for t in voting for k in t["K"]}):
        groups = {"better": [], "worse": [], "unclear": []}
        for metric, t in zip(answer_metrics, voting):
            winner = t.loc[t["K"] == k, "winner"]
            if len(winner):
                key = {a: "better", b: "worse"}.get(winner.iloc[0], "unclear")
                groups[key].append(metric)
        out[k] = overall(groups)
    return out


def resting_ks(answer: str, by_k: dict) -> tuple[int, ...]:
    """The K an ``answer`` rests on: those whose own answer is the same; for
    'mixed' (one metric won at some K, another lost at others), those decided
    either way; every K when none is."""
    if answer == "mixed":
        ks = tuple(k for k, a in by_k.items() if a != NO_DIFFERENCE)
    else:
        ks = tuple(k for k, a in by_k.items() if a == answer)
    return ks or tuple(by_k)


def split_by_answer(answer: str, by_k: dict) -> list[tuple[str, tuple[int, ...]]]:
    """[(answer, K)] of ``by_k`` grouped by answer: ``answer``'s K first, then the
    others in order of their first K; one entry when every K says the same."""
    groups = {}
    for k, a in by_k.items():
        groups.setdefault(a, []).append(k)
    first = [(answer, tuple(groups.pop(answer)))] if answer in groups else []
    return first + [(a, tuple(ks)) for a, ks in groups.items()]


def collapsed_codebooks(summary: pd.DataFrame, dataset: str, setting: str) -> dict[str, list[int]]:
    """{end-to-end method: [K]} where its codebook collapsed to about one code."""
    rows = rows_of(summary, dataset, setting)
    out = {}
    for method in M.names(family=M.END_TO_END):
        sub = rows[(rows["method"] == method) & (rows[R.PERPLEXITY.mean] < COLLAPSE_PERPLEXITY)]
        if len(sub):
            out[method] = sorted(int(k) for k in sub["K"])
    return out


def distinct(values) -> tuple:
    """Distinct non-NaN values in order of appearance."""
    return tuple(v for v in dict.fromkeys(values) if not (isinstance(v, float) and math.isnan(v)))


def rate_verdict(results: Results, dataset: str, setting: str,
                 contest: Contest) -> RateVerdict | None:
    """The verdict of ``contest`` on one dataset and setting; None when its
    proposal did not run there."""
    rows = rows_of(results.comparison, dataset, setting)
    present = set(rows["method"])
    if contest.proposal not in present:
        return None  # its opponents are then reported at their natural bits
    ran = rows[rows["method"].isin([contest.proposal, *contest.opponents])]
    against = {}
    for b in contest.opponents:
        v = opponent_verdict(rows, contest.proposal, b)
        if v is not None:
            against[b] = v
    return RateVerdict(
        dataset, setting, contest, distinct(ran["dataset_used"]), int(ran["seed"].nunique()),
        distinct(ran["n_train"].astype(int)), distinct(ran["n_test"].astype(int)),
        tuple(sorted(int(k) for k in ran["K"].unique() if k > 0)), against,
        collapsed_codebooks(results.summary, dataset, setting))


def all_verdicts(results: Results) -> list[RateVerdict]:
    """Every (dataset, setting) group times every contest, groups first."""
    out = []
    for dataset, setting in results.groups:
        for contest in section_contests(COMPARISON):
            v = rate_verdict(results, dataset, setting, contest)
            if v is not None:
                out.append(v)
    return out


# --- page 1: one verdict per question, rate and dataset ------------------------------

class QuestionVerdict(NamedTuple):
    """One question of a cell of page 1's answer table: the proposal of ``contest``
    against ``opponent`` (by default its classical end-to-end opponent,
    ``contest.question``; :data:`OPPONENT_ROLES`) on the primary metric of ``section``
    (one of report.sections.QUESTIONS), on one dataset and setting.

    verdict : the OpponentVerdict, or None where the metric does not apply to
        both or either has no rows.
    k : the largest K the verdict rests on (None without a verdict); mean_a,
        mean_b : the proposal's and the opponent's means over seeds there.
    """

    dataset: str
    setting: str
    dataset_used: tuple
    section: SectionData
    contest: Contest
    verdict: OpponentVerdict | None
    k: int | None = None
    mean_a: float = math.nan
    mean_b: float = math.nan
    protocol: str = "fixed"  # of the rows it rests on: "fixed" budgets or "tuned" (run_tuned.py)
    opponent: str | None = None  # the method compared against (None: none has rows)
    rivals: tuple = ()  # the rate's end-to-end methods with rows of the primary metric here


class SectionVerdict(NamedTuple):
    """The verdict of one (dataset, setting, rate) on a section's rows: the proposal of
    ``contest`` against every opponent with rows, ``against`` {opponent:
    OpponentVerdict} in contest order; ``rows`` are theirs (for what the sentences say)."""

    dataset: str
    setting: str
    contest: Contest
    dataset_used: tuple
    n_seeds: int
    ks: tuple
    against: dict
    rows: pd.DataFrame

    main = property(lambda self: main_opponent(self.contest, self.against))
    answer = property(lambda self: stated_answer(self.contest, self.against))


def section_verdicts(frame: pd.DataFrame, section: SectionData) -> list[SectionVerdict]:
    """One verdict per (dataset, setting, rate) of ``frame`` whose proposal and an
    opponent have rows, on ``section``'s methods and metrics (rows: one configuration
    each)."""
    out = []
    for (dataset, setting), rows in frame.groupby(["dataset", "setting"], sort=False):
        present = set(rows["method"])
        for contest in active_contests(present, section):
            against = {b: ov for b in contest.opponents if b in present
                       for ov in [opponent_verdict(rows, contest.proposal, b, section)]
                       if ov is not None}
            if against:
                mine = rows[rows["method"].isin([contest.proposal, *against])]
                out.append(SectionVerdict(dataset, setting, contest,
                                          tuple(sorted(set(mine["dataset_used"]))),
                                          int(mine.groupby("method")["seed"].nunique().min()),
                                          tuple(sorted(set(mine["K"]))), against, mine))
    return out


# The opponents of page 1's table, one column each: the strongest end-to-end quantizer with
# rows at the rate, the classical VQ-VAE the research question names, and k-means on the
# same latents (the a-posteriori ablation: what the geodesic distances add).
BEST_END_TO_END, CLASSICAL, KMEANS = "best end-to-end", "classical VQ-VAE", "k-means"
OPPONENT_ROLES = (BEST_END_TO_END, CLASSICAL, KMEANS)


def end_to_end_with_rows(rows: pd.DataFrame, rate: str, metric: str) -> pd.DataFrame:
    """The rows of ``rate``'s end-to-end methods with a finite ``metric``."""
    if metric not in rows:
        return rows.iloc[:0]
    return rows[rows["method"].isin(M.names(rate=rate, family=M.END_TO_END))
                & np.isfinite(rows[metric].astype(float))]


def strongest_end_to_end(rows: pd.DataFrame, rate: str, metric: str) -> str | None:
    """The end-to-end method of ``rate`` with the best mean of ``metric`` over seeds at
    the largest K that every such method with rows in ``rows`` has (None without one).
    Read on the test split, it only ever makes the opponent stronger: the proposal is
    judged against the hardest one, never given an easier one."""
    have = end_to_end_with_rows(rows, rate, metric)
    if have.empty:
        return None
    shared = set.intersection(*(set(g["K"]) for _, g in have.groupby("method")))
    if not shared:
        return None
    means = have[have["K"] == max(shared)].groupby("method")[metric].mean()
    return means.idxmax() if R.get(metric).higher_is_better else means.idxmin()


def role_opponent(role: str, contest: Contest, rows: pd.DataFrame, metric: str) -> str | None:
    """The method that plays ``role`` (:data:`OPPONENT_ROLES`) against ``contest``'s
    proposal in ``rows`` (one dataset and setting of a question's table)."""
    if role == CLASSICAL:
        return contest.question
    if role == KMEANS:
        return contest.ablations[0] if contest.ablations else None
    if role == BEST_END_TO_END:
        return strongest_end_to_end(rows, contest.rate, metric)
    raise ValueError(f"unknown opponent role {role!r}; one of {OPPONENT_ROLES}")


def question_verdict(rows: pd.DataFrame, dataset: str, setting: str, contest: Contest,
                     section: SectionData, role: str = CLASSICAL) -> QuestionVerdict:
    """The cell of ``section`` at ``contest``'s rate from ``rows`` (any dataset and
    setting of ``section``'s table: rows from any protocol serve alike), against the
    opponent of ``role``."""
    rows = rows_of(rows, dataset, setting)
    used = distinct(rows.loc[rows["method"] == contest.proposal, "dataset_used"])
    b = role_opponent(role, contest, rows, section.answer_metrics[0])
    ov = opponent_verdict(rows, contest.proposal, b, section) if b in set(rows["method"]) else None
    if ov is None:
        return QuestionVerdict(dataset, setting, used, section, contest, None)
    k = max(ov.rests_on)
    at = ov.tables[section.answer_metrics[0]].set_index("K").loc[k]
    mine = rows[rows["method"] == contest.proposal]
    protocol = "/".join(distinct(mine["protocol"])) if "protocol" in mine else "fixed"
    rivals = distinct(end_to_end_with_rows(rows, contest.rate, section.answer_metrics[0])["method"])
    return QuestionVerdict(dataset, setting, used, section, contest, ov, k, float(at["mean_a"]),
                           float(at["mean_b"]), protocol or "fixed", b, tuple(rivals))


def answer_grid(tables: dict[str, pd.DataFrame], groups, role: str = CLASSICAL
                ) -> list[QuestionVerdict]:
    """Page 1's answer table as data, one column of it (the opponent of ``role``): for
    each question of report.sections.QUESTIONS and each rate whose proposal has rows in
    ``tables`` ({table name: rows}, e.g. comparison.csv's and generation.csv's newest
    rows), the :func:`question_verdict` of every (dataset, setting) of ``groups``, in
    order."""
    present = {m for frame in tables.values() for m in frame["method"]}
    return [question_verdict(tables.get(section.table, NO_ROWS), d, s, contest, section, role)
            for section in QUESTIONS for contest in active_contests(present, section)
            for d, s in groups]


def combined_answer(answers) -> str:
    """One word from several questions' answers by :func:`overall`'s rule: 'yes' when
    some question is yes and none is no, 'no' the reverse, 'mixed' when both (or any is
    mixed), else 'no clear difference'."""
    answers = list(answers)
    better = [a for a in answers if a in ("yes", "mixed")]
    worse = [a for a in answers if a in ("no", "mixed")]
    return overall({"better": better, "worse": worse})


# A table without rows (a results folder without generation.csv).
NO_ROWS = pd.DataFrame(columns=["dataset", "setting", "method", "K", "seed", "dataset_used"])


# --- the ablation: what each cell of the a-posteriori methods changes -----------------

class Cell(NamedTuple):
    """One ablation cell of a method: its values of utils.methods.VARIANT_COLUMNS
    ('' where a column does not apply, e.g. edge lengths for k-means)."""

    method: str
    edge_length: str = ""
    code_vectors: str = ""
    decoder: str = ""

    @classmethod
    def default(cls, method: str) -> "Cell":
        """The method's default cell."""
        return cls(method, **default_cell(method))

    @property
    def values(self) -> dict:
        """{variant column: value}."""
        return {c: getattr(self, c) for c in CELL_COLUMNS}

    @property
    def name(self) -> str:
        """'latent/medoid/frozen' ('-' for a method without cells)."""
        return "/".join(v for v in self.values.values() if v) or "-"

    @property
    def label(self) -> str:
        """'geodesic-vae latent/medoid/frozen'."""
        return f"{self.method} {self.name}"

    @property
    def is_default(self) -> bool:
        return self.values == default_cell(self.method)

    def switched(self, column: str, value: str) -> "Cell | None":
        """This cell with ``column`` set to ``value``; None when that option does
        not apply to the method (edge lengths or refined codes for k-means)."""
        cell = self._replace(**{column: value})
        return cell if cell.values in all_cells(self.method) else None


# The factors of the ablation, each switched alone from the default cell: (column, value).
FACTORS = (("edge_length", "decoder"), ("code_vectors", "refined"), ("decoder", "finetuned"))
ABLATION_METRIC = R.MSE.column
ABLATION_LABEL_METRICS = (R.NMI.column, R.LABEL_ACCURACY.column)
FACTOR_COLUMNS = ["K", "gap", "gap_clear", "mean", "std", "change", "change_clear",
                  "closed_pct", "closed_pct_both", "remaining", "remaining_clear"]


def cell_rows(frame: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """The rows of one cell of one method."""
    mask = frame["method"] == cell.method
    for col, value in cell.values.items():
        mask &= frame[col] == value
    return frame[mask]


def cells_present(frame: pd.DataFrame, method: str) -> tuple[Cell, ...]:
    """The cells of ``method`` that have rows in ``frame``, default first, in
    the order of utils.methods.variants."""
    sub = frame[frame["method"] == method][CELL_COLUMNS]
    have = {tuple(r) for r in sub.itertuples(index=False)}
    return tuple(Cell(method, **c) for c in all_cells(method) if tuple(c.values()) in have)


def compare_cells(cells: pd.DataFrame, dataset: str, setting: str, a: Cell, b: Cell,
                  metric: str) -> pd.DataFrame:
    """:func:`compare_methods` between two cells (of one method or two): winner,
    better and the differences are stated with the cells' labels, a minus b."""
    rows = rows_of(cells, dataset, setting)
    ks = sorted(k for k in rows["K"].unique() if k > 0)
    va, vb = (values_by_k_seed(cell_rows(rows, c), c.method, metric, ks) for c in (a, b))
    return compare_values(va, vb, a.label, b.label, metric)


def closed_share(gap: pd.Series, remaining: pd.Series) -> pd.Series:
    """How much of ``gap`` is closed when it becomes ``remaining``, in % of the
    gap (100: closed, 0: unchanged, < 0: widened, > 100: reversed); NaN for a
    zero gap."""
    gap = gap.astype(float)
    return 100 * (gap - remaining.astype(float)) / gap.where(gap != 0)


class Factor(NamedTuple):
    """One factor switched alone from the proposal's default cell.

    column, value : the factor (e.g. 'decoder', 'finetuned').
    cell : the proposal's default cell with that factor switched.
    opponent : the opponent's default cell switched alike (None where the
        factor does not apply to it, e.g. edge lengths for k-means).
    table : per K (:data:`FACTOR_COLUMNS`): gap (proposal minus opponent,
        default cells) and gap_clear (beyond the spread); mean, std of ``cell``;
        change (``cell`` minus the default) and change_clear; closed_pct (share
        of the gap closed, the opponent at its default); closed_pct_both (the
        opponent switched alike, NaN without ``opponent``); remaining (``cell``
        minus the opponent it is measured against) and remaining_clear.
    labels : {label metric: compare_cells table, ``cell`` against the default}.
    """

    column: str
    value: str
    cell: Cell
    opponent: Cell | None
    table: pd.DataFrame
    labels: dict

    @property
    def explained(self) -> pd.Series:
        """The share of the gap this factor explains at each K: against the
        opponent switched alike where the factor applies to it (both sides get
        the same help), else against its default."""
        return self.table["closed_pct_both"] if self.opponent else self.table["closed_pct"]

    @property
    def explained_mean(self) -> float:
        """:attr:`explained` averaged over the K where the gap is beyond the
        spread (NaN when it is nowhere)."""
        values = self.explained[self.table["gap_clear"].astype(bool)]
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else math.nan


def factor_effect(cells: pd.DataFrame, dataset: str, setting: str, base: Cell, opponent: Cell,
                  column: str, value: str) -> Factor | None:
    """The effect of switching ``column`` to ``value`` alone in ``base`` (None
    when the proposal has no rows of that cell)."""
    cell = base.switched(column, value)
    rows = rows_of(cells, dataset, setting)
    if cell is None or not len(cell_rows(rows, cell)):
        return None
    # where the factor applies to the opponent too, it gets the same help (closed_pct_both);
    # while that cell has no rows yet, closed_pct_both is NaN
    alike = opponent.switched(column, value)
    mse = ABLATION_METRIC
    gap = compare_cells(cells, dataset, setting, base, opponent, mse)
    change = compare_cells(cells, dataset, setting, cell, base, mse)
    table = gap[["K", "diff", "clear"]].rename(columns={"diff": "gap", "clear": "gap_clear"}).merge(
        change[["K", "mean_a", "std_a", "diff", "clear"]].rename(
            columns={"mean_a": "mean", "std_a": "std", "diff": "change", "clear": "change_clear"}),
        on="K")
    table["closed_pct"] = closed_share(table["gap"], table["gap"] + table["change"])
    versus = alike if alike is not None else opponent
    remaining = compare_cells(cells, dataset, setting, cell, versus, mse)[["K", "diff", "clear"]]
    table = table.merge(remaining.rename(columns={"diff": "remaining", "clear": "remaining_clear"}),
                        on="K", how="left")
    table["closed_pct_both"] = (closed_share(table["gap"], table["remaining"]) if alike is not None
                                else math.nan)
    labels = {m: t for m in ABLATION_LABEL_METRICS
              if len(t := compare_cells(cells, dataset, setting, cell, base, m))}
    return Factor(column, value, cell, alike, table[FACTOR_COLUMNS].reset_index(drop=True), labels)


BEST_COLUMNS = ["K", "cell", "mean", "std", "n"]


def best_cells(cells: pd.DataFrame, dataset: str, setting: str, method: str,
               metric: str = ABLATION_METRIC) -> pd.DataFrame:
    """The cell of ``method`` with the best mean of ``metric`` at each K
    (columns :data:`BEST_COLUMNS`, ``cell`` a :class:`Cell`). It is chosen on
    the test split, so it is reported, never used for a verdict."""
    rows = rows_of(cells, dataset, setting)
    rows = rows[(rows["method"] == method) & (rows["K"] > 0)]
    rows = rows[np.isfinite(rows[metric].astype(float))]
    if not len(rows):
        return pd.DataFrame(columns=BEST_COLUMNS)
    stats = rows.groupby(["K", *CELL_COLUMNS])[metric].agg(["mean", "std", "count"]).reset_index()
    higher = R.get(metric).higher_is_better
    out = []
    for k, group in stats.groupby("K"):
        best = group.loc[group["mean"].idxmax() if higher else group["mean"].idxmin()]
        out.append({"K": int(k), "cell": Cell(method, *(best[c] for c in CELL_COLUMNS)),
                    "mean": best["mean"], "std": best["std"], "n": int(best["count"])})
    return pd.DataFrame(out, columns=BEST_COLUMNS)


def cell_values(rows: pd.DataFrame, cell: Cell, metric: str, k: int) -> pd.DataFrame:
    """One cell's values at K as columns seed, value."""
    sub = cell_rows(rows, cell)
    return sub[sub["K"] == k][["seed", metric]].rename(columns={metric: "value"})


def compare_best(cells: pd.DataFrame, dataset: str, setting: str, best_a: pd.DataFrame,
                 best_b: pd.DataFrame, metric: str = ABLATION_METRIC) -> pd.DataFrame:
    """The best cell of one side against the best of the other at each K
    (:func:`compare_at_k`; winner 'a', 'b' or 'none')."""
    rows = rows_of(cells, dataset, setting)
    higher = R.get(metric).higher_is_better
    out = []
    for k in sorted(set(best_a["K"]) & set(best_b["K"])):
        ca, cb = (b[b["K"] == k]["cell"].iloc[0] for b in (best_a, best_b))
        va, vb = (cell_values(rows, c, metric, k) for c in (ca, cb))
        out.append(compare_at_k(va, vb, "a", "b", higher) | {"K": int(k)})
    return pd.DataFrame(out, columns=COMPARE_COLUMNS)


class AblationVerdict(NamedTuple):
    """The ablation of one (dataset, setting): the proposal's and its
    a-posteriori opponent's cells, measured from their default cells.

    proposal, opponent : the two default cells (the main verdict's).
    cells : {method: cells present}, default first.
    gap : compare_cells table of the default cells on MSE (proposal minus opponent).
    factors : the :class:`Factor` of each of :data:`FACTORS` whose cell is present.
    best : {method: best_cells table on MSE}; best_gap: compare_best of the two.
    n_seeds : (fewest, most) seeds of any cell at any K.
    dataset_used : the data the rows ran on (e.g. mnist-5k for mnist).
    """

    dataset: str
    setting: str
    proposal: Cell
    opponent: Cell
    cells: dict
    gap: pd.DataFrame
    factors: tuple
    best: dict
    best_gap: pd.DataFrame
    n_seeds: tuple
    dataset_used: tuple = ()

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.gap["K"])

    @property
    def most(self) -> Factor | None:
        """The factor that explains the largest share of the gap (mean of
        :attr:`Factor.explained_mean`), None when none closes any of it or the
        gap is nowhere beyond the spread."""
        ranked = [f for f in self.factors if np.isfinite(f.explained_mean)]
        best = max(ranked, key=lambda f: f.explained_mean, default=None)
        return best if best is not None and best.explained_mean > 0 else None


def has_ablation(cells: pd.DataFrame, dataset: str, setting: str) -> bool:
    """True when the results of a group hold a cell other than a default one."""
    rows = rows_of(cells, dataset, setting)
    return bool(len(rows)) and not is_default(rows).all()


def ablation_verdict(results: Results, dataset: str, setting: str,
                     contest: Contest | None = None) -> AblationVerdict | None:
    """The ablation of ``contest`` (default: the image rate's) on one group: the
    proposal against its first a-posteriori opponent. None without non-default
    cells or without both default cells."""
    contest = contest or contest_for(M.get(M.PROPOSAL).rate)
    if (contest is None or not contest.ablations
            or not has_ablation(results.cells, dataset, setting)):
        return None
    cells = results.cells
    rows = rows_of(cells, dataset, setting)
    base, opponent = Cell.default(contest.proposal), Cell.default(contest.ablations[0])
    gap = compare_cells(cells, dataset, setting, base, opponent, ABLATION_METRIC)
    if not len(gap):
        return None
    factors = tuple(f for column, value in FACTORS
                    if (f := factor_effect(cells, dataset, setting, base, opponent, column, value)))
    present = {m: cells_present(rows, m) for m in (base.method, opponent.method)}
    best = {m: best_cells(cells, dataset, setting, m) for m in present}
    best_gap = compare_best(cells, dataset, setting, best[base.method], best[opponent.method])
    both = rows[rows["method"].isin(list(present)) & (rows["K"] > 0)]
    counts = both.groupby(["method", *CELL_COLUMNS, "K"])["seed"].nunique()
    return AblationVerdict(dataset, setting, base, opponent, present, gap, factors, best,
                           best_gap, (int(counts.min()), int(counts.max())),
                           distinct(both["dataset_used"]))


def all_ablations(results: Results) -> list[AblationVerdict]:
    """The ablation of every (dataset, setting) that has one, groups in order."""
    return [a for g in results.groups if (a := ablation_verdict(results, *g)) is not None]
