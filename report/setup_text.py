"""The sentences that say how the results were made: the question, the rule, the set-up
of each dataset, the methods and their bits, and the limitations.

Everything is read from the results themselves (rows, run records, summary.csv):
:func:`question_text` and :data:`RULE` (page 2), :func:`group_intro` and
:func:`setup_facts` (each dataset's rows as run), :func:`methods_text` and
:func:`methods_rows` (what each method is and its bits per image),
:func:`limitation_facts` and :func:`fixed_limitations` (the caveats).
"""
from __future__ import annotations

import ast

from pathlib import Path

import pandas as pd

from report.ablation_text import cells_rule
from report.formatting import (fmt_k_list, fmt_k_range, fmt_seconds, join_words, plural, run_label,
                               unique_text)
from report.load import Results, has_tuned_rows
from report.verdict_text import group_label, rate_short
from report.verdicts import (active_contests, collapsed_codebooks, contests, rows_of,
                             unmatched_methods)
from utils import methods as M
from utils import metric_registry as R
from utils.cli import DEFAULT_BATCH_SIZE
from utils.paths import ResultPaths

# The results files by the names utils/paths.py gives them, for the sentences.
COMPARISON_CSV = ResultPaths(Path()).comparison.name
SUMMARY_CSV = ResultPaths(Path()).summary.name


def question_text() -> str:
    """The research question in two sentences: the proposals of every rate, and the
    primary metric of each question (utils.metric_registry.questions)."""
    proposals = ", ".join(f"**{c.proposal}**" for c in contests())
    measures = join_words(f"{m.question} ({m.label})" for m in R.questions())
    return (f"Do geodesic k-medoids on a k-NN graph of a trained VAE's latents ({proposals}) give "
            f"better discrete codes than a VQ-VAE trained end to end (van den Oord et al., 2017) "
            f"at equal bits? Test-set metrics: {measures}.")


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
    vqvae = config.get("vqvae_batch_size") or {}
    if isinstance(vqvae, str):  # a record stores an empty mapping as its text, "{}"
        vqvae = ast.literal_eval(vqvae) if vqvae.strip() else {}
    vqvae = vqvae or {"*": DEFAULT_BATCH_SIZE}
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
    budget = "fixed-budget training epochs" if has_tuned_rows(results) else "training epochs"
    for dataset, setting in results.groups:
        rows = rows_of(results.comparison, dataset, setting)
        config = results.records.get((dataset, setting), {}).get("config", {})
        seeds = sorted(rows["seed"].unique())
        used = list(dict.fromkeys(rows["dataset_used"]))
        spread = (f"{len(seeds)} seeds, so the spread is estimated from {len(seeds)} values"
                  if len(seeds) > 1 else "1 seed, so the spread cannot be estimated and no "
                                         "difference is called beyond it")
        text = (f"{run_label(dataset, setting, used)}: {spread}; {budget} "
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
    tuned = has_tuned_rows(results)
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
        ("In the fixed-budget rows" if tuned else "In the main verdicts")
        + " the a-posteriori codebooks decode through a decoder trained on "
        "continuous latents and never fine-tuned to the codes (their default cells); the "
        "VQ-VAEs train theirs end to end. "
        + ("The ablation's fine-tuned cells fine-tune a copy of the decoder on the codes."
           if (results.cells["decoder"] == "finetuned").any() else
           "These results hold no fine-tuned cell."),
        "Bits per image count the code indices only; no entropy coding (perplexity shows the "
        "effective number of codes).",
        ("In the fixed-budget rows, hyper-parameters" if tuned else "Hyper-parameters")
        + " (latent size, k, learning rates, epochs) are shared, not tuned per method"
        + (" (the tuned rows choose them on validation)" if tuned else "")
        + f"; fit times include cache loads, and {M.PROPOSAL}'s include building the graph.",
    ]
