"""The tuned protocol's part of the report (train/run_tuned.py, docs/protocol.md).

Its rows (``<results>/tuned/comparison.csv``) give both sides equal budgets,
early stopping, settings chosen on validation and the same decoder treatment,
so where they exist they decide the main answer:

* :func:`verdict_rows` (data): each quantized method's verdict cell, its codes
  decoded by a decoder fine-tuned on them; page 1's answer table reads these in
  place of the fixed-budget rows of the same dataset and method
  (report.answer.answer_tables);
* :func:`tuned_verdicts` (statistics): at each rate, the proposal against each
  opponent by report.verdicts' rule on COMPARISON's metrics;
* :func:`choices` (data): what validation chose at each K, from
  ``selection_<dataset>.csv``;
* :func:`answer`, :func:`details`, :func:`appendix` (sentences and layout).

:data:`EXTRA` plugs them into report/build_report.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from report import formatting as F
from report import verdict_text as VT
from report.load import BOUND_KEY, newest, with_bound_key
from report.sections import COMPARISON, GENERATION, TUNED, Extra
from report.tables import Key, int_text, mean_std_rows
from report.verdicts import SectionVerdict, section_verdicts
from utils import methods as M
from utils import metric_registry as R
from utils import protocol as P
from utils.paths import RUNNER_FIGURE_CAPTIONS, TUNED_DIR, ResultPaths
from utils.results import read_generation, read_results, recon_drift

# The runner figures run_tuned.py's figures stage draws (one per rate).
INTERPOLATION_FIGURES = ("interpolation", "interpolation_grid")
VERDICT_DECODER = "finetuned"  # the decoder the verdict's cells decode with, on both sides
TABLE_COLUMNS = ((R.MSE.column, "MSE"), (R.ARI.column, "ARI"), (R.USAGE.column, "usage"),
                 ("epochs_trained", "epochs"), ("best_epoch", "best epoch"),
                 ("decoder_best_epoch", "decoder best epoch"))


def read_tuned(path: Path) -> pd.DataFrame:
    """The tuned comparison.csv, validated (utils.results.read_results), with the columns
    ``chosen_cell`` of :func:`mark_chosen_cells` and ``complete`` of :func:`mark_complete`."""
    path = Path(path)
    frame = mark_chosen_cells(read_results(path), path.parent.parent)
    return mark_complete(frame, ResultPaths(path.parent), "comparison")


def read_tuned_generation(path: Path) -> pd.DataFrame:
    """The tuned generation.csv (utils.results.read_generation), with ``chosen_cell`` and
    ``complete``."""
    path = Path(path)
    frame = mark_chosen_cells(read_generation(path), path.parent.parent)
    return mark_complete(frame, ResultPaths(path.parent), "generation")


def mark_chosen_cells(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """``frame`` with a bool column ``chosen_cell``: False on an a-posteriori row whose
    cell (edge length, code vectors) is not the one validation chose at its K in
    :func:`read_selection` (a cell run beside the choice, or a choice that changed after
    its rows ran); True elsewhere, and everywhere without a selection."""
    frame = frame.assign(chosen_cell=True)
    if frame.empty or "edge_length" not in frame:
        return frame
    text = {c: frame[c].fillna("").astype(str) for c in ("edge_length", "code_vectors")}
    for dataset in frame["dataset"].unique():
        sel = read_selection(root, dataset)
        cells = sel[sel["chosen"] & sel["family"].astype(str).str.startswith("cell:")]
        for _, c in cells.iterrows():
            at = ((frame["dataset"] == dataset) & (frame["method"] == c["method"])
                  & (frame["K"].astype(int) == int(c["K"])))
            same = ((text["edge_length"] == str(c["edge_length"]))
                    & (text["code_vectors"] == str(c["code_vectors"])))
            frame.loc[at & ~same, "chosen_cell"] = False
    return frame


# --- which rows are complete ----------------------------------------------------------------

def planned_runs(record: Path, runner: str) -> tuple[list[int], list[int]] | None:
    """(the K, the seeds) a tuned stage plans, from its run record (the generation stage's
    K: utils.protocol.generation_sizes); None without a record.

    A stage may land in chunks (``--seeds 1``, or ``--codebook-sizes 16``), each writing a
    record that names its own part and keeps the earlier chunks' records in ``earlier``
    (utils.runtime.write_run_record). So the plan is the union over the record and every
    earlier one of the same form (quick or not): a K = 16 chunk after a full run still plans
    K = 64 and 512. The seeds are also, outside the quick form, every one of
    utils.protocol.SEEDS: a one-seed chunk's rows are a third of the protocol, not all of it."""
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    quick = bool(data["config"].get("quick"))
    configs = [data["config"], *(e["config"] for e in data.get("earlier", [])
                                 if isinstance(e, dict) and isinstance(e.get("config"), dict))]
    configs = [c for c in configs if bool(c.get("quick")) == quick and "codebook_sizes" in c]
    sizes = sorted({int(k) for c in configs for k in c["codebook_sizes"]})
    if runner == "generation":
        sizes = P.generation_sizes(sizes, quick)
    seeds = {int(s) for c in configs for s in c.get("seeds", [])}
    seeds |= set() if quick else set(P.SEEDS)
    return sizes, sorted(seeds)


def verdict_cells(frame: pd.DataFrame, chosen_only: bool = True) -> pd.DataFrame:
    """Every quantized method's cell decoded by a decoder fine-tuned on its codes and
    the unquantized references, newest configuration of each (dataset, method, K); with
    ``chosen_only`` only the cells validation chose (:func:`mark_chosen_cells`)."""
    rows = newest(frame)
    if chosen_only and "chosen_cell" in rows:
        rows = rows[rows["chosen_cell"].astype(bool)]
    return verdict_decoder_rows(rows)


def verdict_decoder_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` that decode as the verdict does: a quantized method's through
    the decoder fine-tuned on its codes, an unquantized reference's through its own; every
    generation row (one cell per method)."""
    if "decoder" not in frame or frame.empty:
        return frame.reset_index(drop=True)
    quantized = frame["method"].map(lambda m: M.get(m).quantized).astype(bool)
    keep = (quantized & (frame["decoder"] == VERDICT_DECODER)) | ~quantized
    return frame[keep].reset_index(drop=True)


def mark_complete(frame: pd.DataFrame, results: ResultPaths, runner: str) -> pd.DataFrame:
    """``frame`` with bool columns ``method_complete`` and ``complete``.

    ``method_complete`` is False on every row of a (dataset, method) whose verdict cells
    (:func:`verdict_cells`) lack a (K, seed) its stage plans (:func:`planned_runs`; the
    unquantized references: a seed), so that a run still in progress, or stopped, never
    decides a verdict with part of its seeds. ``complete`` is False on every row of a
    (dataset, setting, rate) with any such method: page 1 reads the tuned rows of a rate
    only when all its methods have them, and never pairs one side's tuned rows with the
    other side's fixed-budget ones (report.load.replace_rows swaps rows per method).
    Without a record the rows count as complete (nothing says what was planned)."""
    frame = frame.assign(method_complete=True, complete=True)
    # every method with verdict cells is judged, on the chosen ones: a method whose rows
    # are all of cells validation did not choose has none to show yet
    judged = verdict_cells(frame, chosen_only=False)
    for (dataset, method), rows in judged.groupby(["dataset", "method"], sort=False):
        if "chosen_cell" in rows:
            rows = rows[rows["chosen_cell"].astype(bool)]
        m = M.get(method)
        plan = planned_runs(results.run_record(dataset, f"tuned-{m.rate}", runner), runner)
        if plan is None:
            continue
        sizes, seeds = plan
        if m.quantized:
            have = set(zip(rows["K"].astype(int), rows["seed"].astype(int)))
            done = {(k, s) for k in sizes for s in seeds} <= have
        else:  # each configuration kept (one VAE per KL weight validation chose) on every seed
            done = all(set(seeds) <= set(group.astype(int))
                       for _, group in rows.groupby("config_id")["seed"])
        if not done:
            frame.loc[(frame["dataset"] == dataset) & (frame["method"] == method),
                      "method_complete"] = False
    if frame.empty:
        return frame
    group = [frame["dataset"], frame["setting"], frame["method"].map(lambda m: M.get(m).rate)]
    frame["complete"] = frame.groupby(group)["method_complete"].transform("all").astype(bool)
    return frame


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` marked complete (all of them when it has no such column)."""
    return frame[frame["complete"].astype(bool)] if "complete" in frame else frame


def pending(frame: pd.DataFrame, dataset: str, setting: str) -> str | None:
    """A sentence naming the methods of a group whose rows are not complete yet, and those
    complete ones that wait for them (their rate's verdict needs both sides); or None."""
    if "complete" not in frame:
        return None
    rows = frame[(frame["dataset"] == dataset) & (frame["setting"] == setting)
                 & ~frame["complete"].astype(bool)]
    if rows.empty:
        return None
    running = rows[~rows["method_complete"].astype(bool)]  # mark_complete sets both columns
    # every run so far, not only the newest configuration's: the grid's vae-conv runs one
    # VAE per KL weight that validation chose, two configurations of one (method, K)
    runs = verdict_decoder_rows(running).groupby("method", sort=False).size()
    listed = F.join_words(f"{m} ({F.plural(int(n), 'run')})" for m, n in runs.items())
    waiting = [m for m in dict.fromkeys(rows["method"]) if m not in set(running["method"])]
    also = (f" {F.join_words(waiting)} {'has' if len(waiting) == 1 else 'have'} every run but "
            f"{'waits' if len(waiting) == 1 else 'wait'} for them, so that no verdict pairs "
            f"tuned rows with fixed-budget ones." if waiting else "")
    return (f"Still running or stopped part-way, so in no verdict yet: {listed} so far; "
            f"their rows are in the appendix.{also}")


def verdict_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the tuned verdicts read: :func:`verdict_cells` of the complete
    (dataset, method) groups (every quantized method's cell decoded by a decoder
    fine-tuned on its codes, and the unquantized reference: the VAE at the chosen KL
    weight, the bound of the a-posteriori codes), newest configuration of each
    (dataset, method, K)."""
    return verdict_cells(complete(frame))


def tuned_verdicts(frame: pd.DataFrame) -> list[SectionVerdict]:
    """One verdict per (dataset, setting, rate) whose proposal and an opponent have rows."""
    return section_verdicts(verdict_rows(frame), COMPARISON)


# --- what validation chose ------------------------------------------------------------------

def selection_path(root: Path, dataset: str) -> Path:
    return Path(root) / TUNED_DIR / f"selection_{dataset}.csv"


def read_selection(root: Path, dataset: str) -> pd.DataFrame:
    """selection_<dataset>.csv (empty when absent)."""
    path = selection_path(root, dataset)
    if not path.is_file():
        return pd.DataFrame(columns=["rate", "family", "K", "candidate", "chosen", "val_score"])
    frame = pd.read_csv(path, keep_default_na=False)
    frame["chosen"] = frame["chosen"].astype(str) == "True"
    return frame


def setting_text(row: pd.Series) -> str:
    """A chosen candidate in words: 'β = 1, batch 32' or 'latent/refined'."""
    if str(row["family"]).startswith("cell:"):
        return "/".join(v for v in (row["edge_length"], row["code_vectors"]) if v)
    names = {"vae_kl_weight": "β", "vqvae_beta": "commitment", "vqvae_lr": "lr",
             "vae_batch_size": "batch", "vqvae_batch_size": "batch",
             "prior_channels": "channels", "prior_layers": "layers"}
    return ", ".join(f"{names.get(k, k)} {v:g}" for k, v in json.loads(row["candidate"]).items())


RATE_LABELS = {M.IMAGE_RATE: "one code per image", M.GRID_RATE: "7x7 grid"}


def expected_candidates(family: str, dataset: str) -> int | None:
    """How many candidates utils/protocol.py gives ``family`` on ``dataset`` (None for the
    cells, whose count depends on the method and the rate)."""
    if family == P.PRIOR_FAMILY:
        return len(P.PRIOR_CANDIDATES)
    if family.startswith("vae-"):
        return len(P.candidates(P.A_POSTERIORI_SIDE, dataset))
    if family in M.METHODS:
        m = M.get(family)
        return len(P.candidates(P.END_TO_END_SIDE, dataset,
                                library=m.options.get("quantizer") if m.from_library else None))
    return None


def choices(selection: pd.DataFrame, rate: str) -> list[list[str]]:
    """The table of what validation chose at ``rate``: one row per family, one column per
    K; a family whose candidates are not all scored yet says so instead of a choice."""
    at = selection[selection["rate"] == rate]
    chosen = at[at["chosen"]]
    if chosen.empty:
        return []
    ks = sorted(int(k) for k in chosen["K"].unique())
    data = [[f"chosen on validation, {RATE_LABELS[rate]}", *(f"K = {k}" for k in ks)]]
    for family, g in chosen.groupby("family", sort=False):
        by_k = {int(r["K"]): setting_text(r) for _, r in g.iterrows()}
        want = expected_candidates(family, str(g["dataset"].iloc[0])) if "dataset" in g else None
        for k in by_k:
            scored = at[(at["family"] == family) & (at["K"] == k)]
            # every method of a family shared by several (the prior) scores every candidate
            have = (scored.groupby("method")["candidate"].nunique().min() if "method" in scored
                    else scored["candidate"].nunique())
            if want is not None and have < want:
                by_k[k] = f"pending ({have} of {want} scored)"
        data.append([family.removeprefix("cell:") + (" cell" if family.startswith("cell:") else ""),
                     *(by_k.get(k, "-") for k in ks)])
    return data


# --- sentences ------------------------------------------------------------------------------

def training_phrase(rows: pd.DataFrame) -> str:
    """How the models of ``rows`` (one dataset and rate) trained: "to convergence" only when
    early stopping ended every one before its epoch budget (``epochs``); otherwise how many
    rows' models ran the whole budget and how many of those had their best validation epoch
    within one of the last, so that equal budgets are never told as convergence."""
    trained = rows["epochs_trained"].dropna()
    if trained.empty:
        return "every model trained with early stopping on validation"
    epochs = F.span(*(str(int(e)) for e in (trained.min(), trained.max())))
    if "epochs" not in rows or not (trained >= rows.loc[trained.index, "epochs"]).any():
        return (f"every model trained to convergence with early stopping on validation "
                f"(epochs run: {epochs})")
    budget = rows.loc[trained.index, "epochs"]
    used = trained >= budget
    budgets = budget[used].astype(int)
    last = (rows.loc[trained.index, "best_epoch"] >= trained - 1) & used
    return (f"every model trained with early stopping on validation up to an equal "
            f"{F.span(str(budgets.min()), str(budgets.max()))}-epoch budget; the models of "
            f"{used.sum()} of {len(trained)} rows ran all of it (best epoch within one of the last "
            f"in {last.sum()}), so the budget, not convergence, ended them")


def answer_item(frame: pd.DataFrame, v: SectionVerdict, brief: bool = False) -> str:
    """The tuned verdict at one rate, on reconstruction and labels."""
    rows = newest(complete(frame))
    rows = rows[(rows["dataset"] == v.dataset) & (rows["setting"] == v.setting)
                & rows["method"].isin(M.names(rate=M.get(v.contest.proposal).rate))]
    head = (f"**{VT.verdict_label(v)}, tuned protocol**, {VT.rate_phrase(v.contest)} "
            f"({F.plural(v.n_seeds, 'seed')}, {F.fmt_k_list(v.ks)}; {training_phrase(rows)}; "
            f"settings and cells chosen on validation, both sides decoded by decoders "
            f"fine-tuned on their codes): {VT.verdict_words(v.against[v.main])}.")
    clauses = VT.opponent_clauses(v, brief)
    return " ".join([head, *clauses])


def bound_sentence(rows: pd.DataFrame, v: SectionVerdict) -> str | None:
    """Where the a-posteriori side's own unquantized VAE (at the KL weight its codes used)
    already reconstructs worse than the opponent's codes at the largest K, beyond the
    spread: that the gap is the VAE's, with the three means. None otherwise. ``rows``:
    :func:`verdict_rows` of the tuned frame."""
    rows = rows[(rows["dataset"] == v.dataset) & (rows["setting"] == v.setting)]
    K, mse = max(v.ks), R.MSE.column
    prop = rows[(rows["method"] == v.contest.proposal) & (rows["K"] == K)]
    opp = rows[(rows["method"] == v.main) & (rows["K"] == K)]
    betas = prop["kl_weight"].dropna().unique() if "kl_weight" in prop else []
    if len(betas) != 1 or opp.empty:
        return None
    rate = M.get(v.contest.proposal).rate
    continuous = [m.name for m in M.methods(family=M.CONTINUOUS, rate=rate)]
    vae = rows[rows["method"].isin(continuous) & (rows["kl_weight"] == betas[0])]
    if vae.empty:
        return None
    b, o, p = (g[mse].agg(["mean", "std"]).fillna(0.0) for g in (vae, opp, prop))
    if not b["mean"] - b["std"] > o["mean"] + o["std"]:
        return None
    return (f"At K = {K} the gap is the VAE's more than the quantizer's: the unquantized "
            f"{vae['method'].iloc[0]} validation chose (β = {betas[0]:g}) reconstructs the test "
            f"split at MSE {F.fmt_mean_std(b['mean'], b['std'])}, already worse than "
            f"{v.main}'s codes ({F.fmt_mean_std(o['mean'], o['std'])}); {v.contest.proposal}'s "
            f"codes, at {F.fmt_mean_std(p['mean'], p['std'])}, are "
            f"{100 * (p['mean'] / b['mean'] - 1):+.0f}% from that VAE.")


def answer(results, frame: pd.DataFrame) -> list[str]:
    """The short-answer items of the tuned rows (an Extra's ``answer``), brief."""
    return [answer_item(frame, v, brief=True) for v in tuned_verdicts(frame)]


INTRO = ("The fixed-budget rows (the sensitivity check after this section) train every model "
         "for a set number of epochs with one setting per side, so training budgets can decide a "
         "verdict before the quantizer does. "
         "The tuned protocol (docs/protocol.md, train/run_tuned.py) gives every model the same "
         "epoch budget with early stopping on the validation split (patience 5, best weights "
         "kept), chooses each side's settings on validation at each K with the same number of "
         "candidates (the VAE's β for the a-posteriori side, scored through k-means codes; the "
         "VQ-VAE's commitment weight and learning rate), chooses the a-posteriori cells on "
         "validation too, and decodes both sides' codes with a decoder fine-tuned on them (the "
         "frozen decoders are in the tables beside). The test split is read only for these rows. "
         "The a-posteriori side's cell choice adds up to four choices at one code per image, and one "
         "at the grid rate where the decoder's per-position metrics fit the budget (mnist-5k), "
         "that the end-to-end side does not get.")


# --- layout ---------------------------------------------------------------------------------

def table_rows(rows: pd.DataFrame) -> list[list[str]]:
    """Method x cell x K rows of mean ± std over seeds (methods in utils/methods.py order)."""
    order = {m: i for i, m in enumerate(M.METHODS)}
    cell = rows[["edge_length", "code_vectors", "decoder"]].fillna("").agg(
        lambda r: "/".join(v for v in r if v) or "-", axis=1)
    # an unquantized reference has one row group per KL weight (report.load.newest)
    bound = with_bound_key(rows)[BOUND_KEY]
    cell = cell.where(bound == "", "β = " + bound)
    rows = rows.assign(order=rows["method"].map(order), cell=cell)
    rows = rows.sort_values(["order", "cell", "K", "seed"])
    return mean_std_rows(rows, (Key("method", "method"), Key("cell", "cell"), Key("K", "K", int_text)),
                         TABLE_COLUMNS)


def group_label(rows: pd.DataFrame, dataset: str, setting: str) -> str:
    return F.run_label(dataset, setting, dict.fromkeys(rows["dataset_used"]))


def details(results, frame: pd.DataFrame, styles) -> list:
    """The tuned section of the main body: how, the verdicts, and what validation chose."""
    from report.layout import heading, para, render

    story = heading("The tuned protocol: equal budgets, chosen on validation", styles) + [
        para(INTRO, styles["body"])]
    verdicts, rows_all = tuned_verdicts(frame), verdict_rows(frame)
    for (dataset, setting), rows in newest(frame).groupby(["dataset", "setting"], sort=False):
        story += heading(group_label(rows, dataset, setting), styles, "h2", 0.15)
        waiting = pending(frame, dataset, setting)
        if waiting:
            story.append(para(waiting, styles["body"]))
        for v in verdicts:
            if (v.dataset, v.setting) == (dataset, setting):
                bound = bound_sentence(rows_all, v)
                story.append(para(answer_item(frame, v) + (f" {bound}" if bound else ""),
                                  styles["body"]))
        selection = read_selection(results.root, dataset)
        for rate in (M.IMAGE_RATE, M.GRID_RATE):
            data = choices(selection, rate)
            if data:
                story.append(render(data, [0.2] + [0.8 / (len(data[0]) - 1)] * (len(data[0]) - 1),
                                    styles))
    return story


def interpolation_figures(root: Path, rows: pd.DataFrame, dataset: str,
                          setting: str) -> list[tuple[Path, str]]:
    """(png, caption) of the tuned run's interpolation figures present (run_tuned.py's
    figures stage: the chosen VAE at each rate, the first seed)."""
    out = []
    for name in INTERPOLATION_FIGURES:
        png = ResultPaths(root / TUNED_DIR).figure(name, dataset, setting).with_suffix(".png")
        if png.is_file():
            out.append((png, f"{RUNNER_FIGURE_CAPTIONS[name]} {group_label(rows, dataset, setting)}"
                             f", tuned protocol: the VAE validation chose at the largest K."))
    return out


def appendix(results, frame: pd.DataFrame, styles) -> list:
    """The tuned rows at every K, both decoders, with the epochs they trained, and the
    interpolation figures of the chosen VAEs."""
    from report.layout import figure, heading, render

    story = []
    for (dataset, setting), rows in newest(frame).groupby(["dataset", "setting"], sort=False):
        story += heading(f"{group_label(rows, dataset, setting)}: the tuned rows at every K",
                         styles, "h2") + [render(table_rows(rows), [0.13, 0.22, 0.05], styles)]
        story += [figure(png, caption, styles)
                  for png, caption in interpolation_figures(results.root, rows, dataset, setting)]
    return story


EXTRA = Extra("The tuned protocol", lambda p: p.root / TUNED_DIR / p.comparison.name,
              answer, details, read_tuned, data=COMPARISON, rows=verdict_rows, appendix=appendix,
              protocol=TUNED)


# --- the tuned generation rows (run_tuned.py --stage generation) ------------------------------

def generation_answer(results, frame: pd.DataFrame) -> list[str]:
    """The short-answer items of the tuned generation rows, brief."""
    from report import generation as G

    return [G.answer_item(frame, v, brief=True,
                          label=f"{VT.verdict_label(v)}, generation, tuned protocol")
            for v in G.generation_verdicts(complete(frame))]


def drift_sentence(drift: pd.DataFrame) -> str | None:
    """One paragraph naming the generation rows of :func:`utils.results.recon_drift`
    (a prior over a retrained model that did not reproduce its comparison row), with
    both decoder NLLs; None when there are none."""
    if drift.empty:
        return None
    names = [f"{d.method} at K = {int(d.K)}, seed {int(d.seed)}" for d in drift.itertuples()]
    numbers = [f"{d.recon_nll_bits:.1f} bits per image against {d.comparison_bits:.1f} "
               f"({d.drift_bits:+.1f})" for d in drift.itertuples()]
    one = len(names) == 1
    return (f"The prior{'' if one else 's'} of {F.join_words(names)} model{'s' if one else ''} "
            f"the codes of {'a model' if one else 'models'} retrained for the generation stage, "
            f"which did not reproduce the model{'' if one else 's'} of the reconstruction rows; "
            f"the decoder's test NLL against theirs: {'; '.join(numbers)}. "
            f"{'This row describes' if one else 'These rows describe'} the retrained model.")


def generation_appendix(results, frame: pd.DataFrame, styles) -> list:
    """The tuned generation rows at every K, and the priors whose model did not reproduce
    its reconstruction row (:func:`drift_sentence`)."""
    from report import generation as G
    from report.layout import heading, para

    comparison = results.root / TUNED_DIR / "comparison.csv"
    compared = read_results(comparison) if comparison.is_file() else pd.DataFrame()
    story = []
    for (dataset, setting), rows in newest(frame).groupby(["dataset", "setting"], sort=False):
        waiting = pending(frame, dataset, setting)
        drift = drift_sentence(recon_drift(rows, compared))
        story += heading(f"{group_label(rows, dataset, setting)}: tuned generation at every K",
                         styles, "h2") + [para(text, styles["body"]) for text in (waiting, drift)
                                          if text] + [G.generation_table(rows, styles)]
    return story


GENERATION_EXTRA = Extra("The tuned protocol: generation",
                         lambda p: p.root / TUNED_DIR / p.generation.name, generation_answer,
                         read=read_tuned_generation, data=GENERATION,
                         rows=lambda frame: newest(complete(frame)),
                         appendix=generation_appendix, protocol=TUNED)
