"""Who beats whom beyond the seed spread: the statistics of the report, without text.

A method A *beats* B on a metric at a codebook size K when the difference of
their means over seeds exceeds the sum of their standard deviations over seeds,

    |mean_A - mean_B| > std_A + std_B        (sample std, ddof = 1, as summary.csv),

both with at least two seeds; otherwise there is no clear winner. Seeds are
also paired (the a-posteriori methods of one seed share that seed's VAE) and
the number of seeds on which A is better is counted beside the rule.

Verdicts are computed per (dataset, setting, rate) by :func:`rate_verdict`, for
the :class:`Contest` of that rate: the proposal against the other quantized
methods of the same rate in :data:`utils.methods.METHODS`. A new rate (the 7x7
grid) needs no code here: once its a-posteriori geodesic method is an entry of
METHODS, :func:`contests` returns its contest and every verdict, sentence and
table follows.

    >>> results = load_results(Path("experiments/results"))
    >>> [v.answer for v in all_verdicts(results)]
    ['mixed', 'yes']
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from utils import methods as M
from utils.errors import UserError
from utils.paths import ResultPaths

# metric column -> (short name, True when higher is better)
METRICS = {
    "bits_per_image": ("bits/image", False),
    "test_mse": ("MSE", False),
    "psnr": ("PSNR (dB)", True),
    "test_bce": ("BCE", False),
    "nmi": ("NMI", True),
    "ari": ("ARI", True),
    "purity": ("purity", True),
    "code_to_label_accuracy": ("code-to-label accuracy", True),
    "perplexity": ("perplexity", True),
    "usage": ("usage", True),
    "geodesic_distortion": ("geodesic distortion", False),
    "euclidean_distortion": ("Euclidean distortion", False),
    "intra_inter_ratio": ("intra/inter ratio", False),
}
# PSNR is a monotone function of each run's MSE, so it is not counted twice.
DETAIL_METRICS = ("test_mse", "test_bce", "nmi", "code_to_label_accuracy", "usage",
                  "geodesic_distortion")
# Geodesic distortion is what geodesic k-medoids minimises: reported, not used for the answer.
ANSWER_METRICS = ("test_mse", "test_bce", "nmi", "code_to_label_accuracy", "usage")
RECONSTRUCTION_METRICS = ("test_mse", "test_bce")
GROUP_KEYS = ["dataset", "setting", "method", "K"]
CONFIG = "config_id"
# An end-to-end codebook whose perplexity is below this used about one code.
COLLAPSE_PERPLEXITY = 2.0


def direction(metric: str) -> str:
    """'higher is better' or 'lower is better'."""
    return "higher is better" if METRICS[metric][1] else "lower is better"


# --- reading the runner's files ----------------------------------------------------

class Results(NamedTuple):
    """The runner's files of one results folder, newest configuration only.

    comparison : one row per dataset, setting, method, K and seed.
    summary : mean and std over seeds, the rows of those configurations.
    records : {(dataset, setting): run record dict, {} when absent}.
    groups : (dataset, setting) pairs, full before quick.
    ignored : rows of older configurations left out: dataset, setting,
        method, K, config_id, n_rows (empty when there were none).
    root : the results folder.
    """

    comparison: pd.DataFrame
    summary: pd.DataFrame
    records: dict
    groups: list
    ignored: pd.DataFrame
    root: Path


def read_csv(path: Path, results_dir: Path) -> pd.DataFrame:
    """A results CSV with config_id as text; a missing or empty file is a UserError."""
    fix = (f"run make full (or python train/run_comparison.py --results-dir {results_dir})")
    if not path.is_file():
        raise UserError(f"{path} missing; {fix}")
    try:
        frame = pd.read_csv(path, dtype={CONFIG: str})
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if frame.empty:
        raise UserError(f"{path} has no rows; {fix}")
    return frame


def with_config_id(frame: pd.DataFrame, name: str, *, warn: bool = True) -> pd.DataFrame:
    """``frame`` with a text config_id column; a file written before configurations
    were recorded counts as one configuration (""), with a warning unless ``warn``
    is False (when the same was said of comparison.csv)."""
    frame = frame.copy()
    if CONFIG not in frame:
        if warn:
            warnings.warn(f"{name} has no {CONFIG} column (written before configurations were "
                          f"recorded); its rows are treated as one configuration", stacklevel=3)
        frame[CONFIG] = ""
    frame[CONFIG] = frame[CONFIG].fillna("").astype(str)
    return frame


def newest_configs(comparison: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split comparison rows into the newest configuration of each (dataset,
    setting, method, K) -- that of its last row, since rows are appended in
    time order -- and the rest, so that no mean mixes configurations.

    Returns (kept rows, ignored: one row per left-out configuration with
    dataset, setting, method, K, config_id and n_rows).
    """
    newest = comparison.groupby(GROUP_KEYS, sort=False)[CONFIG].last().rename("newest")
    marked = comparison.join(newest, on=GROUP_KEYS)
    keep = (marked[CONFIG] == marked["newest"]).to_numpy()
    old = comparison[~keep]
    ignored = (old.groupby(GROUP_KEYS + [CONFIG], sort=False).size().rename("n_rows").reset_index()
               if len(old) else pd.DataFrame(columns=GROUP_KEYS + [CONFIG, "n_rows"]))
    return comparison[keep].reset_index(drop=True), ignored


def matching_summary(summary: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of the configurations in ``kept`` (summary.csv holds one
    row per configuration); a configuration it lacks is warned about."""
    keys = kept[GROUP_KEYS + [CONFIG]].drop_duplicates()
    out = summary.merge(keys, on=GROUP_KEYS + [CONFIG], how="inner")
    missing = len(keys) - len(out[GROUP_KEYS + [CONFIG]].drop_duplicates())
    if missing:
        names = ResultPaths(Path())
        warnings.warn(f"{names.summary.name} lacks {missing} configuration(s) of "
                      f"{names.comparison.name}; rerun train/run_comparison.py to rewrite it",
                      stacklevel=3)
    return out


def known_methods(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows of methods in utils/methods.py; others are left out with a warning."""
    unknown = sorted(set(frame["method"]) - set(M.METHODS))
    if unknown:
        warnings.warn(f"{name} has methods unknown to utils/methods.py, left out: "
                      f"{', '.join(map(str, unknown))}", stacklevel=3)
    return frame[frame["method"].isin(list(M.METHODS))]


def result_groups(comparison: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, setting) pairs present: every full one before every quick one,
    datasets in the order they first appear."""
    pairs = list(dict.fromkeys(zip(comparison["dataset"], comparison["setting"])))
    return sorted(pairs, key=lambda p: p[1] != "full")


def load_run_record(paths: ResultPaths, dataset: str, setting: str) -> dict:
    """The runner's run record of one dataset and setting, or {} when it left none."""
    path = paths.run_record(dataset, setting)
    return json.loads(path.read_text()) if path.is_file() else {}


def load_results(results_dir: Path) -> Results:
    """comparison.csv, summary.csv and the run records of ``results_dir``, reduced
    to the newest configuration of each (dataset, setting, method, K)."""
    paths = ResultPaths(Path(results_dir))
    raw = read_csv(paths.comparison, paths.root)
    comparison = with_config_id(raw, paths.comparison.name)
    summary = read_csv(paths.summary, paths.root)
    if CONFIG not in summary and (comparison[CONFIG] != "").any():
        raise UserError(f"{paths.summary} has no {CONFIG} column but {paths.comparison.name} "
                        f"has; rerun train/run_comparison.py to rewrite it")
    summary = with_config_id(summary, paths.summary.name, warn=CONFIG in raw)
    comparison = known_methods(comparison, paths.comparison.name)
    kept, ignored = newest_configs(comparison)
    summary = matching_summary(known_methods(summary, paths.summary.name), kept)
    groups = result_groups(kept)
    records = {g: load_run_record(paths, *g) for g in groups}
    return Results(kept, summary, records, groups, ignored, paths.root)


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
    sub = rows[rows["method"] == method][["K", "seed", metric]].rename(columns={metric: "value"})
    sub = sub[np.isfinite(sub["value"].astype(float))]
    if method in M.METHODS and not M.get(method).quantized and len(sub):
        sub = pd.concat([sub.assign(K=k) for k in ks], ignore_index=True)
    return sub


def compare_at_k(xa: pd.DataFrame, xb: pd.DataFrame, a: str, b: str, higher: bool) -> dict:
    """Two methods' per-seed values (columns seed, value) at one K: the means,
    the stds, the rule ``clear = |diff| > std_a + std_b`` (>= 2 seeds each) and
    the count of paired seeds on which ``a`` is better."""
    mean_a, mean_b = xa["value"].mean(), xb["value"].mean()
    std_a, std_b = xa["value"].std(), xb["value"].std()  # ddof=1, as summary.csv
    diff = mean_a - mean_b
    sign = 1 if higher else -1
    better = a if sign * diff > 0 else b if sign * diff < 0 else "tie"
    clear = bool(len(xa) >= 2 and len(xb) >= 2 and abs(diff) > std_a + std_b)
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
    higher = METRICS[metric][1]
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


def overall(groups: dict[str, list[str]]) -> str:
    """'yes' (better somewhere, worse nowhere), 'no' (the reverse), 'mixed' or
    'no clear difference', from metric_verdict groups."""
    if groups["better"] and not groups["worse"]:
        return "yes"
    if groups["worse"] and not groups["better"]:
        return "no"
    return "mixed" if groups["better"] else "no clear difference"


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
    builder, options including the proposal's) against the other quantized
    methods of that rate. None when the rate has no such method."""
    proposal = M.get(M.PROPOSAL)
    if rate == proposal.rate:
        return Contest(rate, proposal.name, tuple(M.OPPONENTS), M.reference(rate))
    same = [m.name for m in M.methods(rate=rate, quantized=True)
            if m.build == proposal.build and proposal.options.items() <= m.options.items()]
    if not same:
        return None
    # the ablations first, then the end-to-end baselines, as OPPONENTS orders them
    others = sorted((n for n in M.matched(rate) if n != same[0]),
                    key=lambda n: M.get(n).family != M.A_POSTERIORI)
    return Contest(rate, same[0], tuple(others), M.reference(rate))


def contests() -> list[Contest]:
    """Every rate's contest, in rate order (rates without a proposal are skipped)."""
    return [c for c in map(contest_for, rates()) if c is not None]


def unmatched_methods() -> tuple[str, ...]:
    """Quantized methods of rates without a contest (reported at their natural bits)."""
    matched_rates = {c.rate for c in contests()}
    return tuple(m.name for m in M.methods(quantized=True) if m.rate not in matched_rates)


class OpponentVerdict(NamedTuple):
    """The proposal against one opponent: answer (overall of groups), groups
    ({'better'|'worse'|'unclear': [answer metric columns]}) and tables
    ({metric: compare_methods table}, DETAIL_METRICS that apply to both)."""

    opponent: str
    answer: str
    groups: dict
    tables: dict


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

    @property
    def main(self) -> str | None:
        """The opponent the answer is stated against: the question's, else the first."""
        q = self.contest.question
        return q if q in self.against else next(iter(self.against), None)

    @property
    def answer(self) -> str:
        """yes, no, mixed, no clear difference, or 'no answer' without an opponent."""
        return self.against[self.main].answer if self.main else "no answer"


def opponent_verdict(comparison: pd.DataFrame, dataset: str, setting: str, a: str,
                     b: str) -> OpponentVerdict | None:
    """``a`` against ``b`` on every detail metric (None when no metric applies to both)."""
    tables = {m: compare_methods(comparison, dataset, setting, a, b, m) for m in DETAIL_METRICS}
    tables = {m: t for m, t in tables.items() if len(t)}
    if not tables:
        return None
    groups = {"better": [], "worse": [], "unclear": []}
    for metric in ANSWER_METRICS:
        if metric in tables:
            groups[metric_verdict(tables[metric], a, b)].append(metric)
    return OpponentVerdict(b, overall(groups), groups, tables)


def collapsed_codebooks(summary: pd.DataFrame, dataset: str, setting: str) -> dict[str, list[int]]:
    """{end-to-end method: [K]} where its codebook collapsed to about one code."""
    rows = rows_of(summary, dataset, setting)
    out = {}
    for method in M.names(family=M.END_TO_END):
        sub = rows[(rows["method"] == method) & (rows["perplexity_mean"] < COLLAPSE_PERPLEXITY)]
        if len(sub):
            out[method] = sorted(int(k) for k in sub["K"])
    return out


def distinct(values) -> tuple:
    """Distinct non-NaN values in order of appearance."""
    return tuple(v for v in dict.fromkeys(values) if not (isinstance(v, float) and math.isnan(v)))


def rate_verdict(results: Results, dataset: str, setting: str,
                 contest: Contest) -> RateVerdict | None:
    """The verdict of ``contest`` on one dataset and setting; None when none of
    the contest's methods ran there."""
    rows = rows_of(results.comparison, dataset, setting)
    present = set(rows["method"])
    if not present & {contest.proposal, *contest.opponents}:
        return None
    ran = rows[rows["method"].isin([contest.proposal, *contest.opponents])]
    against = {}
    if contest.proposal in present:
        for b in contest.opponents:
            v = opponent_verdict(results.comparison, dataset, setting, contest.proposal, b)
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
        for contest in contests():
            v = rate_verdict(results, dataset, setting, contest)
            if v is not None:
                out.append(v)
    return out
