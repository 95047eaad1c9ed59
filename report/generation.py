"""The generation part of the report, from generation.csv (train/run_generation.py).

Three jobs, kept apart as in the rest of report/:

* :func:`generation_verdicts` (statistics): at each rate, the proposal's codes
  against every other quantized method's, with report.verdicts' rule (beyond
  the seed spread at half the K or more, never losing beyond it) on the sample
  FID and the prior's test NLL;
* :func:`answer` (sentences): the short-answer items of page 1 and the README;
* :func:`details` (layout): the table of every measure and the sample grids.

:data:`EXTRA` plugs the three into report/build_report.py.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from report import formatting as F
from report import verdict_text as VT
from report.load import newest
from report.sections import GENERATION, Extra
from report.tables import Key, int_text, mean_std_rows
from report.verdicts import SectionVerdict, section_verdicts
from utils import methods as M
from utils import metric_registry as R
from utils.paths import ResultPaths
from utils.results import read_generation

PRIORS = {"pixelcnn": "a gated PixelCNN over the 7x7 code maps", "histogram": "the smoothed code histogram"}


def generation_verdicts(frame: pd.DataFrame) -> list[SectionVerdict]:
    """One verdict per (dataset, setting, rate) whose proposal and an opponent have rows."""
    return section_verdicts(newest(frame), GENERATION)


# --- sentences ------------------------------------------------------------------------------

def value_text(rows: pd.DataFrame, method: str, metric: str, K: int) -> str:
    """'12.3 ± 0.4': mean ± std over seeds of one method's metric at K."""
    v = rows[(rows["method"] == method) & (rows["K"] == K)][metric]
    return F.fmt_mean_std(v.mean(), v.std())


def numbers_sentence(rows: pd.DataFrame, v: SectionVerdict) -> str:
    """The sample FIDs at the largest K, with training images' FID as the floor."""
    K = max(v.ks)
    methods = [v.contest.proposal, *v.against]
    parts = ", ".join(f"{m} {value_text(rows, m, R.FID_SAMPLES.column, K)}" for m in methods
                      if ((rows["method"] == m) & (rows["K"] == K)).any())
    floor = rows[rows["K"] == K].drop_duplicates("seed")["fid_train"]  # the same images per seed
    return (f"Sample FID at K = {K}: {parts} (training images against test images: "
            f"{F.fmt_mean_std(floor.mean(), floor.std())}).")


def answer_item(frame: pd.DataFrame, v: SectionVerdict, brief: bool = False,
                label: str | None = None) -> str:
    """The generative answer at one rate; ``brief`` (page 1, the README) states the
    other opponents' verdicts in a word each; ``label`` replaces the head's
    '<dataset>, generation'."""
    rows = newest(frame)
    rows = rows[(rows["dataset"] == v.dataset) & (rows["setting"] == v.setting)]
    prior = " / ".join(PRIORS.get(p, p) for p in sorted(set(v.rows["prior"])))
    head = (f"**{label or f'{VT.verdict_label(v)}, generation'}**, {VT.rate_phrase(v.contest)} ("
            f"{F.plural(v.n_seeds, 'seed')}, {F.fmt_k_list(v.ks)}; prior: {prior}"
            f"{'' if brief else '; samples at temperature 1'}): "
            f"{VT.verdict_words(v.against[v.main])}.")
    clauses = VT.opponent_clauses(v, brief, "'s codes")
    return " ".join([head, *clauses, numbers_sentence(rows, v)])


def answer(results, frame: pd.DataFrame) -> list[str]:
    """The short-answer items of generation.csv (an Extra's ``answer``), brief."""
    return [answer_item(frame, v, brief=True) for v in generation_verdicts(frame)]


def intro_text(frame: pd.DataFrame) -> str:
    """How the numbers were made (from the rows themselves)."""
    rows = newest(frame)
    epochs = F.unique_text(int(e) for e in rows.loc[rows["prior"] == "pixelcnn", "prior_epochs"])
    epochs = f"{epochs} epoch{'' if epochs == '1' else 's'}"
    acc = F.unique_text(f"{a:.3f}" for a in rows["classifier_accuracy"])
    n_fid = F.unique_text(int(n) for n in rows["n_fid"])
    return (f"For each method, K and seed, a prior is fitted to the codes of the training images: "
            f"{PRIORS['pixelcnn']} for the grid methods (trained {epochs}, each evaluated on "
            f"the validation part), {PRIORS['histogram']} for one code per image. Its test NLL is the "
            f"rate an entropy coder driven by it needs (the uniform rate is 'uniform bits'); a lower "
            f"NLL for the same reconstruction is better, but codes that carry less are also cheaper, "
            f"so read it with the reconstruction FID. {n_fid} samples at temperature 1 are decoded "
            f"by the method's decoder; FIDs are computed on the 128 penultimate features of a CNN "
            f"classifier trained on the same data (test accuracy {acc}; Inception weights cannot be "
            f"downloaded here), against the test images. 'classes' counts the classes that get at "
            f"least 1% of the samples under that classifier.")


# --- layout ---------------------------------------------------------------------------------

def table_rows(rows: pd.DataFrame) -> list[list[str]]:
    """The generation table as data: method x K rows (methods in utils/methods.py
    order) of mean ± std over seeds of :data:`report.sections.GENERATION`'s columns."""
    order = {m: i for i, m in enumerate(M.METHODS)}
    rows = rows.assign(order=rows["method"].map(order)).sort_values(["order", "K", "seed"])
    return mean_std_rows(rows, (Key("method", "method"), Key("K", "K", int_text)),
                         GENERATION.table_columns)


def generation_table(rows: pd.DataFrame, styles):
    """:func:`table_rows` laid out."""
    from report.layout import render

    return render(table_rows(rows), [0.15, 0.06, 0.06], styles)


def sample_figures(root: Path, rows: pd.DataFrame, dataset: str, setting: str) -> list[tuple[Path, str]]:
    """(png, caption) of every published sample grid at the largest K of each method."""
    out = []
    for method, g in rows.groupby("method", sort=False):
        K = int(g["K"].max())
        png = ResultPaths(root).samples_figure(dataset, method, K, setting).with_suffix(".png")
        if png.is_file():
            prior = PRIORS.get(g["prior"].iloc[0], g["prior"].iloc[0])
            out.append((png, f"Samples of {method} at K = {K} ({group_label(g, dataset, setting)}, "
                             f"seed {int(g['seed'].min())}): "
                             f"codes drawn from {prior} at temperature 1, decoded by its decoder."))
    return out


def group_label(rows: pd.DataFrame, dataset: str, setting: str) -> str:
    """One (dataset, setting) of generation.csv as run ('mnist-5k')."""
    return F.run_label(dataset, setting, dict.fromkeys(rows["dataset_used"]))


def details(results, frame: pd.DataFrame, styles) -> list:
    """The generation section of the main body: how, and the verdicts in words."""
    from report.layout import heading, para

    story = heading("Generation: a learned prior over the codes", styles) + [
        para(intro_text(frame), styles["body"])]
    verdicts = generation_verdicts(frame)
    for (dataset, setting), rows in newest(frame).groupby(["dataset", "setting"], sort=False):
        story += heading(group_label(rows, dataset, setting), styles, "h2", 0.15)
        story += [para(answer_item(frame, v), styles["body"]) for v in verdicts
                  if (v.dataset, v.setting) == (dataset, setting)]
    return story


def appendix(results, frame: pd.DataFrame, styles) -> list:
    """The generation section of the appendix: the table of every measure per K,
    and the sample grids."""
    from report.layout import figure, figure_pair, heading

    story = []
    for (dataset, setting), rows in newest(frame).groupby(["dataset", "setting"], sort=False):
        story += heading(f"{group_label(rows, dataset, setting)}: generation at every K", styles,
                         "h2") + [generation_table(rows, styles)]
        figs = sample_figures(results.root, rows, dataset, setting)
        story += [figure_pair(figs[i], figs[i + 1], styles) if i + 1 < len(figs)
                  else figure(*figs[i], styles) for i in range(0, len(figs), 2)]
    return story


EXTRA = Extra("Generation", lambda p: p.generation, answer, details, read_generation,
              data=GENERATION, rows=newest, appendix=appendix)
