"""The evaluate metric module against independent references: ranx (no ties) and trec_eval via pytrec_eval (ties)."""

import random

import evaluate
import pytest
import pytrec_eval
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate

from lite_rerank.evaluation import METRICS_SCRIPT


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRICS_SCRIPT), keep_in_memory=True)


def random_queries(seed, num_queries=40, tie_levels=None):
    """Random candidate lists with graded labels, relevant documents missing from the candidates, and queries whose
    candidates hold nothing relevant. Candidate i of a query has docno d{999-i} (see the trec_eval tie rule)."""
    rng = random.Random(seed)
    queries = []
    for q in range(num_queries):
        n = rng.randint(1, 25)
        scores = [rng.choice(tie_levels) if tie_levels else rng.random() for _ in range(n)]
        labels = [rng.choice([0, 0, 0, 1, 2, 3]) for _ in range(n)]
        if q % 7 == 0:
            labels = [0] * n  # nothing relevant among the candidates
        missing = [rng.choice([1, 2, 3]) for _ in range(rng.randint(0, 2))]  # relevant, but not retrieved
        if not any(labels) and not missing:
            missing = [1]
        queries.append((scores, labels, missing))
    return queries


def qrels_and_run(queries):
    qrels, run = {}, {}
    for q, (scores, labels, missing) in enumerate(queries):
        docnos = [f"d{999 - i}" for i in range(len(scores))]
        qrels[f"q{q}"] = {d: label for d, label in zip(docnos, labels)}
        qrels[f"q{q}"].update({f"m{j}": grade for j, grade in enumerate(missing)})
        run[f"q{q}"] = dict(zip(docnos, scores))
    return qrels, run


def ours(metric, queries, k_values):
    return metric.compute(
        predictions=[s for s, _, _ in queries],
        references=[labels for _, labels, _ in queries],
        judged_relevances=[labels + missing for _, labels, missing in queries],
        k_values=k_values,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_ranx_without_ties(metric, seed):
    queries = random_queries(seed)
    qrels, run = qrels_and_run(queries)
    reference = ranx_evaluate(Qrels(qrels), Run(run), ["mrr@10", "ndcg@10", "recall@10", "recall@25", "ndcg@5"])
    got = ours(metric, queries, [5, 10, 25])
    assert got["num_queries"] == len(queries)
    for name, value in reference.items():
        assert got[name] == pytest.approx(float(value), abs=1e-9), name


@pytest.mark.parametrize("seed", [3, 4])
def test_equals_trec_eval_with_ties(metric, seed):
    queries = random_queries(seed, tie_levels=[0.0, 0.25, 0.5, 0.75])
    qrels, run = qrels_and_run(queries)
    assert any(len(set(s)) < len(s) for s, _, _ in queries), "the fixture must contain ties"
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"}).evaluate(run)
    # trec_eval breaks ties by docno, descending; candidate i is d{999-i}, so that order is the candidate order.
    top10 = {
        q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], [-ord(c) for c in kv[0]]))[:10])
        for q, docs in run.items()
    }
    reciprocal = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    got = ours(metric, queries, [10])
    n = len(queries)
    assert got["ndcg@10"] == pytest.approx(sum(v["ndcg_cut_10"] for v in per_query.values()) / n, abs=1e-9)
    assert got["recall@10"] == pytest.approx(sum(v["recall_10"] for v in per_query.values()) / n, abs=1e-9)
    assert got["mrr@10"] == pytest.approx(sum(v["recip_rank"] for v in reciprocal.values()) / n, abs=1e-9)


def test_hand_computed_values_and_edge_cases(metric):
    got = metric.compute(
        predictions=[[0.1, 0.9, 0.5], [1.0, 1.0 + 1e-12], [3.0, 2.0], []],
        references=[[2, 0, 1], [0, 1], [0, 0], []],
        judged_relevances=[[2, 1, 0, 1], [1], [0], [1]],
        k_values=[2],
        return_per_query=True,
    )
    first, tie, nothing_relevant, no_candidates = got["per_query"]
    # order: 0.9 (0), 0.5 (1), 0.1 (2) → first relevant at rank 2
    assert first["mrr@2"] == 0.5
    assert first["recall@2"] == pytest.approx(1 / 3)  # 1 of 3 relevant judged documents in the top 2
    import math

    assert first["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # float32 cannot tell 1.0 from 1.0 + 1e-12: a tie, kept in candidate order → relevant doc at rank 2
    assert tie["mrr@2"] == 0.5
    assert nothing_relevant == {"mrr@2": 0.0, "ndcg@2": 0.0, "recall@2": 0.0}
    assert no_candidates == {"mrr@2": 0.0, "ndcg@2": 0.0, "recall@2": 0.0}
    assert got["num_queries"] == 4


def test_mismatched_lengths_are_rejected(metric):
    with pytest.raises(ValueError, match="query 0"):
        metric.compute(predictions=[[1.0, 2.0]], references=[[1]], judged_relevances=[[1]])
