"""Re-ranking metrics as an `evaluate` module: MRR@k, nDCG@k (linear gains) and Recall@k.

Load it offline with `evaluate.load("lite_rerank/rerank_metrics.py")`. One example is one query:
- `predictions`: the model's scores of the query's candidates, in first-stage order;
- `references`: the relevance grade of each candidate (0 when unjudged);
- `judged_relevances`: the grades of *all* judged documents of the query (qrels), including relevant documents
  missing from the candidates; they define the ideal ranking of nDCG and the denominator of Recall.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Mean over queries of MRR@k, nDCG@k and Recall@k for re-ranked candidate lists.
Scores are compared in float32; ties keep the candidate (first-stage) order; a score that is not finite is an error.
A document is relevant when its grade is > 0; a grade ≤ 0 (TREC's "junk", −2, included) is not relevant and gains 0,
as in trec_eval. nDCG uses linear gains: DCG@k = sum_i rel_i / log2(i + 2) (the convention of trec_eval and ranx's
`ndcg`). A query without any relevant judged document scores 0 on every metric."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list (one per query) of candidate scores.
    references: list (one per query) of candidate relevance grades, aligned with predictions.
    judged_relevances: list (one per query) of all judged relevance grades of the query.
    k_values: cutoffs (default [10]).
    return_per_query: also return each query's values under "per_query".
Returns:
    {"mrr@k", "ndcg@k", "recall@k" for each k, "num_queries"}.
"""


def rank_order(scores) -> np.ndarray:
    """Candidate indices best first: float32 scores descending, ties in candidate order.

    >>> rank_order([0.1, 0.9, 0.5, 0.9]).tolist()
    [1, 3, 2, 0]
    """
    return np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")


def query_metrics(scores, labels, judged, k_values) -> dict:
    # gains: grades ≤ 0 (TREC's "junk" −2 included) are not relevant and gain nothing (trec_eval's rule)
    ranked = np.maximum(np.asarray(labels, dtype=np.float64)[rank_order(scores)], 0.0)
    judged = np.asarray(judged, dtype=np.float64)
    num_relevant = int((judged > 0).sum())
    ideal = np.sort(judged[judged > 0])[::-1]
    discounts = 1.0 / np.log2(np.arange(2, max(len(ranked), len(ideal), max(k_values)) + 2))
    hits = np.flatnonzero(ranked > 0)
    values = {}
    for k in k_values:
        first_hit = hits[0] if len(hits) and hits[0] < k else None
        values[f"mrr@{k}"] = 0.0 if first_hit is None else 1.0 / (first_hit + 1)
        ideal_dcg = float((ideal[:k] * discounts[: len(ideal[:k])]).sum())
        dcg = float((ranked[:k] * discounts[: len(ranked[:k])]).sum())
        values[f"ndcg@{k}"] = dcg / ideal_dcg if ideal_dcg > 0 else 0.0
        values[f"recall@{k}"] = float((ranked[:k] > 0).sum()) / num_relevant if num_relevant else 0.0
    return values


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RerankMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                    "judged_relevances": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, judged_relevances, k_values=(10,), return_per_query=False):
        for index, (scores, labels) in enumerate(zip(predictions, references)):
            if len(scores) != len(labels):
                raise ValueError(f"query {index}: {len(scores)} scores but {len(labels)} relevance labels.")
            if not np.isfinite(np.asarray(scores, dtype=np.float64)).all():  # NaN would sort like a tie, silently
                raise ValueError(f"query {index}: scores that are not finite (NaN or infinity); the model is broken.")
        per_query = [
            query_metrics(scores, labels, judged, list(k_values))
            for scores, labels, judged in zip(predictions, references, judged_relevances)
        ]
        names = [f"{metric}@{k}" for k in k_values for metric in ("mrr", "ndcg", "recall")]
        result = {name: float(np.mean([q[name] for q in per_query])) if per_query else 0.0 for name in names}
        result["num_queries"] = len(per_query)
        if return_per_query:
            result["per_query"] = per_query
        return result
