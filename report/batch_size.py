"""The batch-size part of the report: does an answer survive giving each side the
batch size its own validation loss prefers?

Every published row trains at batch size 128 for a fixed number of epochs; on a
small training split (mnist-5k: 3,600 images, 29 steps an epoch) that leaves the
VAE and the VQ-VAE short of steps. ``make batch-size`` chooses each side's
batch size on the validation split (train/select_batch_size.py) and reruns the
one-code sweep at the choice into ``experiments/results/batch_size/``. This module

* reads the selection (:func:`read_selection`) and computes the choice again
  with the script's own rule (``utils.selection.choose``);
* computes the verdicts of the rerun with report.verdicts, exactly as for the
  main rows, and puts them next to the main rows' verdict (:func:`pairs`);
* writes the short-answer item after the main group's (:func:`group_answer`) and the
  section (:func:`details`).

:data:`EXTRA` plugs it into report/build_report.py.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from reportlab.platypus import Paragraph

from report import generation as G
from report import formatting as F
from report import setup_text as ST
from report import verdict_text as VT
from report.sections import Extra
from report.load import load_results
from report.verdicts import RateVerdict, all_verdicts, rows_of
from utils.selection import ELBO_SUFFIX, choose
from utils import metric_registry as R
from utils.paths import BATCH_SIZE_DIR, ResultPaths
from utils.results import read_generation

CRITERIA = {"val_total_loss": "validation -ELBO per image (shown, not used)",
            "val_kmeans_bce": "validation BCE per image through k-means codes, mean over K",
            "val_recon_bce": "validation reconstruction BCE per image"}


def folder_of(paths) -> Path:
    """experiments/results/batch_size (an Extra's ``path``)."""
    return Path(paths.root) / BATCH_SIZE_DIR


def read_selection(folder: Path) -> pd.DataFrame:
    """Every ``batch_size_<dataset>.csv`` of the folder, one frame."""
    frames = [pd.read_csv(p) for p in sorted(Path(folder).glob("batch_size_*.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def chosen_text(selection: pd.DataFrame, dataset: str) -> str:
    """'VAE 16, vqvae-global 32 at every K' (or per K) from the selection of ``dataset``."""
    picked = choose(selection[selection["dataset"] == dataset])
    picked = picked[picked["chosen"]]
    parts = []
    elbo = {f[:-len(ELBO_SUFFIX)]: int(r["batch_size"].iloc[0]) for f, r in picked.groupby("family")
            if f.endswith(ELBO_SUFFIX)}
    for family, rows in picked.groupby("family", sort=False):
        sizes = rows["batch_size"].astype(int).tolist()
        if family.endswith(ELBO_SUFFIX):
            continue
        if family.startswith("vae-"):
            by_elbo = f" (its own -ELBO would choose {elbo[family]})" if family in elbo else ""
            parts.append(f"VAE ({family[4:]}) {sizes[0]}{by_elbo}")
        elif len(set(sizes)) == 1:
            parts.append(f"{family} {sizes[0]} at every K")
        else:
            parts.append(f"{family} " + ", ".join(f"{b} at K = {int(k)}"
                                                  for k, b in zip(rows["K"], sizes)))
    return "; ".join(parts)


def pairs(results, selection: pd.DataFrame) -> list[tuple[RateVerdict, RateVerdict | None]]:
    """(verdict of the rerun, verdict of the main rows of the same dataset, setting
    and rate, or None) for every dataset of the selection that has rerun rows."""
    folder = folder_of(ResultPaths(Path(results.root)))
    if not ResultPaths(folder).comparison.is_file():
        return []
    rerun = load_results(folder)
    main = {(v.dataset, v.setting, v.contest.rate): v for v in all_verdicts(results)}
    datasets = set(selection["dataset"])
    return [(v, main.get((v.dataset, v.setting, v.contest.rate)))
            for v in all_verdicts(rerun) if v.dataset in datasets and v.against]


def label(v: RateVerdict) -> str:
    return f"{VT.verdict_label(v)}, each side at the batch size chosen on validation"


def main_batch(results, dataset: str, setting: str) -> str:
    """The main rows' batch sizes, from their run record ('VAE 128, VQ-VAE 128')."""
    return ST.batch_sizes(results.records.get((dataset, setting), {}))


def main_clause(results, main) -> str:
    """The main rows' verdict at the same rate (a RateVerdict or GenerationVerdict)."""
    if main is None or not main.against:
        return "The main rows have no verdict at this rate."
    return (f"At the main rows' batch sizes ({main_batch(results, main.dataset, main.setting)}) "
            f"the answer is {VT.verdict_words(main.against[main.main])}.")


def generation_pairs(results) -> list[tuple]:
    """(generation.csv of the rerun, its verdict, the main generation.csv's verdict
    of the same dataset, setting and rate or None) for every rerun verdict."""
    rerun = ResultPaths(folder_of(ResultPaths(Path(results.root)))).generation
    if not rerun.is_file():
        return []
    frame = read_generation(rerun)
    main_path = ResultPaths(Path(results.root)).generation
    main = ({(v.dataset, v.setting, v.contest.rate): v
             for v in G.generation_verdicts(read_generation(main_path))} if main_path.is_file() else {})
    return [(frame, v, main.get((v.dataset, v.setting, v.contest.rate)))
            for v in G.generation_verdicts(frame)]


def group_answer(results, selection: pd.DataFrame, group: tuple[str, str]) -> list[str]:
    """The short-answer items of the rerun of one main (dataset, setting) group,
    placed right after that group's verdicts (an Extra's ``group_answer``): its
    comparison, then its generation where that was rerun too."""
    items = [f"{VT.brief_item(v, label(v))} Chosen batch sizes: "
             f"{chosen_text(selection, v.dataset)}. {main_clause(results, main)}"
             for v, main in pairs(results, selection) if (v.dataset, v.setting) == group]
    items += [f"{G.answer_item(frame, v, brief=True, label=label(v).replace(', each', ', generation, each'))} "
              f"{main_clause(results, main)}"
              for frame, v, main in generation_pairs(results) if (v.dataset, v.setting) == group]
    return items


def answer(results, selection: pd.DataFrame) -> list[str]:
    """The items for selections without a rerun (an Extra's ``answer``)."""
    done = {v.dataset for v, _ in pairs(results, selection)}
    return [f"**{dataset}, batch sizes chosen on validation**: {chosen_text(selection, dataset)}; "
            f"the sweep at these sizes has not been run."
            for dataset in sorted(set(selection["dataset"]) - done)]


INTRO = ("The main rows train every model for a fixed number of epochs at one batch size "
         "({batch}, from their run record). On a "
         "small training split that is few optimiser steps, and both the VAE and the VQ-VAE gain "
         "from smaller batches. Here each side gets the batch size that its own validation loss "
         "prefers, measured at the sweep's epochs on the validation part of the training split "
         "(train/select_batch_size.py, seed 0): each VQ-VAE by its reconstruction BCE, the VAE by "
         "the reconstruction BCE of its k-means codes (mean over K), i.e. each side by the "
         "reconstruction of its codes. The VAE's own -ELBO is shown too: it prefers smaller "
         "batches than its codes do. The one-code sweep is then rerun at those sizes and judged by the same "
         "rule as the main rows. The test split chose nothing.")


def selection_table(selection: pd.DataFrame, dataset: str, styles):
    """(family, K) x batch size of the validation criterion; the chosen one in bold."""
    from report.layout import render

    rows = choose(selection[selection["dataset"] == dataset])
    sizes = sorted(int(b) for b in rows["batch_size"].unique())
    data = [["model", "K", "criterion"] + [f"batch {b}" for b in sizes]]
    for (family, K), g in rows.groupby(["family", "K"], sort=False):
        crit = selection.loc[selection["family"] == family, "criterion"].iloc[0]
        by = {int(r.batch_size): r for r in g.itertuples()}
        cells = []
        for b in sizes:
            r = by.get(b)
            bold = r is not None and r.chosen and not family.endswith(ELBO_SUFFIX)
            cells.append("-" if r is None else
                         Paragraph(f"<b>{r.mean:.2f}</b>" if bold else f"{r.mean:.2f}", styles["cell"]))
        data.append([family, str(int(K)) if K else "-", CRITERIA.get(crit, crit), *cells])
    return render(data, [0.16, 0.07, 0.33], styles)


def mse_table_data(results, v: RateVerdict) -> list[list[str]]:
    """Method x K test MSE, the main rows against the rerun at the chosen batch sizes, as data."""
    rerun = load_results(folder_of(ResultPaths(Path(results.root))))
    ks = list(v.ks)
    data = [["method", "batch"] + [f"K = {k}" for k in ks]]
    for method in (v.contest.proposal, *v.against):
        for name, res in (("main rows", results), ("chosen", rerun)):
            rows = rows_of(res.comparison, v.dataset, v.setting)
            rows = rows[rows["method"] == method]
            cells = []
            for k in ks:
                x = rows.loc[rows["K"].astype(int) == k, R.MSE.column].astype(float)
                cells.append(F.fmt_mean_std(x.mean(), x.std()) if len(x) else "-")
            data.append([method, name, *cells])
    return data


def mse_table(results, v: RateVerdict, styles):
    """:func:`mse_table_data` laid out."""
    from report.layout import render

    return render(mse_table_data(results, v), [0.2, 0.1], styles)


def details(results, selection: pd.DataFrame, styles) -> list:
    """The section of the main body: why, the choice, the verdict from the numbers."""
    from report.layout import heading, para

    batch = F.unique_text(main_batch(results, *g) for g in results.groups)
    story = heading("Batch size chosen on the validation split", styles) + [
        para(INTRO.format(batch=batch), styles["body"])]
    verdicts = {v.dataset: (v, main) for v, main in pairs(results, selection)}
    for dataset in selection["dataset"].unique():
        if dataset in verdicts:
            v, main = verdicts[dataset]
            story.append(para(f"{VT.answer_item(v, label(v))} Chosen batch sizes: "
                              f"{chosen_text(selection, dataset)}. {main_clause(results, main)}",
                              styles["body"]))
        story += [para(f"{G.answer_item(frame, v)} {main_clause(results, main)}", styles["body"])
                  for frame, v, main in generation_pairs(results) if v.dataset == dataset]
    return story


def appendix(results, selection: pd.DataFrame, styles) -> list:
    """The section of the appendix: the validation criterion of every candidate,
    test MSE at both batch sizes and the priors at the chosen ones."""
    from report.layout import heading, para

    story = []
    verdicts = {v.dataset: (v, main) for v, main in pairs(results, selection)}
    for dataset in selection["dataset"].unique():
        seeds = F.unique_text(choose(selection[selection["dataset"] == dataset])["count"])
        story += heading(f"{dataset}: batch sizes chosen on validation", styles, "h2") + [
            para(f"Validation criterion of every candidate (mean over {seeds} seed(s)); in bold, "
                 f"the chosen batch size.", styles["lead"]), selection_table(selection, dataset, styles)]
        if dataset in verdicts:
            v, _ = verdicts[dataset]
            story += [Paragraph(f"Test MSE of {VT.verdict_label(v)}, main rows and chosen batch "
                                f"sizes", styles["h3"]), mse_table(results, v, styles)]
        story += [item for frame, v, _ in generation_pairs(results) if v.dataset == dataset
                  for item in (Paragraph("Priors over the codes at the chosen batch sizes",
                                         styles["h3"]),
                               G.generation_table(G.newest(frame[frame["dataset"] == dataset]),
                                                  styles))]
    return story


EXTRA = Extra("batch size", folder_of, answer, details, read_selection, group_answer,
              appendix=appendix)
