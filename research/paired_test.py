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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import named_paths  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--baseline", required=True, help="TREC run of the baseline system")
    parser.add_argument("--system", action="append", required=True, metavar="NAME=RUN", help="repeatable")
    parser.add_argument("--permutations", type=int, default=100_000)
    args = parser.parse_args(argv)
    systems = named_paths("--system", args.system, parser.error, bare=True)
    qrels = read_qrels(args.qrels)
    baseline = reciprocal_ranks(read_trec_run(args.baseline), qrels)
    results = {}
    for name, path in systems.items():
        results[name] = compare(baseline, reciprocal_ranks(read_trec_run(path), qrels), args.permutations)
        print(json.dumps({"system": name, **results[name]}), flush=True)
    return results


if __name__ == "__main__":
    main()
