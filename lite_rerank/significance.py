"""Is one re-ranker better than another on these queries? Per-query reciprocal ranks and a paired randomisation
test (Smucker, Allan & Carterette 2007): what research/paired_test.py reports and the demo prints."""

import numpy as np


def reciprocal_ranks(run: dict, qrels: dict, depth: int = 10) -> dict[str, float]:
    """RR@depth of every judged query (0 where no relevant passage is in the top `depth` or the query has no run)."""
    values = {}
    for qid, judged in qrels.items():
        ranking = [doc for doc, _ in run.get(qid, [])][:depth]
        values[qid] = next((1.0 / rank for rank, doc in enumerate(ranking, 1) if judged.get(doc, 0) > 0), 0.0)
    return values


def randomisation_p(differences, permutations: int = 100_000, seed: int = 0) -> float:
    """Two-sided paired randomisation test of mean(differences) = 0, by random sign flips (the observed assignment
    counted once, so p > 0)."""
    differences = np.asarray(differences, dtype=np.float64)
    observed = abs(differences.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, permutations, 10_000):
        signs = rng.choice((-1.0, 1.0), size=(min(10_000, permutations - start), differences.size))
        extreme += int((np.abs(signs @ differences) / differences.size >= observed - 1e-12).sum())
    return (extreme + 1) / (permutations + 1)


def compare(baseline: dict[str, float], system: dict[str, float], permutations: int = 100_000) -> dict:
    """`system` against `baseline` on the same queries (query id → reciprocal rank): means, wins / losses / ties and
    the paired randomisation test. Both must score the same, non-empty set of queries: a test on no query, or on
    queries one run lacks, would be a number about nothing."""
    if not baseline or not system:
        raise ValueError(f"a paired test needs queries: the {'baseline' if not baseline else 'system'} run has none")
    if baseline.keys() != system.keys():
        only_baseline, only_system = sorted(baseline.keys() - system.keys()), sorted(system.keys() - baseline.keys())
        raise ValueError(
            f"a paired test needs both runs on the same queries: {len(only_baseline)} only in the baseline "
            f"(e.g. {only_baseline[:3]}), {len(only_system)} only in the system (e.g. {only_system[:3]})"
        )
    queries = sorted(baseline)
    differences = np.array([system[q] - baseline[q] for q in queries])
    return {
        "queries": len(queries),
        "mrr@10": float(np.mean([system[q] for q in queries])),
        "baseline_mrr@10": float(np.mean([baseline[q] for q in queries])),
        "difference": float(differences.mean()),
        "wins": int((differences > 0).sum()),
        "losses": int((differences < 0).sum()),
        "ties": int((differences == 0).sum()),
        "p_value": randomisation_p(differences, permutations),
    }


def compare_result_runs(results: dict, qrels_path, baseline: str) -> dict[str, dict]:
    """Every row of `results` (row name → the results JSON eval_rerank.py wrote it in; one file may hold several
    rows) against row `baseline` (`compare`), from the TREC runs beside those files and the judgments in
    `qrels_path`."""
    from .data import read_qrels, read_trec_run
    from .utils import result_run_path

    qrels = read_qrels(qrels_path)

    def rr(name):
        return reciprocal_ranks(read_trec_run(result_run_path(results[name], name)), qrels)

    reference = rr(baseline)
    return {name: compare(reference, rr(name)) for name in results if name != baseline}
