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


def test_compare_result_runs_reads_each_rows_run_where_eval_rerank_wrote_it(tmp_path):
    """Rows from two evaluations, one named with a space (its TREC file says my_model): each run is read from the
    path eval_rerank.py gives it, and compared with the baseline row as `compare` does on hand-computed RR@10."""
    import eval_rerank
    from lite_rerank.data import write_trec_run

    qrels_path = tmp_path / "qrels.tsv"
    qrels_path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    rankings = {
        "first-stage": {"q1": ["d9", "d1"], "q2": ["d2", "d9"], "q3": ["d9", "d8", "d3"]},
        "my model": {"q1": ["d1", "d9"], "q2": ["d9", "d2"], "q3": ["d3", "d9"]},
    }
    first, second = tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"
    for results, names in ((first, ["first-stage"]), (second, ["my model"])):
        results.parent.mkdir()
        for name in names:
            path = eval_rerank.output_paths(results, [name])[1]  # [first stage, the row, the results JSON]
            write_trec_run(path, {q: [(d, -r) for r, d in enumerate(docs)] for q, docs in rankings[name].items()}, "t")
    assert (tmp_path / "b" / "results.my_model.trec").is_file()
    tests = paired_test.compare_result_runs({"first-stage": first, "my model": second}, qrels_path, "first-stage")
    expected = paired_test.compare({"q1": 0.5, "q2": 1.0, "q3": 1 / 3}, {"q1": 1.0, "q2": 0.5, "q3": 1.0})
    assert tests == {"my model": expected}
