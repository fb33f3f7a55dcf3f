"""Per-query comparison of re-rankers against a baseline: wins, losses and a paired randomisation test on RR@10.

    python research/paired_test.py --qrels ../shared/data/debian-rerank/qrels/dev.tsv \
        --baseline runs/debian/results.MaxSim.trec --system LITE=runs/debian/results.LITE.trec [--system ...]

Reciprocal rank at 10 per judged query (binary relevance: grade > 0; a query whose relevant passage is not in the
top 10 counts 0), then for each system against the baseline: queries won, lost and tied, the mean difference, and
the two-sided p-value of the paired randomisation (sign-flip) test — the share of random sign assignments of the
per-query differences whose mean is at least as far from 0 as the observed one (Smucker, Allan & Carterette 2007).
Runs are read in their rank order; prints one JSON object per system.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--baseline", required=True, help="TREC run of the baseline system")
    parser.add_argument("--system", action="append", required=True, metavar="NAME=RUN", help="repeatable")
    parser.add_argument("--permutations", type=int, default=100_000)
    args = parser.parse_args(argv)
    qrels = read_qrels(args.qrels)
    baseline = reciprocal_ranks(read_trec_run(args.baseline), qrels)
    results = {}
    for spec in args.system:
        name, _, path = spec.rpartition("=")
        results[name or path] = compare(baseline, reciprocal_ranks(read_trec_run(path), qrels), args.permutations)
        print(json.dumps({"system": name or path, **results[name or path]}), flush=True)
    return results


if __name__ == "__main__":
    main()
