"""The sentences of the ablation of the a-posteriori methods' cells
(report.verdicts.ablation_verdict): edge lengths, code vectors and decoder, each
switched alone from the default cell.

:func:`ablation_item` gives one finding per dataset whose results hold cells other
than the default ones (brief on page 1: :func:`brief_ablation_item`);
:func:`ablation_intro` and :func:`ablation_sentences` give its section;
:func:`cells_rule` and :func:`default_cells_text` say which cell the main
verdicts use.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from report.formatting import (fmt_diff, fmt_k_list, fmt_k_range, fmt_pct, fmt_rel, fmt_share,
                               join_words, plural, span)
from report.load import Results, all_cells, has_tuned_rows
from report.verdict_text import group_label, metric_sentence, name, verdict_label, where_decided
from report.verdicts import ABLATION_METRIC, AblationVerdict, Cell, Factor, has_ablation
from utils import methods as M


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
    if has_tuned_rows(results):
        text = (f"Page 1 and the README's short answer read the tuned rows, whose cells are "
                f"chosen on validation at each K (the tuned section names them), wherever those "
                f"exist. The fixed-budget comparisons use each a-posteriori method's default "
                f"cell: {default_cells_text()}. These cells were fixed before any run; nothing "
                f"is chosen on test.")
    else:
        text = (f"The main verdicts (page 1, the README's short answer and each dataset's "
                f"matched-bits comparisons) use each a-posteriori method's default cell: "
                f"{default_cells_text()}. These cells were fixed before any run, not chosen on "
                f"the test split; nothing is tuned on test.")
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
