"""Where do a re-ranker's wrong top-1 passages sit in the first-stage ranking? (RESULTS.md, "What was tried")

    python research/first_stage_errors.py --qrels ../shared/data/debian-rerank/qrels/dev.tsv \
        --first-stage ../shared/data/debian-rerank/runs/bm25.dev.trec \
        --run LITE=runs/debian/results.LITE.trec --run MaxSim=runs/debian/results.MaxSim.trec --split 10

Over the queries whose relevant passage is among the candidates (the others are wrong for every re-ranker), counts
the queries whose top-ranked passage is not relevant, by that passage's first-stage rank: 1..split or below. A
learned scorer trained on negatives from the first stage's top `split` only is never shown the rest.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lite_rerank.data import read_qrels, read_trec_run  # noqa: E402
from lite_rerank.utils import named_paths  # noqa: E402


def wrong_top1_by_first_stage_rank(qrels, first_stage, run, split: int) -> dict[str, int]:
    high, low = f"wrong top-1 from first-stage ranks 1-{split}", f"wrong top-1 from first-stage ranks {split + 1}+"
    counts = {"queries": 0, high: 0, low: 0}
    for qid, candidates in first_stage.items():
        relevant = {d for d, grade in qrels.get(qid, {}).items() if grade > 0}
        rank_of = {d: rank for rank, (d, _) in enumerate(candidates, start=1)}
        if not relevant & rank_of.keys():
            continue
        counts["queries"] += 1
        top = run[qid][0][0]
        if top not in relevant:
            counts[high if rank_of[top] <= split else low] += 1
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--first-stage", required=True, help="TREC run of the candidates, in first-stage order")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=TREC", help="a re-ranked run (repeat)")
    parser.add_argument("--split", type=int, default=10)
    args = parser.parse_args(argv)
    runs = named_paths("--run", args.run, parser.error)
    qrels, first_stage = read_qrels(args.qrels), read_trec_run(args.first_stage)
    report = {}
    for name, path in runs.items():
        report[name] = wrong_top1_by_first_stage_rank(qrels, first_stage, read_trec_run(path), args.split)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
