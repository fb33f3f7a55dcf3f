"""lite_rerank.significance (research/paired_test.py, the demo's paired test): RR@10 from hand-built runs, and the
randomisation p-value against exact enumeration."""

import itertools

import numpy as np
import pytest

from lite_rerank import significance as paired_test


def test_reciprocal_ranks_follow_the_run_order():
    qrels = {"a": {"a3": 1}, "b": {"b1": 1, "b2": 0}, "c": {"c11": 1}, "d": {"x": 1}}
    run = {q: [(f"{q}{r}", -r) for r in range(1, 13)] for q in "abc"}  # d has no candidates at all
    assert paired_test.reciprocal_ranks(run, qrels) == {"a": 1 / 3, "b": 1.0, "c": 0.0, "d": 0.0}


def exact_p(differences):
    """All 2^n sign assignments: the exact two-sided p of the sign-flip test."""
    differences = np.asarray(differences)
    observed = abs(differences.mean())
    means = [
        abs((np.array(signs) * differences).mean()) for signs in itertools.product((-1, 1), repeat=len(differences))
    ]
    return float(np.mean(np.array(means) >= observed - 1e-12))


@pytest.mark.parametrize(
    "differences", [[0.5, 0.3, 0.2, 1.0, 0.1, 0.4, -0.1, 0.6, 0.2, 0.3], [0.5, -0.5, 0.2, -0.1, 0.0, 0.3, -0.2, 0.1]]
)
def test_randomisation_p_matches_exact_enumeration(differences):
    assert paired_test.randomisation_p(differences, permutations=200_000, seed=1) == pytest.approx(
        exact_p(differences), abs=0.005
    )


def test_compare_counts_wins_losses_ties():
    baseline = {"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": 0.25}
    system = {"q1": 0.5, "q2": 1.0, "q3": 0.0, "q4": 1.0}
    result = paired_test.compare(baseline, system, permutations=1000)
    assert (result["wins"], result["losses"], result["ties"]) == (2, 1, 1)
    assert result["difference"] == pytest.approx((-0.5 + 0.5 + 0 + 0.75) / 4)
    assert result["mrr@10"] == pytest.approx(2.5 / 4)
