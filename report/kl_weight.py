"""The beta-VAE part of the report: is the conv VAE's KL term what costs the grid rate?

At the grid rate the a-posteriori codes sit on their bound, the conv VAE's own
reconstruction, which is about twice as far from the images as vqvae-conv's.
``make kl-weight`` reruns the grid rows with VAEs trained on BCE + beta * KLD
(Higgins et al. 2017; ``train/run_comparison.py --vae-kl-weight beta``), one
results folder per beta under ``experiments/results/kl_weight/``. This module

* reads those folders (:func:`read_kl_rows`), the beta of each from its run record;
* puts them next to the beta = 1 rows and vqvae-conv of the main comparison
  (:func:`kl_rows`, tabulated by :func:`kl_table_rows`);
* decides each beta's verdict by report.verdicts' one path (:func:`beta_verdicts`:
  section_verdicts on report.sections.KL_WEIGHT, the methods and metric it declares);
* writes the short-answer item (:func:`answer`) and the section (:func:`details`).

Every beta that was run is shown; none is chosen (the test split decides nothing).
:data:`EXTRA` plugs it into report/build_report.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from report import formatting as F
from report import setup_text as ST
from report import verdict_text as VT
from report.sections import GENERATION, KL_WEIGHT, Extra
from report.tables import Key, int_text, mean_std_rows
from report.verdicts import SectionVerdict, section_contests, section_verdicts
from utils import metric_registry as R
from utils.errors import UserError
from utils.paths import ResultPaths
from utils.results import read_generation, read_results

FOLDER = "kl_weight"
# The contest of the section's methods (report.sections.KL_WEIGHT): the grid rate's
# a-posteriori methods (the proposal first, then its k-means ablation), their bound (the
# conv VAE) and the end-to-end baseline.
(CONTEST,) = section_contests(KL_WEIGHT)
GRID = (CONTEST.proposal, *CONTEST.ablations)
ABLATION, BOUND, BASELINE = CONTEST.ablations[0], CONTEST.reference, CONTEST.question
MSE = R.MSE.column  # KL_WEIGHT's one metric


def folder_of(paths) -> Path:
    """experiments/results/kl_weight (an Extra's ``path``)."""
    return Path(paths.root) / FOLDER


def run_beta(sub: Path) -> float | None:
    """The --vae-kl-weight of the run records in ``sub`` (None without a record)."""
    betas = {json.loads(p.read_text())["config"].get("vae_kl_weight", 1.0)
             for p in sorted(sub.glob("comparison_*_run.json"))}
    if len(betas) > 1:
        raise UserError(f"{sub} holds runs of several KL weights {sorted(betas)}; one per folder")
    return float(betas.pop()) if betas else None


def read_kl_rows(folder: Path) -> pd.DataFrame:
    """The comparison rows of every ``beta-*`` folder, with a ``kl_weight`` column."""
    frames = []
    for sub in sorted(Path(folder).glob("beta-*")):
        frame, beta = read_results(sub / "comparison.csv"), run_beta(sub)
        if len(frame) and beta is not None:
            frames.append(frame.assign(kl_weight=beta))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class SeedStats(NamedTuple):
    """Mean and std over seeds of one metric, and the number of seeds (a cell of the table)."""

    mean: float
    std: float
    n: int


def seed_stats(rows: pd.DataFrame, metric: str = R.MSE.column) -> SeedStats | None:
    if rows.empty:
        return None
    values = rows[metric].astype(float)
    return SeedStats(values.mean(), values.std(), rows["seed"].nunique())


def beta_ks(frame: pd.DataFrame) -> list[int]:
    """The K of the beta rows (the bound's K 0 aside)."""
    return sorted(int(k) for k in frame.loc[frame["method"] != BOUND, "K"].unique())


def sources(results, frame: pd.DataFrame, dataset: str, method: str) -> list[tuple]:
    """(beta, rows) of one method of ``dataset`` (setting full): the main comparison's
    first (beta 1, or None for the end-to-end baseline), then each beta folder's,
    largest beta first."""
    mine = frame[(frame["dataset"] == dataset) & (frame["method"] == method)]
    out = [(None if method == BASELINE else 1.0, results.comparison)]
    out += [(b, mine[mine["kl_weight"] == b])
            for b in sorted(mine["kl_weight"].unique(), reverse=True)]
    return [(beta, rows[(rows["dataset"] == dataset) & (rows["method"] == method)
                        & (rows["setting"] == "full")]) for beta, rows in out]


def kl_rows(results, frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every row the section reads for one dataset, with ``kl_weight`` (NaN: trained
    end to end), at the K of the beta rows (the bound at K 0): the contest's
    a-posteriori methods and bound at each beta, the baseline of the main comparison."""
    frame = frame[frame["dataset"] == dataset]
    ks = beta_ks(frame)
    parts = [rows[rows["K"].astype(int).isin([0] if method == BOUND else ks)].assign(
                 kl_weight=np.nan if beta is None else beta)
             for method in (*GRID, BOUND, BASELINE)
             for beta, rows in sources(results, frame, dataset, method)]
    return pd.concat(parts, ignore_index=True)


def kl_table_rows(results, frame: pd.DataFrame, metric: str = R.MSE.column) -> tuple[list, dict]:
    """(Ks, {(dataset, method, beta): {K: SeedStats}}) for the beta runs, the beta = 1
    rows of the same datasets, methods and K from the main comparison, and
    vqvae-conv (beta None). K 0 is the bound's one column."""
    table: dict = {}
    for dataset in frame["dataset"].unique():
        rows = kl_rows(results, frame, dataset)
        for (method, beta), g in rows.groupby(["method", "kl_weight"], sort=False, dropna=False):
            cells = {int(k): seed_stats(gk, metric) for k, gk in g.groupby("K")}
            if cells:
                table[(dataset, method, None if np.isnan(beta) else beta)] = cells
    return beta_ks(frame), table


def beta_verdicts(results, frame: pd.DataFrame, dataset: str) -> dict[float, SectionVerdict]:
    """{beta: the verdict of :data:`report.sections.KL_WEIGHT` on one dataset's rows at
    that beta, the baseline trained end to end}: report.verdicts' one path (the
    proposal against each opponent beyond the seed spread), largest beta first."""
    rows = kl_rows(results, frame, dataset)
    baseline = rows[rows["kl_weight"].isna()]
    betas = rows.loc[rows["method"] == CONTEST.proposal, "kl_weight"].dropna().unique()
    return {float(b): v for b in betas
            for v in section_verdicts(pd.concat([rows[rows["kl_weight"] == b], baseline]),
                                      KL_WEIGHT)}


def beta_text(beta: float | None) -> str:
    return "end to end" if beta is None else f"β = {beta:g}"


# How a K of a comparison table reads, by its winner.
WINNER_WORDS = {CONTEST.proposal: "better", CONTEST.question: "worse"}


def k_list_text(table: pd.DataFrame) -> str:
    """'K = 16 0.0151 vs 0.00926 (worse), ...': both means at each K and who wins there."""
    return ", ".join(f"K = {r.K} {r.mean_a:.3g} vs {r.mean_b:.3g} "
                     f"({WINNER_WORDS.get(r.winner, 'within the spread')})"
                     for r in table.itertuples())


def ablation_text(v: SectionVerdict) -> str:
    """'geodesic better than k-means at K = 64, worse at no K' from the verdict
    against the a-posteriori ablation ('k-means not run' without its rows)."""
    ov = v.against.get(ABLATION)
    if ov is None:
        return "k-means not run"
    t = ov.tables[MSE]
    better, worse = (t.loc[t["winner"] == who, "K"] for who in (CONTEST.proposal, ABLATION))
    return (f"geodesic better than k-means at {F.fmt_k_list(better) if len(better) else 'no K'}, "
            f"worse at {F.fmt_k_list(worse) if len(worse) else 'no K'}")


def answer_item(results, frame: pd.DataFrame, dataset: str, brief: bool = False) -> str:
    """What the beta runs say for one dataset: at each beta, the verdict against the
    end-to-end baseline (report.verdicts' rule on test MSE) and the means it rests on."""
    ks, table = kl_table_rows(results, frame[frame["dataset"] == dataset])
    verdicts = beta_verdicts(results, frame, dataset)
    seeds = F.unique_text(c.n for (d, m, b), cells in table.items() for c in cells.values()
                          if b not in (None, 1.0))
    parts = []
    for beta, v in verdicts.items():
        bound = table.get((dataset, BOUND, beta), {})
        bound_text = f"bound {bound[0].mean:.3g}" if 0 in bound else ""
        ov = v.against.get(BASELINE)
        if ov is None:
            parts.append(f"{beta_text(beta)}: no {BASELINE} rows")
            continue
        t = ov.tables[MSE]
        if brief:
            top = t.iloc[-1]
            numbers = "; ".join(x for x in (bound_text, f"K = {top.K}: {top.mean_a:.3g} vs "
                                                        f"{top.mean_b:.3g}") if x)
            parts.append(f"{beta_text(beta)}: {VT.verdict_words(ov)} ({numbers})")
        else:
            parts.append(f"{beta_text(beta)}: {VT.verdict_words(ov)}; "
                         + (f"{bound_text}; " if bound_text else "")
                         + f"{CONTEST.proposal} vs {BASELINE}: {k_list_text(t)}")
    used = F.unique_text(frame.loc[frame["dataset"] == dataset, "dataset_used"])
    head = (f"**{used}, grid rate with β-VAEs** ({seeds} seeds, {F.fmt_k_range(ks)}; test "
            f"MSE), {CONTEST.proposal} against {BASELINE} at each β: ")
    if brief:
        return head + "; ".join(parts) + "."
    return (head + "; ".join(parts) + ". Against k-means on the same latents, beyond the spread: "
            + "; ".join(f"{beta_text(b)}: {ablation_text(v)}" for b, v in verdicts.items())
            + ". Every β that was run is shown; none was chosen.")


def answer(results, frame: pd.DataFrame) -> list[str]:
    """The short-answer items (an Extra's ``answer``), brief."""
    return [answer_item(results, frame, d, brief=True) for d in frame["dataset"].unique()]


INTRO = ("At the grid rate the a-posteriori codes reach their bound, the conv VAE's own "
         "reconstruction, and that bound is what loses to vqvae-conv. These rows retrain the conv "
         "VAE on BCE + β·KLD (a β-VAE, Higgins et al. 2017) with β below 1, so that its latents "
         "keep more of the image, and quantize them exactly as the published grid rows do (same "
         "epochs, same fitting subsample); the β = 1 rows and vqvae-conv are the main comparison's. "
         "Below 1 the objective is no longer an ELBO, which does not matter here: the VAE is only "
         "the encoder and decoder the codes are fitted to. Test MSE, mean ± std over seeds.")


def kl_table_data(results, frame: pd.DataFrame, dataset: str) -> list[list[str]]:
    """(method, beta) x K of test MSE, as data: the heading, then one row each."""
    ks, rows = kl_table_rows(results, frame[frame["dataset"] == dataset])
    data = [["method", "VAE", "seeds"] + [f"K = {k}" for k in ks]]
    for (d, method, beta), cells in rows.items():
        values = ([F.fmt_mean_std(cells[0].mean, cells[0].std)] + [""] * (len(ks) - 1)
                  if method == BOUND else
                  [F.fmt_mean_std(cells[k].mean, cells[k].std) if k in cells else "-" for k in ks])
        n = F.unique_text(c.n for c in cells.values())
        data.append([method + (" (bound, any K)" if method == BOUND else ""), beta_text(beta), n,
                     *values])
    return data


def kl_table(results, frame: pd.DataFrame, dataset: str, styles):
    """:func:`kl_table_data` laid out."""
    from report.layout import render

    return render(kl_table_data(results, frame, dataset), [0.3, 0.14, 0.08], styles)


# the generation section's columns of the prior's rate and the samples' quality
GEN_COLUMNS = tuple((c, h) for c, h in GENERATION.table_columns
                    if c in (R.PRIOR_NLL.column, R.FID_SAMPLES.column, R.FID_RECON.column))


def generation_rows(results) -> pd.DataFrame:
    """generation.csv of every ``beta-*`` folder (with ``kl_weight``), the main
    generation.csv's beta = 1 rows of the same methods and K, and its vqvae-conv
    rows (``kl_weight`` NaN); empty when no beta folder has priors."""
    from report.generation import newest

    folder = Path(results.root) / FOLDER
    frames = []
    for sub in sorted(folder.glob("beta-*")):
        frame, beta = read_generation(sub / "generation.csv"), run_beta(sub)
        if len(frame) and beta is not None:
            frames.append(newest(frame).assign(kl_weight=beta))
    if not frames:
        return pd.DataFrame()
    ours = pd.concat(frames, ignore_index=True)
    main = newest(read_generation(ResultPaths(Path(results.root)).generation))
    keys = set(zip(ours["dataset"], ours["K"]))
    same = main[[k in keys for k in zip(main["dataset"], main["K"])]]
    return pd.concat([same[same["method"].isin(ours["method"])].assign(kl_weight=1.0),
                      same[same["method"] == BASELINE].assign(kl_weight=np.nan), ours],
                     ignore_index=True)


def vae_text(beta: float) -> str:
    """The VAE of a generation row: its beta, or 'end to end' (NaN) for vqvae-conv."""
    return beta_text(None if np.isnan(beta) else beta)


# (method, beta, K) rows of the prior's measures
GEN_KEYS = (Key("method", "method"), Key("kl_weight", "VAE", vae_text), Key("K", "K", int_text))


def generation_table(rows: pd.DataFrame, styles):
    """(method, beta, K) x the prior's measures, mean ± std over seeds."""
    from report.layout import render

    return render(mean_std_rows(rows, GEN_KEYS, GEN_COLUMNS), [0.22, 0.14, 0.08, 0.08], styles)


def details(results, frame: pd.DataFrame, styles) -> list:
    """The section of the main body: why, and the sentence from the numbers."""
    from report.layout import heading, para

    story = heading("Grid rate with β-VAEs: is it the KL term?", styles) + [
        para(f"{INTRO} Each folder's β is read from its run record; training epochs of its rows: "
             f"{ST.epochs_text(frame)}.", styles["body"])]
    return story + [para(answer_item(results, frame, dataset), styles["body"])
                    for dataset in frame["dataset"].unique()]


def appendix(results, frame: pd.DataFrame, styles) -> list:
    """The section of the appendix: the β rows' table, and the priors over their codes."""
    from report.layout import heading, para

    story = []
    for dataset in frame["dataset"].unique():
        used = F.unique_text(frame.loc[frame["dataset"] == dataset, "dataset_used"])
        story += heading(f"{used}: the β-VAE rows", styles, "h2") + [
            para("Test MSE, mean ± std over seeds; the β = 1 rows and vqvae-conv are the main "
                 "comparison's.", styles["lead"]), kl_table(results, frame, dataset, styles)]
    gen = generation_rows(results)
    if len(gen):
        story += heading("Priors over the β-VAE codes", styles, "h2") + [
            para("The same PixelCNN priors, samples and FIDs as the generation section, over the "
                 "codes of the β-VAE rows above where they were run, next to the β = 1 rows and "
                 "vqvae-conv of generation.csv.", styles["lead"]), generation_table(gen, styles)]
    return story


EXTRA = Extra("β-VAE grid rate", folder_of, answer, details, read_kl_rows, appendix=appendix)
