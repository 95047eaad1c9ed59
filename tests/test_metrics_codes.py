"""Code-usage, cluster and label metrics of utils/metrics.py against
scikit-learn, brute force and hand-computed values."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from utils import metrics


def test_perplexity_is_k_for_uniform_use_and_one_for_collapse():
    assert metrics.perplexity(np.full(64, 10)) == pytest.approx(64)
    assert metrics.perplexity(np.r_[100, np.zeros(63)]) == pytest.approx(1.0)
    # two codes used 3:1 -> exp(H) with H = -(.75 ln .75 + .25 ln .25)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert metrics.perplexity([3, 1, 0]) == pytest.approx(math.exp(h))


def test_code_counts_and_usage():
    counts = metrics.code_counts(np.array([[0, 2], [2, 2]]), 4)
    assert counts.tolist() == [1, 0, 3, 0]
    assert metrics.usage(counts) == 0.5


def test_psnr_hand_computed():
    assert metrics.psnr(0.01) == pytest.approx(20.0)
    assert metrics.psnr(1e-4) == pytest.approx(40.0)
    assert metrics.psnr(0.0) == float("inf")


def test_purity_hand_computed():
    codes = [0, 0, 0, 1, 1, 2]
    labels = [5, 5, 7, 7, 7, 1]
    # code 0: majority 5 (2 of 3); code 1: 7 (2); code 2: 1 (1) -> 5 / 6
    assert metrics.purity(codes, labels) == pytest.approx(5 / 6)


def test_code_to_label_accuracy_hand_computed():
    train_codes = [0, 0, 0, 1, 1, 2]
    train_labels = [3, 3, 4, 4, 4, 9]
    # votes: code 0 -> 3, code 1 -> 4, code 2 -> 9, code 3 unseen -> the overall majority, 4
    test_codes = [0, 1, 2, 3, 0]
    test_labels = [3, 4, 1, 4, 4]  # right, right, wrong, right, wrong
    assert metrics.code_to_label_accuracy(train_codes, train_labels, test_codes, test_labels) == \
        pytest.approx(3 / 5)


def test_label_agreement_matches_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    codes = (labels * 3 + rng.integers(0, 3, 500)) % 17
    out = metrics.label_agreement(codes, labels)
    assert out["nmi"] == pytest.approx(normalized_mutual_info_score(labels, codes))
    assert out["ari"] == pytest.approx(adjusted_rand_score(labels, codes))
    assert 0 < out["purity"] <= 1


def test_intra_inter_distances_equal_brute_force():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(90, 3))
    labels = rng.integers(0, 4, 90)
    D = np.linalg.norm(Z[:, None] - Z[None], axis=2)
    iu = np.triu_indices(90, 1)
    same = labels[:, None] == labels[None, :]
    intra, inter = D[iu][same[iu]].mean(), D[iu][~same[iu]].mean()
    out = metrics.intra_inter_distances(Z, labels, chunk=7)
    assert out["intra_cluster_mean"] == pytest.approx(intra)
    assert out["inter_cluster_mean"] == pytest.approx(inter)
    assert out["intra_inter_ratio"] == pytest.approx(intra / inter)


def test_intra_inter_subsamples_above_max_points():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(400, 2))
    labels = rng.integers(0, 3, 400)
    a = metrics.intra_inter_distances(Z, labels, max_points=100, seed=0)
    b = metrics.intra_inter_distances(Z, labels, max_points=100, seed=0)
    full = metrics.intra_inter_distances(Z, labels)
    assert a == b
    assert a["intra_cluster_mean"] == pytest.approx(full["intra_cluster_mean"], rel=0.15)


def test_euclidean_distortion_and_reconstruction_errors():
    import torch

    Z = np.array([[0.0, 0.0], [3.0, 4.0]])
    codes = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert metrics.euclidean_distortion(Z, codes) == pytest.approx((1 + 5) / 2)
    x = torch.tensor([[[[0.0, 1.0]]]]).expand(2, 1, 1, 2).contiguous()
    logits = torch.zeros(2, 1, 1, 2)  # p = 0.5 everywhere
    err = metrics.reconstruction_errors(logits, x)
    assert err["bce"] == pytest.approx(2 * math.log(2))  # per image: two pixels of ln 2
    assert err["mse"] == pytest.approx(0.25)


def test_code_to_label_vote_ties_go_to_the_smallest_label():
    assert metrics.code_to_label_accuracy([0, 0], [7, 2], [0], [2]) == 1.0


def test_ami_is_one_for_a_relabelling_and_near_zero_by_chance():
    """Adjusted for chance (Vinh et al. 2010): a renaming of the labels scores 1, and codes
    drawn independently of the labels average 0 however many codes there are (NMI does not)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 1000)
    assert metrics.label_agreement((labels * 7 + 3) % 10, labels)["ami"] == pytest.approx(1.0)
    chance = [metrics.label_agreement(rng.integers(0, 256, 1000), labels) for _ in range(5)]
    assert abs(np.mean([c["ami"] for c in chance])) < 0.01
    assert np.mean([c["nmi"] for c in chance]) > 0.2  # what the adjustment removes


def test_dead_codes_are_the_codes_no_training_input_uses():
    train = np.array([[0, 1], [1, 5]])  # a 1x2 "grid" of codes per image, K = 8
    row = metrics.evaluate_codes(recon_logits=torch.zeros(2, 1, 28, 28), x_test=torch.zeros(2, 1, 28, 28),
                                 bits=6.0, test_codes=np.array([[0, 0], [0, 2]]), train_codes=train,
                                 n_codes=8)
    assert row["dead_codes"] == 8 - 3  # codes 0, 1 and 5 are used
    assert row["usage"] == pytest.approx(2 / 8)  # usage reads the test codes
