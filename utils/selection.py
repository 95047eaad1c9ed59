"""Choosing among candidates on the validation split: the rule every selection shares.

A selection table has one row per (family, K, candidate, seed) with the
candidate's validation ``value`` (lower is better). :func:`choose` averages over
seeds and marks, per (family, K), the candidate with the lowest mean; the
test split never enters a selection table.
"""
from __future__ import annotations

import pandas as pd

ELBO_SUFFIX = "-elbo"  # a VAE's own objective, shown beside the criterion that chooses


def choose(frame: pd.DataFrame, candidate: str = "batch_size") -> pd.DataFrame:
    """Per (family, K): mean and std over seeds of ``value`` per ``candidate``,
    and ``chosen``, True for the lowest mean (ties: the larger candidate value;
    for batch sizes, the cheaper run)."""
    agg = (frame.groupby(["family", "K", candidate], sort=False)["value"]
           .agg(["mean", "std", "count"]).reset_index())
    agg = agg.sort_values(["family", "K", "mean", candidate], ascending=[True, True, True, False])
    agg["chosen"] = ~agg.duplicated(["family", "K"])
    return agg.sort_values(["family", "K", candidate]).reset_index(drop=True)
