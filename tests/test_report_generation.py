"""report/generation.py: the generative verdicts on hand-made generation.csv rows,
decided by the report's rule (beyond the sum of the seed stds), and its items."""
from __future__ import annotations

import pandas as pd

from report import generation as G
from report import sections as S
from utils import metric_registry as R
from utils.results import GENERATION_COLUMNS


def rows(method, K, fids, nlls, config="c1", prior="pixelcnn"):
    return [dict.fromkeys(GENERATION_COLUMNS, 0.0) | {
        "dataset": "mnist", "setting": "full", "method": method, "K": K, "seed": s,
        "config_hash": f"{config}{s}", "config_id": config, "dataset_used": "mnist-5k",
        "prior": prior, "bits_per_image": 49 * 6, "fid_samples": f, "prior_nll_bits": n,
        "fid_train": 0.5, "sample_class_entropy": 3.0, "fid_recon": f / 2, "n_fid": 100}
        for s, (f, n) in enumerate(zip(fids, nlls))]


def frame(*groups):
    return pd.DataFrame([r for g in groups for r in g], columns=GENERATION_COLUMNS)


def test_better_fid_and_worse_nll_is_yes_since_only_fid_votes():
    """Sample FID is generation's primary metric; the prior NLL is stated, never a vote
    (evenly used codes raise a histogram prior's NLL, so it would vote against good codes)."""
    df = frame(rows("geodesic-conv", 64, [5.0, 5.1, 4.9], [200, 201, 199]),
               rows("vqvae-conv", 64, [9.0, 9.2, 8.8], [150, 151, 149]),
               rows("geodesic-conv", 512, [4.0, 4.1, 3.9], [250, 251, 249]),
               rows("vqvae-conv", 512, [8.0, 8.1, 7.9], [180, 181, 179]))
    (v,) = G.generation_verdicts(df)
    assert v.contest.proposal == "geodesic-conv" and v.main == "vqvae-conv"
    ov = v.against["vqvae-conv"]
    assert ov.groups == {"better": ["fid_samples"], "worse": [], "unclear": []}
    assert v.answer == "yes" and v.ks == (64, 512) and v.n_seeds == 3
    nll = ov.tables["prior_nll_bits"]  # still compared, and reported
    assert list(nll["winner"]) == ["vqvae-conv", "vqvae-conv"]
    table = ov.tables["fid_samples"]
    assert list(table["winner"]) == ["geodesic-conv", "geodesic-conv"]
    assert abs(table["diff"].iloc[0] - (5.0 - 9.0)) < 1e-12


def test_differences_inside_the_spread_decide_nothing():
    df = frame(rows("geodesic-conv", 64, [5.0, 7.0, 3.0], [150, 160, 140]),
               rows("vqvae-conv", 64, [5.5, 6.5, 4.5], [151, 152, 150]))
    (v,) = G.generation_verdicts(df)
    assert v.answer == "no clear difference"
    assert "without a clear winner on sample FID" in G.answer_item(df, v)


def test_only_the_newest_configuration_is_judged():
    old = rows("geodesic-conv", 64, [1.0, 1.1, 0.9], [100, 101, 99], config="old")
    df = frame(old, rows("geodesic-conv", 64, [9.0, 9.1, 8.9], [100, 101, 99], config="new"),
               rows("vqvae-conv", 64, [5.0, 5.1, 4.9], [100, 101, 99]))
    (v,) = G.generation_verdicts(df)
    assert v.against["vqvae-conv"].groups["worse"] == ["fid_samples"] and v.answer == "no"
    assert len(G.newest(df)) == 6


def test_each_rate_gets_its_own_item_with_its_prior():
    df = frame(rows("geodesic-vae", 64, [5.0, 5.1, 4.9], [5.9, 5.9, 5.9], prior="histogram"),
               rows("vqvae-global", 64, [7.0, 7.1, 6.9], [5.0, 5.0, 5.0], prior="histogram"),
               rows("geodesic-conv", 64, [5.0, 5.1, 4.9], [200, 201, 199]),
               rows("vqvae-conv", 64, [9.0, 9.2, 8.8], [150, 151, 149]))
    items = G.answer(None, df)
    assert len(items) == 2
    one, grid = sorted(items, key=lambda t: "7x7" in t)
    assert "one code per image" in one and "smoothed code histogram" in one
    assert "7x7 grid" in grid and "PixelCNN" in grid and "K = 64" in grid
    assert "training images against test images: 0.5" in grid


def test_no_opponent_no_verdict():
    assert G.generation_verdicts(frame(rows("geodesic-conv", 64, [5.0, 5.1], [1, 2]))) == []


def test_table_holds_mean_and_std_of_every_declared_column():
    df = frame(rows("vqvae-conv", 64, [9.0, 9.2, 8.8], [150, 151, 149]),
               rows("geodesic-conv", 64, [5.0, 5.1, 4.9], [200, 201, 199]))
    head, first, second = G.table_rows(df)
    assert head == ["method", "K", "seeds"] + [h for _, h in S.GENERATION.table_columns]
    # methods in utils/methods.py order; bits per image fixed by K, the rest mean ± std
    assert first[:5] == ["vqvae-conv", "64", "3", "294", "150 ± 1"]
    assert second[:5] == ["geodesic-conv", "64", "3", "294", "200 ± 1"]
    assert second[head.index("sample FID")] == "5.00 ± 0.10"


def test_sections_read_only_metrics_of_their_table():
    for section in (S.COMPARISON, S.GENERATION):
        assert set(section.answer_metrics) <= set(section.detail_metrics)
        assert all(R.get(m).table == section.table for m in section.detail_metrics)
        assert all(c in R.METRICS for c, _ in section.table_columns)
