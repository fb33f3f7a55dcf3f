"""Is an ensemble a stronger teacher than the cross-encoder alone? (issue 23, item 1)

    python eval_rerank.py --model teacher=runs/debian-distill/teacher/best --model maxsim-student=runs/.../best \
        --zero-shot-encoder minilm-maxsim=$MINILM --data runs/bm25-negatives/selection --split selection \
        --run runs/bm25-negatives/selection/bm25.selection.trec --output runs/ensemble/selection.json
    python research/ensemble_teacher.py --qrels runs/bm25-negatives/selection/qrels/selection.tsv \
        --run teacher=runs/ensemble/selection.teacher.trec --run maxsim-student=runs/ensemble/selection.maxsim-student.trec \
        --run bm25=runs/bm25-negatives/selection/bm25.selection.trec --output results/ensemble-teacher.json

The idea behind the `bert-ensemble-margin-mse` scores of sentence-transformers/msmarco: each member's scores of a
query's candidates standardised (z-score over that query's candidates: the members' scales differ) and summed, with
equal weights — no weight is fitted, so the selection split that measures it is not also the one it was tuned on.
Reports MRR@10 of every member alone, of the first member (the teacher) with each other member, and of all of them,
each ensemble with a paired randomisation test against the first member alone.

Judge on queries no member was trained on: --exclude-training FILE (a training file whose query texts, looked up in
--queries, are left out of the evaluation) for a member that saw part of the split.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lite_rerank.data import DataError, read_beir_texts, read_jsonl, read_qrels, read_trec_run  # noqa: E402
from lite_rerank.significance import compare, reciprocal_ranks  # noqa: E402
from lite_rerank.utils import named_paths, write_text_atomically  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qrels", required=True, help="the judgments of the split (BEIR qrels TSV)")
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="NAME=TREC",
        help="a member's scored run; the first is the teacher",
    )
    parser.add_argument("--queries", default=None, help="BEIR queries file (for --exclude-training)")
    parser.add_argument("--exclude-training", action="append", default=[], metavar="FILE", help="see above")
    parser.add_argument("--permutations", type=int, default=100_000)
    parser.add_argument("--output", default=None, help="JSON of the table")
    args = parser.parse_args(argv)
    members = named_paths("--run", args.run, parser.error)
    if len(members) < 2:
        parser.error("--run: give the teacher and at least one other member")
    if args.exclude_training and not args.queries:
        parser.error("--exclude-training needs --queries (to find the ids of its query texts)")
    args.members = members
    return args


def standardised_sum(runs: list[dict]) -> dict[str, list[tuple[str, float]]]:
    """{qid: candidates by the sum of each run's per-query z-scores}, over the candidates every run scored.

    >>> a = {"q": [("d1", 10.0), ("d2", 0.0), ("d3", 5.0)]}
    >>> b = {"q": [("d2", 0.3), ("d3", 0.25), ("d1", 0.1)]}
    >>> [doc for doc, _ in standardised_sum([a, b])["q"]]
    ['d3', 'd1', 'd2']
    """
    fused = {}
    for qid in set.intersection(*(set(run) for run in runs)):
        scores = [dict(run[qid]) for run in runs]
        shared = sorted(set.intersection(*(set(s) for s in scores)))
        total = np.zeros(len(shared))
        for member in scores:
            values = np.array([member[doc] for doc in shared], dtype=np.float64)
            spread = values.std()
            total += (values - values.mean()) / (spread if spread > 0 else 1.0)
        order = np.argsort(-total, kind="stable")
        fused[qid] = [(shared[i], float(total[i])) for i in order]
    return fused


def main(argv=None):
    args = parse_args(argv)
    try:
        qrels = read_qrels(args.qrels)
        runs = {name: read_trec_run(path) for name, path in args.members.items()}
        excluded = set()
        if args.exclude_training:
            texts = {text: qid for qid, text in read_beir_texts(args.queries, with_title=False).items()}
            for path in args.exclude_training:
                excluded |= {
                    texts[row["query"]] for _, row in read_jsonl(path, required=("query",)) if row["query"] in texts
                }
    except DataError as error:
        raise SystemExit(f"error: {error}") from None
    for name, run in runs.items():
        missing = [qid for qid in qrels if qid not in run]
        if missing:
            raise SystemExit(
                f"--run {name}={args.members[name]}: no candidates for {len(missing)} judged queries, "
                f"e.g. {missing[0]}: score the same split with every member"
            )
    judged = {qid: j for qid, j in qrels.items() if qid not in excluded}
    names = list(runs)
    teacher = names[0]
    rr_of = {name: reciprocal_ranks(run, judged) for name, run in runs.items()}
    reference = rr_of[teacher]
    table = {name: {"mrr@10": float(np.mean(list(rr.values())))} for name, rr in rr_of.items()}
    ensembles = {f"{teacher} + {other}": [teacher, other] for other in names[1:]}
    if len(names) > 2:
        ensembles[" + ".join(names)] = names
    for label, members in ensembles.items():
        fused = standardised_sum([runs[name] for name in members])
        table[label] = compare(reference, reciprocal_ranks(fused, judged), args.permutations)
    report = {
        "queries": len(judged),
        "excluded_queries": len(set(qrels) & excluded),
        "members": args.members,
        "rule": "per-query z-scores of each member summed, equal weights; p: paired randomisation test against "
        f"{teacher} alone on RR@10",
        "table": table,
    }
    print(f"{len(judged)} queries ({report['excluded_queries']} left out: a member trained on them)")
    for label, row in table.items():
        extra = f"  {row['difference']:+.4f} vs {teacher}  p={row['p_value']:.3g}" if "p_value" in row else ""
        print(f"{label:<48} MRR@10 {row['mrr@10']:.4f}{extra}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(Path(args.output), json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
