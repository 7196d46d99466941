"""The statistics behind fitting and validating confidence (evaluation/confidence.py)."""

import itertools

import numpy as np
import pytest

from evaluation.confidence import auc_score, calibration, logistic_fit


def pairwise_auc(labels, scores):
    """ROC AUC by its definition: over every (positive, negative) pair, 1 if the positive
    scores higher, 1/2 on a tie."""
    positives, negatives = scores[labels], scores[~labels]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives)]
    return float(np.mean(wins))


def test_auc_is_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=300), 1)  # many ties
    labels = rng.random(300) < 1 / (1 + np.exp(-2 * scores))
    assert auc_score(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)
    assert auc_score(labels, -scores) == pytest.approx(1 - pairwise_auc(labels, scores), abs=1e-12)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError, match='positives and negatives'):
        auc_score(np.ones(4, bool), np.arange(4.0))


def test_logistic_fit_recovers_the_coefficients_that_drew_the_labels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40000, 3))
    bias, weights = 0.5, np.array([1.0, -2.0, 3.0])
    y = rng.random(len(x)) < 1 / (1 + np.exp(-(bias + x @ weights)))
    fitted_bias, fitted_weights = logistic_fit(x, y)
    # the maximum-likelihood estimate's standard error here is about 0.02-0.04
    assert fitted_bias == pytest.approx(bias, abs=0.1)
    np.testing.assert_allclose(fitted_weights, weights, atol=0.15)


def test_logistic_fit_stays_finite_when_the_classes_separate():
    x = np.linspace(-1, 1, 100)[:, None]
    bias, weights = logistic_fit(x, x[:, 0] > 0)
    assert np.isfinite(bias) and np.all(np.isfinite(weights)) and weights[0] > 10


def test_calibration_bins_the_scores_and_counts_the_trusted():
    class Seq:
        scored = np.ones((2, 3), bool)
        trusted = np.array([[True, False, True], [True, True, False]])

    scores = np.array([[0.05, 0.05, 0.95], [0.95, 0.55, 0.55]])
    centres, share, count = calibration([Seq()], lambda m: scores, bins=10)
    np.testing.assert_allclose(centres, np.arange(10) / 10 + 0.05)
    assert count.tolist() == [2, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert share[0] == 0.5 and share[5] == 0.5 and share[9] == 1.0 and np.isnan(share[1])
