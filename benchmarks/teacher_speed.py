"""How fast can the teacher score, and can its faster forms be trusted? (issue 23, item 3)

    python benchmarks/teacher_speed.py --teacher runs/debian-distill/teacher/best \
        --pairs-from runs/bm25-negatives/listwise.train.jsonl.gz --selection runs/bm25-negatives/selection \
        --output results/teacher-speed.json

For each form of the teacher — float32, bfloat16 (where the CPU runs it natively), int8 linear layers (dynamic
quantization, float32 activations) — on this CPU with --threads threads:
- pairs per second over --pairs real (query, passage) pairs of the training rows (each row's positive and
  negatives), batched by length as `scripts/teacher_scores.py` scores them;
- agreement with the reference form (--reference, default float32): Spearman's rank correlation of the scores over
  those pairs, the mean and largest absolute difference;
- MRR@10 of the form as a re-ranker on the selection split (training queries, BM25 top-30), the quantity a student's
  targets depend on, and its difference to the reference's.
The CPU, its bf16 support and the threads are recorded with the numbers.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_rerank import hardware  # noqa: E402
from lite_rerank.cross_encoder import CrossEncoderScorer  # noqa: E402
from lite_rerank.data import load_rerank_set, read_jsonl  # noqa: E402
from lite_rerank.evaluation import compute_metrics, score_pairs  # noqa: E402

FORMS = {  # name: (dtype, int8 linear layers)
    "float32": ("float32", False),
    "bfloat16": ("bfloat16", False),
    "int8": ("float32", True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a cross-encoder folder")
    parser.add_argument("--pairs-from", required=True, help="listwise or triplet training rows")
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs timed and compared")
    parser.add_argument(
        "--selection", default=None, help="a BEIR folder with qrels/selection.tsv and bm25.selection.trec"
    )
    parser.add_argument("--forms", nargs="+", choices=sorted(FORMS), default=None, help="default: all this CPU runs")
    parser.add_argument("--reference", default="float32", choices=sorted(FORMS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=None, help="cut pairs to N tokens (default: the teacher's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.forms is None:
        args.forms = [name for name in FORMS if name != "bfloat16" or hardware.native_bf16()[0]]
    if args.reference not in args.forms:
        args.forms.insert(0, args.reference)
    return args


def real_pairs(path, count: int) -> tuple[list[str], list[str]]:
    queries, passages = [], []
    for _, row in read_jsonl(path, required=("query", "positive")):
        for passage in [row["positive"], *row.get("negatives", [row.get("negative")])]:
            if passage is not None and len(queries) < count:
                queries.append(row["query"])
                passages.append(passage)
        if len(queries) >= count:
            break
    return queries, passages


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(x))) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def main(argv=None):
    args = parse_args(argv)
    hardware.set_threads(args.threads)
    queries, passages = real_pairs(args.pairs_from, args.pairs)
    selection = (
        load_rerank_set(args.selection, "selection", str(Path(args.selection) / "bm25.selection.trec"))
        if args.selection
        else None
    )
    report = {
        "hardware": hardware.describe(),
        "pairs": len(queries),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "forms": {},
    }
    scores = {}
    for name in args.forms:
        dtype, int8 = FORMS[name]
        teacher = CrossEncoderScorer.from_pretrained(args.teacher, "cpu", hardware.DTYPE_NAMES[dtype], int8=int8)
        teacher.max_length = min(args.max_length or teacher.max_length, teacher.max_length)
        teacher.score(queries[:64], passages[:64], args.batch_size)  # warm-up
        start = time.perf_counter()
        scores[name] = teacher.score(queries, passages, args.batch_size)
        seconds = time.perf_counter() - start
        row = {"pairs_per_s": round(len(queries) / seconds, 1), "seconds": round(seconds, 1)}
        if selection is not None:
            row["selection_mrr@10"] = compute_metrics(
                selection, score_pairs(teacher, selection, args.batch_size, False)
            )["mrr@10"]
        report["forms"][name] = row
        print(name, row, flush=True)
    reference = report["forms"][args.reference]
    for name, row in report["forms"].items():
        difference = np.abs(np.asarray(scores[name]) - np.asarray(scores[args.reference]))
        row["spearman_vs_reference"] = round(spearman(scores[name], scores[args.reference]), 5)
        row["mean_abs_difference"], row["max_abs_difference"] = float(difference.mean()), float(difference.max())
        row["speed_vs_reference"] = round(row["pairs_per_s"] / reference["pairs_per_s"], 2)
        if "selection_mrr@10" in row:
            row["selection_mrr@10_vs_reference"] = row["selection_mrr@10"] - reference["selection_mrr@10"]
    report["reference"] = args.reference
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
